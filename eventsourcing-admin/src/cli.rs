//! The command line: global options and one variant per command (each command's own arguments
//! are defined in its file under `commands/`).
//!
//! To add a command: a file in `commands/` and its `pub(crate) mod` line in
//! `commands/mod.rs`, and one line in `commands!` here.

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

/// Declares the commands once: the clap enum (a variant per command, its arguments defined in
/// its file under `commands/`, a command with subcommands marked `#[command(subcommand)]`) and
/// the dispatch to each file's `run`.
macro_rules! commands {
    ($($(#[$attr:meta])* $command:ident => $module:ident,)*) => {
        /// The commands.
        #[derive(Debug, Subcommand)]
        pub(crate) enum Command {
            $($(#[$attr])* $command(commands::$module::Args),)*
        }

        impl Command {
            /// Runs the command.
            pub(crate) async fn run(self, ctx: &Context) -> Result<(), Failure> {
                match self {
                    $(Command::$command(args) => commands::$module::run(args, ctx).await,)*
                }
            }
        }
    };
}

commands! {
    #[command(visible_alias = "init_event_store", alias = "init-event-store")]
    Migrate => migrate,
    Status => status,
    Export => export,
    Import => import,
    Archive => archive,
    Verify => verify,
    #[command(subcommand)]
    Snapshots => snapshots,
    Vacuum => vacuum,
    Indexes => indexes,
    #[command(subcommand)]
    Tenants => tenants,
    #[command(subcommand)]
    Grants => grants,
    AppendOnly => append_only,
}
