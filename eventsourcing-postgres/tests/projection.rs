//! Projections: exactly-once read models through aborts, concurrent writers and concurrent
//! runners; live wake-ups, also from another store instance (LISTEN/NOTIFY); the Stop and Park
//! failure policies; independent positions and lag; transient failures retried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing_core::{
    now, BoxError, Error, EventStore, Metadata, NewEvent, Position, RunnerHandle, StoredEvent,
};
use eventsourcing_postgres::{
    spawn_projection,
    testing::{fresh, TestSchema},
    tokio_postgres::{IsolationLevel, Transaction},
    OnError, PostgresProjection, PostgresStore, ProjectionOptions,
};
use uuid::Uuid;

fn event(stream_id: Uuid, version: u64) -> NewEvent {
    typed(stream_id, version, "Happened")
}

fn typed(stream_id: Uuid, version: u64, event_type: &'static str) -> NewEvent {
    NewEvent {
        stream_id,
        version,
        event_type: event_type.into(),
        schema_version: 1,
        timestamp: now(),
        payload: format!(r#"{{"n":{version}}}"#).into_bytes(),
        metadata: Metadata::default(),
    }
}

/// Versions `from..=to` of a stream.
fn events(stream_id: Uuid, from: u64, to: u64) -> Vec<NewEvent> {
    (from..=to).map(|v| event(stream_id, v)).collect()
}

/// A read model of the log: one row per event handled (its primary key turns a second
/// application of an event into a failure) and a count per stream.
struct Tally {
    name: String,
    /// The test's schema, quoted: the read model lives beside the store's tables.
    schema: String,
    types: Option<Vec<String>>,
    /// Events of this type fail (after writing a row, which must be rolled back).
    fail_on: Option<&'static str>,
    /// Events of this type panic.
    panic_on: Option<&'static str>,
    /// Waits this long per event (inside the batch's transaction), to make catch-up slow.
    delay: Duration,
    handled: Arc<AtomicU64>,
}

impl Tally {
    fn new(name: &str, schema: &TestSchema) -> Self {
        Tally {
            name: name.to_owned(),
            schema: format!("\"{}\"", schema.name()),
            types: None,
            fail_on: None,
            panic_on: None,
            delay: Duration::ZERO,
            handled: Arc::default(),
        }
    }
}

impl PostgresProjection for Tally {
    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> Option<Vec<String>> {
        self.types.clone()
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.tally_events (
                 projection      text   NOT NULL,
                 position_commit bigint NOT NULL,
                 position_seq    bigint NOT NULL,
                 stream_id       uuid   NOT NULL,
                 version         bigint NOT NULL,
                 PRIMARY KEY (projection, position_commit, position_seq)
             );
             CREATE TABLE IF NOT EXISTS {schema}.tally_streams (
                 projection text   NOT NULL,
                 stream_id  uuid   NOT NULL,
                 events     bigint NOT NULL,
                 PRIMARY KEY (projection, stream_id)
             );"
        ))
        .await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let schema = &self.schema;
        tx.execute(
            &format!("INSERT INTO {schema}.tally_events VALUES ($1, $2, $3, $4, $5)"),
            &[
                &self.name,
                &(event.position.commit as i64),
                &(event.position.seq as i64),
                &event.stream_id,
                &(event.version as i64),
            ],
        )
        .await?;
        if self.fail_on == Some(event.event_type.as_str()) {
            return Err(
                format!("cannot tally {:?}", String::from_utf8_lossy(&event.payload)).into(),
            );
        }
        if self.panic_on == Some(event.event_type.as_str()) {
            panic!("tally exploded");
        }
        tx.execute(
            &format!(
                "INSERT INTO {schema}.tally_streams VALUES ($1, $2, 1) \
                 ON CONFLICT (projection, stream_id) \
                 DO UPDATE SET events = tally_streams.events + 1"
            ),
            &[&self.name, &event.stream_id],
        )
        .await?;
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What a tally holds: (position, stream, version) per event, and the count per stream.
#[derive(Debug, PartialEq, Eq)]
struct Model {
    events: Vec<(Position, Uuid, u64)>,
    streams: BTreeMap<Uuid, u64>,
}

async fn read_model(schema: &TestSchema, name: &str) -> Model {
    tracked_model(schema, name).await.1
}

/// The projection's recorded position and its read model, from one snapshot of the database.
async fn tracked_model(schema: &TestSchema, name: &str) -> (Option<Position>, Model) {
    let mut client = schema.client().await.unwrap();
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .unwrap();
    let s = format!("\"{}\"", schema.name());
    let recorded = tx
        .query_opt(
            &format!("SELECT position_commit, position_seq FROM {s}.tracking WHERE name = $1"),
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| Position {
            commit: r.get::<_, i64>(0) as u64,
            seq: r.get::<_, i64>(1) as u64,
        });
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{s}.tally_events")],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        let empty = Model {
            events: Vec::new(),
            streams: BTreeMap::new(),
        };
        return (recorded, empty);
    }
    let events = tx
        .query(
            &format!(
                "SELECT position_commit, position_seq, stream_id, version FROM {s}.tally_events \
                 WHERE projection = $1 ORDER BY position_commit, position_seq"
            ),
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                Position {
                    commit: r.get::<_, i64>(0) as u64,
                    seq: r.get::<_, i64>(1) as u64,
                },
                r.get(2),
                r.get::<_, i64>(3) as u64,
            )
        })
        .collect();
    let streams = tx
        .query(
            &format!("SELECT stream_id, events FROM {s}.tally_streams WHERE projection = $1"),
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect();
    (recorded, Model { events, streams })
}

/// What the log implies for a tally of the events `keep` accepts.
async fn expected(store: &PostgresStore, keep: impl Fn(&StoredEvent) -> bool) -> Model {
    let log = store.read_log(Position::START, usize::MAX).await.unwrap();
    let mut streams = BTreeMap::new();
    let mut events = Vec::new();
    for e in log.iter().filter(|e| keep(e)) {
        events.push((e.position, e.stream_id, e.version));
        *streams.entry(e.stream_id).or_insert(0) += 1;
    }
    Model { events, streams }
}

async fn last_position(store: &PostgresStore) -> Position {
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

/// 3,000 events over 300 streams, in 30 saves.
async fn fill(store: &PostgresStore) {
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

/// A poll interval no test waits for: a live event that arrives came with a wake-up.
fn hour_poll() -> ProjectionOptions {
    ProjectionOptions {
        poll_interval: Duration::from_secs(3600),
        ..ProjectionOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_in_the_middle_of_catch_up_then_restart_applies_each_event_once() {
    let (store, schema) = fresh().await;
    fill(&store).await;
    let end = last_position(&store).await;

    // Abort three times at different points of the catch-up (after about 700, 1400 and 2100
    // events), each time with a batch perhaps in the middle of its transaction.
    let mut previous = Position::START;
    for _ in 0..3 {
        let tally = Tally {
            delay: Duration::from_micros(100),
            ..Tally::new("tally", &schema)
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
        // (read together, in one snapshot).
        let (recorded, model) = tracked_model(&schema, "tally").await;
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

    let runner = spawn_projection(store.clone(), Tally::new("tally", &schema), options(25));
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    assert_eq!(
        read_model(&schema, "tally").await,
        expected(&store, |_| true).await
    );
    assert_eq!(read_model(&schema, "tally").await.events.len(), 3000);
    assert_eq!(store.projection_lag("tally").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_with_a_live_projection_end_consistent() {
    let (store, schema) = fresh().await;
    let runner = spawn_projection(store.clone(), Tally::new("tally", &schema), options(500));
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
    let model = read_model(&schema, "tally").await;
    let per_writer: u64 = (0..40).map(|save| save % 3 + 1).sum();
    assert_eq!(model.events.len() as u64, 8 * per_writer);
    assert_eq!(model, expected(&store, |_| true).await);
    assert_eq!(store.projection_lag("tally").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_arrives_without_waiting_for_the_poll() {
    let (store, schema) = fresh().await;
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 5)).await.unwrap();
    let runner = spawn_projection(store.clone(), Tally::new("tally", &schema), hour_poll());
    wait_for(&runner, last_position(&store).await).await;
    // Caught up: the runner now waits for a wake-up (or an hour). Two live events in turn.
    for version in [6, 7] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.append(vec![event(stream, version)]).await.unwrap();
        wait_for(&runner, last_position(&store).await).await;
    }
    runner.stop().await.unwrap();
    assert_eq!(read_model(&schema, "tally").await.streams[&stream], 7);
}

/// The writer is another store instance on the same schema (its own pool, no link in this
/// process): only its `NOTIFY`, heard by the projection's store's `LISTEN`, can wake the runner
/// before the hour is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_from_another_store_instance_arrives_through_listen() {
    let (store, schema) = fresh().await;
    let writer = schema.store().await;
    let stream = Uuid::new_v4();
    writer.append(events(stream, 1, 3)).await.unwrap();
    let runner = spawn_projection(store.clone(), Tally::new("tally", &schema), hour_poll());
    wait_for(&runner, last_position(&store).await).await;
    for version in 4..=6 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.append(vec![event(stream, version)]).await.unwrap();
        wait_for(&runner, last_position(&writer).await).await;
    }
    runner.stop().await.unwrap();
    assert_eq!(read_model(&schema, "tally").await.streams[&stream], 6);
}

/// Stream `s`: Happened, Happened, Poison, Happened, Panic, Happened.
async fn poisoned(store: &PostgresStore) -> (Uuid, Vec<StoredEvent>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_stops_and_a_restart_resumes_from_that_event() {
    let (store, schema) = fresh().await;
    let (s, log) = poisoned(&store).await;
    // Events before the poison in an earlier batch (page size 1), in the same one (2, 500).
    for page in [1, 2, 500] {
        let name = format!("tally-{page}");
        let failing = Tally {
            fail_on: Some("Poison"),
            ..Tally::new(&name, &schema)
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
            read_model(&schema, &name).await,
            expected(&store, |e| e.version <= 2).await
        );
        assert_eq!(store.projection_lag(&name).await.unwrap(), 4);
        assert!(store.parked(&name).await.unwrap().is_empty());

        // A restart with the same failing handler fails on the same event again.
        let again = Tally {
            fail_on: Some("Poison"),
            ..Tally::new(&name, &schema)
        };
        let err = spawn_projection(store.clone(), again, options(page))
            .join()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Handler { version: 3, .. }), "{err:?}");

        // Fixed, it resumes from the poison, not after it.
        let fixed = spawn_projection(store.clone(), Tally::new(&name, &schema), options(page));
        wait_for(&fixed, log[5].position).await;
        fixed.stop().await.unwrap();
        assert_eq!(
            read_model(&schema, &name).await,
            expected(&store, |_| true).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_parks_the_event_and_goes_on() {
    let (store, schema) = fresh().await;
    let (s, log) = poisoned(&store).await;
    let before = eventsourcing_core::chrono::Utc::now();
    let tally = Tally {
        fail_on: Some("Poison"),
        panic_on: Some("Panic"),
        ..Tally::new("tally", &schema)
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
        read_model(&schema, "tally").await,
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
    // The server's clock and ours may differ a little.
    assert!(poison.parked_at >= before - eventsourcing_core::chrono::TimeDelta::seconds(5));
    assert_eq!((panic.version, panic.event_type.as_str()), (5, "Panic"));
    assert!(
        panic.error.contains("panicked") && panic.error.contains("tally exploded"),
        "{}",
        panic.error
    );
    assert!(store.parked("other").await.unwrap().is_empty());

    // An operator removes a parked event once dealt with.
    assert!(store.unpark("tally", poison.position).await.unwrap());
    assert!(!store.unpark("tally", poison.position).await.unwrap());
    assert_eq!(store.parked("tally").await.unwrap(), vec![panic.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_progress_independently_and_report_lag() {
    let (store, schema) = fresh().await;
    let stream = Uuid::new_v4();
    let save: Vec<NewEvent> = (1..=100)
        .map(|v| typed(stream, v, if v % 5 == 0 { "Renamed" } else { "Happened" }))
        .collect();
    store.append(save).await.unwrap();
    let end = last_position(&store).await;
    let renames = || Tally {
        types: Some(vec!["Renamed".into()]),
        ..Tally::new("renames", &schema)
    };

    // Nothing recorded yet: every event is lag.
    assert_eq!(store.projection_lag("all").await.unwrap(), 100);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 100);

    let all = spawn_projection(store.clone(), Tally::new("all", &schema), options(30));
    wait_for(&all, end).await;
    all.stop().await.unwrap();
    assert_eq!(store.projection_lag("all").await.unwrap(), 0);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 100);
    assert_eq!(read_model(&schema, "renames").await.events, vec![]);

    // Filtered-out events count as lag until the projection's position passes them.
    let only = spawn_projection(store.clone(), renames(), options(30));
    wait_for(&only, end).await;
    only.stop().await.unwrap();
    assert_eq!(store.projection_lag("renames").await.unwrap(), 0);
    assert_eq!(
        read_model(&schema, "renames").await,
        expected(&store, |e| e.event_type == "Renamed").await
    );
    assert_eq!(read_model(&schema, "all").await.events.len(), 100);

    // New events: both lag by them, independently.
    store
        .append((101..=107).map(|v| event(stream, v)).collect())
        .await
        .unwrap();
    assert_eq!(store.projection_lag("all").await.unwrap(), 7);
    assert_eq!(store.projection_lag("renames").await.unwrap(), 7);
    let all = spawn_projection(store.clone(), Tally::new("all", &schema), options(30));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_of_one_projection_apply_each_event_once() {
    let (store, schema) = fresh().await;
    fill(&store).await;
    let end = last_position(&store).await;
    // A duplicate would break tally_events' primary key, fail the handler and stop a runner.
    // The second runner is on another store instance, as in a second process.
    let other = schema.store().await;
    let a = spawn_projection(store.clone(), Tally::new("tally", &schema), options(20));
    let b = spawn_projection(other, Tally::new("tally", &schema), options(35));
    wait_for(&a, end).await;
    wait_for(&b, end).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    assert_eq!(
        read_model(&schema, "tally").await,
        expected(&store, |_| true).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_setup_ends_the_runner_naming_the_projection() {
    struct Broken;
    impl PostgresProjection for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
            tx.batch_execute("CREATE TABLE nonsense (").await?;
            Ok(())
        }
        async fn handle(&mut self, _: &Transaction<'_>, _: &StoredEvent) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let (store, _schema) = fresh().await;
    let err = spawn_projection(store, Broken, ProjectionOptions::default())
        .join()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`broken`"), "{message}");
    assert!(message.contains("syntax error"), "{message}");
}

/// Another session holds the projection's tracking row: with a short lock timeout the runner's
/// batches fail with `lock_not_available`, back off and retry, and carry on once the lock is
/// gone; held for good, the runner ends with that error after its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_tracking_row_is_retried_then_given_up_on() {
    let schema = TestSchema::new().await;
    let config = schema
        .config()
        .to_builder()
        .lock_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let store = PostgresStore::connect(config).await.unwrap();
    store.append(events(Uuid::new_v4(), 1, 20)).await.unwrap();
    let end = last_position(&store).await;
    let tracking = format!("\"{}\".tracking", schema.name());
    let mut other = schema.client().await.unwrap();
    other
        .execute(
            &format!(
                "INSERT INTO {tracking} (name, position_commit, position_seq) VALUES \
                 ('tally', 0, 0), ('other', 0, 0)"
            ),
            &[],
        )
        .await
        .unwrap();
    let holder = other.transaction().await.unwrap();
    holder
        .execute(
            &format!("SELECT 1 FROM {tracking} WHERE name = 'tally' FOR UPDATE"),
            &[],
        )
        .await
        .unwrap();

    let patient = spawn_projection(
        store.clone(),
        Tally::new("tally", &schema),
        ProjectionOptions {
            attempts: 1000,
            backoff: Duration::from_millis(1),
            ..options(500)
        },
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Wait until it has hit the lock at least once (its setup ran: the tally table exists).
    while !read_model_exists(&schema).await {
        assert!(tokio::time::Instant::now() < deadline, "setup did not run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!patient.is_finished(), "gave up too early");
    assert_eq!(
        store.tracking_position("tally").await.unwrap(),
        Some(Position::START)
    );
    holder.commit().await.unwrap();
    wait_for(&patient, end).await;
    patient.stop().await.unwrap();
    assert_eq!(
        read_model(&schema, "tally").await,
        expected(&store, |_| true).await
    );

    let holder = other.transaction().await.unwrap();
    holder
        .execute(
            &format!("SELECT 1 FROM {tracking} WHERE name = 'other' FOR UPDATE"),
            &[],
        )
        .await
        .unwrap();
    let impatient = spawn_projection(
        store.clone(),
        Tally::new("other", &schema),
        ProjectionOptions {
            attempts: 3,
            backoff: Duration::from_millis(1),
            ..options(500)
        },
    );
    let err = impatient.join().await.unwrap_err();
    assert!(
        err.is_transient(),
        "a lock timeout is worth retrying: {err:?}"
    );
    let Error::Transient(source) = &err else {
        panic!("expected a transient store error, got {err:?}");
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&**source);
    let mut code = None;
    while let Some(e) = cause {
        if let Some(pg) = e.downcast_ref::<eventsourcing_postgres::tokio_postgres::Error>() {
            code = pg.code().cloned();
        }
        cause = e.source();
    }
    assert_eq!(
        code,
        Some(eventsourcing_postgres::tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{err}"
    );
    holder.rollback().await.unwrap();
}

async fn read_model_exists(schema: &TestSchema) -> bool {
    schema
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("\"{}\".tally_events", schema.name())],
        )
        .await
        .unwrap()
        .get(0)
}
