//! Appends: one statement per save (four shapes, see `sql.rs`), the tracked append of
//! projections and process applications, the append inside a caller's transaction, and the
//! typed conflict when a save is rejected.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use eventsourcing_core::{check_save, Error, Metadata, NewEvent, Position, Tracking};
use tokio_postgres::{
    error::SqlState,
    types::{Json, ToSql},
    Transaction,
};
use uuid::Uuid;

use crate::{
    error::{out_of_range, pg_error},
    pool::{Checkout, Pool},
    read::recorded_position,
    rows::{position_columns, version_param},
    sql::{Shape, Stmt},
};

/// Saves `events` in one autocommitted statement: all of them or, with a conflict, none.
pub(crate) async fn append(pool: &Pool, events: &[NewEvent]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    append_on(&mut pool.checkout().await?, pool, events).await
}

/// [`append`] on a connection the caller holds (a group's, see `group.rs`).
pub(crate) async fn append_on(
    conn: &mut Checkout<'_>,
    pool: &Pool,
    events: &[NewEvent],
) -> Result<(), Error> {
    let batch = match Batch::new(events)? {
        Some(batch) => batch,
        None => return Ok(()),
    };
    let shape = batch.shape();
    let stmt = conn.statement(shape.stmt()).await?;
    let result = conn.client.execute(&stmt, &batch.params(shape)).await;
    match inserted(pool, result, events.len())? {
        None => Ok(()),
        Some(hint) => Err(conflict(conn, pool, &batch, hint).await),
    }
}

/// [`append`] inside the caller's transaction, with the same statement, checks and errors.
pub(crate) async fn append_in(
    pool: &Pool,
    tx: &Transaction<'_>,
    events: &[NewEvent],
) -> Result<(), Error> {
    let batch = match Batch::new(events)? {
        Some(batch) => batch,
        None => return Ok(()),
    };
    let shape = batch.shape();
    let result = tx
        .execute(&pool.sql().get(shape.stmt()), &batch.params(shape))
        .await;
    let Some(hint) = inserted(pool, result, events.len())? else {
        return Ok(());
    };
    // The transaction is unusable after a failed statement: ask a pooled connection.
    let mut conn = pool.checkout().await?;
    Err(conflict(&mut conn, pool, &batch, hint).await)
}

/// Saves `events` and moves the tracking position in one statement, both or neither; a position
/// already recorded is [`Error::AlreadyProcessed`].
pub(crate) async fn append_tracked(
    pool: &Pool,
    events: &[NewEvent],
    tracking: Tracking,
) -> Result<(), Error> {
    let batch = Batch::new(events)?;
    let empty = Batch::empty();
    let batch = batch.as_ref().unwrap_or(&empty);
    let (commit, seq) = position_columns(tracking.position)?;
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(Stmt::AppendTracked).await?;
    let mut params = batch.params(Shape::ManyGuarded);
    params.extend([&tracking.name as &(dyn ToSql + Sync), &commit, &seq]);
    let hint = match conn.client.query_one(&stmt, &params).await {
        Ok(row) => {
            let ok: bool = row.try_get(0).map_err(pg_error)?;
            let tracked: i64 = row.try_get(1).map_err(pg_error)?;
            let inserted: i64 = row.try_get(2).map_err(pg_error)?;
            match (ok, tracked) {
                (true, 1) if inserted as usize == events.len() => return Ok(()),
                (true, 1) => return Err(partial_insert(inserted as u64, events.len())),
                (true, _) => {
                    let recorded = recorded_position(&mut conn, pool, &tracking.name)
                        .await?
                        .unwrap_or(Position::START);
                    return Err(Error::AlreadyProcessed {
                        name: tracking.name,
                        recorded,
                        attempted: tracking.position,
                    });
                }
                (false, _) => None,
            }
        }
        Err(e) => match conflicting_stream(&e) {
            Some(hint) => hint,
            None => return Err(pool.error(e)),
        },
    };
    // As on every store, an append whose position was processed already says so before it
    // says that its events conflict.
    let recorded = recorded_position(&mut conn, pool, &tracking.name).await?;
    tracking.check_after(recorded)?;
    Err(conflict(&mut conn, pool, batch, hint).await)
}

/// Builds the typed conflict after a rejected save: reads the current version of every stream
/// of the save and names the first one whose first new version is not current + 1 (preferring
/// the stream the primary-key violation named).
async fn conflict(
    conn: &mut Checkout<'_>,
    pool: &Pool,
    batch: &Batch<'_>,
    hint: Option<Uuid>,
) -> Error {
    let ids: Vec<Uuid> = batch.streams.iter().map(|(id, _)| *id).collect();
    match stream_versions(conn, pool, &ids).await {
        Ok(current) => conflict_at(batch, &current, hint),
        Err(e) => e,
    }
}

/// The current version of each of `ids` (0 for a stream without events), in one read.
pub(crate) async fn stream_versions(
    conn: &mut Checkout<'_>,
    pool: &Pool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, u64>, Error> {
    let stmt = conn.statement(Stmt::StreamVersions).await?;
    let rows = conn
        .client
        .query(&stmt, &[&ids])
        .await
        .map_err(|e| pool.error(e))?;
    rows.iter()
        .map(|r| {
            let id: Uuid = r.try_get(0).map_err(pg_error)?;
            let version: i64 = r.try_get(1).map_err(pg_error)?;
            Ok((id, version.max(0) as u64))
        })
        .collect()
}

/// The conflict of a rejected save, given the current versions of its streams.
pub(crate) fn conflict_at(
    batch: &Batch<'_>,
    current: &HashMap<Uuid, u64>,
    hint: Option<Uuid>,
) -> Error {
    let stale = |(id, first): &(Uuid, u64)| {
        let actual = current.get(id).copied().unwrap_or(0);
        (actual + 1 != *first).then_some(Error::Conflict {
            stream_id: *id,
            expected: first.saturating_sub(1),
            actual,
        })
    };
    let named = hint.and_then(|h| batch.streams.iter().find(|(id, _)| *id == h));
    if let Some(conflict) = named.and_then(stale) {
        return conflict;
    }
    if let Some(conflict) = batch.streams.iter().find_map(stale) {
        return conflict;
    }
    // Every stream is now where the save expected it: a concurrent save committed between
    // our statement's snapshot and this check. Still a conflict (nothing was written); a
    // retry will succeed.
    let (id, first) = named.or(batch.streams.first()).copied().unwrap_or_default();
    Error::Conflict {
        stream_id: id,
        expected: first.saturating_sub(1),
        actual: current.get(&id).copied().unwrap_or(0),
    }
}

/// The columns of one save, ready to bind (`group.rs` concatenates those of several).
pub(crate) struct Batch<'a> {
    pub(crate) stream_ids: Vec<Uuid>,
    pub(crate) versions: Vec<i64>,
    pub(crate) timestamps: Vec<DateTime<Utc>>,
    pub(crate) event_types: Vec<&'a str>,
    pub(crate) stream_types: Vec<&'a str>,
    pub(crate) schema_versions: Vec<i32>,
    pub(crate) payloads: Vec<&'a [u8]>,
    pub(crate) metadata: Vec<Option<Json<&'a Metadata>>>,
    /// Streams whose first new version is above 1: (stream, first version) for the guard.
    guard_ids: Vec<Uuid>,
    guard_versions: Vec<i64>,
    /// Every stream of the save with its first new version, in order of first appearance.
    pub(crate) streams: Vec<(Uuid, u64)>,
}

impl<'a> Batch<'a> {
    /// `None` for an empty save. A save that fails [`check_save`] (versions not contiguous
    /// within a stream, what no store keeps) is refused before anything is sent, as on every
    /// store.
    pub(crate) fn new(events: &'a [NewEvent]) -> Result<Option<Self>, Error> {
        if events.is_empty() {
            return Ok(None);
        }
        let n = events.len();
        let mut batch = Batch {
            stream_ids: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            stream_types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            guard_ids: Vec::new(),
            guard_versions: Vec::new(),
            streams: Vec::new(),
        };
        for (stream_id, first) in check_save(events)? {
            batch.streams.push((stream_id, first));
            if first != 1 {
                batch.guard_ids.push(stream_id);
                batch.guard_versions.push(version_param(first)?);
            }
        }
        for event in events {
            batch.stream_ids.push(event.stream_id);
            batch.versions.push(version_param(event.version)?);
            batch.timestamps.push(event.timestamp);
            batch.event_types.push(&event.event_type);
            batch.stream_types.push(&event.stream_type);
            batch
                .schema_versions
                .push(i32::try_from(event.schema_version).map_err(|_| {
                    out_of_range(format!(
                        "schema version {} of `{}` is above PostgreSQL's integer range",
                        event.schema_version, event.event_type
                    ))
                })?);
            batch.payloads.push(&event.payload);
            batch
                .metadata
                .push((!event.metadata.is_empty()).then_some(Json(&event.metadata)));
        }
        Ok(Some(batch))
    }

    /// Appends the events of `other` (for a group's statement, `group.rs`); the guard and the
    /// streams stay this batch's.
    pub(crate) fn extend(&mut self, other: &Batch<'a>) {
        self.stream_ids.extend(&other.stream_ids);
        self.versions.extend(&other.versions);
        self.timestamps.extend(&other.timestamps);
        self.event_types.extend(&other.event_types);
        self.stream_types.extend(&other.stream_types);
        self.schema_versions.extend(&other.schema_versions);
        self.payloads.extend(&other.payloads);
        self.metadata.extend(
            other
                .metadata
                .iter()
                .map(|m| m.as_ref().map(|json| Json(json.0))),
        );
    }

    /// Appends all of `other`: its events, its guard and its streams (a group written as one
    /// save, `group.rs`; no two saves of a group write the same stream).
    pub(crate) fn join(&mut self, other: &Batch<'a>) {
        self.extend(other);
        self.guard_ids.extend(&other.guard_ids);
        self.guard_versions.extend(&other.guard_versions);
        self.streams.extend(&other.streams);
    }

    /// A save of no events (a tracked append that only moves a position).
    pub(crate) fn empty() -> Self {
        Batch {
            stream_ids: Vec::new(),
            versions: Vec::new(),
            timestamps: Vec::new(),
            event_types: Vec::new(),
            stream_types: Vec::new(),
            schema_versions: Vec::new(),
            payloads: Vec::new(),
            metadata: Vec::new(),
            guard_ids: Vec::new(),
            guard_versions: Vec::new(),
            streams: Vec::new(),
        }
    }

    pub(crate) fn shape(&self) -> Shape {
        match (self.versions.len(), self.guard_ids.is_empty()) {
            (1, true) => Shape::One,
            (1, false) => Shape::OneNext,
            (_, true) => Shape::Many,
            (_, false) => Shape::ManyGuarded,
        }
    }

    /// The parameters of the statement of `shape`: scalars for one event, arrays for several.
    pub(crate) fn params(&self, shape: Shape) -> Vec<&(dyn ToSql + Sync)> {
        match shape {
            Shape::One | Shape::OneNext => vec![
                &self.stream_ids[0],
                &self.versions[0],
                &self.timestamps[0],
                &self.event_types[0],
                &self.schema_versions[0],
                &self.payloads[0],
                &self.metadata[0],
                &self.stream_types[0],
            ],
            Shape::Many => vec![
                &self.stream_ids,
                &self.versions,
                &self.timestamps,
                &self.event_types,
                &self.schema_versions,
                &self.payloads,
                &self.metadata,
                &self.stream_types,
            ],
            Shape::ManyGuarded => {
                let mut params = self.params(Shape::Many);
                params.extend([&self.guard_ids as &(dyn ToSql + Sync), &self.guard_versions]);
                params
            }
        }
    }
}

/// What an append's `INSERT` result means: `None`, every row is in; `Some(hint)`, a conflict
/// to diagnose (`hint`: the stream the server named, if it did); any other failure an error.
fn inserted(
    pool: &Pool,
    result: Result<u64, tokio_postgres::Error>,
    expected: usize,
) -> Result<Option<Option<Uuid>>, Error> {
    match result {
        Ok(n) if n as usize == expected => Ok(None),
        // The contiguity guard held every row back.
        Ok(0) => Ok(Some(None)),
        Ok(n) => Err(partial_insert(n, expected)),
        Err(e) => match conflicting_stream(&e) {
            Some(hint) => Ok(Some(hint)),
            None => Err(pool.error(e)),
        },
    }
}

pub(crate) fn partial_insert(inserted: u64, expected: usize) -> Error {
    out_of_range(format!(
        "the save inserted {inserted} of {expected} events (a trigger or rule on the events table?)"
    ))
}

/// For a violation of the events primary key: `Some(stream named in the detail, if readable)`.
pub(crate) fn conflicting_stream(err: &tokio_postgres::Error) -> Option<Option<Uuid>> {
    let db = err.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION || db.constraint() != Some("events_pkey") {
        return None;
    }
    // "Key (stream_id, version)=(<uuid>, <version>) already exists." The word "Key" is
    // translated with lc_messages, the part after ")=(" is not.
    let named = db.detail().and_then(|detail| {
        let start = detail.find(")=(")? + 3;
        let rest = &detail[start..];
        let end = rest.find(',')?;
        Uuid::parse_str(rest[..end].trim()).ok()
    });
    Some(named)
}
