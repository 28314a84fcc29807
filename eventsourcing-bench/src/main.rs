//! Benchmarks of the eventsourcing stores against their raw drivers doing the same SQL.
//!
//! Run with: `cargo run --release -p eventsourcing-bench -- <postgres|sqlite>...`, or
//! `-- <postgres-cipher|sqlite-cipher>` for what compression and encryption cost
//! (`common/cipher.rs`), or `-- export-postgres` for the export of a million events, or
//! `-- postgres-replicas` for read replicas on a primary and standby it starts itself, or
//! `-- sqlite-catchup-memory` and `-- postgres-catchup-memory` for the peak memory of a catch-up
//! (`common/catchup_memory.rs`).
//! (PostgreSQL from `EVENTSOURCING_BENCH_POSTGRES_URL`, default
//! `postgresql://root@127.0.0.1:5432/test`).
//!
//! Each line: `<figure> ours=<value> raw=<value> ratio=<ours/raw> unit=<unit>`.
//!
//! `EVENTSOURCING_BENCH_RECORDER=prometheus` installs a metrics recorder first;
//! `EVENTSOURCING_BENCH_ONLY=append,load` runs only those groups (see `common/recorder.rs`).

mod common;
mod memory;
mod postgres;
mod sqlite;

use common::{recorder::Recorder, BoxError};

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    if which.is_empty() {
        eprintln!(
            "usage: eventsourcing-bench <postgres|sqlite|memory|postgres-cipher|sqlite-cipher|export-postgres|postgres-replicas|sqlite-catchup-memory|postgres-catchup-memory>..."
        );
        std::process::exit(2);
    }
    let recorder = match Recorder::from_env() {
        Ok(recorder) => recorder,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    for store in &which {
        let result: Result<(), BoxError> = match store.as_str() {
            "postgres" => postgres::run().await,
            "export-postgres" => postgres::export().await,
            "postgres-replicas" => postgres::replicas::run().await,
            "sqlite" => sqlite::run().await,
            "sqlite-catchup-memory" => sqlite::catchup_memory::run().await,
            "postgres-catchup-memory" => postgres::catchup_memory::run().await,
            "memory" => memory::run().await,
            "postgres-cipher" => match saves() {
                Ok(saves) => postgres::cipher::run(saves).await,
                Err(e) => Err(e),
            },
            "sqlite-cipher" => match saves() {
                Ok(saves) => sqlite::cipher::run(saves).await,
                Err(e) => Err(e),
            },
            other => Err(format!(
                "unknown mode `{other}` (known: postgres, sqlite, memory, postgres-cipher, sqlite-cipher, export-postgres, postgres-replicas, sqlite-catchup-memory, postgres-catchup-memory)"
            )
            .into()),
        };
        if let Err(e) = result {
            eprintln!("{store}: {e}");
            std::process::exit(1);
        }
    }
    if let Some(recorder) = recorder {
        recorder.report();
    }
}

/// `EVENTSOURCING_BENCH_SAVES`: saves per append figure (default 2000).
fn saves() -> Result<usize, BoxError> {
    match std::env::var("EVENTSOURCING_BENCH_SAVES") {
        Ok(value) => Ok(value.parse()?),
        Err(_) => Ok(2000),
    }
}
