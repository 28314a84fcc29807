//! The reader connections of a file database, shared by two kinds of user: a caller on a worker
//! thread of a multi-thread tokio runtime reads on its own thread (inside
//! [`tokio::task::block_in_place`], so the runtime moves its other tasks elsewhere), and every
//! other read (on a current-thread runtime, outside a runtime, a read ahead, or when every
//! connection is busy) is queued for the reader threads.
//!
//! Handing a read to a parked thread and its result back costs two thread wake-ups, which is
//! most of a small read (a load of ten events: 25 µs against 10 µs read by hand). Reading on the
//! caller's thread costs neither.
//!
//! A connection is used by one thread at a time: it is taken out of the idle list for the length
//! of one job and put back after it. The idle list is last in, first out, so a read gets the
//! connection used most recently, whose page cache is the warmest. (With connections taken in
//! turn, consecutive reads of a catch-up each started with a cold cache: about 1.5x slower.)
//! No job keeps a read transaction open past its end, so the writer's checkpoints are held back
//! only for the length of a read.

use std::{
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
};

use rusqlite::Connection;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::job::{run, Gone, Job};

/// The reader connections and the queue of their threads.
pub(crate) struct Pool {
    state: Mutex<State>,
    /// Wakes a reader thread: a job is queued and a connection is idle, or the pool closed.
    wake: Condvar,
    readers: usize,
}

struct State {
    /// Idle connections, the most recently used last.
    idle: Vec<Connection>,
    /// Jobs waiting for a reader thread, in arrival order.
    queue: VecDeque<Job>,
    /// Reader threads waiting in [`Pool::serve`].
    waiting: usize,
    closed: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(connections: Vec<Connection>) -> Self {
        Pool {
            readers: connections.len(),
            state: Mutex::new(State {
                idle: connections,
                queue: VecDeque::new(),
                waiting: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many reader threads to start: one per connection.
    pub(crate) fn readers(&self) -> usize {
        self.readers
    }

    /// Queues `job` for the reader threads.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Gone> {
        let mut state = self.lock();
        if state.closed {
            return Err(Gone);
        }
        state.queue.push_back(job);
        let wake = state.waiting > 0 && !state.idle.is_empty();
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// An idle connection to read with on this thread, if this thread may block: on a
    /// multi-thread runtime, whose other tasks move to another thread meanwhile (see
    /// [`Lent::run`]). `None` on a current-thread runtime (whose one thread runs every task),
    /// outside a runtime, or with every connection busy: then the read is queued.
    pub(crate) fn lend(&self) -> Option<Lent<'_>> {
        if !Pool::may_block() {
            return None;
        }
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let conn = state.idle.pop()?;
        Some(Lent {
            pool: self,
            conn: Some(conn),
        })
    }

    /// Whether this thread may block in a read: on a multi-thread runtime.
    pub(crate) fn may_block() -> bool {
        Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
    }

    /// Puts a connection back, and wakes a reader thread if a job waits for one.
    fn give_back(&self, conn: Connection) {
        let mut state = self.lock();
        state.idle.push(conn);
        let wake = state.waiting > 0 && !state.queue.is_empty();
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Stops the reader threads once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Closes the idle connections (after [`close`](Self::close) and the threads' end: all of
    /// them).
    pub(crate) fn close_connections(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        drop(idle);
    }

    /// The loop of a reader thread: queued jobs, each on the most recently used idle
    /// connection, until the pool closes and the queue is empty.
    pub(crate) fn serve(&self) {
        let mut state = self.lock();
        loop {
            if !state.queue.is_empty() {
                if let Some(mut conn) = state.idle.pop() {
                    let job = state.queue.pop_front();
                    drop(state);
                    if let Some(job) = job {
                        run(job, &mut conn);
                    }
                    state = self.lock();
                    state.idle.push(conn);
                    continue;
                }
            } else if state.closed {
                return;
            }
            state.waiting += 1;
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
    }
}

/// A connection taken from the idle list for one read on the caller's thread; back in the list
/// when dropped, also if the read panicked.
pub(crate) struct Lent<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Lent<'_> {
    /// Runs `read` on the connection, inside [`tokio::task::block_in_place`]; `None` if it
    /// panicked (that fails this read only, as on a reader thread).
    pub(crate) fn run<T>(mut self, read: impl FnOnce(&mut Connection) -> T) -> Option<T> {
        let conn = self.conn.as_mut()?;
        tokio::task::block_in_place(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| read(conn))).ok()
        })
    }
}

impl Lent<'_> {
    /// Like [`run`](Self::run) for a read that runs the caller's code (a replay's fold): a
    /// panic in it is the caller's, so it goes on unwinding once the connection is back in
    /// the idle list. `None` only if the connection is gone.
    pub(crate) fn run_caller<T>(mut self, read: impl FnOnce(&mut Connection) -> T) -> Option<T> {
        let conn = self.conn.as_mut()?;
        let result = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| read(conn)))
        });
        match result {
            Ok(done) => Some(done),
            Err(panic) => {
                drop(self);
                std::panic::resume_unwind(panic)
            }
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}
