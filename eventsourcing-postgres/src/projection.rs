//! Projections: read models kept in tables of the store's database, written in the same
//! transaction that records how far each projection has got.

use std::{any::Any, future::Future, panic::AssertUnwindSafe};

use eventsourcing_core::{
    backoff, BoxError, Changes, Error, EventStore, Position, PositionCell, RunnerHandle,
    StopSignal, StoredEvent,
};
use futures_util::FutureExt;
use tokio_postgres::Transaction;

use crate::{
    error::{is_transient, pg_error},
    rows::{parked_event, position_columns, position_from_columns},
    sql::{quote_ident, Stmt},
    store::PostgresStore,
};

/// A read model kept in the store's database, updated event by event.
///
/// Started with [`spawn_projection`]. The runner reads the log after the projection's tracking
/// position and hands the events, in log order and in batches, to [`handle`](Self::handle)
/// inside one transaction per batch, which also locks and moves the tracking position: the read
/// model's rows and the position commit together or not at all, so every event's effects are
/// applied exactly once however the runner is stopped, aborted or crashes. See
/// [Projections](crate#projections).
///
/// Keep the read model in the database: the projection value itself (`&mut self`) survives a
/// rolled-back transaction, and after a failure the runner hands the events of the batch before
/// the failing one to `handle` again, so in-memory state in it can run ahead of the database.
///
/// ```no_run
/// use eventsourcing_core::{BoxError, StoredEvent};
/// use eventsourcing_postgres::{tokio_postgres::Transaction, PostgresProjection};
///
/// /// How many events each stream has.
/// struct EventsPerStream;
///
/// impl PostgresProjection for EventsPerStream {
///     fn name(&self) -> &str {
///         "events_per_stream"
///     }
///
///     async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
///         tx.batch_execute(
///             "CREATE TABLE IF NOT EXISTS events_per_stream \
///              (stream_id uuid PRIMARY KEY, events bigint NOT NULL)",
///         )
///         .await?;
///         Ok(())
///     }
///
///     async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
///         tx.execute(
///             "INSERT INTO events_per_stream VALUES ($1, 1) \
///              ON CONFLICT (stream_id) DO UPDATE SET events = events_per_stream.events + 1",
///             &[&event.stream_id],
///         )
///         .await?;
///         Ok(())
///     }
/// }
/// ```
pub trait PostgresProjection: Send + 'static {
    /// The name its tracking position (and its parked events) are recorded under. Keep it
    /// stable: a new name starts from the beginning of the log.
    fn name(&self) -> &str;

    /// The event types it handles; `None` (the default) for all. Other events are not handed to
    /// [`handle`](Self::handle) but still move the position on.
    fn event_types(&self) -> Option<Vec<String>> {
        None
    }

    /// Prepares the read model, e.g. `CREATE TABLE IF NOT EXISTS`. Called each time a runner
    /// starts, in its own transaction; the setups of all runners on one schema take turns, so
    /// that several instances starting at once do not race on creating the same tables. The
    /// default does nothing.
    fn setup(&mut self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = tx;
        std::future::ready(Ok(()))
    }

    /// Applies one event to the read model through `tx`. Do not commit or roll back `tx` (it
    /// also holds the other events of the batch and the tracking position), and qualify table
    /// names or rely on the connection's `search_path`.
    ///
    /// The batch's transaction holds a transaction id while it runs, which holds back every
    /// reader of the log (see [Global order](crate#global-order)): keep handlers to SQL on `tx`
    /// and quick computation, and batches short enough
    /// ([`page_size`](ProjectionOptions::page_size)).
    ///
    /// An error (or a panic) is a failure of this event: what the batch wrote is rolled back and
    /// [`ProjectionOptions::on_error`] decides what happens next. An error that is (or has as
    /// its source) a [`tokio_postgres::Error`] of a lost connection, a serialization failure,
    /// a deadlock or a lock timeout counts as transient instead: the batch is retried after a
    /// backoff.
    fn handle(
        &mut self,
        tx: &Transaction<'_>,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

pub use eventsourcing_core::{OnError, ParkedEvent, ProjectionOptions};

impl PostgresStore {
    /// The events the projection `name` parked, in log order (see [`OnError::Park`]).
    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error> {
        let conn = self.checkout().await?;
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT position_commit, position_seq, stream_id, version, event_type, error, \
                            parked_at \
                     FROM {}.parked_events WHERE name = $1 \
                     ORDER BY position_commit, position_seq",
                    quote_ident(&self.config().schema)
                ),
                &[&name],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(|row| parked_event(row, name)).collect()
    }

    /// Removes a parked event once an operator has dealt with it; false if there was none at
    /// that position. (The projection does not handle it again: its position is past it.)
    pub async fn unpark(&self, name: &str, position: Position) -> Result<bool, Error> {
        let (commit, seq) = position_columns(position)?;
        let conn = self.checkout().await?;
        let deleted = conn
            .client
            .execute(
                &format!(
                    "DELETE FROM {}.parked_events \
                     WHERE name = $1 AND position_commit = $2 AND position_seq = $3",
                    quote_ident(&self.config().schema)
                ),
                &[&name, &commit, &seq],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(deleted > 0)
    }

    /// How many events of the log come after the tracking position recorded under `name`: all
    /// of them if it has none. Counts every committed event, also those the log does not hand
    /// out yet because an older transaction still runs ([Global order](crate#global-order)).
    ///
    /// Events the projection filters out ([`PostgresProjection::event_types`]) count until its
    /// position passes them. A running projection records its position with each batch it
    /// handles; a run of events it filters out entirely is recorded once a page of them has
    /// gone by, when it has caught up with the log, and when the runner stops. So the lag of a
    /// caught-up projection is zero, and while it catches up the skipped events it has not yet
    /// recorded (fewer than [`page_size`](ProjectionOptions::page_size)) still count.
    ///
    /// One index range scan of `events_log_idx` from the position to the end of the log.
    pub async fn projection_lag(&self, name: &str) -> Result<u64, Error> {
        let schema = quote_ident(&self.config().schema);
        let conn = self.checkout().await?;
        // One statement: the position and the count from the same snapshot.
        let row = conn
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {schema}.events \
                     WHERE (tx_id, position) > ( \
                         COALESCE((SELECT position_commit FROM {schema}.tracking \
                                   WHERE name = $1), 0)::text::xid8, \
                         COALESCE((SELECT position_seq FROM {schema}.tracking \
                                   WHERE name = $1), 0))"
                ),
                &[&name],
            )
            .await
            .map_err(|e| self.error(e))?;
        let count: i64 = row.try_get(0).map_err(pg_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Starts `projection` on `store`: it resumes after its tracking position, catches up in pages
/// (one transaction per page), then follows the log live, woken by every append through `store`
/// or its clones, by the store's `LISTEN` for appends by other processes, and by polling every
/// [`poll_interval`](ProjectionOptions::poll_interval).
///
/// Several projections run independently, each with its own name and position. Two runners
/// of the same projection (in one process or several) may run at once: each batch locks the
/// projection's tracking row and skips what the other has already applied, so no event is
/// applied twice.
///
/// The handle's [`stop`](RunnerHandle::stop) ends the runner between batches and returns
/// `Ok(())`, or the error it ended with: [`Error::Handler`] under [`OnError::Stop`], or a store
/// error that persisted through [`attempts`](ProjectionOptions::attempts) retries.
/// [`abort`](RunnerHandle::abort) is safe too: a batch whose transaction has not committed
/// leaves no trace. Must be called within a Tokio runtime.
pub fn spawn_projection<P: PostgresProjection>(
    store: PostgresStore,
    projection: P,
    options: ProjectionOptions,
) -> RunnerHandle {
    // Subscribed before the runner starts, so an append right after this call wakes it.
    let changes = store.changes();
    RunnerHandle::spawn(move |stop, position| {
        run(store, projection, options, changes, stop, position)
    })
}

/// A page of the log for one transaction.
struct Batch {
    /// Every event read, the filtered-out ones too: they move the position on.
    events: Vec<StoredEvent>,
    /// The position to record when every event is done: the last event's, or (for a batch
    /// with no events) the position the runner has skipped to.
    end: Position,
}

/// What a batch left behind.
struct Applied {
    /// The tracking position after the batch: what it committed, or what was already recorded
    /// (by this runner earlier or by another one) if it committed nothing; `None` if unknown.
    position: Option<Position>,
    failure: Option<Failure>,
}

enum Failure {
    /// A lost connection, a serialization failure, ...: try again after a backoff.
    Transient(Error),
    /// Ends the runner: a handler failure under [`OnError::Stop`], or a store failure.
    Fatal(Error),
}

impl Failure {
    fn of(error: Error) -> Self {
        if is_transient_error(&error) {
            Failure::Transient(error)
        } else {
            Failure::Fatal(error)
        }
    }
}

/// What one runner knows of its projection.
struct Job {
    name: String,
    types: Option<Vec<String>>,
    on_error: OnError,
}

impl Job {
    fn wants(&self, event: &StoredEvent) -> bool {
        self.types
            .as_deref()
            .is_none_or(|types| types.contains(&event.event_type))
    }
}

/// The handler failures found so far in one batch, by index: the batch is then run again,
/// stopping before the failing event, or parking the failing events.
#[derive(Default)]
struct Known {
    stop: Option<(usize, BoxError)>,
    parked: Vec<(usize, String)>,
}

/// How one attempt at a batch ended.
enum Outcome {
    /// Committed (or nothing to commit).
    Done {
        position: Option<Position>,
        /// It ended before `Known::stop`.
        stopped: bool,
    },
    /// The handler failed on the event at `index`; everything was rolled back.
    Failed {
        index: usize,
        error: BoxError,
        recorded: Option<Position>,
    },
}

/// The projection's `setup`, in its own transaction, under a lock that makes the setups of all
/// runners on the schema take turns: concurrent `CREATE TABLE IF NOT EXISTS` of one table can
/// fail in PostgreSQL with a unique violation in its catalog.
async fn setup<P: PostgresProjection>(
    store: &PostgresStore,
    job: &Job,
    projection: &mut P,
) -> Result<(), Failure> {
    let db = |e| Failure::of(store.error(e));
    let mut conn = store.checkout().await.map_err(Failure::of)?;
    let tx = conn.client.transaction().await.map_err(db)?;
    let key = format!("eventsourcing-projection-setup:{}", store.config().schema);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await
    .map_err(db)?;
    let error = match AssertUnwindSafe(projection.setup(&tx)).catch_unwind().await {
        Ok(Ok(())) => return tx.commit().await.map_err(db),
        Ok(Err(e)) => e,
        Err(panic) => format!("it panicked: {}", panic_message(&*panic)).into(),
    };
    rollback(tx).await;
    if is_transient(&*error) {
        return Err(Failure::Transient(Error::Store(error)));
    }
    Err(Failure::Fatal(Error::store(format!(
        "the setup of projection `{}` failed: {}",
        job.name,
        error_chain(&*error)
    ))))
}

/// Applies a batch: attempts it, and after a handler failure attempts it again knowing the
/// failure (stopping before the event, or parking it), until an attempt commits. The first
/// attempt uses no savepoints, so a batch that fails nowhere costs no round trips for them and
/// no subtransactions (more than 64 in one transaction slow down every session's snapshots).
async fn apply<P: PostgresProjection>(
    store: &PostgresStore,
    job: &Job,
    projection: &mut P,
    batch: &Batch,
) -> Applied {
    let mut known = Known::default();
    loop {
        let (index, error, recorded) = match attempt(store, job, projection, batch, &known).await {
            Ok(Outcome::Done { position, stopped }) => {
                let failure = match known.stop.take() {
                    Some((index, source)) if stopped => {
                        let event = &batch.events[index];
                        Some(Failure::Fatal(Error::Handler {
                            name: job.name.clone(),
                            stream_id: event.stream_id,
                            version: event.version,
                            event_type: event.event_type.clone(),
                            position: event.position,
                            source,
                        }))
                    }
                    // Another runner got past the failing event meanwhile.
                    _ => None,
                };
                return Applied { position, failure };
            }
            Ok(Outcome::Failed {
                index,
                error,
                recorded,
            }) => (index, error, recorded),
            Err(failure) => {
                return Applied {
                    position: None,
                    failure: Some(failure),
                }
            }
        };
        if is_transient(&*error) {
            return Applied {
                position: recorded,
                failure: Some(Failure::Transient(Error::Store(error))),
            };
        }
        match job.on_error {
            OnError::Stop => known.stop = Some((index, error)),
            OnError::Park => {
                let event = &batch.events[index];
                let error = error_chain(&*error);
                tracing::warn!(
                    projection = %job.name,
                    stream_id = %event.stream_id,
                    version = event.version,
                    event_type = %event.event_type,
                    position = ?event.position,
                    error = %error,
                    "projection parked an event it cannot handle"
                );
                known.parked.push((index, error));
            }
        }
    }
}

/// One transaction over the batch: locks the tracking row, skips what it covers, hands each
/// wanted event to the handler (parking or stopping where `known` says), records the position,
/// commits. Any failure rolls everything back.
async fn attempt<P: PostgresProjection>(
    store: &PostgresStore,
    job: &Job,
    projection: &mut P,
    batch: &Batch,
    known: &Known,
) -> Result<Outcome, Failure> {
    let db = |e| Failure::of(store.error(e));
    let mut conn = store.checkout().await.map_err(Failure::of)?;
    let insert = store.statement(&mut conn, Stmt::InsertTracking).await;
    let insert = insert.map_err(Failure::of)?;
    let lock = store.statement(&mut conn, Stmt::LockTracking).await;
    let lock = lock.map_err(Failure::of)?;
    let write = store.statement(&mut conn, Stmt::WriteTracking).await;
    let write = write.map_err(Failure::of)?;
    let park = match known.parked.is_empty() {
        true => None,
        false => Some(
            store
                .statement(&mut conn, Stmt::ParkEvent)
                .await
                .map_err(Failure::of)?,
        ),
    };
    let tx = conn.client.transaction().await.map_err(db)?;
    let name = job.name.as_str();
    // One round trip: the row is created if missing, then locked until commit, so that no
    // other runner of this projection applies these events meanwhile.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
    let (_, row) =
        tokio::try_join!(tx.execute(&insert, &params), tx.query_one(&lock, &params)).map_err(db)?;
    let recorded = position_from_columns(
        row.try_get(0).map_err(|e| Failure::Fatal(pg_error(e)))?,
        row.try_get(1).map_err(|e| Failure::Fatal(pg_error(e)))?,
    );
    let recorded = (recorded != Position::START).then_some(recorded);
    if recorded.is_some_and(|r| r >= batch.end) {
        // Error::AlreadyProcessed: another runner did all of it.
        tracing::debug!(projection = %job.name, ?recorded, "batch already processed");
        rollback(tx).await;
        return Ok(Outcome::Done {
            position: recorded,
            stopped: false,
        });
    }
    let mut done = None;
    let mut stopped = false;
    for (index, event) in batch.events.iter().enumerate() {
        if recorded.is_some_and(|r| event.position <= r) {
            continue;
        }
        if known.stop.as_ref().is_some_and(|(i, _)| *i == index) {
            stopped = true;
            break;
        }
        if !job.wants(event) {
            done = Some(event.position);
            continue;
        }
        let parked = known.parked.iter().find(|(i, _)| *i == index);
        if let (Some(park), Some((_, error))) = (&park, parked) {
            let (commit, seq) = position_columns(event.position).map_err(Failure::Fatal)?;
            let version = i64::try_from(event.version).unwrap_or(i64::MAX);
            tx.execute(
                park,
                &[
                    &name,
                    &commit,
                    &seq,
                    &event.stream_id,
                    &version,
                    &event.event_type,
                    error,
                ],
            )
            .await
            .map_err(db)?;
            done = Some(event.position);
            continue;
        }
        let error = match AssertUnwindSafe(projection.handle(&tx, event))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => {
                done = Some(event.position);
                continue;
            }
            Ok(Err(e)) => e,
            Err(panic) => format!("the handler panicked: {}", panic_message(&*panic)).into(),
        };
        rollback(tx).await;
        return Ok(Outcome::Failed {
            index,
            error,
            recorded,
        });
    }
    let position = if stopped { done } else { Some(batch.end) };
    match position {
        Some(position) if recorded.is_none_or(|r| position > r) => {
            let (commit, seq) = position_columns(position).map_err(Failure::Fatal)?;
            tx.execute(&write, &[&name, &commit, &seq])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Outcome::Done {
                position: Some(position),
                stopped,
            })
        }
        _ => {
            // Nothing to keep: the failure was at the first event after the recorded position.
            rollback(tx).await;
            Ok(Outcome::Done {
                position: recorded,
                stopped,
            })
        }
    }
}

/// Rolls back now rather than when the connection is next used, releasing the tracking lock.
async fn rollback(tx: Transaction<'_>) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(error = %e, "rolling back a projection batch failed");
    }
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
        let next = e.to_string();
        // Some messages (this crate's store errors) already include their sources'.
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

fn is_transient_error(error: &Error) -> bool {
    matches!(error, Error::Store(e) if is_transient(&**e))
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

/// Records the position the runner has skipped to (filtered-out events), so that the lag reads
/// right.
async fn record_skipped<P: PostgresProjection>(
    store: &PostgresStore,
    job: &Job,
    projection: &mut P,
    after: Position,
) -> Applied {
    let batch = Batch {
        events: Vec::new(),
        end: after,
    };
    apply(store, job, projection, &batch).await
}

async fn run<P: PostgresProjection>(
    store: PostgresStore,
    mut projection: P,
    options: ProjectionOptions,
    mut changes: Changes,
    mut stop: StopSignal,
    cell: PositionCell,
) -> Result<(), Error> {
    let job = Job {
        name: projection.name().to_owned(),
        types: projection.event_types(),
        on_error: options.on_error,
    };
    let page = options.page_size.max(1);
    let mut retries = Retries {
        failures: 0,
        options,
    };

    loop {
        match setup(&store, &job, &mut projection).await {
            Ok(()) => break,
            Err(Failure::Transient(e)) => {
                if !retries.pause(&mut stop, &job.name, e).await? {
                    return Ok(());
                }
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    let mut after = loop {
        match store.tracking_position(&job.name).await {
            Ok(position) => break position.unwrap_or(Position::START),
            Err(e) if is_transient_error(&e) => {
                if !retries.pause(&mut stop, &job.name, e).await? {
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
    // The last read returned less than a page: until woken (or polled), nothing new is known.
    let mut caught_up = false;

    while !stop.is_stopped() {
        let events = if caught_up && changes.is_live() && !changes.has_changed() {
            // Nothing was appended since the last read: skip reading (one read per append,
            // not two).
            Vec::new()
        } else {
            // Before reading: an append committing during the read then wakes the wait below.
            changes.mark_seen();
            match store.read_log(after, page).await {
                Ok(events) => events,
                Err(e) if is_transient_error(&e) => {
                    if !retries.pause(&mut stop, &job.name, e).await? {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        caught_up = events.len() < page;
        let Some(last) = events.last() else {
            if recorded < after {
                // Caught up with events it skipped: record them now, once, so that the lag of
                // an idle projection reads zero.
                let applied = record_skipped(&store, &job, &mut projection, after).await;
                match applied.failure {
                    None => {
                        recorded = after;
                        unrecorded = 0;
                    }
                    Some(Failure::Transient(e)) => {
                        tracing::warn!(projection = %job.name, error = %e, "cannot record skipped events yet");
                    }
                    Some(Failure::Fatal(e)) => return Err(e),
                }
            }
            tokio::select! {
                biased;
                _ = stop.stopped() => break,
                _ = changes.wait(options.poll_interval) => {
                    caught_up = false;
                    continue;
                }
            }
        };
        let end = last.position;
        if !events.iter().any(|e| job.wants(e)) && unrecorded + events.len() < page {
            // Nothing to handle: move on without a transaction; the position is recorded with
            // a later batch, after a page of such events, once caught up, or at stop.
            unrecorded += events.len();
            after = end;
            cell.set(after);
            continue;
        }
        let batch = Batch { events, end };
        let applied = apply(&store, &job, &mut projection, &batch).await;
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
                // Read the same events again.
                caught_up = false;
                if !retries.pause(&mut stop, &job.name, e).await? {
                    break;
                }
            }
            Some(Failure::Fatal(e)) => return Err(e),
        }
    }

    if recorded < after {
        // Record the events skipped since the last batch, so the lag reads right.
        let applied = record_skipped(&store, &job, &mut projection, after).await;
        match applied.failure {
            None => {}
            // A restart reads those events again and skips them again: nothing is lost.
            Some(Failure::Transient(e)) => {
                tracing::warn!(projection = %job.name, error = %e, "cannot record the position at stop");
            }
            Some(Failure::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}
