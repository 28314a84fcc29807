//! Benchmarks of the eventsourcing stores against their raw drivers doing the same SQL.
//!
//! Run with: `cargo run --release -p eventsourcing-bench -- <postgres|sqlite|export-postgres>`
//! (PostgreSQL from `EVENTSOURCING_BENCH_POSTGRES_URL`, default
//! `postgresql://root@127.0.0.1:5432/test`).
//!
//! Each line: `<figure> ours=<value> raw=<value> ratio=<ours/raw> unit=<unit>`.

mod common;
mod postgres;
mod sqlite;

use common::BoxError;

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    if which.is_empty() {
        eprintln!("usage: eventsourcing-bench <postgres|sqlite|export-postgres>...");
        std::process::exit(2);
    }
    for store in &which {
        let result: Result<(), BoxError> = match store.as_str() {
            "postgres" => postgres::run().await,
            "export-postgres" => postgres::export().await,
            "sqlite" => sqlite::run().await,
            other => Err(format!(
                "unknown store `{other}` (known: postgres, sqlite, export-postgres)"
            )
            .into()),
        };
        if let Err(e) = result {
            eprintln!("{store}: {e}");
            std::process::exit(1);
        }
    }
}
