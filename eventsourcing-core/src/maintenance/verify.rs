//! [`verify`]: the store check, written once over the pages of raw rows a store supplies.

use std::future::Future;

use uuid::Uuid;

use super::{PayloadCheck, Problem, RawEvent, RawSnapshot, VerifyReport, MAX_LISTED, VERIFY_PAGE};
use crate::{error::Error, store::EventStore};

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
    S: EventStore + ?Sized,
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
        if let Some(defect) = &e.event.defect {
            let detail = format!("the store cannot read this row: {defect}");
            self.problem(e.stream_id, e.version, "unreadable", detail);
            return;
        }
        if e.event.event_type.trim().is_empty() {
            self.problem(
                e.stream_id,
                e.version,
                "event_type",
                "the event type is empty".into(),
            );
        }
        // A payload that starts with a NUL byte is in the envelope of a compressing or
        // encrypting codec (JSON never starts with one): opaque here.
        if self.payload == PayloadCheck::Json && e.event.payload.first() != Some(&0) {
            if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&e.event.payload) {
                self.problem(
                    e.stream_id,
                    e.version,
                    "payload",
                    format!(
                        "the payload is not JSON ({err}; {} bytes)",
                        e.event.payload.len()
                    ),
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
        let stream_id = Uuid::from_u128(stream);
        RawEvent {
            stream_id,
            version,
            event: crate::StoredEvent {
                stream_id,
                version: version.unsigned_abs(),
                position: crate::Position::START,
                event_type: "Created".into(),
                stream_type: String::new(),
                schema_version: 1,
                timestamp: crate::now(),
                payload: payload.as_bytes().to_vec(),
                metadata: crate::Metadata::default(),
                defect: None,
            },
        }
    }

    /// Each problem's stream, version and kind.
    fn kinds(report: &VerifyReport) -> Vec<(u128, i64, &'static str)> {
        report
            .problems
            .iter()
            .map(|p| (p.stream_id.as_u128(), p.version, p.kind))
            .collect()
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
        no_type.event.event_type = " ".into();
        let mut bad_meta = raw(2, 2, "{}");
        bad_meta.event.defect = Some("column `metadata`: invalid type".into());
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
        assert_eq!(
            kinds(&report),
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
        sealed.event.payload = vec![0, 1, 2, 255];
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
        assert_eq!(kinds(&report), [(2, 5, "gap")]);
        assert_eq!((report.streams, report.archived_streams), (3, 1));
    }

    #[test]
    fn a_page_that_does_not_advance_is_an_error_not_a_loop() {
        let page = vec![raw(1, 1, "{}"); VERIFY_PAGE];
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
