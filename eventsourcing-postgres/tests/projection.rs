//! What only PostgreSQL's projections do: a live event from another store instance arrives
//! through LISTEN/NOTIFY, and a tracking row locked by another session is retried. The
//! behaviour every store shares is the projection suite of the `eventsourcing` package
//! (`tests/projection`), run on this store by `tests/projection_postgres.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{
    BoxError, Error, EventStore, NewEvent, Position, RunnerHandle, StoredEvent,
};
use eventsourcing_postgres::{
    spawn_projection,
    testing::TestSchema,
    tokio_postgres::{error::SqlState, Transaction},
    PostgresConfigBuilder, PostgresProjection, PostgresStore, ProjectionOptions,
};
use uuid::Uuid;

/// Versions `from..=to` of a stream.
fn events(stream_id: Uuid, from: u64, to: u64) -> Vec<NewEvent> {
    (from..=to)
        .map(|v| NewEvent::new(stream_id, v, "Happened", b"{}".to_vec()))
        .collect()
}

/// The events a projection has seen, one row each in the test's schema (a second sighting
/// breaks the key).
struct Seen {
    name: &'static str,
    table: String,
}

impl Seen {
    fn new(name: &'static str, schema: &TestSchema) -> Self {
        let table = format!("\"{}\".seen", schema.name());
        Seen { name, table }
    }
}

impl PostgresProjection for Seen {
    fn name(&self) -> &str {
        self.name
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (name text, stream_id uuid, version bigint, \
             PRIMARY KEY (name, stream_id, version))",
            self.table
        );
        tx.batch_execute(&sql).await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        let sql = format!("INSERT INTO {} VALUES ($1, $2, $3)", self.table);
        let version = event.version as i64;
        tx.execute(&sql, &[&self.name, &event.stream_id, &version])
            .await?;
        Ok(())
    }
}

/// The (stream, version) pairs `name` has seen, sorted.
async fn seen(schema: &TestSchema, name: &str) -> Vec<(Uuid, u64)> {
    let client = schema.client().await.unwrap();
    let sql = format!(
        "SELECT stream_id, version FROM \"{}\".seen WHERE name = $1 ORDER BY stream_id, version",
        schema.name()
    );
    let rows = client.query(&sql, &[&name]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect()
}

/// What the log holds, as `seen` lists it.
async fn logged(store: &PostgresStore) -> Vec<(Uuid, u64)> {
    let log = store.read_log(Position::START, usize::MAX).await.unwrap();
    let mut all: Vec<_> = log.iter().map(|e| (e.stream_id, e.version)).collect();
    all.sort();
    all
}

/// Polls until the runner has got to the end of `store`'s log; fails if it ends first or
/// after two minutes.
async fn caught_up(runner: &RunnerHandle, store: &PostgresStore) {
    let log = store.read_log(Position::START, usize::MAX).await.unwrap();
    let end = log.last().map_or(Position::START, |e| e.position);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while runner.position() < end {
        assert!(!runner.is_finished(), "the runner ended before {end:?}");
        assert!(tokio::time::Instant::now() < deadline, "not at {end:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The writer is another store instance on the same schema (its own pool, no link in this
/// process): only its `NOTIFY`, heard by the projection's store's `LISTEN`, can wake the runner
/// before the hour is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_from_another_store_instance_arrives_through_listen() {
    let schema = TestSchema::new().await;
    let (store, writer) = (schema.store().await, schema.store().await);
    let stream = Uuid::new_v4();
    writer.append(events(stream, 1, 3)).await.unwrap();
    let hour_poll = ProjectionOptions {
        poll_interval: Duration::from_secs(3600),
        ..ProjectionOptions::default()
    };
    let runner = spawn_projection(store.clone(), Seen::new("seen", &schema), hour_poll);
    caught_up(&runner, &writer).await;
    for version in 4..=6 {
        writer
            .append(events(stream, version, version))
            .await
            .unwrap();
        caught_up(&runner, &writer).await;
    }
    runner.stop().await.unwrap();
    assert_eq!(seen(&schema, "seen").await, logged(&store).await);
    assert_eq!(seen(&schema, "seen").await.len(), 6);
}

/// How the runner given few attempts ended (it must end, and with an error).
async fn impatient_failure(runner: RunnerHandle) -> Error {
    match tokio::time::timeout(Duration::from_secs(120), runner.join()).await {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("the impatient runner ended without an error"),
        Err(_) => panic!("the impatient runner did not give up"),
    }
}

/// The SQLSTATE of the PostgreSQL error in `err`'s chain, if any.
fn sql_state(err: &Error) -> Option<SqlState> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(pg) = e.downcast_ref::<eventsourcing_postgres::tokio_postgres::Error>() {
            return pg.code().cloned();
        }
        next = e.source();
    }
    None
}

fn retrying(attempts: u32) -> ProjectionOptions {
    ProjectionOptions {
        attempts,
        backoff: Duration::from_millis(1),
        poll_interval: Duration::from_millis(20),
        ..ProjectionOptions::default()
    }
}

/// A store on a fresh schema with its settings changed by `adjust`, holding `count` events of
/// one stream; and the schema's guard.
async fn holding(
    count: u64,
    adjust: impl FnOnce(PostgresConfigBuilder) -> PostgresConfigBuilder,
) -> (PostgresStore, TestSchema) {
    let schema = TestSchema::new().await;
    let store = schema.store_with(adjust).await;
    store
        .append(events(Uuid::new_v4(), 1, count))
        .await
        .unwrap();
    (store, schema)
}

/// Another session holds two projections' tracking rows: with a short lock timeout their
/// batches fail with `lock_not_available` and back off; the one with few attempts ends with
/// that error once they are used up, the one with many goes on retrying through the same lock
/// and carries on once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_tracking_row_is_retried_then_given_up_on() {
    let (store, schema) = holding(20, |b| b.lock_timeout(Duration::from_millis(20))).await;
    let tracking = format!("\"{}\".tracking", schema.name());
    let mut other = schema.client().await.unwrap();
    other
        .batch_execute(&format!(
            "INSERT INTO {tracking} (name, position_commit, position_seq) VALUES \
             ('patient', 0, 0), ('impatient', 0, 0)"
        ))
        .await
        .unwrap();
    let holder = other.transaction().await.unwrap();
    holder
        .batch_execute(&format!("SELECT 1 FROM {tracking} FOR UPDATE"))
        .await
        .unwrap();

    let patient = spawn_projection(store.clone(), Seen::new("patient", &schema), retrying(1000));
    let impatient = spawn_projection(store.clone(), Seen::new("impatient", &schema), retrying(3));
    let err = impatient_failure(impatient).await;
    assert!(
        err.is_transient(),
        "a lock timeout is worth retrying: {err:?}"
    );
    assert!(matches!(err, Error::Transient(_)), "{err:?}");
    assert_eq!(sql_state(&err), Some(SqlState::LOCK_NOT_AVAILABLE), "{err}");

    // The patient one went through the same lock for as long, and goes on trying.
    assert!(!patient.is_finished(), "the patient runner gave up");
    assert_eq!(
        store.tracking_position("patient").await.unwrap(),
        Some(Position::START)
    );
    holder.commit().await.unwrap();
    caught_up(&patient, &store).await;
    patient.stop().await.unwrap();
    assert_eq!(seen(&schema, "patient").await, logged(&store).await);
}

/// A handler that pauses between its statements for longer than the pool's
/// idle-in-transaction timeout: the batch's session is not killed for it (before, it was, on
/// every retry, until the runner gave up).
struct Slow(Seen);

impl PostgresProjection for Slow {
    fn name(&self) -> &str {
        self.0.name
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.0.setup(tx).await
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        tx.execute("SELECT 1", &[]).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.0.handle(tx, event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_is_not_killed_by_the_idle_in_transaction_timeout() {
    let (store, schema) = holding(2, |b| {
        b.idle_in_transaction_session_timeout(Duration::from_secs(1))
    })
    .await;
    let runner = spawn_projection(
        store.clone(),
        Slow(Seen::new("slow", &schema)),
        ProjectionOptions {
            attempts: 2,
            ..ProjectionOptions::default()
        },
    );
    caught_up(&runner, &store).await;
    runner.stop().await.unwrap();
    assert_eq!(seen(&schema, "slow").await, logged(&store).await);
}
