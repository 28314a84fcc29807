//! The order of records, which both the writer and the reader enforce: header, events (in
//! ascending log position), snapshots, tracking, parked events, trailer. The counts and the
//! running SHA-256 of the lines go along.

use sha2::{Digest, Sha256};

use super::{BackupError, Counts, Record};
use crate::event::Position;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Start,
    Header,
    Events,
    Snapshots,
    Tracking,
    Parked,
    Done,
}

/// Where a file is in its sequence of records.
#[derive(Debug)]
pub(crate) struct Sections {
    stage: Stage,
    last_position: Option<Position>,
    pub(crate) counts: Counts,
    hash: Sha256,
    pub(crate) lines: u64,
}

impl Sections {
    pub(crate) fn new() -> Self {
        Sections {
            stage: Stage::Start,
            last_position: None,
            counts: Counts::default(),
            hash: Sha256::new(),
            lines: 0,
        }
    }

    /// Takes the next record and its line (with its `\n`): an error if it comes out of order.
    /// The trailer's line is not hashed.
    pub(crate) fn accept(&mut self, record: &Record, line: &[u8]) -> Result<(), BackupError> {
        self.lines += 1;
        let n = self.lines;
        let stage = match record {
            Record::Header(_) => Stage::Header,
            Record::Event(e) => {
                if self.last_position.is_some_and(|last| last >= e.position) {
                    return Err(BackupError::format(
                        n,
                        format!(
                            "event {} of stream {} at position {:?} is not after the previous event's position",
                            e.version, e.stream_id, e.position
                        ),
                    ));
                }
                self.last_position = Some(e.position);
                self.counts.events += 1;
                Stage::Events
            }
            Record::Snapshot(_) => {
                self.counts.snapshots += 1;
                Stage::Snapshots
            }
            Record::Tracking(_) => {
                self.counts.tracking += 1;
                Stage::Tracking
            }
            Record::Parked(_) => {
                self.counts.parked += 1;
                Stage::Parked
            }
            Record::Trailer(_) => Stage::Done,
        };
        let in_order = match stage {
            Stage::Header => self.stage == Stage::Start,
            Stage::Done => self.stage >= Stage::Header && self.stage < Stage::Done,
            _ => self.stage >= Stage::Header && self.stage <= stage && self.stage < Stage::Done,
        };
        if !in_order {
            let reason = match self.stage {
                Stage::Start => "the first record must be the header".to_owned(),
                Stage::Done => "a record after the trailer".to_owned(),
                _ => format!("a {} record out of order", record.kind()),
            };
            return Err(BackupError::format(n, reason));
        }
        self.stage = stage;
        if stage != Stage::Done {
            self.hash.update(line);
        }
        Ok(())
    }

    /// The hex SHA-256 of the lines accepted so far (trailer excluded).
    pub(crate) fn digest(&self) -> String {
        self.hash
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
