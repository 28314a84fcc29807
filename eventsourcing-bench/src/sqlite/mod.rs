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

mod append;
pub(crate) mod catchup_memory;
pub(crate) mod cipher;
mod live;
mod load;
mod projection;
mod raw;

use std::path::PathBuf;

use eventsourcing::{
    prelude::*,
    sqlite::{SqliteConfig, SqliteStore, Synchronous},
};

use self::raw::Raw;
use crate::common::{recorder::wanted, BoxError};

/// Deletes the database files when the benchmark ends, however it ends.
pub(crate) struct Cleanup(pub(crate) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs every SQLite figure, in the order BENCHMARKS.md lists them, on a new database file that
/// is deleted at the end.
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

    if wanted("append") {
        append::append_new(&app, &mut raw, saves).await?;
    }
    if wanted("append_snapshot") {
        append::append_1_snapshot_10(&app, saves).await?;
    }
    if wanted("load") {
        load::load(&app, &mut raw).await?;
    }
    if wanted("load_snap") {
        load::load_snap(&app, &raw).await?;
    }
    if wanted("catchup") {
        live::catchup(app.store(), &raw).await?;
        live::catchup_projection(app.store(), &mut raw).await?;
    }
    if wanted("live") {
        live::live_latency(&app, &dbname, &mut raw).await?;
    }
    if wanted("writers") {
        append::append_8_writers(&app, &dbname, synchronous, saves).await?;
    }

    drop(app);
    drop(raw);
    drop(cleanup);
    Ok(())
}
