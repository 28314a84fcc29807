//! `import FILE`: a backup into an empty store, of either kind.

use std::path::PathBuf;

use eventsourcing::{backup::Counts, AnyStore};
use serde::Serialize;

use crate::{
    commands::export::{failed, finish, shown},
    output::Failure,
    store::{describe, unsupported, Context, Open},
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

#[derive(Debug, Serialize)]
struct Report {
    store: String,
    file: String,
    counts: Counts,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    if !args.file.is_file() {
        return Err(Failure::Failed(format!(
            "no backup file at `{}`",
            args.file.display()
        )));
    }
    let store = ctx.open(Open::MayCreate).await?;
    let (progress, display) = shown("import");
    let result = match &store {
        AnyStore::Sqlite(s) => {
            s.migrate().await?;
            s.import_with_progress(&args.file, progress).await
        }
        AnyStore::Postgres(s) => {
            s.migrate().await?;
            s.import_with_progress(&args.file, progress).await
        }
        other => return Err(unsupported(other, "import")),
    };
    finish(&display);
    let counts = result.map_err(failed)?;
    let report = Report {
        store: describe(&store),
        file: args.file.display().to_string(),
        counts,
    };
    ctx.out.report(&report, |r| {
        format!(
            "{}: imported {} events, {} snapshots, {} tracking positions, {} parked events from {}",
            r.store,
            r.counts.events,
            r.counts.snapshots,
            r.counts.tracking,
            r.counts.parked,
            r.file
        )
    })
}
