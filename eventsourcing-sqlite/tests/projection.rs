//! Projections: exactly-once read models through aborts, concurrent writers and concurrent
//! runners; live wake-ups; the Stop and Park failure policies; independent positions and lag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{event, events};
use eventsourcing_core::{
    BoxError, Error, EventStore, NewEvent, Position, RunnerHandle, StoredEvent, Uuid,
};
use eventsourcing_sqlite::{
    rusqlite::{self, Transaction},
    spawn_projection, OnError, ProjectionOptions, SqliteProjection, SqliteStore,
};

/// Runs `async fn $name(store: SqliteStore)` on a fresh in-memory store and on a fresh file.
macro_rules! on_memory_and_file {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(eventsourcing_sqlite::testing::memory_store()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
                super::$name(store).await;
            }
        }
    )*};
}

on_memory_and_file!(
    abort_in_the_middle_of_catch_up_then_restart_applies_each_event_once,
    eight_writers_with_a_live_projection_end_consistent,
    a_live_event_arrives_without_waiting_for_the_poll,
    a_failing_handler_stops_and_a_restart_resumes_from_that_event,
    a_failing_handler_parks_the_event_and_goes_on,
    projections_progress_independently_and_report_lag,
    two_runners_of_one_projection_apply_each_event_once,
);

/// A read model of the log: one row per event handled (its primary key turns a second
/// application of an event into a failure) and a count per stream.
struct Tally {
    name: String,
    types: Option<Vec<String>>,
    /// Events of this type fail (after writing a row, which must be rolled back).
    fail_on: Option<&'static str>,
    /// Events of this type panic.
    panic_on: Option<&'static str>,
    /// Sleeps this long per event (on the writer thread), to make catch-up slow.
    delay: Duration,
    handled: Arc<AtomicU64>,
}

impl Tally {
    fn new(name: &str) -> Self {
        Tally {
            name: name.to_owned(),
            types: None,
            fail_on: None,
            panic_on: None,
            delay: Duration::ZERO,
            handled: Arc::default(),
        }
    }
}

impl SqliteProjection for Tally {
    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> Option<Vec<String>> {
        self.types.clone()
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS tally_events (
                 projection TEXT NOT NULL,
                 position   INTEGER NOT NULL,
                 stream_id  BLOB NOT NULL,
                 version    INTEGER NOT NULL,
                 PRIMARY KEY (projection, position)
             );
             CREATE TABLE IF NOT EXISTS tally_streams (
                 projection TEXT NOT NULL,
                 stream_id  BLOB NOT NULL,
                 events     INTEGER NOT NULL,
                 PRIMARY KEY (projection, stream_id)
             );",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        tx.execute(
            "INSERT INTO tally_events VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                self.name,
                event.position.commit as i64,
                event.stream_id.as_bytes(),
                event.version as i64
            ],
        )?;
        if self.fail_on == Some(event.event_type.as_str()) {
            return Err(
                format!("cannot tally {:?}", String::from_utf8_lossy(&event.payload)).into(),
            );
        }
        if self.panic_on == Some(event.event_type.as_str()) {
            panic!("tally exploded");
        }
        tx.execute(
            "INSERT INTO tally_streams VALUES (?1, ?2, 1) \
             ON CONFLICT (projection, stream_id) DO UPDATE SET events = events + 1",
            rusqlite::params![self.name, event.stream_id.as_bytes()],
        )?;
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What a tally holds: (position, stream, version) per event, and the count per stream.
#[derive(Debug, PartialEq, Eq)]
struct Model {
    events: Vec<(u64, Uuid, u64)>,
    streams: BTreeMap<Uuid, u64>,
}

async fn read_model(store: &SqliteStore, name: &str) -> Model {
    tracked_model(store, name).await.1
}

/// The projection's recorded position and its read model, from one snapshot of the database.
async fn tracked_model(store: &SqliteStore, name: &str) -> (Option<Position>, Model) {
    let name = name.to_owned();
    store
        .query(move |tx| {
            let recorded = tx
                .query_row(
                    "SELECT position_commit, position_seq FROM tracking WHERE name = ?1",
                    [&name],
                    |r| {
                        Ok(Position {
                            commit: r.get::<_, i64>(0)? as u64,
                            seq: r.get::<_, i64>(1)? as u64,
                        })
                    },
                )
                .ok();
            let mut stmt = tx.prepare(
                "SELECT position, stream_id, version FROM tally_events \
                 WHERE projection = ?1 ORDER BY position",
            )?;
            let events = stmt
                .query_map([&name], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        Uuid::from_bytes(r.get(1)?),
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt =
                tx.prepare("SELECT stream_id, events FROM tally_streams WHERE projection = ?1")?;
            let streams = stmt
                .query_map([&name], |r| {
                    Ok((Uuid::from_bytes(r.get(0)?), r.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            Ok((recorded, Model { events, streams }))
        })
        .await
        .unwrap()
}

/// What the log implies for a tally of the events `keep` accepts.
async fn expected(store: &SqliteStore, keep: impl Fn(&StoredEvent) -> bool) -> Model {
    let log = store.read_log(Position::START, usize::MAX).await.unwrap();
    let mut streams = BTreeMap::new();
    let mut events = Vec::new();
    for e in log.iter().filter(|e| keep(e)) {
        events.push((e.position.commit, e.stream_id, e.version));
        *streams.entry(e.stream_id).or_insert(0) += 1;
    }
    Model { events, streams }
}

async fn last_position(store: &SqliteStore) -> Position {
    store
        .read_log(Position::START, usize::MAX)
        .await
        .unwrap()
        .last()
        .map_or(Position::START, |e| e.position)
}

/// Waits until the runner has got to `end`; fails (instead of hanging) after two minutes or if
/// the runner ends.
async fn wait_for(handle: &RunnerHandle, end: Position) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while handle.position() < end {
        assert!(!handle.is_finished(), "the projection ended early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection did not get to {end:?} (at {:?})",
            handle.position()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn typed(stream: Uuid, version: u64, event_type: &'static str) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        ..event(stream, version)
    }
}

/// 3,000 events over 300 streams, in 30 saves.
async fn fill(store: &SqliteStore) {
    for _ in 0..30 {
        let save: Vec<NewEvent> = (0..10)
            .flat_map(|_| events(Uuid::new_v4(), 1, 10))
            .collect();
        store.append(save).await.unwrap();
    }
}

fn options(page_size: usize) -> ProjectionOptions {
    ProjectionOptions {
        page_size,
        poll_interval: Duration::from_millis(20),
        ..ProjectionOptions::default()
    }
}

async fn abort_in_the_middle_of_catch_up_then_restart_applies_each_event_once(store: SqliteStore) {
    fill(&store).await;
    let end = last_position(&store).await;

    // Abort three times at different points of the catch-up (after about 700, 1400 and 2100
    // events), each time with a batch perhaps in flight on the writer thread.
    let mut previous = Position::START;
    for _ in 0..3 {
        let tally = Tally {
            delay: Duration::from_micros(100),
            ..Tally::new("tally")
        };
        let handled = Arc::clone(&tally.handled);
        let runner = spawn_projection(store.clone(), tally, options(25));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while handled.load(Ordering::Relaxed) < 700 {
            assert!(!runner.is_finished(), "the projection ended early");
            assert!(tokio::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        runner.abort();
        let _ = runner.join().await;
        // The read model is exactly the log up to the recorded position, never more or less
        // (read together: a batch of the aborted runner may still be committing).
        let (recorded, model) = tracked_model(&store, "tally").await;
        let recorded = recorded.unwrap();
        assert!(
            recorded > previous && recorded < end,
            "aborted at {recorded:?} (before: {previous:?}), not in the middle"
        );
        previous = recorded;
        assert_eq!(
            model,
            expected(&store, |e| e.position <= recorded).await,
            "after the abort at {recorded:?}"
        );
    }

    let runner = spawn_projection(store.clone(), Tally::new("tally"), options(25));
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    assert_eq!(
        read_model(&store, "tally").await,
        expected(&store, |_| true).await
    );
    assert_eq!(read_model(&store, "tally").await.events.len(), 3000);
    assert_eq!(store.projection_lag("tally").await.unwrap(), 0);
}

async fn eight_writers_with_a_live_projection_end_consistent(store: SqliteStore) {
    let runner = spawn_projection(store.clone(), Tally::new("tally"), options(500));
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = Uuid::new_v4();
                let mut version = 0;
                for save in 0..40u64 {
                    let count = save % 3 + 1;
                    store
                        .append(events(stream, version + 1, version + count))
                        .await
                        .unwrap();
                    version += count;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let end = last_position(&store).await;
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    let model = read_model(&store, "tally").await;
    let per_writer: u64 = (0..40).map(|save| save % 3 + 1).sum();
    assert_eq!(model.events.len() as u64, 8 * per_writer);
    assert_eq!(model, expected(&store, |_| true).await);
}

async fn a_live_event_arrives_without_waiting_for_the_poll(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 5)).await.unwrap();
    let runner = spawn_projection(
        store.clone(),
        Tally::new("tally"),
        ProjectionOptions {
            poll_interval: Duration::from_secs(3600),
            ..ProjectionOptions::default()
        },
    );
    wait_for(&runner, last_position(&store).await).await;
    // Caught up: the runner now waits for a wake-up (or an hour). Two live events in turn.
    for version in [6, 7] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.append(vec![event(stream, version)]).await.unwrap();
        wait_for(&runner, last_position(&store).await).await;
    }
    runner.stop().await.unwrap();
    assert_eq!(read_model(&store, "tally").await.streams[&stream], 7);
}

/// Stream `s`: Happened, Happened, Poison, Happened, Panic, Happened.
async fn poisoned(store: &SqliteStore) -> (Uuid, Vec<StoredEvent>) {
    let s = Uuid::new_v4();
    let kinds = [
        "Happened", "Happened", "Poison", "Happened", "Panic", "Happened",
    ];
    let save = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| typed(s, i as u64 + 1, kind))
        .collect();
    store.append(save).await.unwrap();
    (s, store.read_log(Position::START, 100).await.unwrap())
}

async fn a_failing_handler_stops_and_a_restart_resumes_from_that_event(store: SqliteStore) {
    let (s, log) = poisoned(&store).await;
    // Events before the poison in an earlier batch (page size 1) and in the same one (2).
    for page in [1, 2, 500] {
        let name = format!("tally-{page}");
        let failing = Tally {
            fail_on: Some("Poison"),
            ..Tally::new(&name)
        };
        let err = spawn_projection(store.clone(), failing, options(page))
            .join()
            .await
            .unwrap_err();
        let Error::Handler {
            name: failed,
            stream_id,
            version,
            event_type,
            position,
            ..
        } = &err
        else {
            panic!("expected a handler error, got {err:?}");
        };
        assert_eq!(
            (failed.as_str(), *stream_id, *version, event_type.as_str()),
            (name.as_str(), s, 3, "Poison")
        );
        assert_eq!(*position, log[2].position);
        let message = err.to_string();
        for part in [&name, "Poison", &s.to_string(), "version 3", "cannot tally"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        // The events before it are committed, nothing of it (not even its first row).
        assert_eq!(
            store.tracking_position(&name).await.unwrap(),
            Some(log[1].position)
        );
        assert_eq!(
            read_model(&store, &name).await,
            expected(&store, |e| e.version <= 2).await
        );
        assert_eq!(store.projection_lag(&name).await.unwrap(), 4);
        assert!(store.parked(&name).await.unwrap().is_empty());

        // A restart with the same failing handler fails on the same event again.
        let again = Tally {
            fail_on: Some("Poison"),
            ..Tally::new(&name)
        };
        let err = spawn_projection(store.clone(), again, options(page))
            .join()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Handler { version: 3, .. }), "{err:?}");

        // Fixed, it resumes from the poison, not after it.
        let fixed = spawn_projection(store.clone(), Tally::new(&name), options(page));
        wait_for(&fixed, log[5].position).await;
        fixed.stop().await.unwrap();
        assert_eq!(
            read_model(&store, &name).await,
            expected(&store, |_| true).await
        );
    }
}

async fn a_failing_handler_parks_the_event_and_goes_on(store: SqliteStore) {
    let (s, log) = poisoned(&store).await;
    let before = eventsourcing_core::chrono::Utc::now();
    let tally = Tally {
        fail_on: Some("Poison"),
        panic_on: Some("Panic"),
        ..Tally::new("tally")
    };
    let park = ProjectionOptions {
        on_error: OnError::Park,
        ..options(500)
    };
    let runner = spawn_projection(store.clone(), tally, park);
    wait_for(&runner, log[5].position).await;
    runner.stop().await.unwrap();

    // Everything else is handled; nothing the failing events wrote is kept.
    assert_eq!(
        read_model(&store, "tally").await,
        expected(&store, |e| !["Poison", "Panic"]
            .contains(&e.event_type.as_str()))
        .await
    );
    assert_eq!(
        store.tracking_position("tally").await.unwrap(),
        Some(log[5].position)
    );
    assert_eq!(store.projection_lag("tally").await.unwrap(), 0);

    let parked = store.parked("tally").await.unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    let (poison, panic) = (&parked[0], &parked[1]);
    assert_eq!(
        (poison.name.as_str(), poison.stream_id, poison.version),
        ("tally", s, 3)
    );
    assert_eq!(poison.position, log[2].position);
    assert_eq!(poison.event_type, "Poison");
    assert!(poison.error.contains("cannot tally"), "{}", poison.error);
    assert!(poison.parked_at >= before - chrono_slack());
    assert_eq!((panic.version, panic.event_type.as_str()), (5, "Panic"));
    assert!(
        panic.error.contains("panicked") && panic.error.contains("tally exploded"),
        "{}",
        panic.error
    );
    assert!(store.parked("other").await.unwrap().is_empty());

    // The store still works after the panic on its writer thread.
    store.append(vec![event(s, 7)]).await.unwrap();

    // An operator removes a parked event once dealt with.
    assert!(store.unpark("tally", poison.position).await.unwrap());
    assert!(!store.unpark("tally", poison.position).await.unwrap());
    assert_eq!(store.parked("tally").await.unwrap(), vec![panic.clone()]);
}

/// Timestamps are kept in microseconds.
fn chrono_slack() -> eventsourcing_core::chrono::TimeDelta {
    eventsourcing_core::chrono::TimeDelta::milliseconds(1)
}

async fn projections_progress_independently_and_report_lag(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let save: Vec<NewEvent> = (1..=100)
        .map(|v| typed(stream, v, if v % 5 == 0 { "Renamed" } else { "Happened" }))
        .collect();
    store.append(save).await.unwrap();
    let end = last_position(&store).await;
    let renames = || Tally {
        types: Some(vec!["Renamed".into()]),
        ..Tally::new("renames")
    };

    // Nothing recorded yet: every event is lag.
    assert_eq!(store.projection_lag("all").await.unwrap(), 100);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 100);

    let all = spawn_projection(store.clone(), Tally::new("all"), options(30));
    wait_for(&all, end).await;
    all.stop().await.unwrap();
    assert_eq!(store.projection_lag("all").await.unwrap(), 0);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 100);
    assert_eq!(read_model(&store, "renames").await.events, vec![]);

    // Filtered-out events count as lag until the projection's position passes them.
    let only = spawn_projection(store.clone(), renames(), options(30));
    wait_for(&only, end).await;
    only.stop().await.unwrap();
    assert_eq!(store.projection_lag("renames").await.unwrap(), 0);
    assert_eq!(
        read_model(&store, "renames").await,
        expected(&store, |e| e.event_type == "Renamed").await
    );
    assert_eq!(read_model(&store, "all").await.events.len(), 100);

    // New events: both lag by them, independently.
    store
        .append((101..=107).map(|v| event(stream, v)).collect())
        .await
        .unwrap();
    assert_eq!(store.projection_lag("all").await.unwrap(), 7);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 7);
    let all = spawn_projection(store.clone(), Tally::new("all"), options(30));
    wait_for(&all, last_position(&store).await).await;
    all.stop().await.unwrap();
    assert_eq!(store.projection_lag("all").await.unwrap(), 0);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 7);

    // A running projection that skips a run of filtered-out events records them once it has
    // caught up: its lag reaches zero while it runs, not only when it stops.
    let only = spawn_projection(store.clone(), renames(), options(5));
    wait_for(&only, last_position(&store).await).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.projection_lag("renames").await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "position not recorded"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    only.stop().await.unwrap();
    assert_eq!(store.projection_lag("renames").await.unwrap(), 0);
}

async fn two_runners_of_one_projection_apply_each_event_once(store: SqliteStore) {
    fill(&store).await;
    let end = last_position(&store).await;
    // A duplicate would break tally_events' primary key, fail the handler and stop a runner.
    let a = spawn_projection(store.clone(), Tally::new("tally"), options(20));
    let b = spawn_projection(store.clone(), Tally::new("tally"), options(35));
    wait_for(&a, end).await;
    wait_for(&b, end).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    assert_eq!(
        read_model(&store, "tally").await,
        expected(&store, |_| true).await
    );
}

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

#[tokio::test]
async fn a_failing_setup_ends_the_runner_naming_the_projection() {
    struct Broken;
    impl SqliteProjection for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
            tx.execute_batch("CREATE TABLE nonsense (")?;
            Ok(())
        }
        fn handle(&mut self, _: &Transaction<'_>, _: &StoredEvent) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let store = eventsourcing_sqlite::testing::memory_store();
    let err = spawn_projection(store, Broken, ProjectionOptions::default())
        .join()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`broken`"), "{err}");
}

/// Another connection holds the write lock: the runner backs off and retries, then carries on
/// once the lock is gone; held for good, it ends with the busy error after its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_retried_then_given_up_on() {
    let guard = eventsourcing_sqlite::testing::TempGuard::new();
    let store = SqliteStore::open(guard.builder().lock_timeout(Duration::ZERO).build())
        .await
        .unwrap();
    store.append(events(Uuid::new_v4(), 1, 20)).await.unwrap();
    let end = last_position(&store).await;
    let other = rusqlite::Connection::open(guard.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let patient = spawn_projection(
        store.clone(),
        Tally::new("tally"),
        ProjectionOptions {
            attempts: 1000,
            backoff: Duration::from_millis(1),
            ..options(500)
        },
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!patient.is_finished(), "gave up too early");
    assert_eq!(store.tracking_position("tally").await.unwrap(), None);
    other.execute_batch("COMMIT").unwrap();
    wait_for(&patient, end).await;
    patient.stop().await.unwrap();
    assert_eq!(
        read_model(&store, "tally").await,
        expected(&store, |_| true).await
    );

    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let impatient = spawn_projection(
        store.clone(),
        Tally::new("other"),
        ProjectionOptions {
            attempts: 3,
            backoff: Duration::from_millis(1),
            ..options(500)
        },
    );
    let err = impatient.join().await.unwrap_err();
    assert!(
        err.is_transient(),
        "a busy database is worth retrying: {err:?}"
    );
    let Error::Transient(source) = &err else {
        panic!("expected a transient store error, got {err:?}");
    };
    let code = source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    assert_eq!(code, Some(rusqlite::ErrorCode::DatabaseBusy), "{err}");
    other.execute_batch("ROLLBACK").unwrap();
}
