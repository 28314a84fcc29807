//! The records of a backup and their JSON lines.
//!
//! A payload is written as JSON (`"payload": {...}`) when its bytes are one JSON value on one
//! line with nothing around it, so that reading the line back gives the very same bytes;
//! otherwise as base64 (`"payload_base64": "..."`, standard alphabet, padded).

use std::borrow::Cow;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{BackupError, Content, Counts, FORMAT_NAME, FORMAT_VERSION};
use crate::{
    event::{Metadata, Position, Snapshot, StoredEvent, Tracking},
    projection::ParkedEvent,
};

/// The first record: what the file is and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The format version the file was written in ([`FORMAT_VERSION`] by this code).
    pub format_version: u32,
    /// A whole store or an archive.
    pub content: Content,
    /// The kind of store it was read from (`postgres`, `sqlite`, ...): informational, since
    /// either store imports either kind's files.
    pub source: String,
    /// When the export began.
    pub created_at: DateTime<Utc>,
    /// The program that wrote it.
    pub written_by: String,
}

impl Header {
    /// A header of this format version for `content` read from a `source` store, now.
    pub fn new(content: Content, source: &str) -> Self {
        Header {
            format: FORMAT_NAME.to_owned(),
            format_version: FORMAT_VERSION,
            content,
            source: source.to_owned(),
            created_at: crate::event::now(),
            written_by: concat!("eventsourcing ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// An event record: the stored event, with its original place in the log. Its `position` is
/// an opaque ordinal of the source store's log, ascending through the file: only its order means
/// something in another store. A backup never carries a row its store could not read: an event
/// with a [`defect`](StoredEvent::defect) is refused when written ([`Record::event`]), and one
/// read from a file has none.
pub type EventRecord = StoredEvent;

/// A snapshot record: the stored snapshot.
pub type SnapshotRecord = Snapshot;

/// A tracking record: a consumer's position, in the source store's log.
pub type TrackingRecord = Tracking;

/// A parked record: an event a consumer parked, at its position in the source store's log.
pub type ParkedRecord = ParkedEvent;

/// The last record: the counts of every kind of record and the SHA-256 of every line before
/// it (each line with its `\n`), in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// The records of each kind.
    #[serde(flatten)]
    pub counts: Counts,
    /// The hash of the lines before the trailer.
    pub sha256: String,
}

/// One line of a backup.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// The first line.
    Header(Header),
    /// An event (written through [`Record::event`], which refuses a defective one).
    Event(EventRecord),
    /// A snapshot.
    Snapshot(SnapshotRecord),
    /// A consumer's position.
    Tracking(TrackingRecord),
    /// A parked event.
    Parked(ParkedRecord),
    /// The last line.
    Trailer(Trailer),
}

#[derive(Serialize, Deserialize)]
struct Tagged<'a, T> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    stream_id: Uuid,
    version: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow, default)]
    stream_type: Cow<'a, str>,
    schema_version: u32,
    timestamp: DateTime<Utc>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata,
    position: Position,
}

#[derive(Serialize, Deserialize)]
struct WireSnapshot<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    stream_id: Uuid,
    version: u64,
    #[serde(borrow)]
    state_type: Cow<'a, str>,
    fingerprint: u64,
    timestamp: DateTime<Utc>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// The payload as embedded JSON when that gives back the very same bytes, else as base64.
fn encode_payload(bytes: &[u8]) -> (Option<&RawValue>, Option<String>) {
    let json = std::str::from_utf8(bytes)
        .ok()
        .filter(|text| !text.contains(['\n', '\r']))
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .filter(|raw| raw.get().len() == bytes.len());
    match json {
        Some(raw) => (Some(raw), None),
        None => (None, Some(STANDARD.encode(bytes))),
    }
}

fn decode_payload(
    line: u64,
    json: Option<&RawValue>,
    base64: Option<String>,
) -> Result<Vec<u8>, BackupError> {
    match (json, base64) {
        (Some(raw), None) => Ok(raw.get().as_bytes().to_vec()),
        (None, Some(text)) => STANDARD
            .decode(text)
            .map_err(|e| BackupError::format(line, format!("payload_base64: {e}"))),
        _ => Err(BackupError::format(
            line,
            "a record needs exactly one of `payload` and `payload_base64`",
        )),
    }
}

impl Record {
    /// The record of an event a store read; an event the store could not read (a
    /// [`StoredEvent::defect`]) is [`Error::BadRow`](crate::Error::BadRow).
    pub fn event(e: StoredEvent) -> Result<Self, crate::Error> {
        e.check_defect()?;
        Ok(Record::Event(e))
    }

    /// The record as one JSON line, without the `\n`; a defective event is refused.
    pub fn to_line(&self) -> Result<Vec<u8>, BackupError> {
        let tagged = |kind: &'static str| Cow::Borrowed(kind);
        let line = match self {
            Record::Header(h) => serde_json::to_vec(&Tagged {
                kind: tagged("header"),
                body: h,
            }),
            Record::Event(e) => {
                e.check_defect()?;
                let (payload, payload_base64) = encode_payload(&e.payload);
                serde_json::to_vec(&WireEvent {
                    kind: tagged("event"),
                    stream_id: e.stream_id,
                    version: e.version,
                    event_type: Cow::Borrowed(&e.event_type),
                    stream_type: Cow::Borrowed(&e.stream_type),
                    schema_version: e.schema_version,
                    timestamp: e.timestamp,
                    payload,
                    payload_base64,
                    metadata: e.metadata.clone(),
                    position: e.position,
                })
            }
            Record::Snapshot(s) => {
                let (payload, payload_base64) = encode_payload(&s.payload);
                serde_json::to_vec(&WireSnapshot {
                    kind: tagged("snapshot"),
                    stream_id: s.stream_id,
                    version: s.version,
                    state_type: Cow::Borrowed(&s.state_type),
                    fingerprint: s.fingerprint,
                    timestamp: s.timestamp,
                    payload,
                    payload_base64,
                })
            }
            Record::Tracking(t) => serde_json::to_vec(&Tagged {
                kind: tagged("tracking"),
                body: t,
            }),
            Record::Parked(p) => serde_json::to_vec(&Tagged {
                kind: tagged("parked"),
                body: p,
            }),
            Record::Trailer(t) => serde_json::to_vec(&Tagged {
                kind: tagged("trailer"),
                body: t,
            }),
        };
        line.map_err(|e| BackupError::Io(e.into()))
    }

    /// Parses one line (without its `\n`); `line` numbers the errors.
    pub fn from_line(text: &[u8], line: u64) -> Result<Record, BackupError> {
        let bad = |e: serde_json::Error| BackupError::format(line, e.to_string());
        let kind: Kind<'_> = serde_json::from_slice(text).map_err(bad)?;
        Ok(match kind.kind.as_ref() {
            "header" => Record::Header(tagged_body(text, line)?),
            "event" => {
                let w: WireEvent<'_> = serde_json::from_slice(text).map_err(bad)?;
                Record::Event(EventRecord {
                    payload: decode_payload(line, w.payload, w.payload_base64)?,
                    stream_id: w.stream_id,
                    version: w.version,
                    event_type: w.event_type.into_owned(),
                    stream_type: w.stream_type.into_owned(),
                    schema_version: w.schema_version,
                    timestamp: w.timestamp,
                    metadata: w.metadata,
                    position: w.position,
                    defect: None,
                })
            }
            "snapshot" => {
                let w: WireSnapshot<'_> = serde_json::from_slice(text).map_err(bad)?;
                Record::Snapshot(SnapshotRecord {
                    payload: decode_payload(line, w.payload, w.payload_base64)?,
                    stream_id: w.stream_id,
                    version: w.version,
                    state_type: w.state_type.into_owned(),
                    fingerprint: w.fingerprint,
                    timestamp: w.timestamp,
                })
            }
            "tracking" => Record::Tracking(tagged_body(text, line)?),
            "parked" => Record::Parked(tagged_body(text, line)?),
            "trailer" => Record::Trailer(tagged_body(text, line)?),
            other => {
                return Err(BackupError::format(
                    line,
                    format!("unknown record type `{other}`"),
                ))
            }
        })
    }

    /// The record's type as written in its `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::Event(_) => "event",
            Record::Snapshot(_) => "snapshot",
            Record::Tracking(_) => "tracking",
            Record::Parked(_) => "parked",
            Record::Trailer(_) => "trailer",
        }
    }
}

fn tagged_body<T: for<'de> Deserialize<'de>>(text: &[u8], line: u64) -> Result<T, BackupError> {
    let tagged: Tagged<'_, T> =
        serde_json::from_slice(text).map_err(|e| BackupError::format(line, e.to_string()))?;
    Ok(tagged.body)
}
