//! `-- postgres`: the PostgreSQL store (through `Application`) against raw tokio-postgres doing
//! the plain equivalent SQL on its own table in its own schema, on the same server, in the
//! same run.
//!
//! Variables: `EVENTSOURCING_BENCH_POSTGRES_URL` (default
//! `postgresql://root@127.0.0.1:5432/test`; both sides connect without TLS),
//! `EVENTSOURCING_BENCH_SAVES` (saves per append figure, default 2000). Two schemas
//! `es_bench_{ours,raw}_<pid>` are created and dropped at the end.
//!
//! - `append_1`, `append_10`: events per second, saving new aggregates of 1 or 10 events one
//!   after another. Raw: one prepared single-row `INSERT`, or one prepared `INSERT … SELECT FROM
//!   unnest(…)` of the 10 rows, autocommitted, payloads encoded by serde_json.
//! - `append_1_next`: events per second, one event appended to an existing aggregate per save
//!   (ours pays its contiguity guard here). Raw: the single-row `INSERT` of the next version.
//! - `append_8_writers`: events per second, 8 tasks each appending single events to its own
//!   aggregate, all at once, with the store's never-skipping log order in force. Raw: 8
//!   connections doing the single-row `INSERT`.
//! - `append_8_writers_live_sub`: `append_8_writers` while a `Subscription` follows the log
//!   live (woken by every save, reading each new event). Raw: the same raw 8-writer figure
//!   (raw has no subscriber), measured in the same rounds.
//! - `load_N`: median milliseconds to load an aggregate of N events. Raw: one prepared `SELECT`
//!   of the stream in version order, decoding each payload with serde_json and folding it.
//! - `load_snap_N`: median milliseconds to load an aggregate of N events saved 100 at a time by
//!   an application snapshotting every 100 events (N = 10 has no snapshot; the others have
//!   their newest snapshot at version N). Ours: `Repository::get` (the snapshot, then the events
//!   after it). Raw: what a hand-written snapshot load does on the same rows of the store's own
//!   tables: a prepared `SELECT` of the newest snapshot row, serde_json decoding of its state,
//!   then the prepared `SELECT` of the events after its version, decoded and folded as in
//!   `load_N`.
//! - `catchup`: events per second reading the first 100,000 events of the log from the start
//!   through a `Subscription` (pages of 500). Raw: the same rows of the store's table in the same
//!   order, paged the same way with a prepared `SELECT … WHERE (tx_id, position) > ($1, $2)
//!   ORDER BY tx_id, position LIMIT 500` on one connection (the store's query without its
//!   never-skip horizon), each row turned into a `StoredEvent`.
//! - `live_latency_median`, `live_latency_p99`: milliseconds from `save` returning to a running
//!   `Subscription` (in its own task, poll interval an hour) delivering the saved event (one new
//!   aggregate of one event per save, 500 saves one after another). Raw: the saving task commits
//!   its `INSERT`, then hands off with a `tokio::sync::Notify` to a task that `SELECT`s the new
//!   row (by an index on `position` created for this figure) on its own connection: the
//!   cheapest in-process wake-up by hand, with no never-skip check and no `NOTIFY` to other
//!   processes.
//!
//! Ours and raw alternate in rounds so that drift hits both alike; each append figure is the
//! median of the rounds' rates. The raw table is the store's `events` table without what the
//! log order costs (the `tx_id` column and its index) and without the BRIN time index.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use eventsourcing::{
    chrono::{DateTime, Utc},
    postgres::{PostgresConfig, PostgresStore, SslMode},
    prelude::*,
    Position, Snapshotting, StoredEvent, Subscription,
};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{
    types::{FromSql, Json, Type},
    Client, NoTls, Statement,
};

use crate::common::{ours_writers, saved_in_batches};
use crate::{
    common::{
        counter_with, median_ms, per_second, report, AddedPayload, Counter, OpenedPayload, NOTE,
    },
    BoxError,
};

const DEFAULT_URL: &str = "postgresql://root@127.0.0.1:5432/test";
const ROUNDS: usize = 5;
const LOADS: usize = 51;
const WRITERS: usize = 8;

pub(crate) async fn run() -> Result<(), BoxError> {
    let url = std::env::var("EVENTSOURCING_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let saves: usize = match std::env::var("EVENTSOURCING_BENCH_SAVES") {
        Ok(value) => value.parse()?,
        Err(_) => 2000,
    };
    let ours_schema = format!("es_bench_ours_{}", std::process::id());
    let raw_schema = format!("es_bench_raw_{}", std::process::id());

    let config: PostgresConfig = url.parse()?;
    println!(
        "# postgres: {}:{}/{}, no TLS, {saves} saves per append figure",
        config.host(),
        config.port(),
        config.dbname().unwrap_or("?")
    );
    let mut raw_config: tokio_postgres::Config = config.tokio_postgres_config().clone();
    raw_config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let admin = Raw::connect(&raw_config).await?;

    let result = async {
        let store = PostgresStore::connect(
            config
                .to_builder()
                .schema(ours_schema.as_str())
                .ssl_mode(SslMode::Disable)
                .pool_size(WRITERS as u32)
                .max_overflow(2)
                .build()?,
        )
        .await?;
        let app = Application::new(store);
        admin.client.batch_execute(&raw_ddl(&raw_schema)).await?;
        let mut raws = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            raws.push(Arc::new(
                Raw::connect(&raw_config)
                    .await?
                    .prepare(&raw_schema)
                    .await?,
            ));
        }
        figures(&app, &raws, saves).await?;
        let reader = Raw::connect(&raw_config)
            .await?
            .reader(&ours_schema)
            .await?;
        load_snap(&app, &reader).await?;
        catchup(app.store(), &reader).await?;
        live_latency(&app, &raws[0], &raw_config, &raw_schema).await
    }
    .await;

    for schema in [&ours_schema, &raw_schema] {
        if let Err(e) = admin
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
        {
            eprintln!("warning: could not drop schema {schema}: {e}");
        }
    }
    result
}

async fn figures(
    app: &Application<PostgresStore>,
    raws: &[Arc<Prepared>],
    saves: usize,
) -> Result<(), BoxError> {
    let raw = &raws[0];
    let per_round = (saves / ROUNDS).max(1);

    for (figure, events) in [("append_1", 1), ("append_10", 10)] {
        // Warm both paths (prepared statements, pool, table growth) before measuring.
        ours_append_new(app, events, saves / 10).await?;
        raw.append_new(events, saves / 10).await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let elapsed = ours_append_new(app, events, per_round).await?;
            ours.push(per_second(per_round * events, elapsed));
            let elapsed = raw.append_new(events, per_round).await?;
            theirs.push(per_second(per_round * events, elapsed));
        }
        report(figure, median(ours), median(theirs), "events/s");
    }

    {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        let mut stream = raw.new_stream().await?;
        ours_append_next(app, &mut counter, saves / 10).await?;
        raw.append_next(&mut stream, saves / 10).await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let elapsed = ours_append_next(app, &mut counter, per_round).await?;
            ours.push(per_second(per_round, elapsed));
            let elapsed = raw.append_next(&mut stream, per_round).await?;
            theirs.push(per_second(per_round, elapsed));
        }
        report("append_1_next", median(ours), median(theirs), "events/s");
    }

    {
        // Each writer appends `per_writer` single events per round to its own aggregate.
        let per_writer = per_round;
        ours_writers(WRITERS, app, per_writer / 5).await?;
        raw_writers(raws, per_writer / 5).await?;
        let (mut ours, mut theirs, mut with_sub) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let elapsed = ours_writers(WRITERS, app, per_writer).await?;
            ours.push(per_second(per_writer * WRITERS, elapsed));
            let elapsed = raw_writers(raws, per_writer).await?;
            theirs.push(per_second(per_writer * WRITERS, elapsed));

            // The same with a subscription following the log live from its end.
            let end = log_end(app.store()).await?;
            let mut subscription = Subscription::new(app.store().clone(), end);
            let follower = tokio::spawn(async move {
                while let Ok(event) = subscription.next().await {
                    std::hint::black_box(event);
                }
            });
            let elapsed = ours_writers(WRITERS, app, per_writer).await?;
            with_sub.push(per_second(per_writer * WRITERS, elapsed));
            follower.abort();
        }
        let theirs = median(theirs);
        report("append_8_writers", median(ours), theirs, "events/s");
        report(
            "append_8_writers_live_sub",
            median(with_sub),
            theirs,
            "events/s",
        );
    }

    for (figure, events) in [("load_10", 10), ("load_1000", 1000), ("load_10000", 10_000)] {
        let mut counter = counter_with(events);
        app.save(&mut counter).await?;
        let id = counter.id();
        let raw_id = raw.save_stream(events).await?;
        // Warm up, and check both loads see the same aggregate.
        let loaded: Counter = app.repository().get(id).await?;
        let folded = raw.load(raw_id).await?;
        if (loaded.version(), loaded.total) != (folded.version, folded.total) {
            return Err(format!("{figure}: ours and raw disagree").into());
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..LOADS {
            let start = Instant::now();
            let _: Counter = app.repository().get(id).await?;
            ours.push(start.elapsed());
            let start = Instant::now();
            raw.load(raw_id).await?;
            theirs.push(start.elapsed());
        }
        report(figure, median_ms(ours), median_ms(theirs), "ms");
    }
    Ok(())
}

/// Saves `saves` new counters of `events` events each, one save at a time.
async fn ours_append_new(
    app: &Application<PostgresStore>,
    events: usize,
    saves: usize,
) -> Result<Duration, BoxError> {
    let mut counters: Vec<Counter> = (0..saves).map(|_| counter_with(events)).collect();
    let start = Instant::now();
    for counter in &mut counters {
        app.save(counter).await?;
    }
    Ok(start.elapsed())
}

/// Appends `saves` single events to an existing counter, one save each.
async fn ours_append_next(
    app: &Application<PostgresStore>,
    counter: &mut Counter,
    saves: usize,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    for i in 0..saves {
        counter.add(i as i64, NOTE.to_owned());
        app.save(&mut *counter).await?;
    }
    Ok(start.elapsed())
}

async fn raw_writers(raws: &[Arc<Prepared>], saves: usize) -> Result<Duration, BoxError> {
    let mut streams = Vec::with_capacity(WRITERS);
    for raw in raws.iter().take(WRITERS) {
        streams.push((Arc::clone(raw), raw.new_stream().await?));
    }
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(raw, mut stream)| {
            tokio::spawn(async move {
                match raw.append_next(&mut stream, saves).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The store's `events` table, less what the log order costs (`tx_id` and its index) and the
/// BRIN time index: what a plain implementation would create.
fn raw_ddl(schema: &str) -> String {
    format!(
        "CREATE SCHEMA \"{schema}\";
         CREATE TABLE \"{schema}\".events (
             stream_id      uuid        NOT NULL,
             version        bigint      NOT NULL,
             position       bigserial,
             timestamp      timestamptz NOT NULL,
             event_type     text        NOT NULL,
             schema_version integer     NOT NULL,
             payload        bytea       NOT NULL,
             metadata       jsonb,
             PRIMARY KEY (stream_id, version)
         );"
    )
}

/// One raw tokio-postgres connection.
struct Raw {
    client: Client,
}

impl Raw {
    async fn connect(config: &tokio_postgres::Config) -> Result<Self, BoxError> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("raw connection: {e}");
            }
        });
        Ok(Raw { client })
    }

    async fn prepare(self, schema: &str) -> Result<Prepared, BoxError> {
        let table = format!("\"{schema}\".events");
        let insert_one = self
            .client
            .prepare(&format!(
                "INSERT INTO {table} \
                 (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)"
            ))
            .await?;
        let insert_many = self
            .client
            .prepare(&format!(
                "INSERT INTO {table} \
                 (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                      $5::int4[], $6::bytea[], $7::jsonb[])"
            ))
            .await?;
        let load = self
            .client
            .prepare(&format!(
                "SELECT version, timestamp, event_type, payload FROM {table} \
                 WHERE stream_id = $1 ORDER BY version"
            ))
            .await?;
        Ok(Prepared {
            client: self.client,
            insert_one,
            insert_many,
            load,
        })
    }
}

/// A raw connection with its prepared statements.
struct Prepared {
    client: Client,
    insert_one: Statement,
    insert_many: Statement,
    load: Statement,
}

/// A raw stream being appended to.
struct RawStream {
    id: Uuid,
    version: i64,
}

/// What the raw load folds an aggregate into.
struct Folded {
    version: u64,
    total: i64,
}

impl Prepared {
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

    async fn insert_stream(&self, stream: Uuid, events: usize) -> Result<(), BoxError> {
        let payloads = Prepared::payloads(events)?;
        let timestamp = eventsourcing::now();
        if events == 1 {
            let (event_type, payload) = &payloads[0];
            self.client
                .execute(
                    &self.insert_one,
                    &[&stream, &1i64, &timestamp, event_type, &1i32, payload],
                )
                .await?;
            return Ok(());
        }
        let n = payloads.len();
        let ids = vec![stream; n];
        let versions: Vec<i64> = (1..=n as i64).collect();
        let timestamps = vec![timestamp; n];
        let types: Vec<&str> = payloads.iter().map(|(t, _)| *t).collect();
        let schema_versions = vec![1i32; n];
        let bodies: Vec<&[u8]> = payloads.iter().map(|(_, p)| p.as_slice()).collect();
        let metadata: Vec<Option<serde_json::Value>> = vec![None; n];
        self.client
            .execute(
                &self.insert_many,
                &[
                    &ids,
                    &versions,
                    &timestamps,
                    &types,
                    &schema_versions,
                    &bodies,
                    &metadata,
                ],
            )
            .await?;
        Ok(())
    }

    async fn append_new(&self, events: usize, saves: usize) -> Result<Duration, BoxError> {
        let start = Instant::now();
        for _ in 0..saves {
            self.insert_stream(Uuid::new_v4(), events).await?;
        }
        Ok(start.elapsed())
    }

    async fn new_stream(&self) -> Result<RawStream, BoxError> {
        let id = Uuid::new_v4();
        self.insert_stream(id, 1).await?;
        Ok(RawStream { id, version: 1 })
    }

    async fn append_next(
        &self,
        stream: &mut RawStream,
        saves: usize,
    ) -> Result<Duration, BoxError> {
        let start = Instant::now();
        for i in 0..saves {
            let payload = serde_json::to_vec(&AddedPayload {
                amount: i as i64,
                note: NOTE.to_owned(),
            })?;
            stream.version += 1;
            self.client
                .execute(
                    &self.insert_one,
                    &[
                        &stream.id,
                        &stream.version,
                        &eventsourcing::now(),
                        &"Added",
                        &1i32,
                        &payload,
                    ],
                )
                .await?;
        }
        Ok(start.elapsed())
    }

    async fn save_stream(&self, events: usize) -> Result<Uuid, BoxError> {
        let stream = Uuid::new_v4();
        self.insert_stream(stream, events).await?;
        Ok(stream)
    }

    async fn load(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let rows = self.client.query(&self.load, &[&stream]).await?;
        let mut folded = Folded {
            version: 0,
            total: 0,
        };
        let mut label = String::new();
        let mut notes = 0usize;
        let mut modified = eventsourcing::now();
        for row in &rows {
            let version: i64 = row.try_get(0)?;
            modified = row.try_get(1)?;
            let event_type: &str = row.try_get(2)?;
            let payload: &[u8] = row.try_get(3)?;
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

/// The snapshot interval of the `load_snap_N` figures.
const SNAPSHOT_EVERY: u64 = 100;
/// Events read by `catchup`, and its page size (the `Subscription` default).
const CATCHUP_EVENTS: usize = 100_000;
const PAGE: usize = 500;
/// Saves timed by the live latency figures.
const LIVE_SAMPLES: usize = 500;

async fn load_snap(app: &Application<PostgresStore>, reader: &Reader) -> Result<(), BoxError> {
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
        let folded = reader.load_with_snapshot(id).await?;
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
            reader.load_with_snapshot(id).await?;
            theirs.push(start.elapsed());
        }
        report(figure, median_ms(ours), median_ms(theirs), "ms");
    }
    Ok(())
}

async fn catchup(store: &PostgresStore, reader: &Reader) -> Result<(), BoxError> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // The first round warms both (caches, prepared statements) and is not counted.
    for round in 0..=ROUNDS {
        let start = Instant::now();
        let mut subscription = Subscription::new(store.clone(), Position::START).page_size(PAGE);
        let mut last = Position::START;
        for _ in 0..CATCHUP_EVENTS {
            let event = subscription.next().await?;
            last = std::hint::black_box(event).position;
        }
        let elapsed = start.elapsed();
        let start = Instant::now();
        let raw_last = reader.read_log(CATCHUP_EVENTS, PAGE).await?;
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

async fn live_latency(
    app: &Application<PostgresStore>,
    raw: &Prepared,
    raw_config: &tokio_postgres::Config,
    raw_schema: &str,
) -> Result<(), BoxError> {
    let store = app.store();
    let end = log_end(store).await?;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut subscription =
        Subscription::new(store.clone(), end).poll_interval(Duration::from_secs(3600));
    let follower = tokio::spawn(async move {
        while let Ok(event) = subscription.next().await {
            if tx.send((event.stream_id, Instant::now())).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    for _ in 0..LIVE_SAMPLES {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        let saved = Instant::now();
        let (id, at) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
            .await?
            .ok_or("the subscription stopped")?;
        if id != counter.id() {
            return Err("live_latency: saw another event than the one saved".into());
        }
        // The subscriber may see it before `save` has returned to its caller: that counts as 0.
        samples.push(at.saturating_duration_since(saved));
    }
    follower.abort();

    let raw_samples = raw_latency(raw, raw_config, raw_schema).await?;
    for (figure, q) in [("live_latency_median", 0.5), ("live_latency_p99", 0.99)] {
        report(
            figure,
            quantile_ms(&samples, q),
            quantile_ms(&raw_samples, q),
            "ms",
        );
    }
    Ok(())
}

/// Raw hand-off: commit, notify in process, and a task reading the new row on its own
/// connection.
async fn raw_latency(
    raw: &Prepared,
    raw_config: &tokio_postgres::Config,
    raw_schema: &str,
) -> Result<Vec<Duration>, BoxError> {
    let table = format!("\"{raw_schema}\".events");
    let reader = Raw::connect(raw_config).await?.client;
    reader
        .batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS raw_events_position ON {table} (position)"
        ))
        .await?;
    let after: i64 = reader
        .query_one(
            &format!("SELECT coalesce(max(position), 0) FROM {table}"),
            &[],
        )
        .await?
        .get(0);
    let select = reader
        .prepare(&format!(
            "SELECT position, stream_id FROM {table} WHERE position > $1 ORDER BY position"
        ))
        .await?;
    let notify = Arc::new(Notify::new());
    let (tx, mut seen) = mpsc::unbounded_channel::<Result<(Uuid, Instant), String>>();
    let listener = tokio::spawn({
        let notify = Arc::clone(&notify);
        async move {
            let mut after = after;
            loop {
                notify.notified().await;
                let sent = match reader.query(&select, &[&after]).await {
                    Ok(rows) => rows.iter().all(|row| {
                        after = row.get(0);
                        tx.send(Ok((row.get(1), Instant::now()))).is_ok()
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
        let id = raw.save_stream(1).await?;
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

/// The position of the newest event of the store's log (all writers have finished).
async fn log_end(store: &PostgresStore) -> Result<Position, BoxError> {
    let client = store.dedicated_client().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT tx_id, position FROM \"{}\".events \
                 ORDER BY tx_id DESC, position DESC LIMIT 1",
                store.config().schema()
            ),
            &[],
        )
        .await?;
    Ok(match row {
        Some(row) => Position {
            commit: row.try_get::<_, Xid8>(0)?.0,
            seq: u64::try_from(row.try_get::<_, i64>(1)?)?,
        },
        None => Position::START,
    })
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

/// `xid8` (the store's `tx_id`): an 8-byte big-endian unsigned integer in binary form.
struct Xid8(u64);

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Xid8(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }
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

/// A raw connection reading the store's own tables with prepared statements.
struct Reader {
    client: Client,
    snapshot: Statement,
    events_after: Statement,
    log_page: Statement,
}

impl Raw {
    async fn reader(self, schema: &str) -> Result<Reader, BoxError> {
        let snapshot = self
            .client
            .prepare(&format!(
                "SELECT version, state_type, fingerprint, payload FROM \"{schema}\".snapshots \
                 WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
            ))
            .await?;
        let events_after = self
            .client
            .prepare(&format!(
                "SELECT version, timestamp, event_type, payload FROM \"{schema}\".events \
                 WHERE stream_id = $1 AND version > $2 ORDER BY version"
            ))
            .await?;
        let log_page = self
            .client
            .prepare(&format!(
                "SELECT stream_id, version, tx_id, position, event_type, schema_version, \
                        timestamp, payload, metadata FROM \"{schema}\".events \
                 WHERE (tx_id, position) > ($1::text::xid8, $2::int8) \
                 ORDER BY tx_id, position LIMIT $3"
            ))
            .await?;
        Ok(Reader {
            client: self.client,
            snapshot,
            events_after,
            log_page,
        })
    }
}

impl Reader {
    /// The newest snapshot (if it is of this shape), then the events after it, folded.
    async fn load_with_snapshot(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let (mut folded, mut label, mut notes) = (
            Folded {
                version: 0,
                total: 0,
            },
            String::new(),
            0usize,
        );
        if let Some(row) = self.client.query_opt(&self.snapshot, &[&stream]).await? {
            let state_type: &str = row.try_get(1)?;
            let fingerprint: i64 = row.try_get(2)?;
            let usable = state_type == Counter::TYPE_NAME
                && u64::from_ne_bytes(fingerprint.to_ne_bytes()) == Counter::STATE_FINGERPRINT;
            if usable {
                let snapshot: RawSnapshot = serde_json::from_slice(row.try_get(3)?)?;
                folded.version = u64::try_from(row.try_get::<_, i64>(0)?)?;
                folded.total = snapshot.state.total;
                std::hint::black_box(snapshot.created_on);
                label = snapshot.state.label;
                notes = snapshot.state.notes;
            }
        }
        let after = i64::try_from(folded.version)?;
        let rows = self
            .client
            .query(&self.events_after, &[&stream, &after])
            .await?;
        let mut modified = eventsourcing::now();
        for row in &rows {
            let version: i64 = row.try_get(0)?;
            modified = row.try_get(1)?;
            let event_type: &str = row.try_get(2)?;
            let payload: &[u8] = row.try_get(3)?;
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

    /// Reads the first `count` events of the store's log in pages of `page`, each row turned
    /// into a `StoredEvent`, and returns the last one's position.
    async fn read_log(&self, count: usize, page: usize) -> Result<Position, BoxError> {
        let (mut after, mut read) = (Position::START, 0usize);
        while read < count {
            let limit = i64::try_from(page.min(count - read))?;
            let commit = after.commit.to_string();
            let seq = i64::try_from(after.seq)?;
            let rows = self
                .client
                .query(&self.log_page, &[&commit, &seq, &limit])
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let metadata: Option<Json<Metadata>> = row.try_get(8)?;
                let event = StoredEvent {
                    stream_id: row.try_get(0)?,
                    version: u64::try_from(row.try_get::<_, i64>(1)?)?,
                    position: Position {
                        commit: row.try_get::<_, Xid8>(2)?.0,
                        seq: u64::try_from(row.try_get::<_, i64>(3)?)?,
                    },
                    event_type: row.try_get(4)?,
                    schema_version: u32::try_from(row.try_get::<_, i32>(5)?)?,
                    timestamp: row.try_get(6)?,
                    payload: row.try_get(7)?,
                    metadata: metadata.map(|Json(m)| m).unwrap_or_default(),
                    stream_type: String::new(),
                    defect: None,
                };
                after = event.position;
                std::hint::black_box(event);
            }
            read += rows.len();
        }
        Ok(after)
    }
}
