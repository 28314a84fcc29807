//! Rows to values and back: decoding events, integers and timestamps, and the one place a
//! [`Position`] becomes columns (and columns a `Position`), for the log and for tracking.
//!
//! SQLite integers are signed 64-bit; the runtime's versions and positions are `u64`. Values
//! this crate wrote always fit; a value that does not is reported, never wrapped.

use chrono::{DateTime, Utc};
use eventsourcing_core::{Error, EventView, Metadata, Position, StoredEvent, StoredTime, Uuid};
use rusqlite::{types::Type, Connection, OptionalExtension, Row};

use crate::{
    error::{to_i64, BadValue},
    sql::{READ_TRACKING, WRITE_TRACKING},
};

/// Where the columns of an event are in a row.
pub(crate) struct Columns {
    position: usize,
    /// `None` where the query names the stream (a load).
    stream_id: Option<usize>,
    version: usize,
    timestamp: usize,
    event_type: usize,
    schema_version: usize,
    payload: usize,
    /// `None` where the caller reads no metadata (a replay).
    metadata: Option<usize>,
    stream_type: usize,
}

/// The columns of `sql::select_events!`.
pub(crate) const EVENT: Columns = Columns {
    position: 0,
    stream_id: Some(1),
    version: 2,
    timestamp: 3,
    event_type: 4,
    schema_version: 5,
    payload: 6,
    metadata: Some(7),
    stream_type: 8,
};

/// The columns of `sql::select_replay!`: what replay reads of one stream's events.
pub(crate) const REPLAY: Columns = Columns {
    position: 0,
    stream_id: None,
    version: 1,
    timestamp: 2,
    event_type: 3,
    schema_version: 4,
    payload: 5,
    metadata: None,
    stream_type: 6,
};

/// An event read with the columns of `sql::select_events!`. Only the position must be
/// readable: a row with any other column that is not what this crate writes comes back as a
/// [`StoredEvent::defect`] naming the column, so that one bad row does not fail a whole page.
pub(crate) fn read_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    read_columns(row, &EVENT, Uuid::nil())
}

/// An event of `stream_id` read with the columns of `sql::select_replay!` (its metadata left
/// empty), reported like [`read_event`].
pub(crate) fn read_replay(row: &Row<'_>, stream_id: Uuid) -> rusqlite::Result<StoredEvent> {
    read_columns(row, &REPLAY, stream_id)
}

/// An event read from `columns` of `row`; `stream_id` where the columns hold none.
fn read_columns(
    row: &Row<'_>,
    columns: &Columns,
    stream_id: Uuid,
) -> rusqlite::Result<StoredEvent> {
    let position = get_u64(row, columns.position)?;
    let position = Position {
        commit: position,
        seq: position,
    };
    let stream_id = match columns.stream_id {
        Some(column) => row.get::<_, [u8; 16]>(column).map(Uuid::from_bytes),
        None => Ok(stream_id),
    };
    let version = get_u64(row, columns.version);
    let (stream_id, version) = match (stream_id, version) {
        (Ok(stream_id), Ok(version)) => (stream_id, version),
        (Err(e), _) => return Ok(defective(position, "stream_id", &e, Uuid::nil(), 0)),
        (Ok(stream_id), Err(e)) => return Ok(defective(position, "version", &e, stream_id, 0)),
    };
    let event = (|| {
        Ok::<_, (&str, rusqlite::Error)>(StoredEvent {
            stream_id,
            version,
            position,
            event_type: row.get(columns.event_type).map_err(|e| ("event_type", e))?,
            stream_type: row
                .get(columns.stream_type)
                .map_err(|e| ("stream_type", e))?,
            schema_version: row
                .get(columns.schema_version)
                .map_err(|e| ("schema_version", e))?,
            timestamp: row
                .get(columns.timestamp)
                .and_then(|t| micros_to_time(t, columns.timestamp))
                .map_err(|e| ("timestamp", e))?,
            payload: row.get(columns.payload).map_err(|e| ("payload", e))?,
            metadata: match columns.metadata {
                Some(column) => metadata(row, column).map_err(|e| ("metadata", e))?,
                None => Metadata::default(),
            },
            defect: None,
        })
    })();
    Ok(event
        .unwrap_or_else(|(column, error)| defective(position, column, &error, stream_id, version)))
}

/// The event in a row of `sql::select_replay!`, borrowed from the row: what replay reads of
/// it, with nothing copied. An error for any column that is not what this crate writes.
///
/// The stream type is read only where a save records it (`EventView::records_stream_type`):
/// one column of six fewer for every other event.
pub(crate) fn replay_view<'r>(row: &'r Row<'_>) -> rusqlite::Result<EventView<'r>> {
    let c = &REPLAY;
    let version = get_u64(row, c.version)?;
    let micros = row.get(c.timestamp)?;
    Ok(EventView {
        version,
        timestamp: StoredTime::from_micros(micros)
            .ok_or_else(|| out_of_range(micros, c.timestamp))?,
        event_type: row.get_ref(c.event_type)?.as_str()?,
        stream_type: match EventView::records_stream_type(version) {
            true => row.get_ref(c.stream_type)?.as_str()?,
            false => "",
        },
        schema_version: row.get(c.schema_version)?,
        payload: row.get_ref(c.payload)?.as_blob()?,
    })
}

/// A row whose `column` could not be read.
fn defective(
    position: Position,
    column: &str,
    error: &rusqlite::Error,
    stream_id: Uuid,
    version: u64,
) -> StoredEvent {
    let mut event = StoredEvent::defective(position, format!("column `{column}`: {error}"));
    event.stream_id = stream_id;
    event.version = version;
    event
}

fn metadata(row: &Row<'_>, column: usize) -> rusqlite::Result<Metadata> {
    match row.get_ref(column)?.as_str_or_null()? {
        None => Ok(Metadata::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(e))
        }),
    }
}

/// A timestamp stored as microseconds since the epoch (UTC), read from `column`.
pub(crate) fn micros_to_time(micros: i64, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| out_of_range(micros, column))
}

/// A timestamp of `micros` in `column` that no `DateTime` holds.
fn out_of_range(micros: i64, column: usize) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Integer,
        Box::new(BadValue(format!("timestamp {micros} µs is out of range"))),
    )
}

/// A non-negative integer column (rusqlite reads `u64` only with its `fallible_uint` feature).
pub(crate) fn get_u64(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
}

/// A bound for a query (`version <= ?`), where anything past `i64::MAX` means "no bound".
pub(crate) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The events after `after` in the log are those with `position > floor`; `None` when no
/// event can come after it.
///
/// An event's position is (p, p). It comes after `after` when p > after.commit, or
/// p == after.commit and p > after.seq.
pub(crate) fn log_floor(after: Position) -> Option<i64> {
    let floor = if after.seq < after.commit {
        after.commit - 1
    } else {
        after.commit
    };
    i64::try_from(floor).ok().filter(|f| *f < i64::MAX)
}

/// A position as its `(position_commit, position_seq)` columns.
pub(crate) fn position_columns(position: Position) -> Result<(i64, i64), Error> {
    Ok((
        to_i64("position commit", position.commit)?,
        to_i64("position seq", position.seq)?,
    ))
}

/// The position a consumer recorded in `tracking`, if any.
pub(crate) fn read_tracking(conn: &Connection, name: &str) -> rusqlite::Result<Option<Position>> {
    conn.prepare_cached(READ_TRACKING)?
        .query_row([name], |row| {
            Ok(Position {
                commit: get_u64(row, 0)?,
                seq: get_u64(row, 1)?,
            })
        })
        .optional()
}

/// Records (or moves) a consumer's tracking position, given as [`position_columns`]; the caller
/// has checked it is newer.
pub(crate) fn write_tracking(
    conn: &Connection,
    name: &str,
    commit: i64,
    seq: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(WRITE_TRACKING)?
        .execute(rusqlite::params![name, commit, seq])
        .map(|_| ())
}
