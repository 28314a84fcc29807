//! The SQL of the store and the conversions between rows and events.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use eventsourcing_core::{Error, Metadata, NewEvent, Position, StoredEvent, Tracking, Uuid};
use rusqlite::{types::Type, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::error::{sql_error, to_i64, BadValue};

/// `SELECT <the columns read_event reads> FROM events <rest>`.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream_id, version, timestamp, event_type, schema_version, ",
            "payload, metadata FROM events ",
            $rest
        )
    };
}

pub(crate) const LOAD: &str =
    select_events!("WHERE stream_id = ?1 AND version > ?2 AND version <= ?3 ORDER BY version");
pub(crate) const READ_LOG: &str = select_events!("WHERE position > ?1 ORDER BY position LIMIT ?2");
pub(crate) const STREAM_VERSION: &str = "SELECT max(version) FROM events WHERE stream_id = ?1";
pub(crate) const INSERT_EVENT: &str = "INSERT INTO events \
     (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// An event ready for the INSERT: everything converted before it reaches the writer thread.
pub(crate) struct EventRow {
    stream_id: Uuid,
    version: i64,
    timestamp: i64,
    event_type: Cow<'static, str>,
    schema_version: u32,
    payload: Vec<u8>,
    metadata: Option<String>,
}

/// The streams of a save with the version each must start at.
pub(crate) struct Plan {
    pub(crate) firsts: Vec<(Uuid, u64)>,
    pub(crate) rows: Vec<EventRow>,
}

/// A tracking position ready for the INSERT.
pub(crate) struct TrackingRow {
    tracking: Tracking,
    commit: i64,
    seq: i64,
}

impl TrackingRow {
    pub(crate) fn new(tracking: Tracking) -> Result<Self, Error> {
        Ok(TrackingRow {
            commit: to_i64("tracking position commit", tracking.position.commit)?,
            seq: to_i64("tracking position seq", tracking.position.seq)?,
            tracking,
        })
    }
}

/// Checks that each stream's versions in the batch are contiguous, and converts the events for
/// the INSERT (off the writer thread).
pub(crate) fn plan(events: Vec<NewEvent>) -> Result<Plan, Error> {
    // (stream, first version, last version seen): few streams per save, so a Vec beats a map.
    let mut streams: Vec<(Uuid, u64, u64)> = Vec::new();
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        match streams.iter_mut().find(|s| s.0 == event.stream_id) {
            None => streams.push((event.stream_id, event.version, event.version)),
            Some(stream) => {
                if event.version != stream.2 + 1 {
                    // The same report as the in-memory store.
                    return Err(Error::Conflict {
                        stream_id: event.stream_id,
                        expected: stream.2,
                        actual: stream.2,
                    });
                }
                stream.2 = event.version;
            }
        }
        let metadata = if event.metadata.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&event.metadata).map_err(Error::store)?)
        };
        rows.push(EventRow {
            stream_id: event.stream_id,
            version: to_i64("event version", event.version)?,
            timestamp: event.timestamp.timestamp_micros(),
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
            metadata,
        });
    }
    Ok(Plan {
        firsts: streams
            .into_iter()
            .map(|(id, first, _)| (id, first))
            .collect(),
        rows,
    })
}

/// One save: checks the tracking position and every stream's current version, inserts every
/// event, records the tracking position, commits. Any error rolls everything back.
pub(crate) fn write(
    conn: &mut Connection,
    dbname: &str,
    plan: &Plan,
    tracking: Option<&TrackingRow>,
) -> Result<(), Error> {
    let err = |e| sql_error(dbname, e);
    // IMMEDIATE takes the write lock first, so no other process can write between the checks
    // and the inserts.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    if let Some(row) = tracking {
        let t = &row.tracking;
        if let Some(recorded) = read_tracking(&tx, &t.name).map_err(err)? {
            if recorded >= t.position {
                return Err(Error::AlreadyProcessed {
                    name: t.name.clone(),
                    recorded,
                    attempted: t.position,
                });
            }
        }
    }
    for (stream_id, first) in &plan.firsts {
        // A stream that starts at version 1 needs no lookup: if it has events, its version 1
        // exists and the insert below breaks the unique index (most saves that start at 1 create
        // an aggregate, so this saves a query per creation).
        if *first == 1 {
            continue;
        }
        let actual = current_version(&tx, stream_id).map_err(err)?;
        if *first != actual + 1 {
            return Err(Error::Conflict {
                stream_id: *stream_id,
                expected: first.saturating_sub(1),
                actual,
            });
        }
    }
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(err)?;
        for row in &plan.rows {
            let inserted = insert.execute(rusqlite::params![
                row.stream_id.as_bytes(),
                row.version,
                row.timestamp,
                row.event_type.as_ref(),
                row.schema_version,
                row.payload,
                row.metadata,
            ]);
            if let Err(e) = inserted {
                // A version that exists already: the stream was created by another save. (For
                // streams checked above it cannot happen: one writer, write lock held.)
                let unique = e
                    .sqlite_error()
                    .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE);
                if unique {
                    let actual = current_version(&tx, &row.stream_id).map_err(err)?;
                    return Err(Error::Conflict {
                        stream_id: row.stream_id,
                        expected: u64::try_from(row.version).unwrap_or(0).saturating_sub(1),
                        actual,
                    });
                }
                return Err(err(e));
            }
        }
    }
    if let Some(row) = tracking {
        write_tracking(&tx, &row.tracking.name, row.commit, row.seq).map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// Records (or moves) a consumer's tracking position; the caller has checked it is newer.
pub(crate) fn write_tracking(
    conn: &Connection,
    name: &str,
    commit: i64,
    seq: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO tracking (name, position_commit, position_seq) \
         VALUES (?1, ?2, ?3)",
    )?
    .execute(rusqlite::params![name, commit, seq])
    .map(|_| ())
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

pub(crate) fn current_version(conn: &Connection, stream_id: &Uuid) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(STREAM_VERSION)?;
    let version: Option<i64> = stmt.query_row([stream_id.as_bytes()], |row| row.get(0))?;
    version.map_or(Ok(0), |v| {
        u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, v))
    })
}

pub(crate) fn read_tracking(conn: &Connection, name: &str) -> rusqlite::Result<Option<Position>> {
    conn.prepare_cached("SELECT position_commit, position_seq FROM tracking WHERE name = ?1")?
        .query_row([name], |row| {
            Ok(Position {
                commit: get_u64(row, 0)?,
                seq: get_u64(row, 1)?,
            })
        })
        .optional()
}

pub(crate) fn read_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let position = get_u64(row, 0)?;
    let stream_id = Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?);
    let metadata = match row.get_ref(7)?.as_str_or_null()? {
        None => Metadata::default(),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?,
    };
    Ok(StoredEvent {
        stream_id,
        version: get_u64(row, 2)?,
        position: Position {
            commit: position,
            seq: position,
        },
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        timestamp: micros_to_time(row.get(3)?, 3)?,
        payload: row.get(6)?,
        metadata,
    })
}

pub(crate) fn micros_to_time(micros: i64, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            Type::Integer,
            Box::new(BadValue(format!("timestamp {micros} µs is out of range"))),
        )
    })
}

/// A non-negative integer column (rusqlite reads `u64` only with its `fallible_uint` feature).
pub(crate) fn get_u64(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
}

pub(crate) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
