//! `import FILE`: a backup into an empty store, of either kind.

use std::path::PathBuf;

use eventsourcing::{AnyStore, Backup};

use crate::{
    commands::export::{all, failed, transfer},
    output::Failure,
    store::Context,
};

/// Import the backup FILE into the store, which must be empty (creating its tables first).
///
/// The whole file is checked (format version, record order, counts, SHA-256) before anything
/// is written; then everything is written in one transaction: a failure leaves the store as it
/// was. Streams keep their ids, versions, timestamps, types and metadata, events their
/// relative order, consumers their place (moved to the new positions of the same events).
/// Moves a PostgreSQL store to a new cluster, or a SQLite file to PostgreSQL and back.
///
/// Example: `PERSISTENCE_MODULE=eventsourcing.postgres DATABASE_URL=postgres://new-host/app eventsourcing-admin import widgets.esb`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup file to read.
    file: PathBuf,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let file = args.file.as_path();
    if !file.is_file() {
        return Err(Failure::Failed(format!(
            "no backup file at `{}`",
            file.display()
        )));
    }
    let import = async |store: &AnyStore, progress| {
        store.migrate().await?;
        store
            .import_with_progress(file, progress)
            .await
            .map_err(failed)
    };
    let store = ctx.open_or_create().await?;
    transfer(ctx, &store, file, Some("import"), import, |store, r| {
        format!("{store}: imported {} from {}", all(&r.counts), r.file)
    })
    .await
}
