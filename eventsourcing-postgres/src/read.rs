//! Reads: a stream's events (all columns, or replay's few), its version, the log and its time
//! windows, snapshots, and tracking positions.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use eventsourcing_core::{Error, EventView, Fold, Position, Snapshot, StoredEvent};
use futures_util::TryStreamExt;
use tokio_postgres::{types::ToSql, Row};
use uuid::Uuid;

use crate::{
    error::pg_error,
    horizon::{self, HorizonWatch},
    pool::{Checkout, Pool},
    rows::{
        self, fingerprint_column, log_bound, position_from_columns, version_param, LogHead, LogRow,
        SnapshotOrEvent,
    },
    sql::Stmt,
};

/// How long `read_log` waits, at most, for the events that had committed when it was called but
/// are held back behind an older running transaction.
pub const LOG_CATCH_UP: Duration = Duration::from_secs(1);

/// Turns a row of a stream query into an event.
type Decode = fn(&Row, Uuid) -> Result<StoredEvent, Error>;

/// Which columns a stream load reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Columns {
    /// Every column: `EventStore::load`.
    All,
    /// Only what replay reads (no position, no metadata): less to send, less to decode.
    Replay,
}

/// A stream's events after `after_version`, up to `up_to`.
pub(crate) async fn load(
    pool: &Pool,
    stream_id: Uuid,
    after_version: u64,
    up_to: Option<u64>,
    columns: Columns,
) -> Result<Vec<StoredEvent>, Error> {
    let (stmt, decode): (_, Decode) = match columns {
        Columns::All => (Stmt::Load, rows::stream_event),
        Columns::Replay => (Stmt::LoadReplay, rows::replay_event),
    };
    query_stream(pool, stmt, stream_id, after_version, up_to, decode).await
}

/// Feeds a stream's events after `after_version`, up to `up_to`, to `fold` as their rows
/// arrive, each borrowed from its row (no `StoredEvent` built). A row that cannot be viewed
/// is decoded as `load_for_replay` decodes it: its defect ends the replay with
/// [`Error::BadRow`].
pub(crate) async fn replay_into<F: Fold>(
    pool: &Pool,
    stream_id: Uuid,
    after_version: u64,
    up_to: Option<u64>,
    mut fold: F,
) -> Result<F, Error> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let up_to = version_bound(up_to);
    if after >= up_to {
        return Ok(fold);
    }
    let params: [&(dyn ToSql + Sync); 3] = [&stream_id, &after, &up_to];
    each_row(
        pool,
        Stmt::LoadReplay,
        &params,
        |row| match rows::replay_view(row) {
            Some(view) => fold.event(view),
            None => {
                let event = rows::replay_event(row, stream_id)?;
                event.check_defect()?;
                fold.event(EventView::of(&event))
            }
        },
    )
    .await?;
    Ok(fold)
}

/// Runs a `(stream_id, after, up_to)` query of one stream's events and decodes its rows.
async fn query_stream(
    pool: &Pool,
    stmt: Stmt,
    stream_id: Uuid,
    after_version: u64,
    up_to: Option<u64>,
    decode: Decode,
) -> Result<Vec<StoredEvent>, Error> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let up_to = version_bound(up_to);
    if after >= up_to {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    let params: [&(dyn ToSql + Sync); 3] = [&stream_id, &after, &up_to];
    each_row(pool, stmt, &params, |row| {
        events.push(decode(row, stream_id)?);
        Ok(())
    })
    .await?;
    Ok(events)
}

/// The newest snapshot of the stream at or below `up_to` and the events after it up to `up_to`,
/// as `load_for_replay` reads them: one statement, one round trip.
pub(crate) async fn load_from_snapshot(
    pool: &Pool,
    stream_id: Uuid,
    up_to: Option<u64>,
) -> Result<(Option<Snapshot>, Vec<StoredEvent>), Error> {
    let up_to = version_bound(up_to);
    let (mut snapshot, mut events) = (None, Vec::new());
    let params: [&(dyn ToSql + Sync); 2] = [&stream_id, &up_to];
    each_row(pool, Stmt::LoadFromSnapshot, &params, |row| {
        match rows::snapshot_or_event(row, stream_id)? {
            SnapshotOrEvent::Snapshot(s) => snapshot = Some(s),
            SnapshotOrEvent::Event(e) => events.push(e),
        }
        Ok(())
    })
    .await?;
    // The events' branch sorts them and PostgreSQL appends it after the snapshot's, but SQL
    // does not promise a union's order: replay needs version order.
    if !events.is_sorted_by_key(|e| e.version) {
        events.sort_by_key(|e| e.version);
    }
    Ok((snapshot, events))
}

/// An upper version bound as a `bigint`: none (or one past `bigint`) is the largest.
fn version_bound(up_to: Option<u64>) -> i64 {
    up_to.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Runs a cached statement and hands each row to `each` as it arrives, rather than after the
/// last one: the connection task reads the socket while this task converts.
async fn each_row(
    pool: &Pool,
    stmt: Stmt,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(&Row) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(stmt).await?;
    let rows = conn
        .client
        .query_raw(&stmt, params.iter().copied())
        .await
        .map_err(|e| pool.error(e))?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await.map_err(|e| pool.error(e))? {
        each(&row)?;
    }
    Ok(())
}

/// The stream's current version (0 if it has no events).
pub(crate) async fn stream_version(pool: &Pool, stream_id: Uuid) -> Result<u64, Error> {
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(Stmt::StreamVersion).await?;
    let row = conn
        .client
        .query_one(&stmt, &[&stream_id])
        .await
        .map_err(|e| pool.error(e))?;
    Ok(row.try_get::<_, i64>(0).map_err(pg_error)?.max(0) as u64)
}

/// The log after `after`.
pub(crate) async fn read_log(
    pool: &Pool,
    watch: &HorizonWatch,
    after: Position,
    limit: usize,
) -> Result<Vec<StoredEvent>, Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    caught_up(pool, watch, after, limit, || log_page(pool, after, limit)).await
}

/// Events recorded at `from <= timestamp < to`, in log order, after `after`, at most `limit`.
pub(crate) async fn read_by_time(
    pool: &Pool,
    watch: &HorizonWatch,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Position,
    limit: usize,
) -> Result<Vec<StoredEvent>, Error> {
    if limit == 0 || from >= to {
        return Ok(Vec::new());
    }
    caught_up(pool, watch, after, limit, || async {
        let conn = pool.checkout().await?;
        let (commit, seq) = log_bound(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Not a cached statement: PostgreSQL would soon switch a cached one to a generic
        // plan, which cannot weigh the window's width (BRIN range scan and sort, or the log
        // index in order); a statement used once is planned for its own parameters.
        let rows = conn
            .client
            .query(
                &pool.sql().get(Stmt::ReadByTime),
                &[&from, &to, &commit, &seq, &limit],
            )
            .await
            .map_err(|e| pool.error(e))?;
        let events = rows.iter().map(rows::log_event).collect::<Result<_, _>>()?;
        Ok(Page { events, head: None })
    })
    .await
}

/// A page of a log query, and the log's head if the query read it too.
struct Page {
    events: Vec<StoredEvent>,
    head: Option<LogHead>,
}

/// Runs a log query; a short page at the head of the log is completed, within
/// [`LOG_CATCH_UP`], with the events that had committed when the call began but were held
/// back behind an older transaction still running, so that a caller reads its own writes.
async fn caught_up<F, Fut>(
    pool: &Pool,
    watch: &HorizonWatch,
    after: Position,
    limit: usize,
    page: F,
) -> Result<Vec<StoredEvent>, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Page, Error>>,
{
    let Page { events, head } = page().await?;
    if events.len() >= limit {
        return Ok(events);
    }
    // Events of transactions up to the newest committed one exist; if that one is beyond
    // what this page returns, its events were held back (or, for a head read separately,
    // committed since the page was read). Wait, without holding a connection, until no older
    // transaction runs.
    let returned = events.last().map_or(after.commit, |e| e.position.commit);
    let (horizon, newest) = match head {
        Some(head) => head,
        None => log_head(pool).await?,
    };
    let newest = match newest {
        Some(newest) if newest.0 > returned => newest,
        _ => {
            watch.released();
            return Ok(events);
        }
    };
    if horizon > newest {
        watch.released();
        return Ok(page().await?.events);
    }
    let deadline = tokio::time::Instant::now() + LOG_CATCH_UP;
    let mut pause = Duration::from_millis(1);
    loop {
        tokio::time::sleep(pause).await;
        let (horizon, _) = log_head(pool).await?;
        if horizon > newest {
            watch.released();
            return Ok(page().await?.events);
        }
        if tokio::time::Instant::now() + pause >= deadline {
            tracing::debug!(
                horizon = horizon.0,
                newest = newest.0,
                "committed events are held back by an older running transaction"
            );
            if watch.held(horizon) {
                horizon::report(pool, horizon).await;
            }
            // What is safe now: never past a running transaction.
            return Ok(page().await?.events);
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One statement: a page of the log, decoded as its rows arrive, and the log's head.
async fn log_page(pool: &Pool, after: Position, limit: usize) -> Result<Page, Error> {
    let (commit, seq) = log_bound(after);
    let rows = i64::try_from(limit).unwrap_or(i64::MAX);
    let (mut events, mut head) = (Vec::with_capacity(limit.min(PAGE_CAPACITY)), None);
    let params: [&(dyn ToSql + Sync); 3] = [&commit, &seq, &rows];
    each_row(pool, Stmt::ReadLog, &params, |row| {
        match rows::log_row(row)? {
            LogRow::Event(event) => events.push(event),
            LogRow::Head(read) => head = Some(read),
        }
        Ok(())
    })
    .await?;
    Ok(Page { events, head })
}

/// The log after `after` in one statement, `limit * pages` events at most, handed to `page`
/// one full page of `limit` at a time as its rows arrive (`page` returns whether it wants
/// more; the rows after it stops are passed over). A read ahead's: every row it returns
/// belongs to a transaction older than the oldest one running, so each full page is exactly
/// what [`read_log`] would return after the page before it. A short last page is not handed
/// out; it may not be final.
pub(crate) async fn log_pages(
    pool: &Pool,
    after: Position,
    limit: usize,
    pages: usize,
    mut page: impl FnMut(Vec<StoredEvent>) -> bool,
) -> Result<(), Error> {
    let (commit, seq) = log_bound(after);
    let rows = i64::try_from(limit.saturating_mul(pages)).unwrap_or(i64::MAX);
    let capacity = limit.min(PAGE_CAPACITY);
    let (mut events, mut wanted) = (Vec::with_capacity(capacity), true);
    let params: [&(dyn ToSql + Sync); 3] = [&commit, &seq, &rows];
    each_row(pool, Stmt::ReadLog, &params, |row| {
        if !wanted {
            return Ok(());
        }
        if let LogRow::Event(event) = rows::log_row(row)? {
            events.push(event);
            if events.len() == limit {
                wanted = page(std::mem::replace(&mut events, Vec::with_capacity(capacity)));
            }
        }
        Ok(())
    })
    .await
}

/// The most events a log page reserves room for before its rows arrive (a caller may ask for
/// far more than the log holds).
const PAGE_CAPACITY: usize = 1000;

/// The horizon (oldest running transaction) and the newest committed event's transaction.
pub(crate) async fn log_head(pool: &Pool) -> Result<LogHead, Error> {
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(Stmt::LogHead).await?;
    let row = conn
        .client
        .query_one(&stmt, &[])
        .await
        .map_err(|e| pool.error(e))?;
    Ok((
        row.try_get(0).map_err(pg_error)?,
        row.try_get(1).map_err(pg_error)?,
    ))
}

/// Writes a snapshot and keeps the newest `keep` of its stream (all if `None`).
pub(crate) async fn save_snapshot(
    pool: &Pool,
    snapshot: Snapshot,
    keep: Option<u32>,
) -> Result<(), Error> {
    let version = version_param(snapshot.version)?;
    let fingerprint = fingerprint_column(snapshot.fingerprint);
    let keep: Option<i64> = keep.map(|k| i64::from(k.max(1)));
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(Stmt::SaveSnapshot).await?;
    conn.client
        .execute(
            &stmt,
            &[
                &snapshot.stream_id,
                &version,
                &snapshot.timestamp,
                &snapshot.state_type,
                &fingerprint,
                &snapshot.payload,
                &keep,
            ],
        )
        .await
        .map_err(|e| pool.error(e))?;
    Ok(())
}

/// The newest snapshot of the stream at or below a version.
pub(crate) async fn load_snapshot(
    pool: &Pool,
    stream_id: Uuid,
    at_or_below: Option<u64>,
) -> Result<Option<Snapshot>, Error> {
    let at_or_below = version_bound(at_or_below);
    let mut conn = pool.checkout().await?;
    let stmt = conn.statement(Stmt::LoadSnapshot).await?;
    let row = conn
        .client
        .query_opt(&stmt, &[&stream_id, &at_or_below])
        .await
        .map_err(|e| pool.error(e))?;
    row.map(|row| rows::snapshot(&row, stream_id)).transpose()
}

/// The position recorded under `name`, if any.
pub(crate) async fn tracking_position(pool: &Pool, name: &str) -> Result<Option<Position>, Error> {
    let mut conn = pool.checkout().await?;
    recorded_position(&mut conn, pool, name).await
}

/// [`tracking_position`] on a connection already checked out.
pub(crate) async fn recorded_position(
    conn: &mut Checkout<'_>,
    pool: &Pool,
    name: &str,
) -> Result<Option<Position>, Error> {
    let stmt = conn.statement(Stmt::TrackingPosition).await?;
    let row = conn
        .client
        .query_opt(&stmt, &[&name])
        .await
        .map_err(|e| pool.error(e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(position_from_columns(
        row.try_get(0).map_err(pg_error)?,
        row.try_get(1).map_err(pg_error)?,
    )))
}
