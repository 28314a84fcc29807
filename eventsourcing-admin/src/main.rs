//! `eventsourcing-admin`: one tool for every store (SQLite and PostgreSQL): migrate, status,
//! verify, prune snapshots, vacuum, indexes.
//!
//! Run with: `cargo run -p eventsourcing-admin -- [--app NAME] [--json] <command>`
//!
//! The store and its settings come from the same environment variables the application reads
//! (`PERSISTENCE_MODULE`, `SQLITE_DBNAME`, `POSTGRES_HOST`, `DATABASE_URL`, ...); with
//! `--app NAME`, `NAME_`-prefixed variables win. Exit codes: see [`output`].

mod cli;
mod commands;
mod output;
mod progress;
mod store;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage and exits with 2 on a usage error, 0 on --help.
    let cli = cli::Cli::parse();
    let out = output::Output::new(cli.json);
    let ctx = store::Context::new(cli.app.clone(), out);
    match cli.command.run(&ctx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
