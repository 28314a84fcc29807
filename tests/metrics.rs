//! The library's metrics, seen through a recording backend (`metrics-util`'s
//! `DebuggingRecorder`, installed globally for this test binary) after a scripted workload on
//! SQLite and on PostgreSQL: every metric of `eventsourcing::metrics` is present with the counts
//! and labels the script implies, and the pool gauges show a connection in use and a caller
//! waiting while a projection's handler holds the only connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/common/widget.rs"]
mod widget;

#[path = "common/wait.rs"]
mod wait;

#[path = "common/stores.rs"]
mod stores;

use std::{
    collections::HashMap,
    future::Future,
    sync::{mpsc, Arc, Mutex, OnceLock},
    time::Duration,
};

use eventsourcing::{
    metrics as m,
    postgres::{testing::TestSchema, tokio_postgres, PostgresProjection, PostgresStore},
    prelude::*,
    sqlite::{rusqlite, testing::TempGuard, SqliteConfig, SqliteProjection, SqliteStore},
    BoxError, OnError, Position, ProjectionOptions, RunnerHandle, Snapshotting, StoredEvent,
};
use metrics_util::{
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
    CompositeKey, MetricKind,
};
use stores::{caught_up, Projections};
use wait::wait_until;
use widget::WidgetRegistryEndpoint as Widget;

/// What the recorder has seen since a test started: snapshots drain the recorder, so every one
/// taken goes in here (counters added up, histogram samples kept, every gauge value kept).
#[derive(Default)]
struct Seen {
    counters: HashMap<CompositeKey, u64>,
    gauges: HashMap<CompositeKey, Vec<f64>>,
    histograms: HashMap<CompositeKey, Vec<f64>>,
}

type Labels<'a> = &'a [(&'a str, &'a str)];

fn matches(key: &CompositeKey, kind: MetricKind, name: &str, labels: Labels<'_>) -> bool {
    key.kind() == kind
        && key.key().name() == name
        && labels
            .iter()
            .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
}

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            match value {
                DebugValue::Counter(n) => *self.counters.entry(key).or_default() += n,
                DebugValue::Gauge(v) => self.gauges.entry(key).or_default().push(v.0),
                DebugValue::Histogram(vs) => self
                    .histograms
                    .entry(key)
                    .or_default()
                    .extend(vs.iter().map(|v| v.0)),
            }
        }
    }

    /// The sum of the counters `name` whose labels include `labels`.
    fn counter(&self, name: &str, labels: Labels<'_>) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| matches(k, MetricKind::Counter, name, labels))
            .map(|(_, n)| n)
            .sum()
    }

    /// How many samples the histograms `name` whose labels include `labels` received.
    fn samples(&self, name: &str, labels: Labels<'_>) -> usize {
        self.histograms
            .iter()
            .filter(|(k, _)| matches(k, MetricKind::Histogram, name, labels))
            .map(|(_, vs)| vs.len())
            .sum()
    }

    /// Every value the gauges `name` whose labels include `labels` were seen at.
    fn gauge(&self, name: &str, labels: Labels<'_>) -> Vec<f64> {
        self.gauges
            .iter()
            .filter(|(k, _)| matches(k, MetricKind::Gauge, name, labels))
            .flat_map(|(_, vs)| vs.iter().copied())
            .collect()
    }

    /// The label sets the metric `name` was recorded with.
    fn has(&self, name: &str) -> bool {
        self.counters.keys().any(|k| k.key().name() == name)
            || self.gauges.keys().any(|k| k.key().name() == name)
            || self.histograms.keys().any(|k| k.key().name() == name)
    }
}

/// The recorder of this test binary, and one test at a time (they share it).
fn recorder() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in this binary");
        m::describe();
        snapshotter
    })
}

/// How long the gate waits at most to be released (not a timed assertion: only against
/// hanging, generous for a server other test runs keep busy).
const WAIT: Duration = Duration::from_secs(300);
/// How many log reads the PostgreSQL workload tries at most.
const PATIENCE: u64 = 30_000;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A handler that, on the first event it sees, says so and waits to be released: it then holds
/// its connection (SQLite: the writer; PostgreSQL: a pooled connection).
struct Gate {
    entered: Option<mpsc::Sender<()>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Gate {
    fn new() -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Gate {
            entered: Some(entered_tx),
            release: Arc::new(Mutex::new(release_rx)),
        };
        (gate, entered_rx, release_tx)
    }

    /// Blocks the calling thread the first time.
    fn pass(&mut self) {
        if let Some(entered) = self.entered.take() {
            entered.send(()).unwrap();
            let release = self.release.lock().unwrap();
            release.recv_timeout(WAIT).unwrap();
        }
    }
}

/// Fails on every `NameUpdated`, and holds the gate on its first event (if it has one).
struct Picky {
    name: &'static str,
    gate: Option<Gate>,
}

impl Picky {
    fn check(&mut self, event: &StoredEvent) -> Result<(), BoxError> {
        if let Some(gate) = &mut self.gate {
            gate.pass();
        }
        if event.event_type == "NameUpdated" {
            return Err("renames are not wanted here".into());
        }
        Ok(())
    }
}

impl SqliteProjection for Picky {
    fn name(&self) -> &str {
        self.name
    }

    fn handle(
        &mut self,
        _tx: &rusqlite::Transaction<'_>,
        event: &StoredEvent,
    ) -> Result<(), BoxError> {
        self.check(event)
    }
}

impl PostgresProjection for Picky {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(
        &mut self,
        _tx: &tokio_postgres::Transaction<'_>,
        event: &StoredEvent,
    ) -> Result<(), BoxError> {
        // Blocking this worker thread while the connection stays checked out.
        tokio::task::block_in_place(|| self.check(event))
    }
}

fn widget(name: &str) -> Widget {
    Widget::create(
        format!("https://example.com/{name}"),
        name.to_owned(),
        "tenant".to_owned(),
    )
}

/// What the script did, to compare with what the recorder saw.
#[derive(Debug, Default)]
struct Script {
    saves: u64,
    events: u64,
    conflicts: u64,
    snapshots: u64,
    loads_none: usize,
    loads_hit: u64,
    loads_miss: u64,
    renames: u64,
    registered: u64,
}

/// Saves, a conflict, snapshots, loads with and without them (the same on every store).
async fn saves_and_loads<S: EventStore + Clone>(store: &S, script: &mut Script) {
    let plain = Application::new(store.clone());
    let snapping = Application::new(store.clone()).with_snapshotting(Snapshotting::every(2));

    // Three saves of one new widget each.
    let mut a = plain.create(widget("a")).await.unwrap();
    let mut b = plain.create(widget("b")).await.unwrap();
    plain.create(widget("c")).await.unwrap();
    script.saves += 3;
    script.events += 3;
    script.registered += 3;

    // One save of two renames.
    a.rename("a2").unwrap();
    b.rename("b2").unwrap();
    plain.save((&mut a, &mut b)).await.unwrap();
    script.saves += 1;
    script.events += 2;
    script.renames += 2;

    // A snapshotting application: the second event of `d` crosses the interval.
    let d = snapping.create(widget("d")).await.unwrap();
    snapping
        .update::<Widget, _, _>(d.id(), |d| d.rename("d2"))
        .await
        .unwrap();
    script.saves += 2;
    script.events += 2;
    script.registered += 1;
    script.renames += 1;
    script.snapshots += 1;
    script.loads_miss += 1; // `update` loaded `d` at version 1: no snapshot yet.

    // Two loads of `a`, two renames: the first save wins, the second conflicts.
    let mut first: Widget = plain.repository().get(a.id()).await.unwrap();
    let mut second: Widget = plain.repository().get(a.id()).await.unwrap();
    script.loads_none += 2;
    first.rename("a3").unwrap();
    second.rename("a4").unwrap();
    plain.save(&mut first).await.unwrap();
    script.saves += 1;
    script.events += 1;
    script.renames += 1;
    let lost = plain.save(&mut second).await.unwrap_err();
    assert!(lost.is_conflict(), "{lost}");
    script.conflicts += 1;

    // Loads with a snapshot (`d`) and without one where the type snapshots (`a`).
    let d: Widget = snapping.repository().get(d.id()).await.unwrap();
    assert_eq!(d.name, "d2");
    script.loads_hit += 1;
    let a: Widget = snapping.repository().get(a.id()).await.unwrap();
    assert_eq!(a.name, "a3");
    script.loads_miss += 1;
}

fn assert_saves_and_loads(seen: &Seen, store: &str, script: &Script) {
    let ty = <Widget as Aggregate>::TYPE_NAME;
    let labels: Labels<'_> = &[("aggregate_type", ty), ("store", store)];
    assert_eq!(seen.counter(m::SAVES, labels), script.saves);
    assert_eq!(seen.counter(m::EVENTS_APPENDED, labels), script.events);
    let conflict: Labels<'_> = &[("store", store), ("reason", "conflict")];
    assert_eq!(seen.counter(m::SAVE_FAILURES, conflict), script.conflicts);
    assert_eq!(
        seen.samples(m::SAVE_DURATION, labels),
        (script.saves + script.conflicts) as usize
    );
    assert_eq!(seen.counter(m::SNAPSHOTS_WRITTEN, labels), script.snapshots);
    assert_eq!(seen.counter(m::SNAPSHOT_HITS, labels), script.loads_hit);
    assert_eq!(seen.counter(m::SNAPSHOT_MISSES, labels), script.loads_miss);
    let load = |snapshot| {
        seen.samples(
            m::LOAD_DURATION,
            &[
                ("aggregate_type", ty),
                ("store", store),
                ("snapshot", snapshot),
            ],
        )
    };
    assert_eq!(load("none"), script.loads_none);
    assert_eq!(load("hit"), script.loads_hit as usize);
    assert_eq!(load("miss"), script.loads_miss as usize);
}

/// The projection figures of `name` after it handled `events` in `batches` batches.
///
/// `batches` is `None` for PostgreSQL: it may hand out the log in more pages than the script
/// implies while another session's transaction holds the log's horizon back.
fn assert_projection(seen: &Seen, store: &str, name: &str, batches: Option<u64>, events: u64) {
    let labels: Labels<'_> = &[("projection", name), ("store", store)];
    let committed = seen.counter(m::PROJECTION_BATCHES, labels);
    match batches {
        Some(batches) => assert_eq!(committed, batches, "{name}"),
        None => assert!(committed >= 1, "{name}"),
    }
    assert_eq!(seen.counter(m::PROJECTION_EVENTS, labels), events, "{name}");
    assert!(seen.samples(m::PROJECTION_BATCH_DURATION, labels) >= committed as usize);
    // Caught up with the log: the last lag it set is 0.
    assert_eq!(
        seen.gauge(m::PROJECTION_LAG_SECONDS, labels).last(),
        Some(&0.0),
        "{name}"
    );
}

/// Takes snapshots until `done` holds for what was seen (a deadline only against hanging).
async fn until(seen: &mut Seen, snapshotter: &Snapshotter, done: impl Fn(&Seen) -> bool) {
    wait_until("the recorder shows what was awaited", || {
        seen.take(snapshotter);
        std::future::ready(done(seen))
    })
    .await;
}

fn options(on_error: OnError) -> ProjectionOptions {
    ProjectionOptions {
        on_error,
        poll_interval: Duration::from_millis(50),
        ..ProjectionOptions::default()
    }
}

/// The recorder, this test's turn with it, and what it has seen since (nothing yet).
async fn start() -> (
    &'static Snapshotter,
    tokio::sync::MutexGuard<'static, ()>,
    Seen,
) {
    let snapshotter = recorder();
    let turn = SERIAL.lock().await;
    // Drains what earlier tests left in the recorder.
    Seen::default().take(snapshotter);
    (snapshotter, turn, Seen::default())
}

/// A store of the workload: its own `spawn_projection`.
trait Spawn: Projections {
    fn spawn(&self, projection: Picky, options: ProjectionOptions) -> RunnerHandle;
}

impl Spawn for SqliteStore {
    fn spawn(&self, projection: Picky, options: ProjectionOptions) -> RunnerHandle {
        eventsourcing::sqlite::spawn_projection(self.clone(), projection, options)
    }
}

impl Spawn for PostgresStore {
    fn spawn(&self, projection: Picky, options: ProjectionOptions) -> RunnerHandle {
        eventsourcing::postgres::spawn_projection(self.clone(), projection, options)
    }
}

/// Starts the parking projection `parks`, whose handler holds its connection on its first
/// event; then `waiter`, which needs that connection: the pool gauges with `role`'s labels show
/// a connection in use and a caller waiting. Then releases the handler; returns the runner and
/// what `waiter` gave.
async fn held_while_waiting<S: Spawn, T: Send + 'static>(
    store: &S,
    seen: &mut Seen,
    snapshotter: &Snapshotter,
    role: Labels<'_>,
    waiter: impl Future<Output = T> + Send + 'static,
) -> (RunnerHandle, T) {
    let (gate, entered, release) = Gate::new();
    let parks = Picky {
        name: "parks",
        gate: Some(gate),
    };
    let handle = store.spawn(parks, options(OnError::Park));
    tokio::task::spawn_blocking(move || entered.recv_timeout(WAIT).unwrap())
        .await
        .unwrap();
    let waiting = tokio::spawn(waiter);
    until(seen, snapshotter, |s| {
        s.gauge(m::POOL_WAITING, role).contains(&1.0)
    })
    .await;
    assert!(seen.gauge(m::POOL_IN_USE, role).contains(&1.0));
    release.send(()).unwrap();
    (handle, waiting.await.unwrap())
}

/// Once `parks` has caught up, stops it; then runs the stopping projection `stops`, which
/// commits the events before the first rename and ends with an error.
async fn stop_parks_then_run_stops<S: Spawn>(store: &S, parks: RunnerHandle) {
    caught_up(store, "parks").await;
    parks.stop().await.unwrap();
    let stops = Picky {
        name: "stops",
        gate: None,
    };
    let handle = store.spawn(stops, options(OnError::Stop));
    wait_until("the stopping projection ends", || {
        std::future::ready(handle.is_finished())
    })
    .await;
    assert!(handle.join().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_workload_records_every_metric() {
    let (snapshotter, _one_at_a_time, mut seen) = start().await;

    let guard = TempGuard::new();
    let store = SqliteStore::open(SqliteConfig::new(guard.dbname()))
        .await
        .unwrap();
    assert_eq!(store.store_kind(), "sqlite");
    let mut script = Script::default();
    saves_and_loads(&store, &mut script).await;

    // One log read, before any projection reads the log.
    let log = store.read_log(Position::START, 100).await.unwrap();
    assert_eq!(log.len() as u64, script.events);
    seen.take(snapshotter);
    assert_saves_and_loads(&seen, "sqlite", &script);
    let sqlite: Labels<'_> = &[("store", "sqlite")];
    assert_eq!(seen.counter(m::LOG_READS, sqlite), 1);
    assert_eq!(seen.counter(m::LOG_EVENTS_READ, sqlite), script.events);
    assert_eq!(seen.samples(m::LOG_READ_DURATION, sqlite), 1);

    // The lag of a projection that has not run: every event.
    assert_eq!(store.projection_lag("parks").await.unwrap(), script.events);

    // A parking projection whose first event holds the writer while a save waits for it.
    let app = Application::new(store.clone());
    let save = async move { app.create(widget("e")).await.map(|_| ()) };
    let writer: Labels<'_> = &[("store", "sqlite"), ("role", "writer")];
    let (parks, saved) = held_while_waiting(&store, &mut seen, snapshotter, writer, save).await;
    saved.unwrap();
    script.saves += 1;
    script.events += 1;
    script.registered += 1;
    stop_parks_then_run_stops(&store, parks).await;

    seen.take(snapshotter);
    assert_saves_and_loads(&seen, "sqlite", &script);
    // The first batch held the 8 events there were; the save it blocked came in a second one.
    assert_projection(&seen, "sqlite", "parks", Some(2), script.events);
    // Widgets a, b, c registered before the first rename.
    assert_projection(&seen, "sqlite", "stops", Some(1), 3);
    let failures = |name, outcome| {
        seen.counter(
            m::PROJECTION_FAILURES,
            &[("projection", name), ("outcome", outcome)],
        )
    };
    assert_eq!(failures("parks", "parked"), script.renames);
    assert_eq!(failures("parks", "stopped"), 0);
    assert_eq!(failures("stops", "stopped"), 1);
    assert_eq!(failures("stops", "parked"), 0);
    let lag = seen.gauge(
        m::PROJECTION_LAG_EVENTS,
        &[("projection", "parks"), ("store", "sqlite")],
    );
    assert_eq!(lag.first(), Some(&((script.events - 1) as f64)));
    assert_eq!(lag.last(), Some(&0.0));
    assert!(seen.counter(m::LOG_READS, sqlite) > 1);
    // Everything given back.
    assert_eq!(seen.gauge(m::POOL_WAITING, writer).last(), Some(&0.0));
    assert_eq!(seen.gauge(m::POOL_IN_USE, writer).last(), Some(&0.0));
    assert!(seen.has(m::POOL_IN_USE) && seen.has(m::POOL_WAITING));
    assert_eq!(script.registered + script.renames, script.events);
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_workload_records_every_metric_and_the_pool() {
    let (snapshotter, _one_at_a_time, mut seen) = start().await;

    let schema = TestSchema::new().await;
    // One connection: while the projection's handler holds it, every other caller waits.
    let config = schema
        .config()
        .to_builder()
        .pool_size(1)
        .max_overflow(0)
        .build()
        .unwrap();
    let store = PostgresStore::connect(config).await.unwrap();
    assert_eq!(store.store_kind(), "postgres");
    let mut script = Script::default();
    saves_and_loads(&store, &mut script).await;

    // Reads until every event is there: another session's running transaction (tests run in
    // parallel on the server) may hold the newest ones back for a while.
    let (mut reads, mut read) = (0, Vec::new());
    while (read.len() as u64) < script.events && reads < PATIENCE {
        let after = read
            .last()
            .map_or(Position::START, |e: &StoredEvent| e.position);
        read.extend(store.read_log(after, 100).await.unwrap());
        reads += 1;
    }
    assert_eq!(read.len() as u64, script.events);
    seen.take(snapshotter);
    assert_saves_and_loads(&seen, "postgres", &script);
    let pg: Labels<'_> = &[("store", "postgres")];
    assert_eq!(seen.counter(m::LOG_READS, pg), reads);
    assert_eq!(seen.counter(m::LOG_EVENTS_READ, pg), script.events);
    assert_eq!(seen.samples(m::LOG_READ_DURATION, pg), reads as usize);
    assert_eq!(store.projection_lag("parks").await.unwrap(), script.events);

    // A parking projection whose first event holds the only connection while a read waits.
    let reader = store.clone();
    let read = async move { reader.stream_version(Uuid::new_v4()).await };
    let pooled: Labels<'_> = &[("store", "postgres"), ("role", "pooled")];
    let (parks, version) = held_while_waiting(&store, &mut seen, snapshotter, pooled, read).await;
    assert_eq!(version.unwrap(), 0);
    stop_parks_then_run_stops(&store, parks).await;

    seen.take(snapshotter);
    assert_saves_and_loads(&seen, "postgres", &script);
    assert_projection(&seen, "postgres", "parks", None, script.events);
    assert_projection(&seen, "postgres", "stops", None, 3);
    let failures = |name, outcome| {
        seen.counter(
            m::PROJECTION_FAILURES,
            &[
                ("projection", name),
                ("store", "postgres"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(failures("parks", "parked"), script.renames);
    assert_eq!(failures("stops", "stopped"), 1);
    let lag = seen.gauge(
        m::PROJECTION_LAG_EVENTS,
        &[("projection", "parks"), ("store", "postgres")],
    );
    assert_eq!(lag.first(), Some(&(script.events as f64)));
    assert_eq!(lag.last(), Some(&0.0));
    assert_eq!(seen.gauge(m::POOL_WAITING, pooled).last(), Some(&0.0));
    drop(store);
    drop(schema);
}

/// The spans the library opens, with their fields, as a `tracing` subscriber sees them.
#[derive(Default)]
struct Spans(Mutex<Vec<(String, String)>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = String::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), fields));
        tracing::span::Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, fields)) = spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// On one thread, so that the subscriber set for it sees every span of the workload.
#[tokio::test(flavor = "current_thread")]
async fn spans_name_the_aggregate_the_stream_and_the_projection() {
    let _one_at_a_time = SERIAL.lock().await;
    let spans = Arc::new(Spans::default());
    let _subscriber = tracing::subscriber::set_default(Arc::clone(&spans));
    let guard = TempGuard::new();
    let store = SqliteStore::open(SqliteConfig::new(guard.dbname()))
        .await
        .unwrap();
    let app = Application::new(store.clone()).with_snapshotting(Snapshotting::every(2));
    let mut w = app.create(widget("spans")).await.unwrap();
    w.rename("spans2").unwrap();
    app.save(&mut w).await.unwrap();
    let _: Widget = app.repository().get(w.id()).await.unwrap();
    let log = store.read_log(Position::START, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    let projection = Picky {
        name: "spanned",
        gate: None,
    };
    let handle = store.spawn(projection, options(OnError::Park));
    caught_up(&store, "spanned").await;
    handle.stop().await.unwrap();

    let spans = spans.0.lock().unwrap();
    let find = |name: &str, with: &[String]| {
        spans
            .iter()
            .any(|(n, fields)| n == name && with.iter().all(|w| fields.contains(w.as_str())))
    };
    let ty = format!("aggregate_type=\"{}\"", <Widget as Aggregate>::TYPE_NAME);
    let id = format!("stream_id={}", w.id());
    assert!(find(
        "eventsourcing.save",
        &[ty.clone(), id.clone(), "events=1".into()]
    ));
    assert!(find(
        "eventsourcing.load",
        &[ty, id, "snapshot=\"hit\"".into()]
    ));
    assert!(find(
        "eventsourcing.read_log",
        &["store=\"sqlite\"".into(), "events=2".into()]
    ));
    assert!(find(
        "eventsourcing.projection_batch",
        &["projection=spanned".into(), "events=2".into()]
    ));
}
