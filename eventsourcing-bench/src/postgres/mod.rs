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
//! - `live_other_median`, `live_other_p99`: the same to a `Subscription` of a second store
//!   instance on the schema (what another process runs: woken by `LISTEN`/`NOTIFY`). Raw: the
//!   saving side commits its `INSERT`, then sends `SELECT pg_notify(…)`; a task `LISTEN`ing on
//!   its own connection `SELECT`s the new row when the notification arrives.
//!
//! Ours and raw alternate in rounds so that drift hits both alike; each append figure is the
//! median of the rounds' rates. The raw table is the store's `events` table without what the
//! log order costs (the `tx_id` column and its index) and without the BRIN time index.

mod append;
pub(crate) mod catchup_memory;
pub(crate) mod cipher;
mod export;
mod live;
mod live_other;
mod load;
mod raw;
mod reader;
pub(crate) mod replicas;
mod server;

use std::sync::Arc;

use eventsourcing::{postgres::PostgresStore, prelude::*};

use self::{
    append::WRITERS,
    raw::{raw_ddl, Prepared},
    reader::Reader,
    server::Server,
};
use crate::common::{recorder::wanted, BoxError};

/// `export-postgres`: the export of a million events against a raw `COPY` (see `export.rs`).
pub(crate) async fn export() -> Result<(), BoxError> {
    export::run(&Server::connect().await?).await
}

/// Runs every PostgreSQL figure, in the order BENCHMARKS.md lists them, then drops both schemas.
pub(crate) async fn run() -> Result<(), BoxError> {
    let saves = crate::saves()?;
    let ours_schema = format!("es_bench_ours_{}", std::process::id());
    let raw_schema = format!("es_bench_raw_{}", std::process::id());
    let server = Server::connect().await?;
    server.describe("postgres", saves);
    let raw_config = &server.raw_config;

    let figures = async {
        let store = PostgresStore::connect(
            server
                .store_config(&ours_schema)
                .pool_size(WRITERS as u32)
                .max_overflow(2)
                .build()?,
        )
        .await?;
        let app = Application::new(store);
        server.admin.batch_execute(&raw_ddl(&raw_schema)).await?;
        let mut raws = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            raws.push(Arc::new(Prepared::connect(raw_config, &raw_schema).await?));
        }
        if wanted("append") {
            append::figures(&app, &raws, saves).await?;
        }
        if wanted("load") {
            load::load(&app, &raws[0]).await?;
        }
        let reader = Reader::connect(app.store()).await?;
        if wanted("load_snap") {
            load::load_snap(&app, &reader).await?;
        }
        if wanted("catchup") {
            live::catchup(app.store(), &reader).await?;
        }
        if wanted("live") {
            live::live_latency(&app, &raws[0], raw_config, &raw_schema).await?;
        }
        if wanted("live_other") {
            let other = PostgresStore::connect(server.store_config(&ours_schema).build()?).await?;
            live_other::live_other(&app, &other, &raws[0], raw_config, &raw_schema).await?;
        }
        Ok(())
    };
    server.dropping(&[&ours_schema, &raw_schema], figures).await
}
