//! Projections: read models kept in tables of the store's database, written in the same
//! transaction that records how far each projection has got.

use std::{error::Error as StdError, future::Future, sync::Arc};

use eventsourcing_core::{
    engine::{catch_panic_async, spawn_runner, Batch, BatchTarget, Consumer, Known, Outcome, Step},
    metrics, BoxError, Error, EventStore, Position, RunnerHandle, StoredEvent,
};
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
    /// The events the consumer `name` parked, in log order (see [`OnError::Park`]).
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

    /// Parks an event for a consumer and moves its tracking position to it, in one
    /// transaction ([`EventStore::park`]).
    pub(crate) async fn park_event(&self, parked: ParkedEvent) -> Result<(), Error> {
        let db = |e| self.error(e);
        let mut conn = self.checkout().await?;
        let insert = self.statement(&mut conn, Stmt::InsertTracking).await?;
        let lock = self.statement(&mut conn, Stmt::LockTracking).await?;
        let write = self.statement(&mut conn, Stmt::WriteTracking).await?;
        let park = self.statement(&mut conn, Stmt::ParkEvent).await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        let name = parked.name.as_str();
        tx.execute(&insert, &[&name]).await.map_err(db)?;
        let row = tx.query_one(&lock, &[&name]).await.map_err(db)?;
        let recorded = position_from_columns(
            row.try_get(0).map_err(pg_error)?,
            row.try_get(1).map_err(pg_error)?,
        );
        let tracking = eventsourcing_core::Tracking {
            name: parked.name.clone(),
            position: parked.position,
        };
        tracking.check_after((recorded != Position::START).then_some(recorded))?;
        let (commit, seq) = position_columns(parked.position)?;
        let version = i64::try_from(parked.version).unwrap_or(i64::MAX);
        tx.execute(
            &park,
            &[
                &name,
                &commit,
                &seq,
                &parked.stream_id,
                &version,
                &parked.event_type,
                &parked.error,
            ],
        )
        .await
        .map_err(db)?;
        tx.execute(&write, &[&name, &commit, &seq])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
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
        let lag = u64::try_from(count).unwrap_or(0);
        metrics::record_projection_lag(self.store_kind(), name, lag);
        Ok(lag)
    }
}

/// Starts `projection` on `store`: it resumes after its tracking position, catches up in pages
/// (one transaction per page), then follows the log live, woken by every append through `store`
/// or its clones, by the store's `LISTEN` for appends by other processes, and by polling every
/// [`poll_interval`](ProjectionOptions::poll_interval). The loop, retries and failure policy
/// are core's projection engine ([`eventsourcing_core::engine`]); this crate supplies the batch
/// transaction.
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
    let consumer = Consumer::new(projection.name(), projection.event_types());
    let target = Target {
        name: consumer.name.clone(),
        store: store.clone(),
        projection,
    };
    spawn_runner(store, consumer, target, options)
}

/// Lifts `POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT` for the rest of a projection's
/// transaction: it guards the pool against forgotten transactions, but a batch's transaction is
/// not forgotten, only waiting for its handler. (The runner still never leaves one open: it
/// commits or rolls back, and an aborted runner's connection is dropped.)
const PATIENT: &str = "SET LOCAL idle_in_transaction_session_timeout = 0";

/// This store's side of a projection runner.
struct Target<P> {
    name: String,
    store: PostgresStore,
    projection: P,
}

impl<P: PostgresProjection> BatchTarget for Target<P> {
    /// The projection's `setup`, in its own transaction, under a lock that makes the setups of
    /// all runners on the schema take turns: concurrent `CREATE TABLE IF NOT EXISTS` of one
    /// table can fail in PostgreSQL with a unique violation in its catalog.
    async fn setup(&mut self) -> Result<(), BoxError> {
        let store = &self.store;
        let db = |e| BoxError::from(store.error(e));
        let mut conn = store.checkout().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        let key = format!("eventsourcing-projection-setup:{}", store.config().schema);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
        let lock = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
        tokio::try_join!(tx.batch_execute(PATIENT), tx.execute(lock, &params)).map_err(db)?;
        match catch_panic_async(self.projection.setup(&tx)).await {
            Ok(()) => tx.commit().await.map_err(db),
            Err(e) => {
                rollback(tx).await;
                Err(e)
            }
        }
    }

    fn tracking_position(
        &mut self,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        self.store.tracking_position(&self.name)
    }

    async fn attempt(&mut self, batch: &Arc<Batch>, known: &Known) -> Result<Outcome, Error> {
        attempt(&self.store, &self.name, &mut self.projection, batch, known).await
    }

    fn is_transient(&self, error: &(dyn StdError + 'static)) -> bool {
        is_transient(error)
    }
}

/// One transaction over the batch: creates and locks the tracking row, runs the plan's steps,
/// records the position, commits. A handler failure rolls everything back.
async fn attempt<P: PostgresProjection>(
    store: &PostgresStore,
    name: &str,
    projection: &mut P,
    batch: &Batch,
    known: &Known,
) -> Result<Outcome, Error> {
    let db = |e| store.error(e);
    let mut conn = store.checkout().await?;
    let insert = store.statement(&mut conn, Stmt::InsertTracking).await?;
    let lock = store.statement(&mut conn, Stmt::LockTracking).await?;
    let write = store.statement(&mut conn, Stmt::WriteTracking).await?;
    let park = match known.parked.is_empty() {
        true => None,
        false => Some(store.statement(&mut conn, Stmt::ParkEvent).await?),
    };
    let tx = conn.client.transaction().await.map_err(db)?;
    // One round trip: the session is exempted from the pool's idle-in-transaction timeout for
    // this transaction (a handler may take its time between statements: the batch must not be
    // killed for it, on every retry), the row is created if missing, then locked until commit,
    // so that no other runner of this projection applies these events meanwhile.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
    let (_, _, row) = tokio::try_join!(
        tx.batch_execute(PATIENT),
        tx.execute(&insert, &params),
        tx.query_one(&lock, &params)
    )
    .map_err(db)?;
    let recorded = position_from_columns(
        row.try_get(0).map_err(pg_error)?,
        row.try_get(1).map_err(pg_error)?,
    );
    let recorded = (recorded != Position::START).then_some(recorded);
    let plan = batch.plan(recorded, known);
    for step in &plan.steps {
        match *step {
            Step::Handle { index, event } => {
                if let Err(error) = catch_panic_async(projection.handle(&tx, event)).await {
                    rollback(tx).await;
                    return Ok(Outcome::Failed {
                        index,
                        error,
                        recorded,
                    });
                }
            }
            Step::Park { event, error } => {
                let Some(park) = &park else {
                    return Err(Error::store("a park step without a prepared statement"));
                };
                let (commit, seq) = position_columns(event.position)?;
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
                        &error,
                    ],
                )
                .await
                .map_err(db)?;
            }
        }
    }
    let Some(position) = plan.record else {
        // Nothing to keep: the batch was applied already, or fails at its first new event.
        rollback(tx).await;
        return Ok(Outcome::Done {
            position: recorded,
            stopped: plan.stopped,
        });
    };
    let (commit, seq) = position_columns(position)?;
    tx.execute(&write, &[&name, &commit, &seq])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Outcome::Done {
        position: Some(position),
        stopped: plan.stopped,
    })
}

/// Rolls back now rather than when the connection is next used, releasing the tracking lock.
async fn rollback(tx: Transaction<'_>) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(error = %e, "rolling back a projection batch failed");
    }
}
