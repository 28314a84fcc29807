//! One file per command; each has its clap `Args` and `run`. Adding a command: its file, a
//! `mod` line and a match arm here, and a variant in `cli.rs`.

pub(crate) mod append_only;
pub(crate) mod archive;
pub(crate) mod archive_restore;
pub(crate) mod export;
pub(crate) mod grants;
pub(crate) mod import;
pub(crate) mod indexes;
pub(crate) mod migrate;
pub(crate) mod snapshots;
pub(crate) mod status;
pub(crate) mod tenants;
pub(crate) mod vacuum;
pub(crate) mod verify;

use crate::{cli::Command, output::Failure, store::Context};

/// Runs the command.
pub(crate) async fn run(command: Command, ctx: &Context) -> Result<(), Failure> {
    match command {
        Command::Migrate(args) => migrate::run(args, ctx).await,
        Command::Status(args) => status::run(args, ctx).await,
        Command::Export(args) => export::run(args, ctx).await,
        Command::Import(args) => import::run(args, ctx).await,
        Command::Archive(args) => archive::run(args, ctx).await,
        Command::Verify(args) => verify::run(args, ctx).await,
        Command::Snapshots(args) => snapshots::run(args, ctx).await,
        Command::Vacuum(args) => vacuum::run(args, ctx).await,
        Command::Indexes(args) => indexes::run(args, ctx).await,
        Command::Tenants(args) => tenants::run(args, ctx).await,
        Command::Grants(args) => grants::run(args, ctx).await,
        Command::AppendOnly(args) => append_only::run(args, ctx).await,
    }
}
