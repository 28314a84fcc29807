//! What the stores report to an operator (`eventsourcing-admin`): counts and sizes, index use,
//! snapshot pruning, and the store check (`verify`), whose rules live here once. A store
//! supplies pages of raw rows in `(stream_id, version)` order and the snapshot rows that do not
//! fit their stream; [`verify`] checks them holding one page at a time.

use std::{future::Future, time::Duration};

use serde::Serialize;
use uuid::Uuid;

use crate::{error::Error, store::EventStore};

/// Counts and sizes of a store (`eventsourcing-admin status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Streams (distinct stream ids) stored.
    pub streams: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Events parked by projections (`OnError::Park`).
    pub parked: u64,
    /// Every consumer (projection or process) with a tracking row, and how far behind this
    /// store's log it is.
    pub consumers: Vec<ConsumerLag>,
    /// The store's tables with their sizes.
    pub tables: Vec<TableSize>,
}

/// A tracking row and its lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    /// The consumer's name.
    pub name: String,
    /// Its recorded position: commit part.
    pub position_commit: u64,
    /// Its recorded position: sequence part.
    pub position_seq: u64,
    /// Events of this store's log after that position. A process that follows another store's
    /// log is measured against this one all the same: read it as "events here it has not seen"
    /// only for consumers of this store.
    pub behind: u64,
}

/// One table's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// The table.
    pub table: String,
    /// Its rows' size in bytes (the heap, or the table's b-tree on SQLite).
    pub bytes: Option<u64>,
    /// Its indexes' size in bytes.
    pub index_bytes: Option<u64>,
}

/// One index: size and use (`eventsourcing-admin indexes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexUsage {
    /// The table it indexes.
    pub table: String,
    /// The index.
    pub index: String,
    /// Its size in bytes, if the database tells.
    pub bytes: Option<u64>,
    /// Index scans since the statistics were last reset; `None` where the database does not
    /// count them (SQLite).
    pub scans: Option<u64>,
    /// It enforces uniqueness (a primary key or unique constraint): needed even if never
    /// scanned.
    pub unique: bool,
}

impl IndexUsage {
    /// Never scanned and not needed for a constraint: a candidate for dropping (after a
    /// representative period since the statistics were reset).
    pub fn unused(&self) -> bool {
        self.scans == Some(0) && !self.unique
    }
}

/// What `prune_snapshots` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Snapshots deleted.
    pub deleted: u64,
    /// Snapshots left.
    pub kept: u64,
}

/// Which snapshots `prune_snapshots` removes: those beyond the newest `keep` of their stream
/// and, with `older_than`, only those taken longer ago than that. The newest `keep` (at least
/// one) of every stream are never removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPrune {
    /// Snapshots kept per stream, newest first; at least 1.
    pub keep: u32,
    /// Only snapshots older than this are removed.
    pub older_than: Option<Duration>,
}

/// One maintenance step done (`vacuum`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceStep {
    /// What ran (`VACUUM (ANALYZE) "s"."events"`, `PRAGMA optimize`, ...).
    pub step: String,
    /// What it returned, if anything worth showing.
    pub result: Option<String>,
}

/// How `verify` checks payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadCheck {
    /// Each payload must be valid JSON (the [`JsonCodec`](crate::JsonCodec)).
    #[default]
    Json,
    /// Any bytes (a compressing or encrypting codec): only that they can be read.
    Bytes,
}

/// An event row as stored, for [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The stream.
    pub stream_id: Uuid,
    /// Its version, as stored (a negative or zero one is reported).
    pub version: i64,
    /// The stored event type name.
    pub event_type: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Why the store's own reader cannot read this row (a column not as the store writes it:
    /// metadata of another shape, a timestamp out of range, ...): what a load would fail with
    /// as [`Error::BadRow`]. `None` for a readable row.
    pub defect: Option<String>,
}

/// A snapshot row that does not fit its stream, for [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshot {
    /// The stream.
    pub stream_id: Uuid,
    /// The snapshot's version.
    pub version: i64,
    /// The stream's current version; `None` when the stream has no events.
    pub stream_version: Option<i64>,
}

/// One thing wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The stream.
    pub stream_id: Uuid,
    /// The version concerned (of the event or snapshot).
    pub version: i64,
    /// A short kind: `gap`, `unreadable` (the store cannot read the row: metadata of another
    /// shape, a timestamp out of range, ...), `event_type`, `payload`, `snapshot`.
    pub kind: &'static str,
    /// What is wrong, in words.
    pub detail: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events read.
    pub events: u64,
    /// Streams read.
    pub streams: u64,
    /// Streams whose first events were archived (`eventsourcing-admin archive`): they start
    /// above version 1, at or below a snapshot's version + 1, so they still load.
    pub archived_streams: u64,
    /// Snapshot rows found not to fit their stream (counted in `problems` too).
    pub bad_snapshots: u64,
    /// Every problem found, up to [`MAX_LISTED`] (then `more` counts the rest).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.more == 0
    }
}

/// Problems listed in a [`VerifyReport`] at most (memory stays bounded on a badly broken store).
pub const MAX_LISTED: usize = 1000;

/// Rows `verify` reads per page.
pub const VERIFY_PAGE: usize = 500;

/// Checks the rows of one store, one page at a time: `page(after)` returns at most
/// [`VERIFY_PAGE`] events after `after` in `(stream_id, version)` order (`None`: from the
/// start); `progress` is called with the number of events checked after each page. Then the
/// snapshot rows the store says do not fit their stream are added. A page that does not move
/// past `after` is an error (never an endless loop). A stream that starts above version 1 is
/// looked up in `store`'s snapshots: with a snapshot at or above the version before its first
/// event, its earlier events were archived and it is counted as such, not as a gap.
pub async fn verify<S, P, F>(
    store: &S,
    payload: PayloadCheck,
    mut page: P,
    bad_snapshots: Vec<RawSnapshot>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, Error>
where
    S: EventStore,
    P: FnMut(Option<(Uuid, i64)>) -> F,
    F: Future<Output = Result<Vec<RawEvent>, Error>>,
{
    let mut checker = Checker {
        payload,
        report: VerifyReport::default(),
        current: None,
    };
    let mut after = None;
    loop {
        let rows = page(after).await?;
        let Some(last) = rows.last() else { break };
        let key = Some((last.stream_id, last.version));
        if key <= after {
            return Err(Error::store(format!(
                "verify: the page after {after:?} ended at {key:?}: rows out of (stream_id, \
                 version) order"
            )));
        }
        after = key;
        let full = rows.len() >= VERIFY_PAGE;
        for row in &rows {
            let starts_above_1 = row.version > 1
                && checker
                    .current
                    .is_none_or(|(stream, _)| stream != row.stream_id);
            let snapshot = match u64::try_from(row.version) {
                Ok(version) if starts_above_1 => store
                    .load_snapshot(row.stream_id, Some(version))
                    .await?
                    .map(|s| s.version),
                _ => None,
            };
            let archived = snapshot.is_some_and(|v| v.saturating_add(1) >= row.version as u64);
            checker.event(row, archived);
        }
        progress(checker.report.events);
        if !full {
            break;
        }
    }
    for snapshot in bad_snapshots {
        checker.snapshot(&snapshot);
    }
    Ok(checker.report)
}

struct Checker {
    payload: PayloadCheck,
    report: VerifyReport,
    /// The stream being read and its last version.
    current: Option<(Uuid, i64)>,
}

impl Checker {
    fn problem(&mut self, stream_id: Uuid, version: i64, kind: &'static str, detail: String) {
        if self.report.problems.len() < MAX_LISTED {
            self.report.problems.push(Problem {
                stream_id,
                version,
                kind,
                detail,
            });
        } else {
            self.report.more += 1;
        }
    }

    /// Checks one event; `archived`: it starts a stream whose earlier events a snapshot holds.
    fn event(&mut self, e: &RawEvent, archived: bool) {
        self.report.events += 1;
        let expected = match self.current {
            Some((stream, last)) if stream == e.stream_id => last.saturating_add(1),
            _ if archived => {
                self.report.streams += 1;
                self.report.archived_streams += 1;
                e.version
            }
            _ => {
                self.report.streams += 1;
                1
            }
        };
        self.current = Some((e.stream_id, e.version));
        if e.version != expected {
            let detail = if expected == 1 {
                format!("the stream starts at version {}, not 1", e.version)
            } else {
                format!(
                    "version {} follows version {}: {} missing",
                    e.version,
                    expected - 1,
                    if e.version == expected + 1 {
                        format!("version {expected} is")
                    } else {
                        format!("versions {expected}..={} are", e.version.saturating_sub(1))
                    }
                )
            };
            self.problem(e.stream_id, e.version, "gap", detail);
        }
        if let Some(defect) = &e.defect {
            let detail = format!("the store cannot read this row: {defect}");
            self.problem(e.stream_id, e.version, "unreadable", detail);
            return;
        }
        if e.event_type.trim().is_empty() {
            self.problem(
                e.stream_id,
                e.version,
                "event_type",
                "the event type is empty".into(),
            );
        }
        // A payload that starts with a NUL byte is in the envelope of a compressing or
        // encrypting codec (JSON never starts with one): opaque here.
        if self.payload == PayloadCheck::Json && e.payload.first() != Some(&0) {
            if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&e.payload) {
                self.problem(
                    e.stream_id,
                    e.version,
                    "payload",
                    format!("the payload is not JSON ({err}; {} bytes)", e.payload.len()),
                );
            }
        }
    }

    fn snapshot(&mut self, s: &RawSnapshot) {
        self.report.bad_snapshots += 1;
        let detail = match s.stream_version {
            None => format!(
                "a snapshot at version {} of a stream with no events",
                s.version
            ),
            Some(v) => format!(
                "a snapshot at version {} of a stream at version {v}",
                s.version
            ),
        };
        self.problem(s.stream_id, s.version, "snapshot", detail);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(stream: u128, version: i64, payload: &str) -> RawEvent {
        RawEvent {
            stream_id: Uuid::from_u128(stream),
            version,
            event_type: "Created".into(),
            payload: payload.as_bytes().to_vec(),
            defect: None,
        }
    }

    fn run(rows: Vec<RawEvent>, payload: PayloadCheck) -> VerifyReport {
        run_on(&crate::MemoryStore::new(), rows, payload)
    }

    fn run_on(
        store: &crate::MemoryStore,
        rows: Vec<RawEvent>,
        payload: PayloadCheck,
    ) -> VerifyReport {
        let rows = std::sync::Mutex::new(Some(rows));
        let report = verify(
            store,
            payload,
            |_| {
                let page = rows.lock().unwrap().take().unwrap_or_default();
                async move { Ok(page) }
            },
            vec![],
            |_| {},
        );
        futures_util::FutureExt::now_or_never(report)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_sound_store_has_no_problems() {
        let report = run(
            vec![raw(1, 1, "{}"), raw(1, 2, "[]"), raw(2, 1, "{\"a\":1}")],
            PayloadCheck::Json,
        );
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.events, report.streams), (3, 2));
    }

    #[test]
    fn gaps_bad_payloads_empty_types_and_unreadable_rows_are_each_named() {
        let mut no_type = raw(2, 1, "{}");
        no_type.event_type = " ".into();
        let mut bad_meta = raw(2, 2, "{}");
        bad_meta.defect = Some("column `metadata`: invalid type".into());
        let report = run(
            vec![
                raw(1, 1, "{}"),
                raw(1, 4, "{}"),
                no_type,
                bad_meta,
                raw(3, 2, "not json"),
            ],
            PayloadCheck::Json,
        );
        let kinds: Vec<(u128, i64, &str)> = report
            .problems
            .iter()
            .map(|p| (p.stream_id.as_u128(), p.version, p.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, 4, "gap"),
                (2, 1, "event_type"),
                (2, 2, "unreadable"),
                (3, 2, "gap"),
                (3, 2, "payload")
            ]
        );
        assert!(report.problems[0]
            .detail
            .contains("versions 2..=3 are missing"));
        let bytes = run(vec![raw(3, 1, "not json")], PayloadCheck::Bytes);
        assert!(bytes.is_ok(), "{bytes:?}");
    }

    #[test]
    fn an_archived_stream_starts_at_its_snapshot_and_an_encrypted_payload_is_opaque() {
        let store = crate::MemoryStore::new();
        let snapshot = |stream: u128, version: u64| crate::Snapshot {
            stream_id: Uuid::from_u128(stream),
            version,
            state_type: "Counter".into(),
            fingerprint: 1,
            timestamp: crate::now(),
            payload: b"{}".to_vec(),
        };
        let save = async {
            store.save_snapshot(snapshot(1, 7), None).await.unwrap();
            store.save_snapshot(snapshot(2, 3), None).await.unwrap();
        };
        futures_util::FutureExt::now_or_never(save).unwrap();
        let mut sealed = raw(3, 1, "");
        sealed.payload = vec![0, 1, 2, 255];
        let report = run_on(
            &store,
            vec![
                // Events 1..=6 archived, 7 kept, the snapshot at 7: it loads.
                raw(1, 7, "{}"),
                raw(1, 8, "{}"),
                // A snapshot at 3 cannot stand for the missing 4.
                raw(2, 5, "{}"),
                sealed,
            ],
            PayloadCheck::Json,
        );
        let kinds: Vec<(u128, i64, &str)> = report
            .problems
            .iter()
            .map(|p| (p.stream_id.as_u128(), p.version, p.kind))
            .collect();
        assert_eq!(kinds, [(2, 5, "gap")]);
        assert_eq!((report.streams, report.archived_streams), (3, 1));
    }
}

#[cfg(test)]
mod order {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_page_that_does_not_advance_is_an_error_not_a_loop() {
        let row = RawEvent {
            stream_id: Uuid::from_u128(1),
            version: 1,
            event_type: "Created".into(),
            payload: b"{}".to_vec(),
            defect: None,
        };
        let page = vec![row; VERIFY_PAGE];
        let store = crate::MemoryStore::new();
        let report = verify(
            &store,
            PayloadCheck::Json,
            |_| {
                let page = page.clone();
                async move { Ok(page) }
            },
            vec![],
            |_| {},
        );
        let err = futures_util::FutureExt::now_or_never(report)
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("out of (stream_id, version) order"),
            "{err}"
        );
    }
}
