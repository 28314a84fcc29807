//! Rows to values and values to columns: events, snapshots, parked events, and the one place
//! where a [`Position`] becomes columns and back.
//!
//! Stored values the core types cannot hold (a negative version, a schema version above
//! `u32::MAX`) are errors naming the row, never panics.

use chrono::{DateTime, Utc};
use eventsourcing_core::{
    Error, EventView, Metadata, ParkedEvent, Position, Snapshot, StoredEvent, StoredTime,
};
use tokio_postgres::{
    types::{FromSql, Json, Type},
    Row,
};
use uuid::Uuid;

use crate::{
    error::{out_of_range, pg_error},
    xid::Xid8,
};

/// A position as the two `bigint` columns of `tracking` and `parked_events`.
pub(crate) fn position_columns(position: Position) -> Result<(i64, i64), Error> {
    let part = |value: u64, what: &str| {
        i64::try_from(value).map_err(|_| {
            out_of_range(format!(
                "position {what} {value} is above PostgreSQL's bigint range"
            ))
        })
    };
    Ok((part(position.commit, "commit")?, part(position.seq, "seq")?))
}

/// The two `bigint` columns of `tracking` and `parked_events` back as a position.
pub(crate) fn position_from_columns(commit: i64, seq: i64) -> Position {
    Position {
        commit: commit.max(0) as u64,
        seq: seq.max(0) as u64,
    }
}

/// A position as a bound on the events table's `(tx_id, position)`. A bound past every
/// storable position reads as the largest one: nothing lies beyond either.
pub(crate) fn log_bound(after: Position) -> (Xid8, i64) {
    (
        Xid8(after.commit),
        i64::try_from(after.seq).unwrap_or(i64::MAX),
    )
}

/// An event's `(tx_id, position)` columns as its position.
pub(crate) fn log_position(tx_id: Xid8, seq: i64) -> Position {
    Position {
        commit: tx_id.0,
        seq: seq.max(0) as u64,
    }
}

/// A version as a `bigint`. Version 0 goes to the guard as 0: version -1 never exists, so the
/// save is held back and reported as a conflict, like any other first version that is not
/// current + 1.
pub(crate) fn version_param(version: u64) -> Result<i64, Error> {
    i64::try_from(version).map_err(|_| {
        out_of_range(format!(
            "version {version} is above PostgreSQL's bigint range"
        ))
    })
}

/// A snapshot's fingerprint: 64 opaque bits, which `bigint` stores as they are.
pub(crate) fn fingerprint_column(fingerprint: u64) -> i64 {
    i64::from_ne_bytes(fingerprint.to_ne_bytes())
}

/// One row of `EVENT_COLUMNS` (the log).
pub(crate) fn log_event(row: &Row) -> Result<StoredEvent, Error> {
    let stream_id: Uuid = row.try_get(0).map_err(pg_error)?;
    decode_event(row, stream_id, 1)
}

/// The log's head: the horizon (the oldest running transaction) and the newest committed
/// event's transaction (`None` for an empty log).
pub(crate) type LogHead = (Xid8, Option<Xid8>);

/// A row of `Stmt::ReadLog`: an event of the page, or the log's head.
pub(crate) enum LogRow {
    Event(StoredEvent),
    Head(LogHead),
}

/// Decodes a row of `Stmt::ReadLog`: `EVENT_COLUMNS`, `newest`, and whether it is the head row
/// (whose horizon is in `tx_id`'s place).
pub(crate) fn log_row(row: &Row) -> Result<LogRow, Error> {
    if row.try_get::<_, bool>(11).map_err(pg_error)? {
        let horizon = row.try_get(2).map_err(pg_error)?;
        return Ok(LogRow::Head((horizon, row.try_get(10).map_err(pg_error)?)));
    }
    log_event(row).map(LogRow::Event)
}

/// One row of `STREAM_COLUMNS` (a stream's events).
pub(crate) fn stream_event(row: &Row, stream_id: Uuid) -> Result<StoredEvent, Error> {
    decode_event(row, stream_id, 0)
}

/// A row of `REPLAY_COLUMNS`: position and metadata stay at their defaults.
pub(crate) fn replay_event(row: &Row, stream_id: Uuid) -> Result<StoredEvent, Error> {
    let version = column::<i64>(row, 0, "version").and_then(|v| non_negative(v, "version"));
    let fields = |version: u64| {
        Ok::<_, String>(StoredEvent {
            stream_id,
            version,
            position: Position::default(),
            event_type: column(row, 1, "event_type")?,
            stream_type: column(row, 5, "stream_type")?,
            schema_version: schema_version(row, 2)?,
            timestamp: column::<Timestamp>(row, 3, "timestamp")?.datetime(),
            payload: column(row, 4, "payload")?,
            metadata: Metadata::default(),
            defect: None,
        })
    };
    Ok(settle(Position::default(), stream_id, version, fields))
}

/// The event in a row of `REPLAY_COLUMNS`, borrowed from the row: what replay reads of it,
/// with nothing copied. `None` if any column is not what this crate writes (then
/// [`replay_event`] says which).
///
/// The stream type is read only where a save records it (`EventView::records_stream_type`).
pub(crate) fn replay_view(row: &Row) -> Option<EventView<'_>> {
    let version = u64::try_from(row.try_get::<_, i64>(0).ok()?).ok()?;
    Some(EventView {
        version,
        event_type: row.try_get(1).ok()?,
        schema_version: u32::try_from(row.try_get::<_, i32>(2).ok()?).ok()?,
        timestamp: row.try_get::<_, Timestamp>(3).ok()?.0,
        payload: row.try_get(4).ok()?,
        stream_type: match EventView::records_stream_type(version) {
            true => row.try_get(5).ok()?,
            false => "",
        },
    })
}

/// The `STREAM_COLUMNS` of a row, starting at column `at`. Only the position must be readable:
/// any other column that is not what this crate writes (edited by hand, or by another
/// program: `jsonb` metadata that is not this crate's shape, a negative version) makes the
/// event a [`StoredEvent::defect`] naming the column, so one bad row never fails a whole page.
fn decode_event(row: &Row, stream_id: Uuid, at: usize) -> Result<StoredEvent, Error> {
    let tx_id: Xid8 = row.try_get(at + 1).map_err(pg_error)?;
    let seq: i64 = row.try_get(at + 2).map_err(pg_error)?;
    let position = log_position(tx_id, seq);
    let version = column::<i64>(row, at, "version").and_then(|v| non_negative(v, "version"));
    let fields = |version: u64| {
        let metadata: Option<Json<Metadata>> = column(row, at + 7, "metadata")?;
        Ok::<_, String>(StoredEvent {
            stream_id,
            version,
            position,
            event_type: column(row, at + 3, "event_type")?,
            stream_type: column(row, at + 8, "stream_type")?,
            schema_version: schema_version(row, at + 4)?,
            timestamp: column::<Timestamp>(row, at + 5, "timestamp")?.datetime(),
            payload: column(row, at + 6, "payload")?,
            metadata: metadata.map(|Json(m)| m).unwrap_or_default(),
            defect: None,
        })
    };
    Ok(settle(position, stream_id, version, fields))
}

/// The event, or a defective one naming the first column that could not be read.
fn settle(
    position: Position,
    stream_id: Uuid,
    version: Result<u64, String>,
    fields: impl FnOnce(u64) -> Result<StoredEvent, String>,
) -> StoredEvent {
    let (version, result) = match version {
        Ok(v) => (v, fields(v)),
        Err(e) => (0, Err(e)),
    };
    result.unwrap_or_else(|reason| {
        let mut event = StoredEvent::defective(position, reason);
        event.stream_id = stream_id;
        event.version = version;
        event
    })
}

/// PostgreSQL's epoch (2000-01-01 UTC) in microseconds after the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` decoded straight from its binary form (microseconds after PostgreSQL's
/// epoch): one addition and a range check per row, where postgres-types builds the date
/// 2000-01-01 and adds a duration to it for every value (a sixth of a stream load's decoding,
/// measured with callgrind). A replay turns only the last one into a `DateTime`.
struct Timestamp(StoredTime);

impl Timestamp {
    fn datetime(self) -> DateTime<Utc> {
        self.0.to_datetime()
    }
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("timestamptz must be 8 bytes, got {}", raw.len()))?;
        let micros = i64::from_be_bytes(bytes);
        micros
            .checked_add(PG_EPOCH_MICROS)
            .and_then(StoredTime::from_micros)
            .map(Timestamp)
            .ok_or_else(|| format!("timestamptz {micros} is out of range").into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// Column `index`, or why it cannot be read, naming it.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    name: &str,
) -> Result<T, String> {
    row.try_get(index)
        .map_err(|e| format!("column `{name}`: {}", crate::error::PgError(e)))
}

fn non_negative(value: i64, name: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("column `{name}`: {value} is negative"))
}

fn schema_version(row: &Row, index: usize) -> Result<u32, String> {
    let value: i32 = column(row, index, "schema_version")?;
    u32::try_from(value).map_err(|_| format!("column `schema_version`: {value} is negative"))
}

/// Where a snapshot's columns are in a row.
#[derive(Debug, Clone, Copy)]
struct SnapshotColumns {
    version: usize,
    timestamp: usize,
    state_type: usize,
    fingerprint: usize,
    payload: usize,
}

/// A row of `version, timestamp, state_type, fingerprint, payload` from `snapshots`.
pub(crate) fn snapshot(row: &Row, stream_id: Uuid) -> Result<Snapshot, Error> {
    let at = SnapshotColumns {
        version: 0,
        timestamp: 1,
        state_type: 2,
        fingerprint: 3,
        payload: 4,
    };
    snapshot_at(row, stream_id, at)
}

/// A row of `Stmt::LoadFromSnapshot`: the snapshot, or one of the events after it.
pub(crate) enum SnapshotOrEvent {
    Snapshot(Snapshot),
    Event(StoredEvent),
}

/// Decodes a row of `Stmt::LoadFromSnapshot`: `REPLAY_COLUMNS`, the fingerprint, and whether
/// it is the snapshot (whose `state_type` is in `event_type`'s place).
pub(crate) fn snapshot_or_event(row: &Row, stream_id: Uuid) -> Result<SnapshotOrEvent, Error> {
    if !row.try_get::<_, bool>(7).map_err(pg_error)? {
        return Ok(SnapshotOrEvent::Event(replay_event(row, stream_id)?));
    }
    let at = SnapshotColumns {
        version: 0,
        timestamp: 3,
        state_type: 1,
        fingerprint: 6,
        payload: 4,
    };
    Ok(SnapshotOrEvent::Snapshot(snapshot_at(row, stream_id, at)?))
}

fn snapshot_at(row: &Row, stream_id: Uuid, at: SnapshotColumns) -> Result<Snapshot, Error> {
    let version: i64 = row.try_get(at.version).map_err(pg_error)?;
    let fingerprint: i64 = row.try_get(at.fingerprint).map_err(pg_error)?;
    Ok(Snapshot {
        stream_id,
        version: u64::try_from(version).map_err(|_| {
            out_of_range(format!(
                "snapshot of stream {stream_id} has version {version}"
            ))
        })?,
        timestamp: row.try_get(at.timestamp).map_err(pg_error)?,
        state_type: row.try_get(at.state_type).map_err(pg_error)?,
        fingerprint: u64::from_ne_bytes(fingerprint.to_ne_bytes()),
        payload: row.try_get(at.payload).map_err(pg_error)?,
    })
}

/// A row of `position_commit, position_seq, stream_id, version, event_type, error, parked_at`
/// from `parked_events`, parked by the projection `name`.
pub(crate) fn parked_event(row: &Row, name: &str) -> Result<ParkedEvent, Error> {
    let version: i64 = row.try_get(3).map_err(pg_error)?;
    Ok(ParkedEvent {
        name: name.to_owned(),
        position: position_from_columns(
            row.try_get(0).map_err(pg_error)?,
            row.try_get(1).map_err(pg_error)?,
        ),
        stream_id: row.try_get(2).map_err(pg_error)?,
        version: u64::try_from(version)
            .map_err(|_| out_of_range(format!("a parked event has version {version}")))?,
        event_type: row.try_get(4).map_err(pg_error)?,
        error: row.try_get(5).map_err(pg_error)?,
        parked_at: row.try_get(6).map_err(pg_error)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The binary form of a `timestamptz` decodes as postgres-types decodes it, before and
    /// after both epochs; a value chrono cannot hold (`infinity`) is an error, not a panic.
    #[test]
    fn timestamps_decode_as_postgres_types_does() {
        for micros in [
            0i64,
            1,
            -1,
            1_234_567_890_123_456,
            -PG_EPOCH_MICROS - 86_400_000_001,
            820_000_000_000_000,
        ] {
            let raw = micros.to_be_bytes();
            let ours = Timestamp::from_sql(&Type::TIMESTAMPTZ, &raw)
                .unwrap()
                .datetime();
            let theirs = DateTime::<Utc>::from_sql(&Type::TIMESTAMPTZ, &raw).unwrap();
            assert_eq!(ours, theirs, "{micros} µs");
        }
        for raw in [i64::MAX.to_be_bytes(), i64::MIN.to_be_bytes()] {
            assert!(Timestamp::from_sql(&Type::TIMESTAMPTZ, &raw).is_err());
        }
        assert!(Timestamp::from_sql(&Type::TIMESTAMPTZ, &[0; 4]).is_err());
        assert!(!<Timestamp as FromSql>::accepts(&Type::TIMESTAMP));
    }
}
