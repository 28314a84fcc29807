//! [`Backup`] (export, import) and [`Archive`] (archive, archive restore), named once for every
//! store.

use std::{future::Future, io::Write, path::Path};

use chrono::{DateTime, Utc};

use super::{
    no_progress, ArchiveJob, ArchiveReport, BackupError, BackupWriter, CheckedFile, Content,
    Counts, Header, Progress,
};
use crate::store::EventStore;

/// A whole store in and out of the backup format: `export` and `import`, on any store that
/// implements it (SQLite, PostgreSQL, and the facade's `AnyStore`, which forwards to the store
/// it holds).
///
/// A store implements the two required methods with its own SQL, each handed what is the same
/// on every store: the writer with its header and progress ([`export_to`](Self::export_to)), the
/// file already checked whole ([`import_from`](Self::import_from)). Callers use the provided
/// methods.
pub trait Backup: EventStore {
    /// The store's part of [`export`](Self::export): writes every event (in log order),
    /// snapshot, tracking position and parked event to `writer` from one consistent moment of
    /// the store, tells it the records in all ([`BackupWriter::set_total`]) and finishes it.
    fn export_to<W: Write + Send + 'static>(
        &self,
        writer: BackupWriter<W>,
    ) -> impl Future<Output = Result<(W, Counts), BackupError>> + Send;

    /// The store's part of [`import`](Self::import): checks the store is empty
    /// ([`BackupError::NotEmpty`] otherwise) and writes every record of `file` in one
    /// transaction, the events in the file's order, tracking and parked positions moved with
    /// [`CheckedFile::position`]; returns [`CheckedFile::finish`].
    fn import_from(
        &self,
        file: CheckedFile,
    ) -> impl Future<Output = Result<Counts, BackupError>> + Send;

    /// Writes every event (in log order), snapshot, tracking position and parked event to
    /// `out` in the backup format, from one consistent moment of the store. Returns `out`
    /// (flushed; sync a file yourself) and the counts.
    ///
    /// A stored row that cannot be read ([`Error::BadRow`](crate::Error::BadRow)) stops the
    /// export: fix or remove it first (`eventsourcing-admin verify` lists them).
    fn export<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> impl Future<Output = Result<(W, Counts), BackupError>> + Send {
        self.export_with_progress(out, no_progress())
    }

    /// [`export`](Self::export), calling `progress` every
    /// [`PROGRESS_EVERY`](super::PROGRESS_EVERY) records.
    fn export_with_progress<W: Write + Send + 'static>(
        &self,
        out: W,
        progress: Progress,
    ) -> impl Future<Output = Result<(W, Counts), BackupError>> + Send {
        async move {
            let header = Header::new(Content::Full, self.store_kind());
            let writer = BackupWriter::new(out, header)?.with_progress(progress, 0);
            self.export_to(writer).await
        }
    }

    /// Imports the backup at `path` into this store, which must be empty (no events,
    /// snapshots, tracking or parked rows: [`BackupError::NotEmpty`] otherwise).
    ///
    /// The file is checked whole before anything is written; then everything is written in
    /// one transaction (all or nothing). Streams keep their ids, versions, timestamps, types
    /// and metadata, and the events keep their relative log order; tracking and parked
    /// positions are moved to the new positions of the same events
    /// ([`Remap`](super::Remap)).
    fn import(&self, path: &Path) -> impl Future<Output = Result<Counts, BackupError>> + Send {
        self.import_with_progress(path, no_progress())
    }

    /// [`import`](Self::import), calling `progress` every
    /// [`PROGRESS_EVERY`](super::PROGRESS_EVERY) records of the writing pass.
    fn import_with_progress(
        &self,
        path: &Path,
        progress: Progress,
    ) -> impl Future<Output = Result<Counts, BackupError>> + Send {
        async move {
            let file = CheckedFile::open(path, Content::Full).await?;
            self.import_from(file.with_progress(progress)).await
        }
    }
}

/// Quiet streams' old events out of a store into an archive file, and back: `archive` and
/// `archive restore`, on any store that implements it (SQLite, PostgreSQL, and the facade's
/// `AnyStore`).
///
/// A store implements the two required methods with its own SQL, handed what is the same on
/// every store: the choice of streams, the file handling and the checks of an [`ArchiveJob`]
/// ([`archive_with`](Self::archive_with)), the archive already checked whole
/// ([`restore_from`](Self::restore_from)). Callers use the provided methods.
pub trait Archive: EventStore {
    /// The store's part of [`archive`](Self::archive): the steps of an [`ArchiveJob`], in one
    /// transaction.
    fn archive_with(
        &self,
        job: ArchiveJob,
    ) -> impl Future<Output = Result<ArchiveReport, BackupError>> + Send;

    /// The store's part of [`restore_archive`](Self::restore_archive): writes the events of
    /// `file` at their original log positions in one transaction, refused
    /// ([`BackupError::AlreadyPresent`]) when any of them is in the store; returns
    /// [`CheckedFile::finish`].
    fn restore_from(
        &self,
        file: CheckedFile,
    ) -> impl Future<Output = Result<Counts, BackupError>> + Send;

    /// Moves the events of streams untouched since `before` (all but each stream's newest)
    /// into a new archive file at `path` (refused if it exists), then deletes them from the
    /// store. Refused with [`BackupError::ConsumerBehind`] when a consumer's tracking position
    /// is behind the newest event it would remove, unless `force`.
    fn archive(
        &self,
        before: DateTime<Utc>,
        path: &Path,
        force: bool,
    ) -> impl Future<Output = Result<ArchiveReport, BackupError>> + Send {
        self.archive_with(ArchiveJob::new(before, path, force, self.store_kind()))
    }

    /// Puts the events of an archive file back into this store at their original log
    /// positions, in one transaction, after checking the whole file. Refused
    /// ([`BackupError::AlreadyPresent`]) when any of them is in the store.
    fn restore_archive(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<Counts, BackupError>> + Send {
        async move {
            let file = CheckedFile::open(path, Content::Archive).await?;
            self.restore_from(file).await
        }
    }
}
