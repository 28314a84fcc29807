//! What an operator runs on the store (`eventsourcing-admin`): this store's SQL for core's
//! [`Maintenance`] trait: counts and sizes, index use, snapshot pruning, `VACUUM`,
//! and the rows `verify` checks. The report types, the `vacuum` loop and the checks themselves
//! are core's (`eventsourcing_core::maintenance`), shared with PostgreSQL.

use eventsourcing_core::{
    maintenance::{
        ConsumerLag, IndexUsage, Maintenance, PruneReport, RawEvent, RawSnapshot, SnapshotPrune,
        StoreStats, TableSize, MAX_LISTED, TABLES, VERIFY_PAGE,
    },
    Error, Position, Uuid,
};
use rusqlite::{params, Connection};

use crate::{
    error::sql_error,
    rows::{clamp_i64, log_floor, read_event},
    sql::VERIFY_EVENTS,
    store::SqliteStore,
};

/// The steps of `vacuum`: `PRAGMA wal_checkpoint(TRUNCATE)`, `VACUUM` (rewrites the file
/// without free pages), `PRAGMA optimize` (refreshes the planner's statistics), and a last
/// checkpoint, on the writer connection. `VACUUM` needs free disk space about the size of the
/// database and blocks writers while it runs.
const VACUUM_STEPS: [&str; 4] = [
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "VACUUM",
    "PRAGMA optimize",
    "PRAGMA wal_checkpoint(TRUNCATE)",
];

/// SQLite's SQL for core's operations.
impl Maintenance for SqliteStore {
    /// One read transaction; sizes from the `dbstat` table (`None` where it is unavailable).
    async fn stats(&self) -> Result<StoreStats, Error> {
        self.read(stats).await
    }

    /// Sizes from `dbstat` (the primary key of a `WITHOUT ROWID` table is the table itself, so
    /// its size is the table's). SQLite keeps no usage counts, so `scans` is `None` (unknown).
    async fn index_usage(&self) -> Result<Vec<IndexUsage>, Error> {
        self.read(indexes).await
    }

    async fn prune_snapshots(&self, prune: SnapshotPrune) -> Result<PruneReport, Error> {
        let keep = i64::from(prune.keep.max(1));
        let cutoff = match prune.older_than {
            None => i64::MAX,
            Some(age) => {
                let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
                chrono::Utc::now()
                    .checked_sub_signed(age)
                    .map_or(i64::MIN, |t| t.timestamp_micros())
            }
        };
        self.on_writer(move |conn, dbname| {
            delete_snapshots(conn, keep, cutoff).map_err(|e| sql_error(dbname, e))
        })
        .await
    }

    fn vacuum_steps(&self) -> Vec<String> {
        VACUUM_STEPS.map(str::to_owned).to_vec()
    }

    async fn vacuum_step(&self, sql: &str) -> Result<Option<String>, Error> {
        let sql = sql.to_owned();
        self.on_writer(move |conn, dbname| run_pragma(conn, &sql).map_err(|e| sql_error(dbname, e)))
            .await
    }

    async fn count_events(&self) -> Result<u64, Error> {
        self.read(|conn| count(conn, "SELECT count(*) FROM events"))
            .await
    }

    async fn bad_snapshots(&self) -> Result<Vec<RawSnapshot>, Error> {
        self.read(|conn| bad_snapshots(conn)).await
    }

    /// In the unique index's order.
    async fn events_page(&self, after: Option<(Uuid, i64)>) -> Result<Vec<RawEvent>, Error> {
        self.read(move |conn| events_page(conn, after)).await
    }
}

impl SqliteStore {
    /// `f` on a reader connection, its driver error as the store reports it.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.on_reader(|conn, dbname| f(conn).map_err(|e| sql_error(dbname, e)))
            .await
    }
}

/// Deletes the snapshots beyond the newest `keep` of their stream taken before `cutoff` (µs),
/// in one transaction.
fn delete_snapshots(
    conn: &mut Connection,
    keep: i64,
    cutoff: i64,
) -> rusqlite::Result<PruneReport> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let deleted = tx.execute(
        "DELETE FROM snapshots WHERE (stream_id, version) IN ( \
             SELECT stream_id, version FROM ( \
                 SELECT stream_id, version, timestamp, row_number() OVER ( \
                     PARTITION BY stream_id ORDER BY version DESC) AS newest \
                 FROM snapshots) \
             WHERE newest > ?1 AND timestamp < ?2)",
        params![keep, cutoff],
    )?;
    let kept = count(&tx, "SELECT count(*) FROM snapshots")?;
    tx.commit()?;
    Ok(PruneReport {
        deleted: deleted as u64,
        kept,
    })
}

fn count(conn: &Connection, sql: &str) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn stats(conn: &mut Connection) -> rusqlite::Result<StoreStats> {
    let tx = conn.transaction()?;
    let mut consumers = Vec::new();
    {
        let mut rows =
            tx.prepare("SELECT name, position_commit, position_seq FROM tracking ORDER BY name")?;
        let mut lag = tx.prepare("SELECT count(*) FROM events WHERE position > ?1")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let position = Position {
                commit: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                seq: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            };
            let behind = match log_floor(position) {
                Some(floor) => lag.query_row([floor], |r| r.get::<_, i64>(0))?,
                None => 0,
            };
            consumers.push(ConsumerLag {
                name,
                position_commit: position.commit,
                position_seq: position.seq,
                behind: u64::try_from(behind).unwrap_or(0),
            });
        }
    }
    let stats = StoreStats {
        events: count(&tx, "SELECT count(*) FROM events")?,
        streams: count(&tx, "SELECT count(DISTINCT stream_id) FROM events")?,
        snapshots: count(&tx, "SELECT count(*) FROM snapshots")?,
        parked: count(&tx, "SELECT count(*) FROM parked_events")?,
        consumers,
        tables: table_sizes(&tx)?,
    };
    tx.finish()?;
    Ok(stats)
}

/// The bytes of each b-tree (table or index) from `dbstat`; `None` if SQLite was built
/// without it.
fn btree_sizes(conn: &Connection) -> Option<Vec<(String, u64)>> {
    let mut stmt = conn
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        .ok()?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ok()?;
    rows.map(|r| r.ok().map(|(n, b)| (n, u64::try_from(b).unwrap_or(0))))
        .collect()
}

fn table_sizes(conn: &Connection) -> rusqlite::Result<Vec<TableSize>> {
    let sizes = btree_sizes(conn);
    let size_of = |name: &str| {
        sizes
            .as_ref()
            .map(|s| s.iter().filter(|(n, _)| n == name).map(|(_, b)| b).sum())
    };
    let mut out = Vec::new();
    for table in TABLES {
        let index_names = index_names(conn, table)?;
        out.push(TableSize {
            table: table.to_owned(),
            bytes: size_of(table),
            index_bytes: sizes
                .as_ref()
                .map(|_| index_names.iter().filter_map(|(n, _)| size_of(n)).sum()),
        });
    }
    Ok(out)
}

/// The indexes of `table`: name and whether it is unique.
fn index_names(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, bool)>> {
    let mut stmt =
        conn.prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) ORDER BY name")?;
    let rows = stmt.query_map([table], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?;
    rows.collect()
}

fn indexes(conn: &mut Connection) -> rusqlite::Result<Vec<IndexUsage>> {
    let sizes = btree_sizes(conn);
    let mut out = Vec::new();
    for table in TABLES {
        for (index, unique) in index_names(conn, table)? {
            // A WITHOUT ROWID table's primary key is the table itself: dbstat lists no
            // separate b-tree for it, so its size is the table's.
            let size = |name: &str| {
                sizes
                    .as_ref()
                    .and_then(|s| s.iter().find(|(n, _)| n == name).map(|(_, b)| *b))
            };
            let bytes = size(&index).or_else(|| size(table));
            out.push(IndexUsage {
                table: table.to_owned(),
                index,
                bytes,
                scans: None,
                unique,
            });
        }
    }
    Ok(out)
}

/// Runs one maintenance statement; the first row it returns, as text.
fn run_pragma(conn: &mut Connection, sql: &str) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let values: Vec<String> = (0..columns)
        .map(|i| match row.get_ref(i) {
            Ok(v) => match v {
                rusqlite::types::ValueRef::Null => "null".to_owned(),
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                rusqlite::types::ValueRef::Real(f) => f.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(b) => format!("{} bytes", b.len()),
            },
            Err(e) => e.to_string(),
        })
        .collect();
    Ok(Some(values.join(" ")))
}

/// At most [`VERIFY_PAGE`] events after `after` in `(stream_id, version)` order (the unique
/// index's order), each read by the store's own reader (`rows::read_event`) to learn whether a
/// load could read it; the key columns are read raw, for the next page.
fn events_page(conn: &Connection, after: Option<(Uuid, i64)>) -> rusqlite::Result<Vec<RawEvent>> {
    let (stream, version) = after.unwrap_or((Uuid::nil(), 0));
    let mut stmt = conn.prepare_cached(VERIFY_EVENTS)?;
    let rows = stmt.query_map(
        params![
            stream.as_bytes().as_slice(),
            version,
            clamp_i64(VERIFY_PAGE as u64)
        ],
        |r| {
            Ok(RawEvent {
                stream_id: Uuid::from_slice(r.get_ref(1)?.as_blob()?).unwrap_or_default(),
                version: r.get(2)?,
                event: read_event(r)?,
            })
        },
    )?;
    rows.collect()
}

/// Snapshots above their stream's version, or of a stream with no events (at most
/// [`MAX_LISTED`] + 1).
fn bad_snapshots(conn: &Connection) -> rusqlite::Result<Vec<RawSnapshot>> {
    let mut stmt = conn.prepare(
        "SELECT stream_id, version, stream_version FROM ( \
             SELECT s.stream_id, s.version, \
                    (SELECT max(e.version) FROM events e WHERE e.stream_id = s.stream_id) \
                        AS stream_version \
             FROM snapshots s) \
         WHERE stream_version IS NULL OR version > stream_version \
         ORDER BY stream_id, version LIMIT ?1",
    )?;
    let rows = stmt.query_map([clamp_i64(MAX_LISTED as u64 + 1)], |r| {
        Ok(RawSnapshot {
            stream_id: Uuid::from_slice(r.get_ref(0)?.as_blob()?).unwrap_or_default(),
            version: r.get(1)?,
            stream_version: r.get(2)?,
        })
    })?;
    rows.collect()
}
