//! `-- sqlite`: the SQLite store (through `Application`) against rusqlite doing the plain
//! equivalent SQL, on the same database file, with the same pragmas, in the same run.
//!
//! Variables: `EVENTSOURCING_BENCH_SQLITE_DIR` (where the database file goes; default the system
//! temporary directory; the file is deleted at the end), `EVENTSOURCING_BENCH_SQLITE_SYNCHRONOUS`
//! (`full`, the store's default, or `normal`), `EVENTSOURCING_BENCH_SAVES` (saves per append
//! figure, default 2000).
//!
//! - `append_1`, `append_10`: events per second, saving new aggregates of 1 or 10 events one after
//!   another (one transaction per save). Raw: `BEGIN IMMEDIATE`, one prepared `INSERT` per event,
//!   `COMMIT`, with the payloads encoded by serde_json.
//! - `load_N`: median milliseconds to load an aggregate of N events. Raw: one prepared `SELECT`
//!   of the stream in version order, decoding each payload with serde_json and folding it.
//! - `load_snap_N`: median milliseconds to load an aggregate of N events saved 100 at a time by
//!   an application snapshotting every 100 events (so N = 10 has no snapshot, and the others
//!   have their newest snapshot at version N: an interval's multiple always gets one, whichever
//!   save reaches it). Ours: `Repository::get` (the snapshot lookup, then the events after it).
//!   Raw: what a hand-written snapshot load does on the same rows of the store's own tables: a
//!   prepared `SELECT` of the newest snapshot row, serde_json decoding of its state, then the
//!   `SELECT` of the events after its version, decoded and folded as in `load_N`.
//! - `catchup`: events per second reading the first 100,000 events of the log from the start
//!   through a `Subscription` (pages of 500). Raw: the same paged `SELECT … WHERE position > ?
//!   ORDER BY position LIMIT 500` on one connection, each row turned into a `StoredEvent`.
//! - `catchup_projection`: events per second for a projection with a no-op handler
//!   (`spawn_projection`, pages of 500) to go through the whole log from the start. Raw: the
//!   paged `SELECT`, and per page one `BEGIN IMMEDIATE` … `INSERT OR REPLACE` of a tracking row
//!   … `COMMIT`, the loop a hand-written exactly-once projection runs.
//! - `live_latency_median`, `live_latency_p99`: milliseconds from `save` returning to a running
//!   projection's handler being called with the saved event (one new aggregate of one event per
//!   save, 500 saves one after another). `live_latency_sub_*`: the same to a `Subscription`
//!   delivering it. Raw, for both: the saving task commits with rusqlite, then hands off with a
//!   `tokio::sync::Notify` to a task that `SELECT`s the new row on its own connection: the
//!   cheapest in-process wake-up by hand (it begins no write transaction, which the projection
//!   line's handler runs inside, so it flatters raw there a little).
//! - `append_8_writers`: events per second, 8 tasks each appending single events to its own
//!   aggregate, all at once. Raw: 8 threads doing `BEGIN IMMEDIATE`, the `INSERT`, `COMMIT` on
//!   one connection behind a mutex, as the store's one writer does (8 connections would instead
//!   wait for each other in SQLite's busy handler, which sleeps in steps of milliseconds; not
//!   measured here). `append_8_writers_live_sub`: ours
//!   while a `Subscription` follows the log live; `append_8_writers_live_projection`: ours while
//!   a projection with a no-op handler follows it live (its batches commit on the same writer);
//!   raw as for `append_8_writers`.
//!
//! Ours and raw alternate save by save (and load by load, round by round), so that drift in the
//! disk's sync latency or the machine's load hits both alike.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use eventsourcing::{
    chrono::{DateTime, Utc},
    prelude::*,
    sqlite::{
        rusqlite::Transaction, spawn_projection, ProjectionOptions, SqliteConfig, SqliteProjection,
        SqliteStore, Synchronous,
    },
    BoxError as CoreBoxError, Position, Snapshotting, StoredEvent, Subscription, Tracking,
};
use rusqlite::{params, Connection, TransactionBehavior};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};

use crate::common::{ours_writers, saved_in_batches};
use crate::{
    common::{
        counter_with, median_ms, per_second, report, AddedPayload, Counter, OpenedPayload, NOTE,
    },
    BoxError,
};

/// The store's `events` table, under another name: the raw baseline writes the same rows.
const RAW_DDL: &str = "CREATE TABLE IF NOT EXISTS raw_events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      BLOB    NOT NULL CHECK (length(stream_id) = 16),
    version        INTEGER NOT NULL CHECK (version >= 1),
    timestamp      INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    metadata       TEXT,
    UNIQUE (stream_id, version)
) STRICT";

const RAW_INSERT: &str = "INSERT INTO raw_events \
    (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)";

const RAW_LOAD: &str = "SELECT version, timestamp, event_type, payload FROM raw_events \
    WHERE stream_id = ?1 ORDER BY version";

const LOADS: usize = 25;

/// Deletes the database files when the benchmark ends, however it ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(crate) async fn run() -> Result<(), BoxError> {
    let dir = std::env::var_os("EVENTSOURCING_BENCH_SQLITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("eventsourcing-bench-{}.db", std::process::id()));
    let cleanup = Cleanup(path.clone());
    let synchronous: Synchronous = match std::env::var("EVENTSOURCING_BENCH_SQLITE_SYNCHRONOUS") {
        Ok(value) => value.parse()?,
        Err(_) => Synchronous::default(),
    };
    let saves: usize = match std::env::var("EVENTSOURCING_BENCH_SAVES") {
        Ok(value) => value.parse()?,
        Err(_) => 2000,
    };
    let dbname = path
        .to_str()
        .ok_or("the temporary path is not UTF-8")?
        .to_owned();
    eprintln!("sqlite: {dbname}, WAL, synchronous={synchronous}, {saves} saves per append figure");

    let store = SqliteStore::open(
        SqliteConfig::builder()
            .dbname(dbname.clone())
            .synchronous(synchronous)
            .build(),
    )
    .await?;
    let app = Application::new(store);
    let mut raw = Raw::open(&dbname, synchronous)?;

    for (figure, events) in [("append_1", 1), ("append_10", 10)] {
        // Warm both paths (statement caches, file growth) before measuring.
        let mut warm: Vec<Counter> = (0..saves / 10).map(|_| counter_with(events)).collect();
        for counter in &mut warm {
            app.save(counter).await?;
            raw.save_stream(events)?;
        }
        // One save of ours, one raw, and so on: drift in the disk's sync latency hits both alike.
        let mut counters: Vec<Counter> = (0..saves).map(|_| counter_with(events)).collect();
        let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
        for counter in &mut counters {
            let start = Instant::now();
            app.save(counter).await?;
            ours += start.elapsed();
            let start = Instant::now();
            raw.save_stream(events)?;
            theirs += start.elapsed();
        }
        report(
            figure,
            per_second(saves * events, ours),
            per_second(saves * events, theirs),
            "events/s",
        );
    }

    append_1_snapshot_10(&app, saves).await?;

    for (figure, events) in [("load_10", 10), ("load_1000", 1000), ("load_10000", 10_000)] {
        let mut counter = counter_with(events);
        app.save(&mut counter).await?;
        let id = counter.id();
        let raw_id = raw.save_stream(events)?;
        // Warm up, and check both loads see the same aggregate.
        let loaded: Counter = app.repository().get(id).await?;
        let folded = raw.load(raw_id)?;
        if (loaded.version(), loaded.total) != (folded.version, folded.total) {
            return Err(format!("{figure}: ours and raw disagree").into());
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..LOADS {
            let start = Instant::now();
            let _: Counter = app.repository().get(id).await?;
            ours.push(start.elapsed());
            let start = Instant::now();
            raw.load(raw_id)?;
            theirs.push(start.elapsed());
        }
        report(figure, median_ms(ours), median_ms(theirs), "ms");
    }

    load_snap(&app, &raw).await?;
    catchup(app.store(), &raw).await?;
    catchup_projection(app.store(), &mut raw).await?;
    live_latency(&app, &dbname, &mut raw).await?;
    append_8_writers(&app, &dbname, synchronous, saves).await?;

    drop(app);
    drop(raw);
    drop(cleanup);
    Ok(())
}

/// What snapshots cost the save path: one-event saves that go on one aggregate, so that every
/// tenth save also writes a snapshot (after its events commit). Here `raw` is not a driver
/// baseline but the same saves of ours without snapshots, so the ratio is the cost itself.
async fn append_1_snapshot_10(
    app: &Application<SqliteStore>,
    saves: usize,
) -> Result<(), BoxError> {
    let with = app.clone().with_snapshotting(Snapshotting::every(10));
    let without = app.clone().with_snapshotting(Snapshotting::disabled());
    let (mut a, mut b) = (counter_with(1), counter_with(1));
    with.save(&mut a).await?;
    without.save(&mut b).await?;
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..saves {
        a.add(1, NOTE.to_owned());
        let start = Instant::now();
        with.save(&mut a).await?;
        ours += start.elapsed();
        b.add(1, NOTE.to_owned());
        let start = Instant::now();
        without.save(&mut b).await?;
        theirs += start.elapsed();
    }
    if with.store().load_snapshot(a.id(), None).await?.is_none() {
        return Err("append_1_snapshot_10 wrote no snapshot".into());
    }
    report(
        "append_1_snapshot_10",
        per_second(saves, ours),
        per_second(saves, theirs),
        "events/s",
    );
    Ok(())
}

/// The snapshot interval of the `load_snap_N` figures.
const SNAPSHOT_EVERY: u64 = 100;
/// Events read by `catchup`, and the page size of both catch-up figures.
const CATCHUP_EVENTS: usize = 100_000;
const PAGE: usize = 500;
/// Rounds of each catch-up figure (ours and raw alternate; the median rate is reported).
const CATCHUP_ROUNDS: usize = 5;
/// Saves timed by each live latency figure.
const LIVE_SAMPLES: usize = 500;

async fn load_snap(app: &Application<SqliteStore>, raw: &Raw) -> Result<(), BoxError> {
    let app = app
        .clone()
        .with_snapshotting(Snapshotting::every(SNAPSHOT_EVERY));
    for (figure, events) in [
        ("load_snap_10", 10),
        ("load_snap_10000", 10_000),
        ("load_snap_100000", 100_000),
    ] {
        let id = saved_in_batches(&app, events, SNAPSHOT_EVERY).await?;
        let loaded: Counter = app.repository().get(id).await?;
        let folded = raw.load_with_snapshot(id)?;
        if (loaded.version(), loaded.total) != (folded.version, folded.total)
            || loaded.version() != events as u64
        {
            return Err(format!("{figure}: ours and raw disagree").into());
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..LOADS {
            let start = Instant::now();
            let _: Counter = app.repository().get(id).await?;
            ours.push(start.elapsed());
            let start = Instant::now();
            raw.load_with_snapshot(id)?;
            theirs.push(start.elapsed());
        }
        report(figure, median_ms(ours), median_ms(theirs), "ms");
    }
    Ok(())
}

async fn catchup(store: &SqliteStore, raw: &Raw) -> Result<(), BoxError> {
    let total = store.read_log(Position::START, usize::MAX).await?.len();
    if total < CATCHUP_EVENTS {
        return Err(format!("catchup: the log has only {total} events").into());
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // The first round warms both (page cache, statement caches) and is not counted.
    for round in 0..=CATCHUP_ROUNDS {
        let start = Instant::now();
        let mut subscription = Subscription::new(store.clone(), Position::START).page_size(PAGE);
        let mut last = Position::START;
        for _ in 0..CATCHUP_EVENTS {
            let event = subscription.next().await?;
            last = std::hint::black_box(event).position;
        }
        let elapsed = start.elapsed();
        let start = Instant::now();
        let raw_last = raw.read_log(CATCHUP_EVENTS, PAGE)?;
        let raw_elapsed = start.elapsed();
        if raw_last != last {
            return Err("catchup: ours and raw disagree".into());
        }
        if round > 0 {
            ours.push(per_second(CATCHUP_EVENTS, elapsed));
            theirs.push(per_second(CATCHUP_EVENTS, raw_elapsed));
        }
    }
    report("catchup", median(ours), median(theirs), "events/s");
    Ok(())
}

/// A projection that does nothing with the events.
struct NoOp(String);

impl SqliteProjection for NoOp {
    fn name(&self) -> &str {
        &self.0
    }

    fn handle(&mut self, _: &Transaction<'_>, event: &StoredEvent) -> Result<(), CoreBoxError> {
        std::hint::black_box(event);
        Ok(())
    }
}

async fn catchup_projection(store: &SqliteStore, raw: &mut Raw) -> Result<(), BoxError> {
    let log = store.read_log(Position::START, usize::MAX).await?;
    let (total, end) = (
        log.len(),
        log.last().map_or(Position::START, |e| e.position),
    );
    drop(log);
    let options = ProjectionOptions {
        page_size: PAGE,
        ..ProjectionOptions::default()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=CATCHUP_ROUNDS {
        let name = format!("bench-catchup-{round}");
        let start = Instant::now();
        let runner = spawn_projection(store.clone(), NoOp(name.clone()), options);
        while runner.position() < end {
            if runner.is_finished() {
                return Err(format!("catchup_projection: {:?}", runner.join().await).into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = start.elapsed();
        runner.stop().await?;
        let start = Instant::now();
        raw.project(&name, PAGE)?;
        let raw_elapsed = start.elapsed();
        if round > 0 {
            ours.push(per_second(total, elapsed));
            theirs.push(per_second(total, raw_elapsed));
        }
    }
    report(
        "catchup_projection",
        median(ours),
        median(theirs),
        "events/s",
    );
    Ok(())
}

/// Sends the time its handler sees each event.
struct Stopwatch(mpsc::UnboundedSender<(Uuid, Instant)>);

impl SqliteProjection for Stopwatch {
    fn name(&self) -> &str {
        "bench-live"
    }

    fn handle(&mut self, _: &Transaction<'_>, event: &StoredEvent) -> Result<(), CoreBoxError> {
        let _ = self.0.send((event.stream_id, Instant::now()));
        Ok(())
    }
}

async fn live_latency(
    app: &Application<SqliteStore>,
    dbname: &str,
    raw: &mut Raw,
) -> Result<(), BoxError> {
    let store = app.store().clone();
    let end = store
        .read_log(Position::START, usize::MAX)
        .await?
        .last()
        .map_or(Position::START, |e| e.position);
    let hour = Duration::from_secs(3600);

    // The projection starts at the end of the log, and is woken by saves only.
    store
        .append_tracked(
            Vec::new(),
            Tracking {
                name: "bench-live".to_owned(),
                position: end,
            },
        )
        .await?;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let runner = spawn_projection(
        store.clone(),
        Stopwatch(tx),
        ProjectionOptions {
            poll_interval: hour,
            ..ProjectionOptions::default()
        },
    );
    let projection = ours_latency(app, &mut seen).await?;
    runner.stop().await?;

    // A subscription from the (new) end of the log, in its own task.
    let end = store
        .read_log(end, usize::MAX)
        .await?
        .last()
        .map_or(end, |e| e.position);
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut subscription = Subscription::new(store.clone(), end).poll_interval(hour);
    let follower = tokio::spawn(async move {
        while let Ok(event) = subscription.next().await {
            if tx.send((event.stream_id, Instant::now())).is_err() {
                break;
            }
        }
    });
    let subscription = ours_latency(app, &mut seen).await?;
    follower.abort();

    let raw_samples = raw_latency(dbname, raw).await?;
    for (figure, samples) in [
        ("live_latency", &projection),
        ("live_latency_sub", &subscription),
    ] {
        report(
            &format!("{figure}_median"),
            quantile_ms(samples, 0.5),
            quantile_ms(&raw_samples, 0.5),
            "ms",
        );
        report(
            &format!("{figure}_p99"),
            quantile_ms(samples, 0.99),
            quantile_ms(&raw_samples, 0.99),
            "ms",
        );
    }
    Ok(())
}

/// Saves one new aggregate at a time and times how long after `save` returns it is seen.
async fn ours_latency(
    app: &Application<SqliteStore>,
    seen: &mut mpsc::UnboundedReceiver<(Uuid, Instant)>,
) -> Result<Vec<Duration>, BoxError> {
    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    for _ in 0..LIVE_SAMPLES {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        let saved = Instant::now();
        let (id, at) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
            .await?
            .ok_or("the live handler stopped")?;
        if id != counter.id() {
            return Err("live_latency: saw another event than the one saved".into());
        }
        // The handler may run before `save` has returned to its caller: that counts as 0.
        samples.push(at.saturating_duration_since(saved));
    }
    Ok(samples)
}

/// Raw hand-off: commit, notify, and a task reading the new row on its own connection.
async fn raw_latency(dbname: &str, raw: &mut Raw) -> Result<Vec<Duration>, BoxError> {
    let reader = Connection::open(dbname)?;
    let after: i64 = reader.query_row(
        "SELECT coalesce(max(position), 0) FROM raw_events",
        [],
        |r| r.get(0),
    )?;
    let notify = Arc::new(Notify::new());
    let (tx, mut seen) = mpsc::unbounded_channel::<Result<(Uuid, Instant), String>>();
    let listener = tokio::spawn({
        let notify = Arc::clone(&notify);
        async move {
            let mut after = after;
            loop {
                notify.notified().await;
                let rows = reader
                    .prepare_cached(
                        "SELECT position, stream_id FROM raw_events WHERE position > ?1 \
                         ORDER BY position",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map([after], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, [u8; 16]>(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    });
                let sent = match rows {
                    Ok(rows) => rows.into_iter().all(|(position, id)| {
                        after = position;
                        tx.send(Ok((Uuid::from_bytes(id), Instant::now()))).is_ok()
                    }),
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        false
                    }
                };
                if !sent {
                    break;
                }
            }
        }
    });
    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    for _ in 0..LIVE_SAMPLES {
        let id = raw.save_stream(1)?;
        let saved = Instant::now();
        notify.notify_one();
        let (seen_id, at) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
            .await?
            .ok_or("the raw listener stopped")??;
        if seen_id != id {
            return Err("live_latency raw: saw another row than the one saved".into());
        }
        samples.push(at.saturating_duration_since(saved));
    }
    listener.abort();
    Ok(samples)
}

/// Concurrent writers of the `append_8_writers` figures, and their rounds.
const WRITERS: usize = 8;
const WRITER_ROUNDS: usize = 3;

async fn append_8_writers(
    app: &Application<SqliteStore>,
    dbname: &str,
    synchronous: Synchronous,
    saves: usize,
) -> Result<(), BoxError> {
    let per_writer = (saves / WRITERS).max(1);
    let total = per_writer * WRITERS;
    let raw = Arc::new(Mutex::new(Raw::open(dbname, synchronous)?));
    let store = app.store().clone();
    ours_writers(WRITERS, app, per_writer / 5).await?;
    raw_writers(&raw, per_writer / 5).await?;
    let (mut ours, mut theirs, mut with_sub, mut with_projection) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..WRITER_ROUNDS {
        ours.push(per_second(
            total,
            ours_writers(WRITERS, app, per_writer).await?,
        ));
        theirs.push(per_second(total, raw_writers(&raw, per_writer).await?));

        let end = log_end(&store).await?;
        let mut subscription = Subscription::new(store.clone(), end);
        let follower = tokio::spawn(async move {
            while let Ok(event) = subscription.next().await {
                std::hint::black_box(event);
            }
        });
        with_sub.push(per_second(
            total,
            ours_writers(WRITERS, app, per_writer).await?,
        ));
        follower.abort();

        let name = format!("bench-8-writers-{round}");
        let end = log_end(&store).await?;
        store
            .append_tracked(
                Vec::new(),
                Tracking {
                    name: name.clone(),
                    position: end,
                },
            )
            .await?;
        let runner = spawn_projection(store.clone(), NoOp(name), ProjectionOptions::default());
        with_projection.push(per_second(
            total,
            ours_writers(WRITERS, app, per_writer).await?,
        ));
        runner.stop().await?;
    }
    let theirs = median(theirs);
    report("append_8_writers", median(ours), theirs, "events/s");
    report(
        "append_8_writers_live_sub",
        median(with_sub),
        theirs,
        "events/s",
    );
    report(
        "append_8_writers_live_projection",
        median(with_projection),
        theirs,
        "events/s",
    );
    Ok(())
}

/// The position of the newest event.
async fn log_end(store: &SqliteStore) -> Result<Position, BoxError> {
    let last: i64 = store
        .query(|tx| {
            tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get(0)
            })
        })
        .await?;
    let last = u64::try_from(last)?;
    Ok(Position {
        commit: last,
        seq: last,
    })
}

/// `WRITERS` threads sharing one connection, each appending `saves` single events to its own
/// new stream.
async fn raw_writers(raw: &Arc<Mutex<Raw>>, saves: usize) -> Result<Duration, BoxError> {
    let raw = Arc::clone(raw);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut streams = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let stream = raw
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .save_stream(1)
                .map_err(|e| e.to_string())?;
            streams.push(stream);
        }
        let start = Instant::now();
        std::thread::scope(|scope| {
            let threads: Vec<_> = streams
                .into_iter()
                .map(|stream| {
                    let raw = &raw;
                    scope.spawn(move || -> Result<(), String> {
                        for i in 0..saves {
                            raw.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .append_one(stream, i as u64 + 2)
                                .map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().map_err(|_| "a raw writer panicked".to_owned())?)
        })?;
        Ok::<_, String>(start.elapsed())
    })
    .await?;
    Ok(outcome?)
}

/// The median of some rates.
fn median(mut rates: Vec<f64>) -> f64 {
    if rates.is_empty() {
        return f64::NAN;
    }
    rates.sort_unstable_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The `q` quantile (nearest rank) of some durations, in milliseconds.
fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// The state in a snapshot row of a `Counter`, as `Application` writes it.
#[derive(Deserialize)]
struct RawSnapshot {
    created_on: DateTime<Utc>,
    state: RawCounterState,
}

#[derive(Deserialize)]
struct RawCounterState {
    label: String,
    total: i64,
    notes: usize,
}

/// rusqlite by hand: one connection, prepared statements, one transaction per save.
struct Raw {
    conn: Connection,
}

/// What the raw load folds an aggregate into.
struct Folded {
    version: u64,
    total: i64,
}

impl Raw {
    fn open(dbname: &str, synchronous: Synchronous) -> Result<Self, BoxError> {
        let conn = Connection::open(dbname)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("raw connection: journal_mode is {mode}").into());
        }
        conn.pragma_update(None, "synchronous", synchronous.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(RAW_DDL)?;
        Ok(Raw { conn })
    }

    /// The events of a new counter, encoded as the raw baseline would.
    fn payloads(events: usize) -> Result<Vec<(&'static str, Vec<u8>)>, BoxError> {
        let mut out = Vec::with_capacity(events);
        out.push((
            "Opened",
            serde_json::to_vec(&OpenedPayload {
                label: "bench".to_owned(),
            })?,
        ));
        for i in 1..events {
            let added = AddedPayload {
                amount: i as i64,
                note: NOTE.to_owned(),
            };
            out.push(("Added", serde_json::to_vec(&added)?));
        }
        Ok(out)
    }

    fn insert_stream(&mut self, stream: Uuid, events: usize) -> Result<(), BoxError> {
        let payloads = Raw::payloads(events)?;
        let timestamp = eventsourcing::now().timestamp_micros();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(RAW_INSERT)?;
            for (i, (event_type, payload)) in payloads.iter().enumerate() {
                insert.execute(params![
                    stream.as_bytes(),
                    i as i64 + 1,
                    timestamp,
                    event_type,
                    1,
                    payload
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One `Added` event at `version` of `stream`, in its own transaction.
    fn append_one(&mut self, stream: Uuid, version: u64) -> Result<(), BoxError> {
        let payload = serde_json::to_vec(&AddedPayload {
            amount: version as i64,
            note: NOTE.to_owned(),
        })?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(RAW_INSERT)?.execute(params![
            stream.as_bytes(),
            i64::try_from(version)?,
            eventsourcing::now().timestamp_micros(),
            "Added",
            1,
            payload
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn save_stream(&mut self, events: usize) -> Result<Uuid, BoxError> {
        let stream = Uuid::new_v4();
        self.insert_stream(stream, events)?;
        Ok(stream)
    }

    /// A hand-written snapshot load from the store's own `snapshots` and `events` tables.
    fn load_with_snapshot(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, state_type, fingerprint, payload FROM snapshots \
             WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1",
        )?;
        let mut rows = stmt.query([stream.as_bytes()])?;
        let (mut folded, mut label, mut notes) = (
            Folded {
                version: 0,
                total: 0,
            },
            String::new(),
            0usize,
        );
        if let Some(row) = rows.next()? {
            let usable = row.get_ref(1)?.as_str()? == Counter::TYPE_NAME
                && u64::from_ne_bytes(row.get::<_, i64>(2)?.to_ne_bytes())
                    == Counter::STATE_FINGERPRINT;
            if usable {
                let snapshot: RawSnapshot = serde_json::from_slice(row.get_ref(3)?.as_blob()?)?;
                folded.version = u64::try_from(row.get::<_, i64>(0)?)?;
                folded.total = snapshot.state.total;
                std::hint::black_box(snapshot.created_on);
                label = snapshot.state.label;
                notes = snapshot.state.notes;
            }
        }
        drop(rows);
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, timestamp, event_type, payload FROM events \
             WHERE stream_id = ?1 AND version > ?2 ORDER BY version",
        )?;
        let mut rows = stmt.query(params![stream.as_bytes(), i64::try_from(folded.version)?])?;
        let mut modified = 0i64;
        while let Some(row) = rows.next()? {
            let version: i64 = row.get(0)?;
            modified = row.get(1)?;
            let event_type = row.get_ref(2)?.as_str()?;
            let payload = row.get_ref(3)?.as_blob()?;
            match event_type {
                "Opened" => label = serde_json::from_slice::<OpenedPayload>(payload)?.label,
                "Added" => {
                    let added: AddedPayload = serde_json::from_slice(payload)?;
                    folded.total += added.amount;
                    notes += usize::from(!added.note.is_empty());
                }
                other => return Err(format!("unknown event type {other}").into()),
            }
            folded.version = u64::try_from(version)?;
        }
        std::hint::black_box((label, notes, modified));
        Ok(folded)
    }

    /// Reads the page of the store's log after `after` into `out`, each row turned into a
    /// `StoredEvent` (what the store's `read_log` returns).
    fn read_page(
        &self,
        after: i64,
        limit: usize,
        out: &mut Vec<StoredEvent>,
    ) -> Result<(), BoxError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT position, stream_id, version, timestamp, event_type, schema_version, \
             payload, metadata FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![after, i64::try_from(limit)?])?;
        while let Some(row) = rows.next()? {
            let position = u64::try_from(row.get::<_, i64>(0)?)?;
            let metadata = match row.get_ref(7)?.as_str_or_null()? {
                None => Metadata::default(),
                Some(json) => serde_json::from_str(json)?,
            };
            out.push(StoredEvent {
                stream_id: Uuid::from_bytes(row.get(1)?),
                version: u64::try_from(row.get::<_, i64>(2)?)?,
                position: Position {
                    commit: position,
                    seq: position,
                },
                event_type: row.get(4)?,
                schema_version: row.get(5)?,
                timestamp: DateTime::from_timestamp_micros(row.get(3)?)
                    .ok_or("timestamp out of range")?,
                payload: row.get(6)?,
                metadata,
                stream_type: String::new(),
                defect: None,
            });
        }
        Ok(())
    }

    /// Reads the first `count` events of the store's log in pages of `page`, and returns the
    /// last one's position.
    fn read_log(&self, count: usize, page: usize) -> Result<Position, BoxError> {
        let mut buffer = Vec::with_capacity(page);
        let (mut after, mut read) = (Position::START, 0usize);
        while read < count {
            buffer.clear();
            self.read_page(
                i64::try_from(after.commit)?,
                page.min(count - read),
                &mut buffer,
            )?;
            let Some(last) = buffer.last() else { break };
            after = last.position;
            read += buffer.len();
            for event in buffer.drain(..) {
                std::hint::black_box(event);
            }
        }
        Ok(after)
    }

    /// A hand-written exactly-once projection with a no-op handler: the paged read, and one
    /// write transaction per page recording the position.
    fn project(&mut self, name: &str, page: usize) -> Result<(), BoxError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS raw_tracking (name TEXT PRIMARY KEY, position INTEGER)",
        )?;
        let mut batch = Vec::with_capacity(page);
        let mut after = 0i64;
        loop {
            batch.clear();
            self.read_page(after, page, &mut batch)?;
            let Some(last) = batch.last() else { break };
            let last = i64::try_from(last.position.commit)?;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for event in &batch {
                std::hint::black_box(event);
            }
            tx.execute(
                "INSERT OR REPLACE INTO raw_tracking (name, position) VALUES (?1, ?2)",
                params![name, last],
            )?;
            tx.commit()?;
            after = last;
        }
        Ok(())
    }

    fn load(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let mut stmt = self.conn.prepare_cached(RAW_LOAD)?;
        let mut rows = stmt.query([stream.as_bytes()])?;
        let mut folded = Folded {
            version: 0,
            total: 0,
        };
        let mut label = String::new();
        let mut notes = 0usize;
        let mut modified = 0i64;
        while let Some(row) = rows.next()? {
            let version: i64 = row.get(0)?;
            modified = row.get(1)?;
            let event_type = row.get_ref(2)?.as_str()?;
            let payload = row.get_ref(3)?.as_blob()?;
            match event_type {
                "Opened" => label = serde_json::from_slice::<OpenedPayload>(payload)?.label,
                "Added" => {
                    let added: AddedPayload = serde_json::from_slice(payload)?;
                    folded.total += added.amount;
                    notes += usize::from(!added.note.is_empty());
                }
                other => return Err(format!("unknown event type {other}").into()),
            }
            folded.version = u64::try_from(version)?;
        }
        std::hint::black_box((label, notes, modified));
        Ok(folded)
    }
}
