//! Reads: a stream's events, its version, snapshots, and pages of the log. Each runs on a
//! reader connection (or the one connection of an in-memory database).

use eventsourcing_core::{Error, EventView, Fold, Snapshot, StoredEvent, Uuid};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::{
    error::sql_error,
    rows::{clamp_i64, get_u64, micros_to_time, read_event, read_replay, replay_view},
    sql::{LOAD, LOAD_ALL, LOAD_REPLAY, LOAD_REPLAY_ALL, LOAD_SNAPSHOT, READ_LOG, STREAM_VERSION},
};

/// What a load reads of each event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// Every column ([`EventStore::load`](eventsourcing_core::EventStore::load)).
    All,
    /// All but the metadata, which replay does not read.
    Replay,
}

/// The events of `stream_id` with `after < version <= up_to`, in version order.
pub(crate) fn load(
    conn: &Connection,
    dbname: &str,
    (stream_id, after, up_to): (Uuid, i64, i64),
    what: Read,
) -> Result<Vec<StoredEvent>, Error> {
    let (sql, n) = load_query(what, up_to);
    let params: [&dyn rusqlite::ToSql; 3] = [stream_id.as_bytes(), &after, &up_to];
    let params = &params[..n];
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(dbname, e))?;
    match what {
        Read::All => stmt
            .query_map(params, read_event)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>()),
        Read::Replay => stmt
            .query_map(params, |row| read_replay(row, stream_id))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>()),
    }
    .map_err(|e| sql_error(dbname, e))
}

/// The statement reading the events of a stream with `after < version <= up_to` for `what`,
/// and how many of `[stream id, after, up_to]` it takes: without the upper bound when `up_to`
/// is the end of the stream.
fn load_query(what: Read, up_to: i64) -> (&'static str, usize) {
    match (what, up_to == i64::MAX) {
        (Read::All, false) => (LOAD, 3),
        (Read::All, true) => (LOAD_ALL, 2),
        (Read::Replay, false) => (LOAD_REPLAY, 3),
        (Read::Replay, true) => (LOAD_REPLAY_ALL, 2),
    }
}

/// Feeds the events of `stream_id` with `after < version <= up_to` to `fold` straight from
/// the rows, in version order. A row that cannot be viewed is read as a [`StoredEvent`], whose
/// defect ends the replay with [`Error::BadRow`].
pub(crate) fn replay_rows<F: Fold>(
    conn: &Connection,
    dbname: &str,
    (stream_id, after, up_to): (Uuid, i64, i64),
    fold: &mut F,
) -> Result<(), Error> {
    let sql = |e| sql_error(dbname, e);
    let (query, n) = load_query(Read::Replay, up_to);
    let params: [&dyn rusqlite::ToSql; 3] = [stream_id.as_bytes(), &after, &up_to];
    let params = &params[..n];
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    let mut rows = stmt.query(params).map_err(sql)?;
    fold.feeding(|fold| {
        while let Some(row) = rows.next().map_err(sql)? {
            match replay_view(row) {
                Ok(view) => fold.event(view)?,
                Err(_) => {
                    let event = read_replay(row, stream_id).map_err(sql)?;
                    event.check_defect()?;
                    fold.event(EventView::of(&event))?;
                }
            }
        }
        Ok(())
    })
}

/// The newest snapshot of `stream_id` at or below `up_to` and the events after it up to
/// `up_to`, read for replay, in one read transaction (so from one snapshot of the database).
pub(crate) fn load_from_snapshot(
    conn: &mut Connection,
    dbname: &str,
    stream_id: Uuid,
    up_to: i64,
) -> Result<(Option<Snapshot>, Vec<StoredEvent>), Error> {
    let tx = conn.transaction().map_err(|e| sql_error(dbname, e))?;
    let snapshot = load_snapshot(&tx, dbname, stream_id, up_to)?;
    let after = snapshot.as_ref().map_or(0, |s| clamp_i64(s.version));
    let events = if after < up_to {
        load(&tx, dbname, (stream_id, after, up_to), Read::Replay)?
    } else {
        Vec::new()
    };
    Ok((snapshot, events))
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
                |row| read_snapshot(row, stream_id, 0),
            )
            .optional()
        })
        .map_err(|e| sql_error(dbname, e))
}

/// The most events a page makes room for before its first row (larger pages grow).
const PAGE_ROOM: usize = 4096;

/// One page of the log: the events with `position > floor`, at most `limit`.
pub(crate) fn read_page(
    conn: &Connection,
    dbname: &str,
    floor: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, Error> {
    conn.prepare_cached(READ_LOG)
        .and_then(|mut stmt| {
            let mut rows = stmt.query(rusqlite::params![floor, limit])?;
            // A page is usually full: room for it at once, rather than growing (and moving
            // every event read so far) eight or more times on the way.
            let mut page = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(PAGE_ROOM));
            while let Some(row) = rows.next()? {
                page.push(read_event(row)?);
            }
            Ok(page)
        })
        .map_err(|e| sql_error(dbname, e))
}

/// A snapshot of `stream_id` from the columns `version, timestamp, state_type, fingerprint,
/// payload`, the first at `first`.
fn read_snapshot(row: &Row<'_>, stream_id: Uuid, first: usize) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        stream_id,
        version: get_u64(row, first)?,
        timestamp: micros_to_time(row.get(first + 1)?, first + 1)?,
        state_type: row.get(first + 2)?,
        // Stored as the signed integer with the same bits.
        fingerprint: u64::from_ne_bytes(row.get::<_, i64>(first + 3)?.to_ne_bytes()),
        payload: row.get(first + 4)?,
    })
}
