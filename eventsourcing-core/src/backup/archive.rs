//! [`ArchiveJob`]: one run of `archive`, what every store does the same around its own SQL.

use std::{
    fs::{File, OpenOptions},
    io::BufWriter,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{sync_file, verify_file, ArchiveReport, BackupError, BackupWriter, Content, Header};

/// The writer of an archive file.
pub type ArchiveWriter = BackupWriter<BufWriter<File>>;

/// One run of `archive`: what to archive (streams whose newest event is older than
/// [`before`](Self::before)), where (a new file), whether consumers behind may be passed over
/// ([`force`](Self::force)), and what was done so far. A store's
/// [`Archive::archive_with`](super::Archive::archive_with) fills it from its tables, in one
/// transaction:
///
/// 1. each quiet stream with [`stream`](Self::stream) (chosen when a snapshot at its newest
///    version lets it load without its earlier events, skipped otherwise);
/// 2. unless [`force`](Self::force), [`check_consumers`](super::check_consumers) against the
///    newest event to remove;
/// 3. the events to remove into [`create_file`](Self::create_file)'s writer, in log order;
/// 4. [`seal`](Self::seal) (or [`sealed`](Self::sealed) from async code): the file is
///    finished, synced (file and directory) and read back whole;
/// 5. the events deleted, their number checked with [`deleted`](Self::deleted);
/// 6. [`finish`](Self::finish) just before the commit.
///
/// Until [`finish`](Self::finish), dropping the job removes the file it created: the store
/// still holds every event in it. From then on the file stays, whatever the commit's outcome
/// (a commit whose answer is lost may have deleted them).
#[derive(Debug)]
pub struct ArchiveJob {
    before: DateTime<Utc>,
    path: PathBuf,
    force: bool,
    source: &'static str,
    report: ArchiveReport,
    writer: Option<ArchiveWriter>,
    /// A file was created at `path` and is not kept yet.
    staged: bool,
}

impl ArchiveJob {
    /// An archive of the streams untouched since `before` into a new file at `path`, read from
    /// a `source` store (the header's `source`); with `force`, consumers behind are passed
    /// over.
    pub fn new(before: DateTime<Utc>, path: &Path, force: bool, source: &'static str) -> Self {
        ArchiveJob {
            before,
            path: path.to_owned(),
            force,
            source,
            report: ArchiveReport::default(),
            writer: None,
            staged: false,
        }
    }

    /// The cut-off: streams whose newest event is older are archived.
    pub fn before(&self) -> DateTime<Utc> {
        self.before
    }

    /// Whether consumers that have not processed the events yet are passed over.
    pub fn force(&self) -> bool {
        self.force
    }

    /// A quiet stream: chosen (true) when a snapshot at its newest version exists, else
    /// skipped and listed as such.
    pub fn stream(&mut self, stream_id: Uuid, snapshot_at_newest: bool) -> bool {
        let list = if snapshot_at_newest {
            &mut self.report.streams
        } else {
            &mut self.report.skipped
        };
        list.push(stream_id);
        snapshot_at_newest
    }

    /// The streams chosen so far.
    pub fn streams(&self) -> &[Uuid] {
        &self.report.streams
    }

    /// Creates the archive file (refused if one exists) and returns its writer, the header
    /// written.
    pub fn create_file(&mut self) -> Result<&mut ArchiveWriter, BackupError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)?;
        self.staged = true;
        let header = Header::new(Content::Archive, self.source);
        Ok(self
            .writer
            .insert(BackupWriter::new(BufWriter::new(file), header)?))
    }

    /// Finishes the file, syncs it and its directory, reads it back whole and checks it holds
    /// what was written. Blocks: on the thread of a blocking store, or through
    /// [`sealed`](Self::sealed).
    pub fn seal(&mut self) -> Result<(), BackupError> {
        let Some(writer) = self.writer.take() else {
            return Err(crate::Error::store("archive: sealed before its file was created").into());
        };
        let (out, counts) = writer.finish()?;
        sync_file(out, &self.path)?;
        let verified = verify_file(&self.path)?;
        if verified.counts != counts {
            return Err(BackupError::Counts {
                expected: counts,
                found: verified.counts,
            });
        }
        self.report.counts = counts;
        Ok(())
    }

    /// [`seal`](Self::seal) off the async threads.
    pub async fn sealed(self) -> Result<Self, BackupError> {
        tokio::task::spawn_blocking(move || {
            let mut job = self;
            job.seal().map(|()| job)
        })
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))?
    }

    /// Checks that the store deleted as many events as the sealed file holds.
    pub fn deleted(&self, deleted: u64) -> Result<(), BackupError> {
        let archived = self.report.counts.events;
        if deleted != archived {
            return Err(crate::Error::store(format!(
                "archive would delete {deleted} events, the file holds {archived}; nothing was \
                 deleted"
            ))
            .into());
        }
        Ok(())
    }

    /// The report; from here on the file (if one was written) stays. Call it just before the
    /// store commits the deletion, or when no stream was chosen.
    pub fn finish(mut self) -> ArchiveReport {
        self.staged = false;
        std::mem::take(&mut self.report)
    }
}

impl Drop for ArchiveJob {
    fn drop(&mut self) {
        if self.staged {
            // The store still holds every event in it: nothing is lost with it.
            drop(self.writer.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("es-archive-{}-{name}.esb", Uuid::new_v4()))
    }

    #[test]
    fn an_unfinished_job_removes_its_file_and_a_finished_one_keeps_it() {
        let dropped = path("dropped");
        let mut job = ArchiveJob::new(Utc::now(), &dropped, false, "test");
        job.create_file().unwrap();
        assert!(dropped.exists());
        drop(job);
        assert!(!dropped.exists(), "an unfinished archive left its file");

        let kept = path("kept");
        let mut job = ArchiveJob::new(Utc::now(), &kept, false, "test");
        assert!(job.stream(Uuid::from_u128(1), true));
        assert!(!job.stream(Uuid::from_u128(2), false));
        job.create_file().unwrap();
        job.seal().unwrap();
        let err = job.deleted(1).unwrap_err().to_string();
        assert!(err.contains("nothing was deleted"), "{err}");
        job.deleted(0).unwrap();
        let report = job.finish();
        assert!(kept.exists(), "a finished archive lost its file");
        assert_eq!(report.streams, [Uuid::from_u128(1)]);
        assert_eq!(report.skipped, [Uuid::from_u128(2)]);

        let mut again = ArchiveJob::new(Utc::now(), &kept, false, "test");
        assert!(
            again.create_file().is_err(),
            "an existing file was overwritten"
        );
        drop(again);
        assert!(
            kept.exists(),
            "a refused archive removed a file it did not write"
        );
        std::fs::remove_file(&kept).unwrap();
    }
}
