//! [`BackupError`]: everything export, import and archive report.

use crate::{error::Error, event::Position};

/// What went wrong reading or writing a backup, or moving one in or out of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing the file (or the compressed stream in it) failed: a missing file,
    /// a full disk, or a gzip stream that is cut short or corrupted.
    #[error("backup file: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a record of this format, or records come in the wrong order.
    #[error("backup file, line {line}: {reason}")]
    Format {
        /// The line (1-based, in the uncompressed stream).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file was written by a newer version of this format than this code reads.
    #[error("backup file is format version {found}; this program reads up to version {supported}: use a newer eventsourcing-admin")]
    NewerVersion {
        /// The header's version.
        found: u32,
        /// The newest version this code reads.
        supported: u32,
    },
    /// The file ends before its trailer: it was cut short (a copy or a write that did not
    /// finish).
    #[error("backup file is truncated: it ends after line {lines} without a trailer")]
    Truncated {
        /// The lines read before it ended.
        lines: u64,
    },
    /// The SHA-256 of the records differs from the one the trailer states: the file was
    /// changed after it was written.
    #[error("backup file is corrupted: its records hash to {found}, the trailer says {expected}")]
    Checksum {
        /// The trailer's hash (hex).
        expected: String,
        /// The hash of the records read (hex).
        found: String,
    },
    /// The trailer's counts differ from the records in the file.
    #[error("backup file is corrupted: the trailer counts {expected:?}, the file holds {found:?}")]
    Counts {
        /// The trailer's counts.
        expected: super::Counts,
        /// The records read.
        found: super::Counts,
    },
    /// The file holds other content than the command expects (an archive given to `import`,
    /// a full export given to `archive restore`).
    #[error("backup file holds {found:?} content, expected {expected:?}")]
    WrongContent {
        /// What the command expects.
        expected: super::Content,
        /// What the header says.
        found: super::Content,
    },
    /// `import` writes only into an empty store; this one has rows.
    #[error("the target store is not empty: its {table} table has {rows} rows; import writes only into an empty store")]
    NotEmpty {
        /// The first table found with rows.
        table: &'static str,
        /// How many.
        rows: u64,
    },
    /// `archive` would remove events a consumer has not processed yet.
    #[error("consumer `{name}` is at {position:?}, behind the newest event archive would remove ({newest:?}); let it catch up or pass --force")]
    ConsumerBehind {
        /// The consumer (projection or process) name.
        name: String,
        /// Its tracking position.
        position: Position,
        /// The log position of the newest event to archive.
        newest: Position,
    },
    /// `archive restore` found events of the archive still (or again) in the store.
    #[error("stream {stream_id} already holds version {version}, which the archive would restore")]
    AlreadyPresent {
        /// The stream.
        stream_id: uuid::Uuid,
        /// A version present in both.
        version: u64,
    },
    /// The streams changed while they were being archived; nothing was deleted.
    #[error("stream {stream_id} changed while it was archived (now at version {now}, archived up to {archived}); nothing was deleted, run archive again")]
    Changed {
        /// The stream.
        stream_id: uuid::Uuid,
        /// Its version now.
        now: u64,
        /// The version the archive was written for.
        archived: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

impl BackupError {
    /// A format error at `line`.
    pub fn format(line: u64, reason: impl Into<String>) -> Self {
        BackupError::Format {
            line,
            reason: reason.into(),
        }
    }
}
