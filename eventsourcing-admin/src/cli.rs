//! The command line: global options and one variant per command (each command's own arguments
//! are defined in its file under `commands/`).
//!
//! To add a command: a file in `commands/` and its `pub(crate) mod` line in
//! `commands/mod.rs`, and one variant and one match arm here.

use clap::{Parser, Subcommand};

use crate::{commands, output::Failure, store::Context};

const AFTER_HELP: &str = "\
The store comes from the environment, as the application reads it: PERSISTENCE_MODULE
(eventsourcing.sqlite, the default, or eventsourcing.postgres), then SQLITE_DBNAME, or
DATABASE_URL / POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD
(POSTGRES_PASSWORD_FILE), POSTGRES_DBNAME (POSTGRES_DB), POSTGRES_SCHEMA, POSTGRES_SSLMODE.
With --app NAME, NAME_POSTGRES_HOST etc. win over POSTGRES_HOST etc.

Exit codes:
  0  done; nothing wrong found
  1  the command failed, or `verify` found problems (listed)
  2  usage error, or a setting is missing or malformed (the variable is named)";

/// Administer an eventsourcing store (SQLite or PostgreSQL).
#[derive(Debug, Parser)]
#[command(name = "eventsourcing-admin", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Read NAME_-prefixed variables first (NAME_POSTGRES_HOST before POSTGRES_HOST).
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) app: Option<String>,
    /// Print the report as one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands; one line each.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    #[command(visible_alias = "init_event_store", alias = "init-event-store")]
    Migrate(commands::migrate::Args),
    Status(commands::status::Args),
    Export(commands::export::Args),
    Import(commands::import::Args),
    Archive(commands::archive::Args),
    Verify(commands::verify::Args),
    Snapshots(commands::snapshots::Args),
    Vacuum(commands::vacuum::Args),
    Indexes(commands::indexes::Args),
    Tenants(commands::tenants::Args),
    Grants(commands::grants::Args),
    AppendOnly(commands::append_only::Args),
}

impl Command {
    /// Runs the command.
    pub(crate) async fn run(self, ctx: &Context) -> Result<(), Failure> {
        match self {
            Command::Migrate(args) => commands::migrate::run(args, ctx).await,
            Command::Status(args) => commands::status::run(args, ctx).await,
            Command::Export(args) => commands::export::run(args, ctx).await,
            Command::Import(args) => commands::import::run(args, ctx).await,
            Command::Archive(args) => commands::archive::run(args, ctx).await,
            Command::Verify(args) => commands::verify::run(args, ctx).await,
            Command::Snapshots(args) => commands::snapshots::run(args, ctx).await,
            Command::Vacuum(args) => commands::vacuum::run(args, ctx).await,
            Command::Indexes(args) => commands::indexes::run(args, ctx).await,
            Command::Tenants(args) => commands::tenants::run(args, ctx).await,
            Command::Grants(args) => commands::grants::run(args, ctx).await,
            Command::AppendOnly(args) => commands::append_only::run(args, ctx).await,
        }
    }
}
