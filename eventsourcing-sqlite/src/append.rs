//! Writes: saves (events with an optional tracking position, in one transaction) and
//! snapshots. Each runs on the writer connection.

use std::borrow::Cow;

use eventsourcing_core::{check_save, Error, NewEvent, Snapshot, Tracking, Uuid};
use rusqlite::{Connection, TransactionBehavior};

use crate::{
    error::{sql_error, to_i64},
    read::current_version,
    rows::{position_columns, read_tracking, write_tracking},
    sql::{INSERT_EVENT, PRUNE_SNAPSHOTS, SAVE_SNAPSHOT},
};

/// An event ready for the INSERT: everything converted before it reaches the writer thread.
pub(crate) struct EventRow {
    stream_id: Uuid,
    version: i64,
    timestamp: i64,
    event_type: Cow<'static, str>,
    stream_type: Cow<'static, str>,
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
        let (commit, seq) = position_columns(tracking.position)?;
        Ok(TrackingRow {
            commit,
            seq,
            tracking,
        })
    }
}

/// Checks the save ([`check_save`]: contiguity, what no store keeps) and converts the events
/// for the INSERT (off the writer thread).
pub(crate) fn plan(events: Vec<NewEvent>) -> Result<Plan, Error> {
    let firsts = check_save(&events)?;
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
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
            stream_type: event.stream_type,
            schema_version: event.schema_version,
            payload: event.payload,
            metadata,
        });
    }
    Ok(Plan { firsts, rows })
}

/// One save in a transaction of its own: [`write_rows`], then the commit. Any error rolls
/// everything back.
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
    write_rows(&tx, dbname, plan, tracking)?;
    tx.commit().map_err(err)
}

/// One save's statements, inside a transaction (or savepoint) the caller holds and ends: checks
/// the tracking position and every stream's current version, inserts every event, records the
/// tracking position. On an error the caller rolls back.
pub(crate) fn write_rows(
    tx: &Connection,
    dbname: &str,
    plan: &Plan,
    tracking: Option<&TrackingRow>,
) -> Result<(), Error> {
    let err = |e| sql_error(dbname, e);
    if let Some(row) = tracking {
        let t = &row.tracking;
        if let Some(recorded) = read_tracking(tx, &t.name).map_err(err)? {
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
        let actual = current_version(tx, stream_id).map_err(err)?;
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
                row.stream_type.as_ref(),
            ]);
            if let Err(e) = inserted {
                // A version that exists already: the stream was created by another save. (For
                // streams checked above it cannot happen: one writer, write lock held.)
                let unique = e
                    .sqlite_error()
                    .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE);
                if unique {
                    let actual = current_version(tx, &row.stream_id).map_err(err)?;
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
        write_tracking(tx, &row.tracking.name, row.commit, row.seq).map_err(err)?;
    }
    Ok(())
}

/// Writes a snapshot, replacing one at the same version, then keeps only the newest `keep` of
/// the stream, in one transaction.
pub(crate) fn save_snapshot(
    conn: &mut Connection,
    dbname: &str,
    snapshot: &Snapshot,
    keep: Option<u32>,
) -> Result<(), Error> {
    let version = to_i64("snapshot version", snapshot.version)?;
    let err = |e| sql_error(dbname, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.prepare_cached(SAVE_SNAPSHOT)
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                snapshot.stream_id.as_bytes(),
                version,
                snapshot.timestamp.timestamp_micros(),
                snapshot.state_type,
                // The fingerprint's bits as a signed integer: SQLite has no u64.
                i64::from_ne_bytes(snapshot.fingerprint.to_ne_bytes()),
                snapshot.payload,
            ])
        })
        .map_err(err)?;
    if let Some(keep) = keep {
        tx.prepare_cached(PRUNE_SNAPSHOTS)
            .and_then(|mut stmt| {
                stmt.execute(rusqlite::params![
                    snapshot.stream_id.as_bytes(),
                    i64::from(keep.max(1)) - 1
                ])
            })
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}
