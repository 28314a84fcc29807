//! `eventsourcing-admin`: create or inspect the PostgreSQL event store tables.
//!
//! Run with: `cargo run -p eventsourcing-postgres --bin eventsourcing-admin -- [--app NAME] migrate`
//!
//! Reads the same environment variables as the application (`POSTGRES_HOST`, `POSTGRES_USER`,
//! `POSTGRES_PASSWORD`, `POSTGRES_DB`, `POSTGRES_SCHEMA`, `DATABASE_URL`, ...); with `--app
//! widgets`, `WIDGETS_`-prefixed variables win.

use std::process::ExitCode;

use eventsourcing_core::Env;
use eventsourcing_postgres::{MigrationState, PostgresConfig, PostgresStore, MIGRATIONS};

const USAGE: &str = "\
usage: eventsourcing-admin [--app NAME] <command>

commands:
  migrate            apply pending migrations (creates the schema and tables)
  init_event_store   the same as migrate
  status             applied and pending migrations, number of events

options:
  --app NAME         read NAME_POSTGRES_HOST etc. before POSTGRES_HOST etc.
  -h, --help         show this help

Settings come from the environment: DATABASE_URL or POSTGRES_HOST, POSTGRES_PORT,
POSTGRES_USER, POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), POSTGRES_DBNAME (or
POSTGRES_DB), POSTGRES_SCHEMA, POSTGRES_SSLMODE, POSTGRES_SSLROOTCERT.";

enum Command {
    Migrate,
    Status,
}

fn parse_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<(Option<String>, Command)>, String> {
    let mut app = None;
    let mut command = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" | "help" => return Ok(None),
            "--app" => {
                app = Some(args.next().ok_or("--app needs a name")?);
            }
            a if a.starts_with("--app=") => app = Some(a["--app=".len()..].to_owned()),
            "migrate" | "init_event_store" | "init-event-store" if command.is_none() => {
                command = Some(Command::Migrate);
            }
            "status" if command.is_none() => command = Some(Command::Status),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    match command {
        Some(command) => Ok(Some((app, command))),
        None => Err("no command given".to_owned()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (app, command) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(app, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(app: Option<String>, command: Command) -> Result<(), eventsourcing_core::Error> {
    let mut env = Env::from_process();
    if let Some(app) = &app {
        env = env.with_app_name(app);
    }
    // The admin command decides itself when to issue DDL, whatever CREATE_TABLE says; one
    // connection is enough.
    let config = PostgresConfig::from_env(&env)?
        .to_builder()
        .create_table(false)
        .pool_size(0)
        .max_overflow(1)
        .build()?;
    let store = PostgresStore::connect(config).await?;
    let target = format!(
        "{}:{}/{} schema `{}`",
        store.config().host(),
        store.config().port(),
        store.config().dbname().unwrap_or("?"),
        store.config().schema()
    );
    match command {
        Command::Migrate => {
            let report = store.migrate().await?;
            if report.applied.is_empty() {
                println!(
                    "{target}: up to date ({} migrations already applied)",
                    report.already_applied.len()
                );
            }
            for m in &report.applied {
                println!(
                    "{target}: applied migration {} ({})",
                    m.version, m.description
                );
            }
        }
        Command::Status => {
            let status = store.status().await?;
            println!("{target}");
            if status.applied.is_empty() {
                println!("  no migrations applied");
            }
            for m in MIGRATIONS.status(&status.applied) {
                let checksum = match m.state {
                    MigrationState::Pending => {
                        println!("  pending  {:>4}  {}", m.version, m.description);
                        continue;
                    }
                    MigrationState::Applied => "checksum ok",
                    MigrationState::ChecksumMismatch => "CHECKSUM DIFFERS from this release",
                    _ => "unknown to this release",
                };
                let applied_at = m
                    .applied_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                println!(
                    "  applied  {:>4}  {:<12} {applied_at}  {checksum}",
                    m.version, m.description,
                );
            }
            match status.events {
                Some(n) => println!("  events: {n}"),
                None => println!("  events: no events table (run `eventsourcing-admin migrate`)"),
            }
            if status.log_ahead_of_server {
                println!(
                    "  WARNING: the stored transaction ids are ahead of this server's: the events \
                     were copied from another cluster and the log order is broken until the \
                     server's xid epoch is raised (pg_resetwal -e); see the crate docs"
                );
            }
            if let Some(horizon) = &status.log_horizon {
                match (horizon.held_back, horizon.holders.first()) {
                    (true, Some(h)) => println!(
                        "  log horizon: committed events are held back by the transaction of \
                         pid {} (database {}, application {:?}, {}, open for {:.0?}); readers \
                         of the log wait until it ends: `SELECT pg_terminate_backend({})`",
                        h.pid,
                        h.database.as_deref().unwrap_or("?"),
                        h.application_name.as_deref().unwrap_or(""),
                        h.state.as_deref().unwrap_or("state hidden"),
                        h.transaction_age.unwrap_or_default(),
                        h.pid
                    ),
                    (true, None) => println!("  log horizon: committed events are held back"),
                    (false, _) => println!("  log horizon: nothing held back"),
                }
            }
            if !status.pending.is_empty() {
                println!("  run `eventsourcing-admin migrate` to apply the pending migrations");
            }
        }
    }
    Ok(())
}
