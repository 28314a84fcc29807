//! The threads that own the connections. SQLite calls block, so they never run on the async
//! runtime: each connection lives on its own thread and receives work over a channel.

use std::{
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    sync::{
        mpsc::{self, Receiver, Sender},
        Arc, Mutex, MutexGuard, PoisonError, TryLockError,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use eventsourcing_core::{
    metrics::{PoolGauges, Queued},
    Error,
};
use std::ffi::c_int;

use rusqlite::{hooks::Wal, Connection};

pub(crate) use crate::job::{Gone, Job};
use crate::{
    group::{self, Save},
    job::run,
    readers::{Lent, Pool},
};
/// The `store` label of this crate's metrics.
pub(crate) const KIND: &str = "sqlite";
/// Jobs queued for and running on the writer connection, in every store of the process.
pub(crate) static WRITER_GAUGES: PoolGauges = PoolGauges::new(KIND, "writer");
/// Jobs queued for and running on reader connections (on the writer, for in-memory databases).
pub(crate) static READER_GAUGES: PoolGauges = PoolGauges::new(KIND, "reader");

/// What the writer's queue holds.
pub(crate) enum Work {
    /// Runs alone.
    Job(Job),
    /// A save, which commits together with the saves queued right behind it ([`group`](crate::group)).
    Save(Save),
}

/// One writer thread, and either a pool of reader threads (file databases) or none, in which
/// case reads go to the writer (in-memory databases, which live in one connection).
#[derive(Debug)]
pub(crate) struct Workers {
    writer: Option<Sender<Work>>,
    /// The writer connection, used by the writer thread, or by a caller saving on its own
    /// thread while nothing is queued (see [`Workers::save_here`]).
    shared: Arc<Writer>,
    readers: Readers,
    threads: Vec<JoinHandle<()>>,
}

/// The writer connection, its bound on the write-ahead log, and how much work is queued for
/// it. One thread at a time holds the connection.
struct Writer {
    conn: Mutex<(Connection, Option<WalLimit>)>,
    /// Work sent to the writer thread and not yet taken by it.
    queued: AtomicUsize,
    /// Saves begun and not yet answered ([`Saving`]), on either path.
    saving: AtomicUsize,
}

/// A save being made, counted until it is dropped (see [`Workers::saving`]).
pub(crate) struct Saving<'a>(&'a Writer);

impl Saving<'_> {
    /// Whether no other save is being made: then nothing would commit with this one.
    fn alone(&self) -> bool {
        self.0.saving.load(Ordering::SeqCst) == 1
    }
}

impl Drop for Saving<'_> {
    fn drop(&mut self) {
        self.0.saving.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, (Connection, Option<WalLimit>)> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the connection (which the caller holds), then keeps the log in bounds.
    fn run<T>(
        held: &mut (Connection, Option<WalLimit>),
        work: impl FnOnce(&mut Connection) -> T,
    ) -> T {
        let (conn, wal) = held;
        let done = work(conn);
        if let Some(wal) = wal {
            wal.check(conn);
        }
        done
    }
}

#[derive(Debug)]
enum Readers {
    /// Reads are queued for the writer thread.
    Writer(Option<Sender<Work>>),
    Pool(Arc<Pool>),
}

impl Workers {
    /// The threads of `writer` and `readers`; with readers (a file database) and a
    /// `wal_size_limit`, the writer keeps the write-ahead log under it (see [`WalLimit`]).
    pub(crate) fn spawn(
        mut writer: Connection,
        readers: Vec<Connection>,
        dbname: &str,
        wal_size_limit: Option<u64>,
        lock_timeout: Duration,
    ) -> Result<Self, Error> {
        let spawn_failed = |e: std::io::Error| {
            Error::store(format!("cannot start a SQLite thread for `{dbname}`: {e}"))
        };
        let wal = match wal_size_limit {
            Some(limit) if !readers.is_empty() => WalLimit::new(&mut writer, limit, lock_timeout)?,
            _ => None,
        };
        let shared = Arc::new(Writer {
            conn: Mutex::new((writer, wal)),
            queued: AtomicUsize::new(0),
            saving: AtomicUsize::new(0),
        });
        let mut workers = Workers {
            writer: None,
            shared: Arc::clone(&shared),
            readers: Readers::Writer(None),
            threads: Vec::with_capacity(readers.len() + 1),
        };
        // From here on, an early return drops `workers`, which stops the threads already started.
        let (tx, rx) = mpsc::channel::<Work>();
        workers.writer = Some(tx.clone());
        let handle = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(&shared, rx))
            .map_err(spawn_failed)?;
        workers.threads.push(handle);
        if readers.is_empty() {
            workers.readers = Readers::Writer(Some(tx));
            return Ok(workers);
        }
        drop(tx);
        let pool = Arc::new(Pool::new(readers));
        workers.readers = Readers::Pool(Arc::clone(&pool));
        for i in 0..pool.readers() {
            let pool = Arc::clone(&pool);
            let handle = thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || pool.serve())
                .map_err(spawn_failed)?;
            workers.threads.push(handle);
        }
        Ok(workers)
    }

    /// Queues a job for the writer connection.
    pub(crate) fn write(&self, job: Job) -> Result<(), Gone> {
        self.send(self.writer.as_ref(), Work::Job(job))
    }

    /// Queues a save for the writer connection.
    pub(crate) fn save(&self, save: Save) -> Result<(), Gone> {
        self.send(self.writer.as_ref(), Work::Save(save))
    }

    /// Counts a save from now until the guard is dropped (once it is answered).
    pub(crate) fn saving(&self) -> Saving<'_> {
        self.shared.saving.fetch_add(1, Ordering::SeqCst);
        Saving(&self.shared)
    }

    /// Writes `save` on this thread, inside [`tokio::task::block_in_place`], if it may block
    /// (a multi-thread runtime), no other save is being made, and the writer is idle: a save
    /// alone then costs no hand-off to the writer thread and back (concurrent saves go to the
    /// writer thread, which commits them together). Gives the save back otherwise.
    pub(crate) fn save_here(&self, save: Save, saving: &Saving<'_>) -> Option<Save> {
        if !Pool::may_block() || !saving.alone() || self.shared.queued.load(Ordering::SeqCst) > 0 {
            return Some(save);
        }
        let mut held = match self.shared.conn.try_lock() {
            Ok(held) => held,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Some(save),
        };
        let mut save = save;
        let busy = save.queued.take().map(Queued::start);
        let outcome = tokio::task::block_in_place(|| {
            Writer::run(&mut held, |conn| {
                std::panic::catch_unwind(AssertUnwindSafe(|| group::write_alone(conn, &save)))
            })
        });
        drop(held);
        drop(busy);
        // Answered, and subscribers woken, back on the runtime's own thread (a task woken from
        // inside `block_in_place` waits longer to run). A panic fails this save only, as on the
        // writer thread: its caller sees the reply dropped; the transaction rolled back.
        if let Ok(outcome) = outcome {
            group::finish(save, outcome);
        }
        None
    }

    /// Queues a job for the reader threads (for the writer, in an in-memory database).
    pub(crate) fn read(&self, job: Job) -> Result<(), Gone> {
        match &self.readers {
            Readers::Writer(writer) => self.send(writer.as_ref(), Work::Job(job)),
            Readers::Pool(pool) => pool.submit(job),
        }
    }

    /// Whether reads on this thread run here (see [`Pool::lend`]), connections permitting.
    pub(crate) fn may_read_here(&self) -> bool {
        matches!(self.readers, Readers::Pool(_)) && Pool::may_block()
    }

    /// A reader connection to read with on this thread, where it may (see [`Pool::lend`]);
    /// in an in-memory database, never.
    pub(crate) fn lend(&self) -> Option<Lent<'_>> {
        match &self.readers {
            Readers::Writer(_) => None,
            Readers::Pool(pool) => pool.lend(),
        }
    }
}

impl Workers {
    /// Queues `work` for the writer thread, counted until it takes it; fails if the thread is
    /// gone.
    fn send(&self, sender: Option<&Sender<Work>>, work: Work) -> Result<(), Gone> {
        let sender = sender.ok_or(Gone)?;
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        sender.send(work).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            Gone
        })
    }
}

/// The most saves one commit takes: a bound on how long the first of them waits for the rest.
const MAX_GROUP: usize = 64;

/// `first` and the saves queued right behind it, and the first other work met on the way (to
/// run after the group, keeping the queue's order).
fn gather(first: Save, queue: &Receiver<Work>, writer: &Writer) -> (Vec<Save>, Option<Work>) {
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match queue.try_recv() {
            Ok(Work::Save(save)) => {
                writer.queued.fetch_sub(1, Ordering::SeqCst);
                group.push(save);
            }
            Ok(other) => {
                writer.queued.fetch_sub(1, Ordering::SeqCst);
                return (group, Some(other));
            }
            Err(_) => break,
        }
    }
    (group, None)
}

fn serve(writer: &Writer, queue: Receiver<Work>) {
    // Ends when every sender is dropped and the queue is drained; the connection closes with
    // the last `Workers`' hold on it.
    let mut next = None;
    loop {
        let work = match next.take() {
            Some(work) => work,
            None => match queue.recv() {
                Ok(work) => {
                    writer.queued.fetch_sub(1, Ordering::SeqCst);
                    work
                }
                Err(_) => return,
            },
        };
        let mut held = writer.lock();
        Writer::run(&mut held, |conn| match work {
            Work::Job(job) => run(job, conn),
            Work::Save(first) => {
                let (saves, after) = gather(first, &queue, writer);
                next = after;
                // A panic fails the saves of the group (their callers see the reply dropped),
                // not the thread; the transaction rolls back as it unwinds.
                let _ =
                    std::panic::catch_unwind(AssertUnwindSafe(|| group::write_group(conn, saves)));
            }
        });
    }
}

/// How long a checkpoint of the writer waits at most for running reads.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(50);

/// The writer's bound on the write-ahead log (see
/// [The write-ahead log](crate::SqliteConfig#the-write-ahead-log)). SQLite's automatic
/// checkpoint cannot start the log over while a reader holds an older snapshot, and never
/// shrinks the file, so with readers always busy the log would grow without end.
#[derive(Debug)]
struct WalLimit {
    /// The `-wal` file beside the database.
    path: PathBuf,
    limit: u64,
    /// The size at which to try next: `limit`, or a quarter of it more after a truncation that
    /// a running read kept from finishing.
    next: u64,
    /// The writer's busy timeout, restored after a checkpoint (which waits only briefly).
    lock_timeout: Duration,
    /// The frames in the log after the last commit, as SQLite's write-ahead-log hook tells:
    /// knowing the size costs nothing per save (a `stat` of the file per save, next to its
    /// `fsync`, cost a quarter of the 8-writer throughput).
    frames: Arc<AtomicU64>,
    page_size: u64,
}

/// Pages in the log past which a commit checkpoints it (`PASSIVE`), as SQLite's own
/// `wal_autocheckpoint` does by default; the hook below takes that one's place.
const AUTOCHECKPOINT_PAGES: c_int = 1000;

impl WalLimit {
    /// Sets `journal_size_limit` on the writer (a log SQLite starts over is cut back to the
    /// limit) and finds the log file; `None` for a database without one (temporary files).
    fn new(
        writer: &mut Connection,
        limit: u64,
        lock_timeout: Duration,
    ) -> Result<Option<Self>, Error> {
        let Some(db) = writer.path().filter(|p| !p.is_empty()).map(str::to_owned) else {
            return Ok(None);
        };
        let path = PathBuf::from(format!("{db}-wal"));
        let page_size: i64 = writer
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|e| Error::store(format!("cannot read the page size of `{db}`: {e}")))?;
        let frames = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&frames);
        writer
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                seen.store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
                if pages >= AUTOCHECKPOINT_PAGES {
                    // What the default hook does; its failure (a busy reader) is not the save's.
                    let _ = wal.checkpoint();
                }
                Ok(())
            }))
            .map_err(|e| Error::store(format!("cannot watch the log of `{db}`: {e}")))?;
        let bytes = i64::try_from(limit).unwrap_or(i64::MAX);
        let _: i64 = writer
            .query_row(&format!("PRAGMA journal_size_limit = {bytes}"), [], |row| {
                row.get(0)
            })
            .map_err(|e| Error::store(format!("cannot set journal_size_limit on `{db}`: {e}")))?;
        Ok(Some(WalLimit {
            path,
            limit,
            next: limit,
            lock_timeout,
            frames,
            page_size: u64::try_from(page_size).unwrap_or(4096),
        }))
    }

    /// After each job: past the limit, checkpoint and truncate the log.
    fn check(&mut self, conn: &Connection) {
        let size = self
            .frames
            .load(Ordering::Relaxed)
            .saturating_mul(self.page_size);
        if size <= self.next {
            return;
        }
        // A short wait: TRUNCATE waits (the busy handler) for the reads already running, and
        // every save queued behind it waits with it; with the lock timeout (5 s by default) one
        // long read could stall the saves that long. A read still in the way after
        // `CHECKPOINT_WAIT` makes it give up; it is tried again a little later.
        let _ = conn.busy_timeout(CHECKPOINT_WAIT.min(self.lock_timeout));
        let outcome = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        });
        let _ = conn.busy_timeout(self.lock_timeout);
        let retry = size.saturating_add(self.limit / 4);
        match outcome {
            Ok(0) => self.next = self.limit,
            Ok(_) => {
                tracing::debug!(
                    wal = %self.path.display(),
                    size,
                    "a running read kept the SQLite write-ahead log from being truncated; \
                     trying again when it has grown a little more"
                );
                self.next = retry;
            }
            Err(e) if crate::error::is_transient(&e) => self.next = retry,
            Err(e) => {
                tracing::warn!(wal = %self.path.display(), error = %e, "SQLite checkpoint failed");
                self.next = retry;
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queues lets each thread finish the jobs already queued, then close its
        // connection. Waiting for them means the file is closed when the store is gone, so it
        // can be reopened or deleted.
        //
        // The readers close first and the writer last: the connection that closes last
        // checkpoints the write-ahead log and deletes it (and the `-shm` file), but only if it
        // can lock the database exclusively. Connections closing at the same moment each see
        // the others still open, and the log would stay behind.
        let me = thread::current().id();
        let mut join = |handle: JoinHandle<()>| {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        };
        let mut threads = self.threads.drain(..);
        // The writer's thread is the first spawned.
        let writer = threads.next();
        match &mut self.readers {
            Readers::Writer(writer) => *writer = None,
            Readers::Pool(pool) => pool.close(),
        }
        threads.for_each(&mut join);
        if let Readers::Pool(pool) = &self.readers {
            pool.close_connections();
        }
        self.writer = None;
        if let Some(handle) = writer {
            join(handle);
        }
    }
}
