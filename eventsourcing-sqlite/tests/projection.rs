//! What only SQLite's projections do: `query` on a reader (rolled back, a panic contained), and
//! a database locked by another connection. The behaviour every store shares is the projection
//! suite of the `eventsourcing` package (`tests/projection`), run on this store by
//! `tests/projection_sqlite.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::events;
use eventsourcing_core::{BoxError, Error, EventStore, Position, StoredEvent, Uuid};
use eventsourcing_sqlite::{
    rusqlite::{self, Transaction},
    spawn_projection, ProjectionOptions, SqliteProjection, SqliteStore,
};

#[tokio::test]
async fn query_rolls_back_what_it_writes() {
    let store = eventsourcing_sqlite::testing::memory_store();
    store
        .query(|tx| tx.execute_batch("CREATE TABLE scratch (x INTEGER)"))
        .await
        .unwrap();
    let err = store
        .query(|tx| tx.query_row("SELECT count(*) FROM scratch", [], |r| r.get::<_, i64>(0)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such table: scratch"), "{err}");
}

#[tokio::test]
async fn a_panicking_query_is_an_error_and_the_readers_go_on() {
    panicking_queries().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_query_on_the_callers_thread_gives_its_connection_back() {
    // On a multi-thread runtime the query runs on the caller's thread.
    panicking_queries().await;
}

async fn panicking_queries() {
    let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
    store.append(events(Uuid::new_v4(), 1, 3)).await.unwrap();
    // More panics than reader threads: none of them is lost.
    for _ in 0..10 {
        let err = store
            .query(|_| -> rusqlite::Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked: boom"), "{err}");
    }
    assert_eq!(store.read_log(Position::START, 10).await.unwrap().len(), 3);
}

/// The positions a projection has seen, one row each (a second sighting breaks the key).
struct Seen(&'static str);

impl SqliteProjection for Seen {
    fn name(&self) -> &str {
        self.0
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS seen (name TEXT, position INTEGER, PRIMARY KEY (name, position))",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        let position = event.position.commit as i64;
        tx.execute(
            "INSERT INTO seen VALUES (?1, ?2)",
            rusqlite::params![self.0, position],
        )?;
        Ok(())
    }
}

/// What `Seen(name)` has recorded, in order.
async fn seen(store: &SqliteStore, name: &'static str) -> Vec<u64> {
    store
        .query(move |tx| {
            tx.prepare("SELECT position FROM seen WHERE name = ?1 ORDER BY position")?
                .query_map([name], |r| r.get::<_, i64>(0).map(|p| p as u64))?
                .collect()
        })
        .await
        .unwrap()
}

/// Another connection holds the write lock: a runner with few attempts ends with the busy
/// error once they are used up, while one with many backs off and retries through the same
/// lock and carries on once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_retried_then_given_up_on() {
    let guard = eventsourcing_sqlite::testing::TempGuard::new();
    let store = guard.store_with(|b| b.lock_timeout(Duration::ZERO)).await;
    store.append(events(Uuid::new_v4(), 1, 20)).await.unwrap();
    let log = store.read_log(Position::START, 100).await.unwrap();
    let other = rusqlite::Connection::open(guard.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Retries come quickly; no poll is waited for (a retry reads the log again).
    let tries = |attempts| ProjectionOptions {
        attempts,
        backoff: Duration::from_millis(1),
        ..ProjectionOptions::default()
    };
    let patient = spawn_projection(store.clone(), Seen("patient"), tries(1000));
    let impatient = spawn_projection(store.clone(), Seen("impatient"), tries(3));
    let err = tokio::time::timeout(Duration::from_secs(120), impatient.join())
        .await
        .expect("the impatient runner did not give up")
        .unwrap_err();
    // Worth retrying, and SQLite's own busy error underneath.
    let code = match &err {
        Error::Transient(source) => source
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code),
        other => panic!("expected a transient store error, got {other:?}"),
    };
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(code, Some(rusqlite::ErrorCode::DatabaseBusy), "{err}");

    // The patient one went through the same lock for as long, and goes on trying.
    assert!(!patient.is_finished(), "the patient runner gave up");
    assert_eq!(store.tracking_position("patient").await.unwrap(), None);
    other.execute_batch("COMMIT").unwrap();
    let end = log.last().unwrap().position;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while patient.position() < end {
        assert!(!patient.is_finished(), "the patient runner ended early");
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    patient.stop().await.unwrap();
    let all: Vec<u64> = log.iter().map(|e| e.position.commit).collect();
    assert_eq!(seen(&store, "patient").await, all);
    assert_eq!(store.tracking_position("patient").await.unwrap(), Some(end));
}
