//! Projections: read models kept in tables of the store's own database, written in the same
//! transaction that records how far each projection has got.

use std::{error::Error as StdError, sync::Arc};

use eventsourcing_core::{
    engine::{catch_panic, spawn_runner, Batch, BatchTarget, Consumer, Known, Outcome, Step},
    metrics, BoxError, Error, EventStore, Position, RunnerHandle, StoredEvent, Uuid,
};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{
    error::{is_transient, sql_error, to_i64},
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
    /// The events the consumer `name` parked, in log order (see [`OnError::Park`]).
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
        let owned = name.to_owned();
        let lag = self
            .on_reader(move |conn, dbname| {
                let err = |e| sql_error(dbname, e);
                // One read transaction: the position and the count from the same snapshot.
                let tx = conn.transaction().map_err(err)?;
                let after = read_tracking(&tx, &owned)
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
            .await?;
        metrics::record_projection_lag(self.store_kind(), name, lag);
        Ok(lag)
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
            catch_panic(|| f(&tx).map_err(BoxError::from)).map_err(Error::Store)
        })
        .await
    }

    /// Parks an event for a consumer and moves its tracking position to it, in one
    /// transaction ([`EventStore::park`](eventsourcing_core::EventStore::park)).
    pub(crate) async fn park_event(&self, parked: ParkedEvent) -> Result<(), Error> {
        self.on_writer(move |conn, dbname| {
            let db = |e| sql_error(dbname, e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let tracking = eventsourcing_core::Tracking {
                name: parked.name.clone(),
                position: parked.position,
            };
            tracking.check_after(read_tracking(&tx, &parked.name).map_err(db)?)?;
            park(&tx, &parked).map_err(db)?;
            record(&tx, &parked.name, parked.position)?;
            tx.commit().map_err(db)
        })
        .await
    }
}

/// Starts `projection` on `store`: it resumes after its tracking position, catches up in pages
/// (one transaction per page), then follows the log live, woken by every save through `store`
/// or its clones and polling every [`poll_interval`](ProjectionOptions::poll_interval) for
/// saves by other processes. The loop, retries and failure policy are core's projection
/// engine ([`eventsourcing_core::engine`]); this crate supplies the batch transaction.
///
/// Several projections run independently, each with its own name and position. Two runners
/// of the same projection (in one process or several) may run at once: each batch reads the
/// recorded position inside its IMMEDIATE transaction (under SQLite's write lock) and skips
/// what the other has already applied, so no event is applied twice.
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
    let name: Arc<str> = projection.name().into();
    let consumer = Consumer::new(&name, projection.event_types());
    let target = Target {
        name,
        store: store.clone(),
        projection: Some(projection),
    };
    spawn_runner(store, consumer, target, options)
}

/// This store's side of a projection runner. The projection moves to the writer thread for
/// each transaction and comes back with the result.
struct Target<P> {
    name: Arc<str>,
    store: SqliteStore,
    projection: Option<P>,
}

impl<P: SqliteProjection> Target<P> {
    /// Runs `f` on the writer thread with the projection, and takes the projection back.
    async fn on_writer<T, F>(&mut self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str, &mut P) -> Result<T, Error> + Send + 'static,
    {
        let Some(mut projection) = self.projection.take() else {
            // Only after the writer thread died with the projection on it.
            return Err(Error::store(format!(
                "projection `{}` was lost with the SQLite writer thread",
                self.name
            )));
        };
        let (projection, out) = self
            .store
            .on_writer(move |conn, dbname| {
                let out = f(conn, dbname, &mut projection);
                Ok((projection, out))
            })
            .await?;
        self.projection = Some(projection);
        out
    }
}

impl<P: SqliteProjection> BatchTarget for Target<P> {
    /// The projection's `setup`, in its own IMMEDIATE transaction.
    async fn setup(&mut self) -> Result<(), BoxError> {
        self.on_writer(|conn, dbname, projection| {
            let db = |e| sql_error(dbname, e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            catch_panic(|| projection.setup(&tx)).map_err(Error::Store)?;
            tx.commit().map_err(db)
        })
        .await
        .map_err(|e| match e {
            // The projection's own error, unwrapped so the engine names it as such.
            Error::Store(source) => source,
            other => other.into(),
        })
    }

    async fn tracking_position(&mut self) -> Result<Option<Position>, Error> {
        eventsourcing_core::EventStore::tracking_position(&self.store, &self.name).await
    }

    async fn attempt(&mut self, batch: &Arc<Batch>, known: &Known) -> Result<Outcome, Error> {
        let name = Arc::clone(&self.name);
        let batch = Arc::clone(batch);
        let known = known.clone();
        self.on_writer(move |conn, dbname, projection| {
            attempt(conn, dbname, projection, &name, &batch, &known)
        })
        .await
    }

    fn is_transient(&self, error: &(dyn StdError + 'static)) -> bool {
        error
            .downcast_ref::<rusqlite::Error>()
            .is_some_and(is_transient)
    }
}

/// One attempt at a batch in one IMMEDIATE transaction: the tracking position is read under
/// SQLite's write lock, so no other runner can move it until this commits.
fn attempt<P: SqliteProjection>(
    conn: &mut Connection,
    dbname: &str,
    projection: &mut P,
    name: &str,
    batch: &Batch,
    known: &Known,
) -> Result<Outcome, Error> {
    let db = |e| sql_error(dbname, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let recorded = read_tracking(&tx, name).map_err(db)?;
    let plan = batch.plan(recorded, known);
    for step in &plan.steps {
        match *step {
            Step::Handle { index, event } => {
                if let Err(error) = catch_panic(|| projection.handle(&tx, event)) {
                    // Dropping the transaction rolls it back.
                    return Ok(Outcome::Failed {
                        index,
                        error,
                        recorded,
                    });
                }
            }
            Step::Park { event, error } => {
                park(&tx, &ParkedEvent::new(name, event, error)).map_err(db)?;
            }
        }
    }
    let Some(position) = plan.record else {
        return Ok(Outcome::Done {
            position: recorded,
            stopped: plan.stopped,
        });
    };
    record(&tx, name, position)?;
    tx.commit().map_err(db)?;
    Ok(Outcome::Done {
        position: Some(position),
        stopped: plan.stopped,
    })
}

/// Moves the consumer's tracking row to `position` in `tx`.
fn record(tx: &Transaction<'_>, name: &str, position: Position) -> Result<(), Error> {
    let commit = to_i64("position commit", position.commit)?;
    let seq = to_i64("position seq", position.seq)?;
    write_tracking(tx, name, commit, seq).map_err(Error::store)
}

fn park(tx: &Transaction<'_>, parked: &ParkedEvent) -> rusqlite::Result<()> {
    // Positions and versions read back from SQLite always fit.
    let int = clamp_i64;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO parked_events (name, position_commit, position_seq, stream_id, \
         version, event_type, error, parked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        parked.name,
        int(parked.position.commit),
        int(parked.position.seq),
        parked.stream_id.as_bytes(),
        int(parked.version),
        parked.event_type,
        parked.error,
        parked.parked_at.timestamp_micros(),
    ])
    .map(|_| ())
}
