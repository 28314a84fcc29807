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
//! - `load_N`: median milliseconds to load an aggregate of N events. Raw: one prepared `SELECT`
//!   of the stream in version order, decoding each payload with serde_json and folding it.
//!
//! Ours and raw alternate in rounds so that drift hits both alike; each append figure is the
//! median of the rounds' rates. The raw table is the store's `events` table without what the
//! log order costs (the `tx_id` column and its index) and without the BRIN time index.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use eventsourcing::{
    postgres::{PostgresConfig, PostgresStore, SslMode},
    prelude::*,
};
use tokio_postgres::{Client, NoTls, Statement};

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
        figures(&app, &raws, saves).await
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
        ours_writers(app, per_writer / 5).await?;
        raw_writers(raws, per_writer / 5).await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let elapsed = ours_writers(app, per_writer).await?;
            ours.push(per_second(per_writer * WRITERS, elapsed));
            let elapsed = raw_writers(raws, per_writer).await?;
            theirs.push(per_second(per_writer * WRITERS, elapsed));
        }
        report("append_8_writers", median(ours), median(theirs), "events/s");
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

/// `WRITERS` tasks, each appending `saves` single events to its own counter; the time until
/// all are done.
async fn ours_writers(
    app: &Application<PostgresStore>,
    saves: usize,
) -> Result<Duration, BoxError> {
    let mut counters = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        counters.push(counter);
    }
    let start = Instant::now();
    let tasks: Vec<_> = counters
        .into_iter()
        .map(|mut counter| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..saves {
                    counter.add(i as i64, NOTE.to_owned());
                    app.save(&mut counter).await?;
                }
                Ok::<_, eventsourcing::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
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
