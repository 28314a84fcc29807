use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing_core::{
    fold_stored, metrics::observe_log_read, ChangeNotifier, Changes, Env, Error, EventStore, Fold,
    MigrationReport, MigrationStatus, NewEvent, ParkedEvent, Position, Snapshot, StoredEvent,
    Tracking, Uuid,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{
    append::{plan, save_snapshot, TrackingRow},
    config::SqliteConfig,
    error::{cannot_open, is_transient, sql_error, stopped},
    group::Save,
    migrate,
    read::{
        current_version, load, load_from_snapshot, load_snapshot, read_page, replay_rows, Read,
    },
    read_ahead::{self, full, ReadAhead, PAGES},
    rows::{clamp_i64, log_floor, read_tracking},
    worker::{Job, Workers, KIND, READER_GAUGES, WRITER_GAUGES},
};

/// The SQLite event store: a file database (or an in-memory one) that needs no server.
///
/// Cheap to clone; clones share the connections. Dropping the last clone lets the queued work
/// finish, closes the connections and waits for their threads, so the file is closed (and can be
/// deleted or reopened) once the drop returns.
///
/// # Connections and threads
/// A file database has one writer connection on its own thread and
/// [`readers`](SqliteConfig::readers) reader connections with a thread each. Saves and other
/// writes are sent to the writer's thread and their reply awaited. A read on a multi-thread
/// tokio runtime runs on the caller's own thread, on an idle reader connection, inside
/// [`block_in_place`](tokio::task::block_in_place) (the runtime moves its other tasks to another
/// thread meanwhile), which saves two thread wake-ups per read; on a current-thread runtime,
/// outside a runtime, or with every reader connection busy, it is queued for the reader threads,
/// so the runtime never blocks on SQLite. In WAL mode readers see the last committed
/// state and run while the writer writes. All saves go through the one writer, so a save never
/// waits for another one's lock inside this process (another process writing the same file is
/// waited for up to the lock timeout). An in-memory database lives in a single connection (each
/// connection to `:memory:` would be a separate database), whose thread serves reads and writes.
/// A read takes the reader connection used last (its page cache is the warmest); a full page
/// of [`read_log`](EventStore::read_log) has the next page read ahead when the caller waits for
/// a reader thread anyway, and a caller reading on its own thread has a reader thread read the
/// page it guesses comes next meanwhile (see [Costs](crate#costs)). A panic in one job (say,
/// in a closure given to [`query`](SqliteStore::query)) fails that job only: the thread, and
/// the connection, go on serving.
///
/// Cancelling an [`append`](EventStore::append) future once polled does not cancel the save: it
/// may still commit.
///
/// # Notifications
/// [`changes`](EventStore::changes) wakes subscribers after every save through this store and
/// its clones. Saves by another process, or by another `SqliteStore` on the same file, wake
/// nobody; subscribers see them at their next poll.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    dbname: Arc<str>,
    /// Woken after each commit that wrote events through this store.
    notifier: ChangeNotifier,
    workers: Workers,
    /// Pages of the log read ahead, for file databases; `None` for in-memory ones, whose one
    /// thread also serves the saves.
    read_ahead: Option<Arc<ReadAhead>>,
    /// Whether the last full page read on a caller's thread held contiguous positions: then
    /// the next such read guesses where the page after it starts (see `read_ahead.rs`).
    contiguous: AtomicBool,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database `config` names; applies the migrations unless
    /// `create_table` is off. The blocking work runs on a separate thread.
    pub async fn open(config: SqliteConfig) -> Result<Self, Error> {
        let dbname = config.dbname().to_owned();
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("sqlite-open".into())
            .spawn(move || {
                let _ = tx.send(SqliteStore::open_blocking(config));
            })
            .map_err(|e| Error::store(format!("cannot start a SQLite thread: {e}")))?;
        rx.await.map_err(|_| stopped(&dbname))?
    }

    /// Like [`open`](Self::open), blocking the calling thread (for `main` before a runtime
    /// starts, or for tests). Do not call it from async code.
    pub fn open_blocking(config: SqliteConfig) -> Result<Self, Error> {
        let dbname = config.dbname().to_owned();
        let mut writer = connect(&config, Role::Writer)?;
        if config.create_table() {
            migrate::migrate(&mut writer, &dbname)?;
        }
        let readers = if config.is_memory() {
            Vec::new()
        } else {
            (0..config.readers())
                .map(|_| connect(&config, Role::Reader))
                .collect::<Result<Vec<_>, _>>()?
        };
        let read_ahead = (!readers.is_empty()).then(|| Arc::new(ReadAhead::new(PAGES)));
        let workers = Workers::spawn(
            writer,
            readers,
            &dbname,
            config.wal_size_limit(),
            config.lock_timeout(),
        )?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                config,
                dbname: dbname.into(),
                notifier: ChangeNotifier::new(),
                workers,
                read_ahead,
                contiguous: AtomicBool::new(false),
            }),
        })
    }

    /// Opens a private in-memory database with the tables created. Quick (no I/O), so it may be
    /// called from async code.
    pub fn open_memory() -> Result<Self, Error> {
        SqliteStore::open_blocking(SqliteConfig::memory())
    }

    /// Reads the [`SqliteConfig`] settings from `env` and opens the database.
    pub async fn from_env(env: &Env) -> Result<Self, Error> {
        SqliteStore::open(SqliteConfig::from_env(env)?).await
    }

    /// The settings this store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// Applies the embedded migrations ([`MIGRATIONS`](crate::MIGRATIONS)) the database lacks,
    /// holding the write lock from start to end, and reports what it applied and what was
    /// applied before. Safe to call any number of times, from several processes. Fails with
    /// [`Error::Schema`], before applying anything, if an applied migration differs from the
    /// embedded one (checksum mismatch) or the database was migrated by a newer release.
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        self.on_writer(migrate::migrate).await
    }

    /// Checks, without writing, that every migration has been applied unchanged: an
    /// [`Error::Schema`] says what is missing otherwise.
    pub async fn check_schema(&self) -> Result<(), Error> {
        self.on_reader(|conn, dbname| migrate::check(conn, dbname))
            .await
    }

    /// Every migration of this code and of the database, by version: applied, pending, applied
    /// with another checksum, or unknown to this code. Writes nothing.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, Error> {
        self.on_reader(|conn, dbname| migrate::status(conn, dbname))
            .await
    }

    /// One save on the writer thread; wakes subscribers once it has committed events.
    async fn save(
        &self,
        events: Vec<NewEvent>,
        tracking: Option<TrackingRow>,
    ) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        let save = Save {
            plan: plan(events)?,
            tracking,
            dbname: Arc::clone(&self.inner.dbname),
            notifier: self.inner.notifier.clone(),
            reply,
            queued: Some(WRITER_GAUGES.queued()),
        };
        let stopped = || stopped(&self.inner.dbname);
        // On this thread when no other save is being made, else queued for the writer thread.
        let saving = self.inner.workers.saving();
        if let Some(save) = self.inner.workers.save_here(save, &saving) {
            self.inner.workers.save(save).map_err(|_| stopped())?;
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Wakes subscribers after events were written outside `save` (an import, a restore).
    pub(crate) fn notify_changes(&self) {
        self.inner.notifier.notify();
    }

    /// Runs `f` on the writer connection's thread.
    pub(crate) async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.run_job(Role::Writer, f).await
    }

    /// Runs `f` on the thread of the next free reader connection.
    pub(crate) async fn on_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.run_job(Role::Reader, f).await
    }

    async fn run_job<T: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        // The queue and the busy connections, as the pool gauges of the metrics.
        let queued = match role {
            Role::Writer => WRITER_GAUGES.queued(),
            Role::Reader => READER_GAUGES.queued(),
        };
        let f = move |conn: &mut Connection, dbname: &str| {
            let _busy = queued.start();
            f(conn, dbname)
        };
        let workers = &self.inner.workers;
        if role == Role::Reader {
            // On the caller's thread where it may: no hand-off to another thread and back.
            if let Some(conn) = workers.lend() {
                let dbname = &self.inner.dbname;
                return conn
                    .run(|conn| f(conn, dbname))
                    .unwrap_or_else(|| Err(stopped(dbname)));
            }
        }
        let (job, rx) = self.job(f);
        let sent = match role {
            Role::Writer => workers.write(job),
            Role::Reader => workers.read(job),
        };
        sent.map_err(|_| stopped(&self.inner.dbname))?;
        rx.await.map_err(|_| stopped(&self.inner.dbname))?
    }

    /// The events of a stream after `after_version` up to `up_to`, on a reader.
    async fn load_stream(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        what: Read,
    ) -> Result<Vec<StoredEvent>, Error> {
        let up_to = up_to.unwrap_or(u64::MAX);
        if up_to <= after_version || after_version >= i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let versions = (stream_id, clamp_i64(after_version), clamp_i64(up_to));
        self.on_reader(move |conn, dbname| load(conn, dbname, versions, what))
            .await
    }

    /// One page of the log on a reader.
    async fn read_page(&self, floor: i64, limit: i64) -> Result<Vec<StoredEvent>, Error> {
        self.on_reader(move |conn, dbname| read_page(conn, dbname, floor, limit))
            .await
    }

    /// Starts reading the page after `floor` ahead, unless it already is.
    fn read_ahead(&self, floor: i64, limit: i64) {
        let Some(read_ahead) = &self.inner.read_ahead else {
            return;
        };
        if let Some(job) = read_ahead::job(read_ahead, &self.inner.dbname, (floor, limit)) {
            // If the readers are gone, the page's sender is dropped with the job, and the
            // `read_log` that wants it reads (and fails) by itself.
            let _ = self.inner.workers.read(job);
        }
    }

    /// Has a reader thread read the page after the one at `floor` a caller is about to read on
    /// its own thread, guessing it starts `limit` positions on (see `read_ahead.rs`).
    fn guess_next(&self, floor: i64, limit: i64) {
        let Some(read_ahead) = &self.inner.read_ahead else {
            return;
        };
        let Some(next) = floor.checked_add(limit) else {
            return;
        };
        if !self.inner.contiguous.load(Ordering::Relaxed) || !self.inner.workers.may_read_here() {
            return;
        }
        if let Some(job) = read_ahead::guess(read_ahead, &self.inner.dbname, (next, limit)) {
            let _ = self.inner.workers.read(job);
        }
    }

    fn job<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, Error> + Send + 'static,
    ) -> (Job, oneshot::Receiver<Result<T, Error>>) {
        let (tx, rx) = oneshot::channel();
        let dbname = Arc::clone(&self.inner.dbname);
        let job: Job = Box::new(move |conn| {
            // The caller may have given up waiting; the work is done either way.
            let _ = tx.send(f(conn, &dbname));
        });
        (job, rx)
    }
}

impl EventStore for SqliteStore {
    async fn append(&self, events: Vec<NewEvent>) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        self.save(events, None).await
    }

    async fn load(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.load_stream(stream_id, after_version, up_to, Read::All)
            .await
    }

    /// [`load`](EventStore::load) without the metadata, which replay does not read.
    async fn load_for_replay(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.load_stream(stream_id, after_version, up_to, Read::Replay)
            .await
    }

    /// From the rows, on the caller's thread where it may read (the fold is the caller's code,
    /// so it runs nowhere else); else the events read first, then folded.
    async fn replay_into<F: Fold>(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        mut fold: F,
    ) -> Result<F, Error> {
        let up_to = up_to.unwrap_or(u64::MAX);
        if up_to <= after_version || after_version >= i64::MAX as u64 {
            return Ok(fold);
        }
        let versions = (stream_id, clamp_i64(after_version), clamp_i64(up_to));
        if let Some(conn) = self.inner.workers.lend() {
            let dbname = &self.inner.dbname;
            let _busy = READER_GAUGES.queued().start();
            return conn
                .run_caller(|conn| replay_rows(conn, dbname, versions, &mut fold))
                .unwrap_or_else(|| Err(stopped(dbname)))
                .map(|()| fold);
        }
        let events = self
            .load_stream(stream_id, after_version, Some(up_to), Read::Replay)
            .await?;
        fold_stored(&events, fold)
    }

    /// The snapshot and the events after it in one read transaction on one reader connection.
    async fn load_from_snapshot(
        &self,
        stream_id: Uuid,
        up_to: Option<u64>,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), Error> {
        let up_to = clamp_i64(up_to.unwrap_or(u64::MAX));
        self.on_reader(move |conn, dbname| load_from_snapshot(conn, dbname, stream_id, up_to))
            .await
    }

    async fn stream_version(&self, stream_id: Uuid) -> Result<u64, Error> {
        self.on_reader(move |conn, dbname| {
            current_version(conn, &stream_id).map_err(|e| sql_error(dbname, e))
        })
        .await
    }

    async fn read_log(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, Error> {
        let page = async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let Some(floor) = log_floor(after) else {
                return Ok(Vec::new());
            };
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let ahead = match (&self.inner.read_ahead, usize::try_from(limit)) {
                // A reader thread's read always ends: waited for without a timer (a runtime
                // may have none).
                (Some(r), Ok(n)) => r.take_full((floor, limit), n, None).await,
                _ => None,
            };
            let events = match ahead {
                Some(events) => events,
                None => {
                    self.guess_next(floor, limit);
                    self.read_page(floor, limit).await?
                }
            };
            // Read ahead only for callers that wait for a reader thread anyway: one that reads
            // on its own thread reads the next page sooner than it would be woken with it
            // (catch-up through a `Subscription`: 1.7 million events/s against 1.4 million).
            let last = events.last().map(|e| clamp_i64(e.position.commit));
            if full(&events, limit) && !self.inner.workers.may_read_here() {
                if let Some(last) = last {
                    self.read_ahead(last, limit);
                }
            }
            let contiguous = full(&events, limit) && last == floor.checked_add(limit);
            self.inner.contiguous.store(contiguous, Ordering::Relaxed);
            Ok(events)
        };
        observe_log_read(KIND, after, limit, page).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot, keep: Option<u32>) -> Result<(), Error> {
        self.on_writer(move |conn, dbname| save_snapshot(conn, dbname, &snapshot, keep))
            .await
    }

    async fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> Result<Option<Snapshot>, Error> {
        let at_or_below = clamp_i64(at_or_below.unwrap_or(u64::MAX));
        self.on_reader(move |conn, dbname| load_snapshot(conn, dbname, stream_id, at_or_below))
            .await
    }

    async fn append_tracked(&self, events: Vec<NewEvent>, tracking: Tracking) -> Result<(), Error> {
        self.save(events, Some(TrackingRow::new(tracking)?)).await
    }

    async fn tracking_position(&self, name: &str) -> Result<Option<Position>, Error> {
        let name = name.to_owned();
        self.on_reader(move |conn, dbname| {
            read_tracking(conn, &name).map_err(|e| sql_error(dbname, e))
        })
        .await
    }

    async fn park(&self, parked: ParkedEvent) -> Result<(), Error> {
        self.park_event(parked).await
    }

    async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error> {
        Self::parked(self, name).await
    }

    /// Woken after every save through this store (and its clones); see
    /// [Notifications](SqliteStore#notifications).
    fn changes(&self) -> Changes {
        self.inner.notifier.subscribe()
    }

    fn store_kind(&self) -> &'static str {
        KIND
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// `PRAGMA journal_mode = WAL`, retried while another connection opening the same file holds
/// the lock it needs: SQLite answers `SQLITE_BUSY` at once there, without the busy handler
/// (seen with four stores opening one new file together).
fn wal_mode(conn: &Connection, lock_timeout: Duration) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + lock_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(e) if is_transient(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn connect(config: &SqliteConfig, role: Role) -> Result<Connection, Error> {
    let dbname = config.dbname();
    let err = |e| cannot_open(dbname, e);
    // The default flags: read-write, create, `file:` URIs, no mutex (each connection has one
    // thread).
    let conn = Connection::open_with_flags(dbname, OpenFlags::default()).map_err(err)?;
    conn.busy_timeout(config.lock_timeout()).map_err(err)?;
    if !config.is_memory() {
        if role == Role::Writer {
            // Persistent in the file: readers opened afterwards use WAL too.
            let mode = wal_mode(&conn, config.lock_timeout()).map_err(err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::store(format!(
                    "SQLite database `{dbname}` cannot use write-ahead logging \
                     (journal_mode stays `{mode}`)"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", config.synchronous().pragma_value())
            .map_err(err)?;
        if role == Role::Reader {
            conn.pragma_update(None, "query_only", true).map_err(err)?;
        }
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}
