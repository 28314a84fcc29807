//! The threads that own the connections. SQLite calls block, so they never run on the async
//! runtime: each connection lives on its own thread and receives work over a channel.

use std::{
    sync::{
        mpsc::{self, Receiver, Sender},
        Arc, Mutex, PoisonError,
    },
    thread::{self, JoinHandle},
};

use eventsourcing_core::Error;
use rusqlite::Connection;

/// Work for a connection thread. It sends its own result (through a oneshot channel).
pub(crate) type Job = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

/// One writer thread, and either a pool of reader threads sharing one queue (file databases) or
/// none, in which case reads go to the writer (in-memory databases, which live in one
/// connection).
#[derive(Debug)]
pub(crate) struct Workers {
    writer: Option<Sender<Job>>,
    reader: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    pub(crate) fn spawn(
        writer: Connection,
        readers: Vec<Connection>,
        dbname: &str,
    ) -> Result<Self, Error> {
        let spawn_failed = |e: std::io::Error| {
            Error::store(format!("cannot start a SQLite thread for `{dbname}`: {e}"))
        };
        let mut workers = Workers {
            writer: None,
            reader: None,
            threads: Vec::with_capacity(readers.len() + 1),
        };
        // From here on, an early return drops `workers`, which stops the threads already started.
        let (tx, rx) = mpsc::channel::<Job>();
        workers.writer = Some(tx.clone());
        let handle = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(writer, rx))
            .map_err(spawn_failed)?;
        workers.threads.push(handle);
        if readers.is_empty() {
            workers.reader = Some(tx);
        } else {
            drop(tx);
            let (tx, rx) = mpsc::channel::<Job>();
            workers.reader = Some(tx);
            let rx = Arc::new(Mutex::new(rx));
            for (i, conn) in readers.into_iter().enumerate() {
                let rx = Arc::clone(&rx);
                let handle = thread::Builder::new()
                    .name(format!("sqlite-reader-{i}"))
                    .spawn(move || serve_shared(conn, &rx))
                    .map_err(spawn_failed)?;
                workers.threads.push(handle);
            }
        }
        Ok(workers)
    }

    /// Queues a job for the writer connection; gives it back if the thread is gone.
    pub(crate) fn write(&self, job: Job) -> Result<(), Job> {
        send(self.writer.as_ref(), job)
    }

    /// Queues a job for the next free reader connection; gives it back if they are gone.
    pub(crate) fn read(&self, job: Job) -> Result<(), Job> {
        send(self.reader.as_ref(), job)
    }
}

fn send(sender: Option<&Sender<Job>>, job: Job) -> Result<(), Job> {
    match sender {
        Some(sender) => sender.send(job).map_err(|e| e.0),
        None => Err(job),
    }
}

fn serve(mut conn: Connection, jobs: Receiver<Job>) {
    // Ends when every sender is dropped and the queue is drained; the connection then closes.
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
    }
}

fn serve_shared(mut conn: Connection, jobs: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only while waiting: the next job goes to whichever reader is free.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(&mut conn),
            Err(_) => break,
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queues lets each thread finish the jobs already queued, then close its
        // connection (the last one to close checkpoints the write-ahead log). Waiting for them
        // means the file is closed when the store is gone, so it can be reopened or deleted.
        self.writer = None;
        self.reader = None;
        let me = thread::current().id();
        for handle in self.threads.drain(..) {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}
