//! [`BackupReader`]: a gzip stream of JSON lines back into records, checking the header's
//! format and version first and the trailer's counts and hash last; [`verify`]: a whole pass.

use std::{
    fs::File,
    io::{BufRead, BufReader, ErrorKind, Read},
    path::Path,
};

use flate2::read::GzDecoder;

use super::{section::Sections, BackupError, Counts, Header, Record, FORMAT_NAME, FORMAT_VERSION};
use crate::event::Position;

/// Reads a backup record by record, in bounded memory (one line at a time).
///
/// [`new`](Self::new) reads and checks the header; [`next_record`](Self::next_record) returns
/// the events, snapshots, tracking and parked records in file order, and `None` only once the
/// trailer has been read and its counts and hash match. A file that ends before its trailer is
/// [`BackupError::Truncated`], a changed one [`BackupError::Checksum`] (or a gzip or format
/// error, whichever is met first).
#[derive(Debug)]
pub struct BackupReader<R: Read> {
    input: BufReader<GzDecoder<R>>,
    sections: Sections,
    header: Header,
    line: Vec<u8>,
    finished: bool,
}

impl BackupReader<File> {
    /// Opens the file at `path`.
    pub fn open(path: &Path) -> Result<Self, BackupError> {
        Self::new(File::open(path)?)
    }
}

impl<R: Read> BackupReader<R> {
    /// Starts reading `input` and checks its header: the format name, and a version this code
    /// reads ([`BackupError::NewerVersion`] otherwise).
    pub fn new(input: R) -> Result<Self, BackupError> {
        let mut reader = BackupReader {
            input: BufReader::with_capacity(256 * 1024, GzDecoder::new(input)),
            sections: Sections::new(),
            header: Header::new(super::Content::Full, ""),
            line: Vec::with_capacity(1024),
            finished: false,
        };
        let first = reader.read_line()?;
        let header = match first {
            Some(Record::Header(header)) => header,
            Some(other) => {
                return Err(BackupError::format(
                    1,
                    format!(
                        "the first record is a {} record, not the header",
                        other.kind()
                    ),
                ))
            }
            None => return Err(BackupError::Truncated { lines: 0 }),
        };
        if header.format != FORMAT_NAME {
            return Err(BackupError::format(
                1,
                format!(
                    "not a backup: format `{}`, expected `{FORMAT_NAME}`",
                    header.format
                ),
            ));
        }
        if header.format_version > FORMAT_VERSION {
            return Err(BackupError::NewerVersion {
                found: header.format_version,
                supported: FORMAT_VERSION,
            });
        }
        reader.header = header;
        Ok(reader)
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The records read so far.
    pub fn counts(&self) -> Counts {
        self.sections.counts
    }

    /// The next record after the header, or `None` once the trailer has been read and checked.
    pub fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        if self.finished {
            return Ok(None);
        }
        let Some(record) = self.read_line()? else {
            return Err(BackupError::Truncated {
                lines: self.sections.lines,
            });
        };
        let Record::Trailer(trailer) = record else {
            return Ok(Some(record));
        };
        // `read_line` has accepted the trailer without hashing it: the digest covers the rest.
        let found = self.sections.digest();
        if found != trailer.sha256 {
            return Err(BackupError::Checksum {
                expected: trailer.sha256,
                found,
            });
        }
        if trailer.counts != self.sections.counts {
            return Err(BackupError::Counts {
                expected: trailer.counts,
                found: self.sections.counts,
            });
        }
        if self.read_line()?.is_some() {
            return Err(BackupError::format(
                self.sections.lines,
                "a record after the trailer",
            ));
        }
        self.finished = true;
        Ok(None)
    }

    /// One line as a record, `None` at the end of the stream.
    fn read_line(&mut self) -> Result<Option<Record>, BackupError> {
        self.line.clear();
        let n = self.input.read_until(b'\n', &mut self.line).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                BackupError::Truncated {
                    lines: self.sections.lines,
                }
            } else {
                BackupError::Io(e)
            }
        })?;
        if n == 0 {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            return Err(BackupError::Truncated {
                lines: self.sections.lines,
            });
        }
        let number = self.sections.lines + 1;
        let text = &self.line[..self.line.len() - 1];
        let record = Record::from_line(text, number)?;
        self.sections.accept(&record, &self.line)?;
        Ok(Some(record))
    }
}

/// What a whole pass over a sound backup found: its header, its counts, and the positions its
/// tracking and parked records name (what an import must remap), sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The header.
    pub header: Header,
    /// The records of each kind.
    pub counts: Counts,
    /// The distinct positions of the tracking and parked records, ascending.
    pub positions: Vec<Position>,
}

/// Reads a whole backup and checks it (header, record order, trailer counts and hash), keeping
/// only the header, the counts and the tracking and parked positions.
pub fn verify<R: Read>(input: R) -> Result<Verified, BackupError> {
    let mut reader = BackupReader::new(input)?;
    let mut positions = Vec::new();
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Tracking(t) => positions.push(t.position),
            Record::Parked(p) => positions.push(p.position),
            _ => {}
        }
    }
    positions.sort_unstable();
    positions.dedup();
    Ok(Verified {
        header: reader.header.clone(),
        counts: reader.counts(),
        positions,
    })
}

/// [`verify`] on the file at `path`.
pub fn verify_file(path: &Path) -> Result<Verified, BackupError> {
    verify(File::open(path)?)
}
