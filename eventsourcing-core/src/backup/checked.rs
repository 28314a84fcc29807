//! [`CheckedFile`]: a backup checked whole, read again by the pass that writes it into a store.

use std::{fs::File, path::Path};

use super::{
    no_progress, verify_holding, BackupError, BackupReader, Content, Counts, Progress, Record,
    Remap, PROGRESS_EVERY,
};
use crate::event::Position;

/// A backup file that passed the whole check ([`verify_holding`]) and is open for the writing
/// pass of an `import` or `archive restore`: its records in file order, one at a time or in
/// batches, counted as they are read (with progress), the tracking and parked positions moved
/// to the new positions of the same events ([`Remap`]), and at the end
/// ([`finish`](Self::finish)) the check that this pass read what the first one counted (the
/// file did not change in between).
pub struct CheckedFile {
    reader: Option<BackupReader<File>>,
    remap: Remap,
    expected: Counts,
    read: Counts,
    progress: Progress,
}

impl std::fmt::Debug for CheckedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedFile")
            .field("expected", &self.expected)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl CheckedFile {
    /// Checks the whole file at `path` (off the async threads) and that it holds `content`,
    /// then opens it for the writing pass.
    pub async fn open(path: &Path, content: Content) -> Result<Self, BackupError> {
        let verified = verify_holding(path, content).await?;
        Ok(CheckedFile {
            reader: Some(BackupReader::open(path)?),
            remap: Remap::new(verified.positions),
            expected: verified.counts,
            read: Counts::default(),
            progress: no_progress(),
        })
    }

    /// Calls `progress` every [`PROGRESS_EVERY`] records read, with the records in all.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The next record (event, snapshot, tracking or parked), read on this thread; `None` at
    /// the checked end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        let record = reader.next_record()?;
        match &record {
            Some(record) => self.count(record),
            None => self.reader = None,
        }
        Ok(record)
    }

    /// Up to `n` records, read (and decompressed) off the async threads; `None` at the checked
    /// end of the file.
    pub async fn next_batch(&mut self, n: usize) -> Result<Option<Vec<Record>>, BackupError> {
        let Some(mut reader) = self.reader.take() else {
            return Ok(None);
        };
        let (reader, batch) = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(n);
            while batch.len() < n {
                match reader.next_record()? {
                    Some(record) => batch.push(record),
                    None => return Ok((None, batch)),
                }
            }
            Ok::<_, BackupError>((Some(reader), batch))
        })
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))??;
        self.reader = reader;
        batch.iter().for_each(|record| self.count(record));
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// The event read at source position `from` was written at `to` (events in file order).
    pub fn moved(&mut self, from: Position, to: Position) {
        self.remap.event(from, to);
    }

    /// Where a tracking or parked record's source position is in the target's log: at the
    /// event written last at or before it ([`Remap::get`]).
    pub fn position(&mut self, source: Position) -> Position {
        self.remap.get(source)
    }

    /// The records read: the file's counts, or [`BackupError::Counts`] when this pass read
    /// others than the first one counted (the file changed between the two passes, or was not
    /// read to its end).
    pub fn finish(self) -> Result<Counts, BackupError> {
        if self.read != self.expected {
            return Err(BackupError::Counts {
                expected: self.expected,
                found: self.read,
            });
        }
        Ok(self.read)
    }

    fn count(&mut self, record: &Record) {
        let counter = match record {
            Record::Event(_) => &mut self.read.events,
            Record::Snapshot(_) => &mut self.read.snapshots,
            Record::Tracking(_) => &mut self.read.tracking,
            Record::Parked(_) => &mut self.read.parked,
            Record::Header(_) | Record::Trailer(_) => return,
        };
        *counter += 1;
        let done = self.read.total();
        if done % PROGRESS_EVERY == 0 {
            (self.progress)(done, self.expected.total());
        }
    }
}
