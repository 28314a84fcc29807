//! The portable backup format: what `export` writes, `import` reads and `archive` keeps.
//!
//! A backup is a gzip stream of newline-delimited JSON records (one JSON object per line):
//! a [`Header`], the events in log order, the snapshots, the consumers' tracking positions,
//! their parked events, and a [`Trailer`] with the counts of each and the SHA-256 of every line
//! before it, so that a truncated or corrupted file is detected before anything is written.
//! `BACKUP-FORMAT.md` at the repository root describes the records field by field.
//!
//! This module knows no database: the [`Backup`] and [`Archive`] traits name export, import,
//! archive and archive restore once, and each store crate implements only its SQL. It reads its tables into
//! [`Record`]s and writes them with a [`BackupWriter`]; it imports a [`CheckedFile`] (the file
//! checked whole by a [`verify`] pass, then read again by the writing pass, consumer positions
//! remapped with [`Remap`]); it archives through an [`ArchiveJob`] (choosing the streams, the
//! file written, synced and read back, removed again on failure).

mod archive;
mod checked;
mod error;
mod read;
mod record;
mod remap;
mod section;
mod store;
mod write;

pub use archive::{ArchiveJob, ArchiveWriter};
pub use checked::CheckedFile;
pub use error::BackupError;
pub use read::{verify, verify_file, BackupReader, Verified};
pub use record::{
    EventRecord, Header, ParkedRecord, Record, SnapshotRecord, TrackingRecord, Trailer,
};
pub use remap::Remap;
pub use store::{Archive, Backup};
pub use write::BackupWriter;

/// The `format` field of every header: what tells a backup from any other gzip file.
pub const FORMAT_NAME: &str = "eventsourcing-backup";

/// The format version this code writes, and the newest it reads. A file of a newer version is
/// refused before anything is written ([`BackupError::NewerVersion`]).
pub const FORMAT_VERSION: u32 = 1;

/// Called now and then (every [`PROGRESS_EVERY`] records) with the records done so far and
/// the records in all (0 while not known: an export learns it only at its end).
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

/// Records between two calls of a [`Progress`].
pub const PROGRESS_EVERY: u64 = 10_000;

/// A [`Progress`] that shows nothing.
pub fn no_progress() -> Progress {
    Box::new(|_, _| {})
}

/// Checks the whole file at `path` off the async threads ([`verify_file`]) and that it holds
/// `expected` (a full backup for `import`, an archive for `archive restore`): what both do
/// before they write anything.
pub async fn verify_holding(
    path: &std::path::Path,
    expected: Content,
) -> Result<Verified, BackupError> {
    let path = path.to_owned();
    let verified = tokio::task::spawn_blocking(move || verify_file(&path))
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))??;
    if verified.header.content != expected {
        return Err(BackupError::WrongContent {
            expected,
            found: verified.header.content,
        });
    }
    Ok(verified)
}

/// Flushes `out`, then syncs the file and its directory, so that a file just written survives
/// a crash (an archive, before the events in it are deleted).
pub fn sync_file(
    out: std::io::BufWriter<std::fs::File>,
    path: &std::path::Path,
) -> Result<(), BackupError> {
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// What `archive` checks before it removes events up to `newest`: every consumer (name and
/// recorded position, in the order given) has processed them, or the first one that has not is
/// [`BackupError::ConsumerBehind`].
pub fn check_consumers(
    consumers: impl IntoIterator<Item = (String, crate::Position)>,
    newest: crate::Position,
) -> Result<(), BackupError> {
    match consumers
        .into_iter()
        .find(|(_, position)| *position < newest)
    {
        Some((name, position)) => Err(BackupError::ConsumerBehind {
            name,
            position,
            newest,
        }),
        None => Ok(()),
    }
}

/// The counts of each kind of record in a backup: what the trailer states and what an export
/// or import reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Event records.
    pub events: u64,
    /// Snapshot records.
    pub snapshots: u64,
    /// Tracking records (one per consumer).
    pub tracking: u64,
    /// Parked-event records.
    pub parked: u64,
}

impl Counts {
    /// The records of every kind together.
    pub fn total(&self) -> u64 {
        self.events + self.snapshots + self.tracking + self.parked
    }
}

/// What a backup file holds: a whole store, or the events `archive` moved out of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Every event, snapshot, tracking position and parked event of a store (`export`).
    Full,
    /// Events of some streams only, removed from the store that wrote the file (`archive`):
    /// `archive restore` puts them back into that store at their original positions.
    Archive,
}

/// What `archive` did: the streams whose events it moved out, the quiet streams it left
/// because no snapshot at their newest version lets them load without those events, and the
/// records written to the archive file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveReport {
    /// The streams archived (all their events but the newest are in the file).
    pub streams: Vec<uuid::Uuid>,
    /// Quiet streams left in place: no snapshot at their newest version.
    pub skipped: Vec<uuid::Uuid>,
    /// What the archive file holds.
    pub counts: Counts,
}

#[cfg(test)]
mod tests;
