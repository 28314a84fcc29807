//! Projections: read models kept in tables of the store's own database, written in the same
//! transaction that records how far each projection has got.

use std::{any::Any, panic::AssertUnwindSafe, sync::Arc};

use chrono::Utc;
use eventsourcing_core::{
    backoff, BoxError, Changes, Error, EventStore, Position, PositionCell, RunnerHandle,
    StopSignal, StoredEvent, Uuid,
};
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::{
    error::{sql_error, to_i64},
    rows::{clamp_i64, get_u64, log_floor, micros_to_time, read_tracking, write_tracking},
    store::SqliteStore,
};

/// A read model kept in the store's database, updated event by event.
///
/// Started with [`spawn_projection`]. The runner reads the log after the projection's tracking
/// position and hands the events, in position order and in batches, to [`handle`](Self::handle)
/// on the store's writer thread, inside the transaction that also moves the tracking position:
/// the read model's rows and the position commit together or not at all, so every event's
/// effects are applied exactly once however the runner is stopped, aborted or crashes. See
/// [Projections](crate#projections).
///
/// Keep the read model in the database: the projection value itself (`&mut self`) survives a
/// rolled-back transaction, so in-memory state in it can run ahead of the database (after a
/// failed commit the runner hands the same events to `handle` again).
pub trait SqliteProjection: Send + 'static {
    /// The name its tracking position (and its parked events) are recorded under. Keep it
    /// stable: a new name starts from the beginning of the log.
    fn name(&self) -> &str;

    /// The event types it handles; `None` (the default) for all. Other events are not handed to
    /// [`handle`](Self::handle) but still move the position on.
    fn event_types(&self) -> Option<Vec<String>> {
        None
    }

    /// Prepares the read model, e.g. `CREATE TABLE IF NOT EXISTS`. Called once each time a
    /// runner starts, on the writer thread, in its own transaction. The default does nothing.
    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let _ = tx;
        Ok(())
    }

    /// Applies one event to the read model through `tx`. Do not commit or roll back `tx` (it
    /// also holds the other events of the batch and the tracking position).
    ///
    /// Runs on the store's writer thread, so it blocks every save while it runs: keep it to SQL
    /// on `tx` and quick computation, never network calls or sleeps. An error (or a panic) is a
    /// failure of this event: whatever it wrote is rolled back and
    /// [`ProjectionOptions::on_error`] decides what happens next. An error that is a
    /// [`rusqlite::Error`] with code `SQLITE_BUSY` or `SQLITE_LOCKED` counts as transient and
    /// is retried after a backoff instead.
    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError>;
}

pub use eventsourcing_core::{OnError, ParkedEvent, ProjectionOptions};

impl SqliteStore {
    /// The events the projection `name` parked, in log order (see [`OnError::Park`]).
    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error> {
        let name = name.to_owned();
        self.on_reader(move |conn, dbname| {
            conn.prepare_cached(
                "SELECT position_commit, position_seq, stream_id, version, event_type, error, \
                 parked_at FROM parked_events WHERE name = ?1 \
                 ORDER BY position_commit, position_seq",
            )
            .and_then(|mut stmt| {
                stmt.query_map([&name], |row| {
                    Ok(ParkedEvent {
                        name: name.clone(),
                        position: Position {
                            commit: get_u64(row, 0)?,
                            seq: get_u64(row, 1)?,
                        },
                        stream_id: Uuid::from_bytes(row.get::<_, [u8; 16]>(2)?),
                        version: get_u64(row, 3)?,
                        event_type: row.get(4)?,
                        error: row.get(5)?,
                        parked_at: micros_to_time(row.get(6)?, 6)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| sql_error(dbname, e))
        })
        .await
    }

    /// Removes a parked event once an operator has dealt with it; false if there was none at
    /// that position. (The projection does not handle it again: its position is past it.)
    pub async fn unpark(&self, name: &str, position: Position) -> Result<bool, Error> {
        let name = name.to_owned();
        let commit = to_i64("position commit", position.commit)?;
        let seq = to_i64("position seq", position.seq)?;
        self.on_writer(move |conn, dbname| {
            conn.prepare_cached(
                "DELETE FROM parked_events \
                 WHERE name = ?1 AND position_commit = ?2 AND position_seq = ?3",
            )
            .and_then(|mut stmt| stmt.execute(rusqlite::params![name, commit, seq]))
            .map(|deleted| deleted > 0)
            .map_err(|e| sql_error(dbname, e))
        })
        .await
    }

    /// How many events of the log come after the tracking position recorded under `name`: all
    /// of them if it has none.
    ///
    /// Events the projection filters out ([`SqliteProjection::event_types`]) count until its
    /// position passes them. A running projection records its position with each batch it
    /// handles; a run of events it filters out entirely is recorded once a page of them has
    /// gone by, when it has caught up with the log, and when the runner stops. So the lag of a
    /// caught-up projection is zero, and while it catches up the skipped events it has not yet
    /// recorded (fewer than [`page_size`](ProjectionOptions::page_size)) still count.
    pub async fn projection_lag(&self, name: &str) -> Result<u64, Error> {
        let name = name.to_owned();
        self.on_reader(move |conn, dbname| {
            let err = |e| sql_error(dbname, e);
            // One read transaction: the position and the count from the same snapshot.
            let tx = conn.transaction().map_err(err)?;
            let after = read_tracking(&tx, &name)
                .map_err(err)?
                .unwrap_or(Position::START);
            let Some(floor) = log_floor(after) else {
                return Ok(0);
            };
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM events WHERE position > ?1")
                .and_then(|mut stmt| stmt.query_row([floor], |row| row.get(0)))
                .map_err(err)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Runs `f` on a reader connection inside a read transaction (one consistent snapshot),
    /// for reading the tables of projections. The transaction is rolled back afterwards, so
    /// nothing `f` might write is kept. `f` blocks that connection's thread while it runs.
    ///
    /// Errors from `f` are returned as [`Error::Store`] holding the [`rusqlite::Error`]; a panic
    /// in `f` as an [`Error::Store`] too.
    pub async fn query<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.on_reader(move |conn, _| {
            let tx = conn.transaction().map_err(Error::store)?;
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(&tx))) {
                Ok(result) => result.map_err(Error::store),
                Err(panic) => Err(Error::store(format!(
                    "the query panicked: {}",
                    panic_message(&*panic)
                ))),
            }
        })
        .await
    }
}

/// Starts `projection` on `store`: it resumes after its tracking position, catches up in pages
/// (one transaction per page), then follows the log live, woken by every save through `store`
/// or its clones and polling every [`poll_interval`](ProjectionOptions::poll_interval) for
/// saves by other processes.
///
/// Several projections run independently, each with its own name and position. Two runners
/// of the same projection (in one process or several) may run at once: each batch checks the
/// recorded position inside its transaction and skips what the other has already applied, so
/// no event is applied twice.
///
/// The handle's [`stop`](RunnerHandle::stop) ends the runner between batches and returns
/// `Ok(())`, or the error it ended with: [`Error::Handler`] under [`OnError::Stop`], or a store
/// error that persisted through [`attempts`](ProjectionOptions::attempts) retries.
/// [`abort`](RunnerHandle::abort) is safe too: a batch whose transaction has not committed
/// leaves no trace. Must be called within a Tokio runtime.
pub fn spawn_projection<P: SqliteProjection>(
    store: SqliteStore,
    projection: P,
    options: ProjectionOptions,
) -> RunnerHandle {
    // Subscribed before the runner starts, so a save right after this call wakes it.
    let changes = store.changes();
    RunnerHandle::spawn(move |stop, position| {
        run(store, projection, options, changes, stop, position)
    })
}

/// A page of the log on its way to the writer thread.
struct Batch {
    /// Every event read, the filtered-out ones too: they move the position on.
    events: Vec<StoredEvent>,
    /// The position to record when every event is done: the last event's, or (for a batch
    /// with no events) the position the runner has skipped to.
    end: Position,
}

/// What a batch left behind.
struct Applied {
    /// The tracking position after the job: what it committed, or what was already recorded
    /// (by this runner earlier or by another one) if it committed nothing.
    position: Option<Position>,
    failure: Option<Failure>,
}

enum Failure {
    /// `SQLITE_BUSY` or `SQLITE_LOCKED`: try again after a backoff.
    Transient(Error),
    /// Ends the runner: a handler failure under [`OnError::Stop`], or a store failure.
    Fatal(Error),
}

/// Shared by the jobs of one runner.
struct Job {
    name: Arc<str>,
    types: Option<Arc<[String]>>,
    on_error: OnError,
}

const SAVEPOINT: &str = "SAVEPOINT eventsourcing_projection_event";
const RELEASE: &str = "RELEASE eventsourcing_projection_event";
const ROLLBACK_TO: &str = "ROLLBACK TO eventsourcing_projection_event";

impl Job {
    fn wants(&self, event: &StoredEvent) -> bool {
        self.types
            .as_deref()
            .is_none_or(|types| types.contains(&event.event_type))
    }

    /// The projection's `setup`, in its own transaction.
    fn setup<P: SqliteProjection>(
        &self,
        conn: &mut Connection,
        dbname: &str,
        projection: &mut P,
    ) -> Result<(), Failure> {
        let db = |e| db_failure(dbname, e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        match catch_panic(|| projection.setup(&tx)) {
            Ok(()) => tx.commit().map_err(db),
            Err(e) if is_transient(&e) => Err(Failure::Transient(Error::Store(e))),
            Err(e) => Err(Failure::Fatal(Error::store(format!(
                "the setup of projection `{}` failed: {}",
                self.name,
                error_chain(&*e)
            )))),
        }
    }

    /// One batch in one IMMEDIATE transaction: skips what the recorded position covers,
    /// handles each wanted event under a savepoint, records the position, commits.
    fn apply<P: SqliteProjection>(
        &self,
        conn: &mut Connection,
        dbname: &str,
        projection: &mut P,
        batch: &Batch,
    ) -> Applied {
        let failed = |position, e| Applied {
            position,
            failure: Some(db_failure(dbname, e)),
        };
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return failed(None, e),
        };
        // Read under the write lock: no other runner can move it until this commits.
        let recorded = match read_tracking(&tx, &self.name) {
            Ok(recorded) => recorded,
            Err(e) => return failed(None, e),
        };
        if recorded.is_some_and(|r| r >= batch.end) {
            // Error::AlreadyProcessed: another runner did all of it. Roll back, move on.
            tracing::debug!(projection = %self.name, ?recorded, "batch already processed");
            return Applied {
                position: recorded,
                failure: None,
            };
        }
        let mut done = None;
        let mut failure = None;
        for event in &batch.events {
            if recorded.is_some_and(|r| event.position <= r) {
                continue;
            }
            if !self.wants(event) {
                done = Some(event.position);
                continue;
            }
            if let Err(e) = tx.prepare_cached(SAVEPOINT).and_then(|mut s| s.execute([])) {
                return failed(recorded, e);
            }
            let handled = catch_panic(|| projection.handle(&tx, event));
            let undo = match &handled {
                Ok(()) => tx.prepare_cached(RELEASE).and_then(|mut s| s.execute([])),
                Err(_) => tx
                    .prepare_cached(ROLLBACK_TO)
                    .and_then(|mut s| s.execute([]))
                    .and_then(|_| tx.prepare_cached(RELEASE)?.execute([])),
            };
            if let Err(e) = undo {
                return failed(recorded, e);
            }
            let Err(source) = handled else {
                done = Some(event.position);
                continue;
            };
            if is_transient(&source) {
                failure = Some(Failure::Transient(Error::Store(source)));
                break;
            }
            match self.on_error {
                OnError::Stop => {
                    failure = Some(Failure::Fatal(Error::Handler {
                        name: self.name.to_string(),
                        stream_id: event.stream_id,
                        version: event.version,
                        event_type: event.event_type.clone(),
                        position: event.position,
                        source,
                    }));
                    break;
                }
                OnError::Park => {
                    let error = error_chain(&*source);
                    tracing::warn!(
                        projection = %self.name,
                        stream_id = %event.stream_id,
                        version = event.version,
                        event_type = %event.event_type,
                        position = ?event.position,
                        error = %error,
                        "projection parked an event it cannot handle"
                    );
                    if let Err(e) = park(&tx, &self.name, event, &error) {
                        return failed(recorded, e);
                    }
                    done = Some(event.position);
                }
            }
        }
        if failure.is_none() {
            done = Some(batch.end);
        }
        let Some(position) = done else {
            // Nothing to keep: the failure was at the first event after the recorded position.
            return Applied {
                position: recorded,
                failure,
            };
        };
        let written = to_i64("position commit", position.commit)
            .and_then(|commit| Ok((commit, to_i64("position seq", position.seq)?)));
        let (commit, seq) = match written {
            Ok(parts) => parts,
            Err(e) => {
                return Applied {
                    position: recorded,
                    failure: Some(Failure::Fatal(e)),
                }
            }
        };
        if let Err(e) = write_tracking(&tx, &self.name, commit, seq).and_then(|()| tx.commit()) {
            return failed(recorded, e);
        }
        Applied {
            position: Some(position),
            failure,
        }
    }
}

fn park(
    tx: &Transaction<'_>,
    name: &str,
    event: &StoredEvent,
    error: &str,
) -> rusqlite::Result<()> {
    // Positions and versions read back from SQLite always fit.
    let int = clamp_i64;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO parked_events (name, position_commit, position_seq, stream_id, \
         version, event_type, error, parked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        name,
        int(event.position.commit),
        int(event.position.seq),
        event.stream_id.as_bytes(),
        int(event.version),
        event.event_type,
        error,
        Utc::now().timestamp_micros(),
    ])
    .map(|_| ())
}

/// Runs user code; a panic becomes an error instead of killing the writer thread.
fn catch_panic(f: impl FnOnce() -> Result<(), BoxError>) -> Result<(), BoxError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(format!("the handler panicked: {}", panic_message(&*panic)).into())
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_transient(error: &BoxError) -> bool {
    error.downcast_ref::<rusqlite::Error>().is_some_and(busy)
}

fn is_transient_store(error: &Error) -> bool {
    matches!(error, Error::Store(e) if is_transient(e))
}

fn db_failure(dbname: &str, error: rusqlite::Error) -> Failure {
    if busy(&error) {
        Failure::Transient(sql_error(dbname, error))
    } else {
        Failure::Fatal(sql_error(dbname, error))
    }
}

/// Runs `f` on the writer thread with the projection, and hands the projection back.
async fn on_writer<P, T, F>(store: &SqliteStore, mut projection: P, f: F) -> Result<(P, T), Error>
where
    P: SqliteProjection,
    T: Send + 'static,
    F: FnOnce(&mut Connection, &str, &mut P) -> T + Send + 'static,
{
    store
        .on_writer(move |conn, dbname| {
            let out = f(conn, dbname, &mut projection);
            Ok((projection, out))
        })
        .await
}

/// Counts consecutive transient failures and waits between retries.
struct Retries {
    failures: u32,
    options: ProjectionOptions,
}

impl Retries {
    /// Waits before the next attempt: `Ok(true)` to go on, `Ok(false)` if a stop came first,
    /// the error itself once the attempts are used up.
    async fn pause(
        &mut self,
        stop: &mut StopSignal,
        name: &str,
        error: Error,
    ) -> Result<bool, Error> {
        self.failures += 1;
        if self.failures >= self.options.attempts.max(1) {
            return Err(error);
        }
        tracing::warn!(projection = name, attempt = self.failures, error = %error, "transient failure; retrying");
        tokio::select! {
            biased;
            _ = stop.stopped() => Ok(false),
            _ = tokio::time::sleep(backoff(self.options.backoff, self.failures)) => Ok(true),
        }
    }
}

async fn run<P: SqliteProjection>(
    store: SqliteStore,
    mut projection: P,
    options: ProjectionOptions,
    mut changes: Changes,
    mut stop: StopSignal,
    cell: PositionCell,
) -> Result<(), Error> {
    let job = Arc::new(Job {
        name: projection.name().into(),
        types: projection.event_types().map(Into::into),
        on_error: options.on_error,
    });
    let name = Arc::clone(&job.name);
    let page = options.page_size.max(1);
    let mut retries = Retries {
        failures: 0,
        options,
    };

    loop {
        let j = Arc::clone(&job);
        let (p, result) =
            on_writer(&store, projection, move |conn, db, p| j.setup(conn, db, p)).await?;
        projection = p;
        match result {
            Ok(()) => break,
            Err(Failure::Transient(e)) => {
                if !retries.pause(&mut stop, &name, e).await? {
                    return Ok(());
                }
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    let mut after = loop {
        match store.tracking_position(&name).await {
            Ok(position) => break position.unwrap_or(Position::START),
            Err(e) if is_transient_store(&e) => {
                if !retries.pause(&mut stop, &name, e).await? {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    };
    retries.failures = 0;
    cell.set(after);
    // What the tracking row holds; `after` runs ahead of it over events filtered out.
    let mut recorded = after;
    let mut unrecorded = 0usize;

    while !stop.is_stopped() {
        // Before reading: a save committing during the read then wakes the wait below.
        changes.mark_seen();
        let events = match store.read_log(after, page).await {
            Ok(events) => events,
            Err(e) if is_transient_store(&e) => {
                if !retries.pause(&mut stop, &name, e).await? {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = events.last() else {
            if recorded < after {
                // Caught up with events it skipped: record them now, once, so that the lag of
                // an idle projection reads zero.
                let j = Arc::clone(&job);
                let batch = Batch {
                    events: Vec::new(),
                    end: after,
                };
                let (p, applied) = on_writer(&store, projection, move |conn, db, p| {
                    j.apply(conn, db, p, &batch)
                })
                .await?;
                projection = p;
                match applied.failure {
                    None => {
                        recorded = after;
                        unrecorded = 0;
                    }
                    Some(Failure::Transient(e)) => {
                        tracing::warn!(projection = %name, error = %e, "cannot record skipped events yet");
                    }
                    Some(Failure::Fatal(e)) => return Err(e),
                }
            }
            tokio::select! {
                biased;
                _ = stop.stopped() => break,
                _ = changes.wait(options.poll_interval) => continue,
            }
        };
        let end = last.position;
        if !events.iter().any(|e| job.wants(e)) && unrecorded + events.len() < page {
            // Nothing to handle: move on without a write (and without taking the writer from
            // the saves); the position is recorded with a later batch, after a page of such
            // events, or at stop.
            unrecorded += events.len();
            after = end;
            cell.set(after);
            continue;
        }
        let j = Arc::clone(&job);
        let batch = Batch { events, end };
        let (p, applied) = on_writer(&store, projection, move |conn, db, p| {
            j.apply(conn, db, p, &batch)
        })
        .await?;
        projection = p;
        if let Some(position) = applied.position {
            if position > recorded {
                recorded = position;
                unrecorded = 0;
            }
            if position > after {
                after = position;
                cell.set(after);
            }
        }
        match applied.failure {
            None => retries.failures = 0,
            Some(Failure::Transient(e)) => {
                if !retries.pause(&mut stop, &name, e).await? {
                    break;
                }
            }
            Some(Failure::Fatal(e)) => return Err(e),
        }
    }

    if recorded < after {
        // Record the events skipped since the last batch, so the lag reads right.
        let j = Arc::clone(&job);
        let batch = Batch {
            events: Vec::new(),
            end: after,
        };
        let (_, applied) = on_writer(&store, projection, move |conn, db, p| {
            j.apply(conn, db, p, &batch)
        })
        .await?;
        match applied.failure {
            None => {}
            // A restart reads those events again and skips them again: nothing is lost.
            Some(Failure::Transient(e)) => {
                tracing::warn!(projection = %name, error = %e, "cannot record the position at stop");
            }
            Some(Failure::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}
