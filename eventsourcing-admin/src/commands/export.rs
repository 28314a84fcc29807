//! `export FILE`: the whole store (events in log order, snapshots, consumers' positions,
//! parked events) into a new backup file in the portable format (`BACKUP-FORMAT.md`).

use std::{
    fs::OpenOptions,
    io::BufWriter,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use eventsourcing::{
    backup::{self, BackupError, Counts},
    AnyStore,
};
use serde::Serialize;

use crate::{
    output::Failure,
    progress::Progress,
    store::{describe, unsupported, Context, Open},
};

/// Write a backup of the whole store to FILE (gzip of JSON lines; see BACKUP-FORMAT.md).
///
/// Reads one consistent moment of the store in bounded memory; the application may keep
/// running. FILE must not exist; it is synced to disk before the command reports success.
///
/// Example: `PERSISTENCE_MODULE=eventsourcing.postgres POSTGRES_SCHEMA=widgets eventsourcing-admin export widgets.esb`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup file to create.
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
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.file)
        .map_err(|e| Failure::Failed(format!("cannot create `{}`: {e}", args.file.display())))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let (progress, shown) = shown("export");
    let result = match &store {
        AnyStore::Sqlite(s) => s.export_with_progress(out, progress).await,
        AnyStore::Postgres(s) => s.export_with_progress(out, progress).await,
        other => return Err(unsupported(other, "export")),
    };
    finish(&shown);
    let counts = match result.and_then(|(out, counts)| {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok::<_, BackupError>(counts)
    }) {
        Ok(counts) => counts,
        Err(e) => {
            // Leave no partial file that could be mistaken for a backup.
            let _ = std::fs::remove_file(&args.file);
            return Err(failed(e));
        }
    };
    let report = Report {
        store: describe(&store),
        file: args.file.display().to_string(),
        counts,
    };
    ctx.out.report(&report, |r| {
        format!(
            "{}: exported {} events, {} snapshots, {} tracking positions, {} parked events to {}",
            r.store,
            r.counts.events,
            r.counts.snapshots,
            r.counts.tracking,
            r.counts.parked,
            r.file
        )
    })
}

/// A backup error as the tool's failure (exit 1).
pub(crate) fn failed(e: BackupError) -> Failure {
    match e {
        BackupError::Store(e) => Failure::from(e),
        other => Failure::Failed(other.to_string()),
    }
}

/// A progress display on stderr (see `progress.rs`) as the library's callback, and the handle
/// that clears it once the work is done.
pub(crate) fn shown(what: &'static str) -> (backup::Progress, Arc<Mutex<Option<Progress>>>) {
    let shown = Arc::new(Mutex::new(Some(Progress::new(what, 0))));
    let inner = Arc::clone(&shown);
    let progress: backup::Progress = Box::new(move |done, total| {
        if let Ok(mut guard) = inner.lock() {
            if let Some(p) = guard.as_mut() {
                p.set(done, total);
            }
        }
    });
    (progress, shown)
}

/// Clears the display [`shown`] made.
pub(crate) fn finish(shown: &Mutex<Option<Progress>>) {
    if let Some(p) = shown.lock().ok().and_then(|mut guard| guard.take()) {
        p.finish();
    }
}
