//! `export FILE`: the whole store (events in log order, snapshots, consumers' positions,
//! parked events) into a new backup file in the portable format (`BACKUP-FORMAT.md`).

use std::{
    fs::OpenOptions,
    io::BufWriter,
    path::Path,
    sync::{Arc, Mutex},
};

use eventsourcing::{
    backup::{self, no_progress, BackupError, Counts},
    AnyStore, Backup,
};
use serde::Serialize;

use crate::{output::Failure, progress::Progress, store::Context};

/// Write a backup of the whole store to FILE (gzip of JSON lines; see BACKUP-FORMAT.md).
///
/// Reads one consistent moment of the store in bounded memory; the application may keep
/// running. FILE must not exist; it is synced to disk before the command reports success.
///
/// Example: `PERSISTENCE_MODULE=eventsourcing.postgres POSTGRES_SCHEMA=widgets eventsourcing-admin export widgets.esb`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup file to create.
    file: std::path::PathBuf,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let file = args.file.as_path();
    let export = async |store: &AnyStore, progress| {
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(file)
            .map_err(|e| Failure::Failed(format!("cannot create `{}`: {e}", file.display())))?;
        let out = BufWriter::with_capacity(1 << 20, created);
        let written = store.export_with_progress(out, progress).await;
        written
            .and_then(|(out, counts)| {
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                Ok(counts)
            })
            .map_err(|e| {
                // Leave no partial file that could be mistaken for a backup.
                let _ = std::fs::remove_file(file);
                failed(e)
            })
    };
    let store = ctx.open().await?;
    transfer(ctx, &store, file, Some("export"), export, |store, r| {
        format!("{store}: exported {} to {}", all(&r.counts), r.file)
    })
    .await
}

/// The report of a command that moves records between the store and a file.
#[derive(Debug, Serialize)]
pub(crate) struct Moved {
    pub(crate) file: String,
    pub(crate) counts: Counts,
}

/// Runs `op` on `store` with a progress display of `what` on stderr (none without; cleared once
/// `op` ends) and reports the counts `op` returns with the store and `file`, in the words
/// `text` makes of the store's description and the report.
pub(crate) async fn transfer(
    ctx: &Context,
    store: &AnyStore,
    file: &Path,
    what: Option<&'static str>,
    op: impl AsyncFnOnce(&AnyStore, backup::Progress) -> Result<Counts, Failure>,
    text: impl FnOnce(&str, &Moved) -> String,
) -> Result<(), Failure> {
    let counts = match what {
        Some(what) => {
            let (progress, display) = shown(what);
            let counts = op(store, progress).await;
            finish(&display);
            counts
        }
        None => op(store, no_progress()).await,
    }?;
    let report = Moved {
        file: file.display().to_string(),
        counts,
    };
    ctx.report_on(store, &report, text)
}

/// Every kind of record counted, in words.
pub(crate) fn all(c: &Counts) -> String {
    format!(
        "{} events, {} snapshots, {} tracking positions, {} parked events",
        c.events, c.snapshots, c.tracking, c.parked
    )
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
