//! A job for a connection's thread: a closure that sends its own result, and how a thread runs
//! one.

use std::panic::AssertUnwindSafe;

use rusqlite::Connection;

/// Work for a connection thread. It sends its own result (through a oneshot channel).
pub(crate) type Job = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

/// The connection's thread has stopped: the store is closing.
#[derive(Debug)]
pub(crate) struct Gone;

/// Runs a job; a panic in it ends that job only (its caller sees the reply channel closed),
/// not the thread, which goes on serving the others.
pub(crate) fn run(job: Job, conn: &mut Connection) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(conn)));
}
