//! `archive restore FILE`: the events of an archive file back into the store they came from.

use std::path::PathBuf;

use eventsourcing::{backup::Counts, AnyStore};
use serde::Serialize;

use crate::{
    commands::export::failed,
    output::Failure,
    store::{describe, unsupported, Context, Open},
};

/// Put the events of an archive FILE back into the store, at their original log positions.
///
/// The whole file is checked first; then the events are written in one transaction. Refused
/// (exit 1) when any of them is already in the store (restored before).
///
/// Example: `eventsourcing-admin archive restore cold-2024.esb`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The archive file written by `archive`.
    file: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    store: String,
    file: String,
    counts: Counts,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open(Open::Existing).await?;
    let counts = match &store {
        AnyStore::Sqlite(s) => s.restore_archive(&args.file).await,
        AnyStore::Postgres(s) => s.restore_archive(&args.file).await,
        other => return Err(unsupported(other, "archive restore")),
    }
    .map_err(failed)?;
    let report = Report {
        store: describe(&store),
        file: args.file.display().to_string(),
        counts,
    };
    ctx.out.report(&report, |r| {
        format!(
            "{}: restored {} events from {}",
            r.store, r.counts.events, r.file
        )
    })
}
