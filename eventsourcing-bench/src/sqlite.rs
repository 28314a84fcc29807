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
//!
//! Ours and raw alternate save by save (and load by load), so that drift in the disk's sync
//! latency or the machine's load hits both alike.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use eventsourcing::{
    prelude::*,
    sqlite::{SqliteConfig, SqliteStore, Synchronous},
};
use rusqlite::{params, Connection, TransactionBehavior};

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

    let store =
        SqliteStore::open(SqliteConfig::new(dbname.clone()).synchronous(synchronous)).await?;
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

    drop(app);
    drop(raw);
    drop(cleanup);
    Ok(())
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

    fn save_stream(&mut self, events: usize) -> Result<Uuid, BoxError> {
        let stream = Uuid::new_v4();
        self.insert_stream(stream, events)?;
        Ok(stream)
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
