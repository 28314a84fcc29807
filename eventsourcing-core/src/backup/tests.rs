#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use chrono::{TimeZone, Utc};
use flate2::{write::GzEncoder, Compression};
use uuid::Uuid;

use super::*;
use crate::event::{Metadata, Position};

fn event(seq: u64, payload: &[u8]) -> Record {
    Record::Event(EventRecord {
        stream_id: Uuid::from_u128(7),
        version: seq,
        event_type: "Created".into(),
        stream_type: if seq == 1 {
            "widget".into()
        } else {
            String::new()
        },
        schema_version: 2,
        timestamp: Utc
            .timestamp_micros(1_700_000_000_123_456 + seq as i64)
            .unwrap(),
        payload: payload.to_vec(),
        metadata: Metadata::default().with("user", "ada"),
        position: Position { commit: 9, seq },
        defect: None,
    })
}

fn sample() -> Vec<Record> {
    vec![
        event(1, br#"{"name":"a"}"#),
        event(2, b" {\"spaced\": true} "),
        event(3, b"\x00\xffbinary"),
        event(4, b"{\n\"multi\":1}"),
        Record::Snapshot(SnapshotRecord {
            stream_id: Uuid::from_u128(7),
            version: 4,
            state_type: "widget".into(),
            fingerprint: u64::MAX,
            timestamp: Utc.timestamp_micros(1).unwrap(),
            payload: br#"{"n":4}"#.to_vec(),
        }),
        Record::Tracking(TrackingRecord {
            name: "p".into(),
            position: Position { commit: 9, seq: 2 },
        }),
        Record::Parked(ParkedRecord {
            name: "p".into(),
            position: Position { commit: 9, seq: 1 },
            stream_id: Uuid::from_u128(7),
            version: 1,
            event_type: "Created".into(),
            error: "boom".into(),
            parked_at: Utc.timestamp_micros(5).unwrap(),
        }),
    ]
}

fn written(records: &[Record]) -> Vec<u8> {
    let mut writer = BackupWriter::new(Vec::new(), Header::new(Content::Full, "test")).unwrap();
    for r in records {
        writer.write(r).unwrap();
    }
    writer.finish().unwrap().0
}

fn read_all(bytes: &[u8]) -> Result<Vec<Record>, BackupError> {
    let mut reader = BackupReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next_record()? {
        out.push(r);
    }
    Ok(out)
}

fn plain(bytes: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text).unwrap();
    text
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

#[test]
fn records_come_back_byte_for_byte() {
    let bytes = written(&sample());
    assert_eq!(read_all(&bytes).unwrap(), sample());
    let v = verify(&bytes[..]).unwrap();
    assert_eq!(v.counts.events, 4);
    assert_eq!(v.counts.parked, 1);
    assert_eq!(v.positions.len(), 2);
}

#[test]
fn json_payloads_stay_readable_and_others_are_base64() {
    let text = plain(&written(&sample()));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains(r#""payload":{"name":"a"}"#),
        "{}",
        lines[1]
    );
    for line in &lines[2..5] {
        assert!(line.contains("payload_base64"), "{line}");
    }
    assert!(lines.last().unwrap().starts_with(r#"{"type":"trailer""#));
}

#[test]
fn a_truncated_file_is_refused() {
    let bytes = written(&sample());
    for cut in [bytes.len() - 1, bytes.len() / 2, 30] {
        let err = read_all(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, BackupError::Truncated { .. } | BackupError::Io(_)),
            "{cut}: {err}"
        );
    }
    // Cut at a line boundary of the uncompressed text: a sound gzip stream without a trailer.
    let text = plain(&bytes);
    let without_trailer: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    let err = read_all(&gzip(&without_trailer)).unwrap_err();
    assert!(matches!(err, BackupError::Truncated { lines: 4 }), "{err}");
}

#[test]
fn a_changed_record_fails_the_checksum() {
    let text = plain(&written(&sample())).replace("ada", "eve");
    let err = read_all(&gzip(&text)).unwrap_err();
    assert!(matches!(err, BackupError::Checksum { .. }), "{err}");
    // A flipped byte in the compressed stream: a gzip error or a checksum error, never records.
    let mut bytes = written(&sample());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    assert!(read_all(&bytes).is_err());
}

#[test]
fn a_newer_version_is_refused_at_the_header() {
    let text = plain(&written(&sample())).replacen(
        &format!("\"format_version\":{FORMAT_VERSION}"),
        &format!("\"format_version\":{}", FORMAT_VERSION + 1),
        1,
    );
    let err = BackupReader::new(&gzip(&text)[..]).unwrap_err();
    assert!(
        matches!(err, BackupError::NewerVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
}

#[test]
fn records_out_of_order_are_refused_by_writer_and_reader() {
    let mut records = sample();
    records.swap(0, 1);
    let mut writer = BackupWriter::new(Vec::new(), Header::new(Content::Full, "t")).unwrap();
    writer.write(&records[0]).unwrap();
    let err = writer.write(&records[1]).unwrap_err();
    assert!(err.to_string().contains("not after"), "{err}");
    let text = plain(&written(&sample()));
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(5, 6);
    let swapped: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let err = read_all(&gzip(&swapped)).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
}

#[test]
fn remap_takes_the_last_event_at_or_before() {
    let p = |seq| Position { commit: 1, seq };
    let mut remap = Remap::new(vec![p(0), p(20), p(25), p(99)]);
    for (old, new) in [(10, 1), (20, 2), (30, 3)] {
        remap.event(
            p(old),
            Position {
                commit: 5,
                seq: new,
            },
        );
    }
    assert_eq!(remap.get(p(0)), Position::START);
    assert_eq!(remap.get(p(20)), Position { commit: 5, seq: 2 });
    assert_eq!(remap.get(p(25)), Position { commit: 5, seq: 2 });
    assert_eq!(remap.get(p(99)), Position { commit: 5, seq: 3 });
}

#[test]
fn progress_is_reported_every_progress_every_records() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let mut writer = BackupWriter::new(Vec::new(), Header::new(Content::Full, "t"))
        .unwrap()
        .with_progress(
            Box::new(move |done, total| sink.lock().unwrap().push((done, total))),
            7,
        );
    for seq in 1..=(2 * PROGRESS_EVERY + 5) {
        writer.write(&event(seq, b"{}")).unwrap();
    }
    let (bytes, counts) = writer.finish().unwrap();
    assert_eq!(counts.events, 2 * PROGRESS_EVERY + 5);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(PROGRESS_EVERY, 7), (2 * PROGRESS_EVERY, 7)]
    );
    assert_eq!(verify(&bytes[..]).unwrap().counts, counts);
}
