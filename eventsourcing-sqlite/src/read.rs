//! Reads: a stream's events, its version, snapshots, and pages of the log. Each runs on a
//! reader connection (or the one connection of an in-memory database).

use eventsourcing_core::{Error, Snapshot, StoredEvent, Uuid};
use rusqlite::{Connection, OptionalExtension};

use crate::{
    error::sql_error,
    rows::{get_u64, micros_to_time, read_event},
    sql::{LOAD, LOAD_SNAPSHOT, READ_LOG, STREAM_VERSION},
};

/// The events of `stream_id` with `after < version <= up_to`, in version order.
pub(crate) fn load(
    conn: &Connection,
    dbname: &str,
    stream_id: Uuid,
    after: i64,
    up_to: i64,
) -> Result<Vec<StoredEvent>, Error> {
    conn.prepare_cached(LOAD)
        .and_then(|mut stmt| {
            stmt.query_map(
                rusqlite::params![stream_id.as_bytes(), after, up_to],
                read_event,
            )?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| sql_error(dbname, e))
}

/// The stream's current version: 0 if it has no events.
pub(crate) fn current_version(conn: &Connection, stream_id: &Uuid) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(STREAM_VERSION)?;
    let version: Option<i64> = stmt.query_row([stream_id.as_bytes()], |row| row.get(0))?;
    version.map_or(Ok(0), |v| {
        u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, v))
    })
}

/// The newest snapshot of the stream at or below `at_or_below`.
pub(crate) fn load_snapshot(
    conn: &Connection,
    dbname: &str,
    stream_id: Uuid,
    at_or_below: i64,
) -> Result<Option<Snapshot>, Error> {
    conn.prepare_cached(LOAD_SNAPSHOT)
        .and_then(|mut stmt| {
            stmt.query_row(
                rusqlite::params![stream_id.as_bytes(), at_or_below],
                |row| {
                    Ok(Snapshot {
                        stream_id,
                        version: get_u64(row, 0)?,
                        timestamp: micros_to_time(row.get(1)?, 1)?,
                        state_type: row.get(2)?,
                        // Stored as the signed integer with the same bits.
                        fingerprint: u64::from_ne_bytes(row.get::<_, i64>(3)?.to_ne_bytes()),
                        payload: row.get(4)?,
                    })
                },
            )
            .optional()
        })
        .map_err(|e| sql_error(dbname, e))
}

/// One page of the log: the events with `position > floor`, at most `limit`.
pub(crate) fn read_page(
    conn: &Connection,
    dbname: &str,
    floor: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, Error> {
    conn.prepare_cached(READ_LOG)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params![floor, limit], read_event)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| sql_error(dbname, e))
}
