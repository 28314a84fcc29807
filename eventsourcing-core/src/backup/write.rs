//! [`BackupWriter`]: records to a gzip stream of JSON lines, ending with the trailer.

use std::io::Write;

use flate2::{write::GzEncoder, Compression};

use super::{
    section::Sections, BackupError, Counts, Header, Progress, Record, Trailer, PROGRESS_EVERY,
};

/// Writes a backup: the header at once, then the records given, then (on
/// [`finish`](Self::finish)) the trailer. Memory stays bounded by one record.
///
/// Gzip level 1: the export runs at the speed of the store, not of the compressor, and JSON
/// of events still shrinks several times.
pub struct BackupWriter<W: Write> {
    out: GzEncoder<W>,
    sections: Sections,
    line: Vec<u8>,
    progress: Option<(Progress, u64)>,
}

impl<W: Write> std::fmt::Debug for BackupWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("counts", &self.sections.counts)
            .finish_non_exhaustive()
    }
}

impl<W: Write> BackupWriter<W> {
    /// Starts a backup on `out` with `header`.
    pub fn new(out: W, header: Header) -> Result<Self, BackupError> {
        let mut writer = BackupWriter {
            out: GzEncoder::new(out, Compression::fast()),
            sections: Sections::new(),
            line: Vec::with_capacity(1024),
            progress: None,
        };
        writer.write(&Record::Header(header))?;
        Ok(writer)
    }

    /// Calls `progress` every [`PROGRESS_EVERY`] records written, with `total` as the records
    /// in all (0 when not known).
    pub fn with_progress(mut self, progress: Progress, total: u64) -> Self {
        self.progress = Some((progress, total));
        self
    }

    /// Sets the records in all that the progress callback is told (0: not known), once the
    /// store has counted them.
    pub fn set_total(&mut self, total: u64) {
        if let Some((_, known)) = &mut self.progress {
            *known = total;
        }
    }

    /// Writes one record. Records must come in the format's order (events in ascending
    /// position, then snapshots, tracking, parked); an out-of-order one is an error.
    pub fn write(&mut self, record: &Record) -> Result<(), BackupError> {
        if matches!(record, Record::Header(_) | Record::Trailer(_)) && self.sections.lines > 0 {
            return Err(BackupError::format(
                self.sections.lines + 1,
                "the header and trailer are written by the writer itself",
            ));
        }
        self.line.clear();
        self.line.extend_from_slice(&record.to_line()?);
        self.line.push(b'\n');
        self.sections.accept(record, &self.line)?;
        self.out.write_all(&self.line)?;
        let records = self.sections.lines - 1;
        if records % PROGRESS_EVERY == 0 {
            if let Some((progress, total)) = &mut self.progress {
                progress(records, *total);
            }
        }
        Ok(())
    }

    /// The records written so far.
    pub fn counts(&self) -> Counts {
        self.sections.counts
    }

    /// Writes the trailer, ends the gzip stream and returns the output (flushed, not synced)
    /// with the counts.
    pub fn finish(mut self) -> Result<(W, Counts), BackupError> {
        let trailer = Record::Trailer(Trailer {
            counts: self.sections.counts,
            sha256: self.sections.digest(),
        });
        let mut line = trailer.to_line()?;
        line.push(b'\n');
        self.sections.accept(&trailer, &line)?;
        self.out.write_all(&line)?;
        let mut out = self.out.finish()?;
        out.flush()?;
        Ok((out, self.sections.counts))
    }
}
