//! What an operator runs on the store (`eventsourcing-admin`): this store's SQL for core's
//! [`Maintenance`] trait: counts and sizes, index use, snapshot pruning,
//! `VACUUM (ANALYZE)`, and the rows `verify` checks. The report types, the `vacuum` loop and
//! the checks themselves are core's (`eventsourcing_core::maintenance`), shared with SQLite.

use eventsourcing_core::{
    maintenance::{
        ConsumerLag, IndexUsage, Maintenance, PruneReport, RawEvent, RawSnapshot, SnapshotPrune,
        StoreStats, TableSize, MAX_LISTED, TABLES, VERIFY_PAGE,
    },
    Error, Uuid,
};
use tokio_postgres::{
    types::{FromSql, ToSql},
    Row,
};

use crate::{
    error::pg_error,
    rows::log_event,
    sql::{quote_ident, EVENT_COLUMNS},
    store::PostgresStore,
};

/// Column `i` of `row`.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, Error> {
    row.try_get(i).map_err(pg_error)
}

/// A `count(*)` or size column (`bigint`) as a count.
fn count(row: &Row, i: usize) -> Result<u64, Error> {
    Ok(u64::try_from(col::<i64>(row, i)?).unwrap_or(0))
}

impl PostgresStore {
    /// The rows of `sql` on a pooled connection, each read by `read`.
    async fn rows<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl Fn(&Row) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let conn = self.checkout().await?;
        let rows = conn
            .client
            .query(sql, params)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(read).collect()
    }

    /// [`rows`](Self::rows) of a statement that returns exactly one.
    async fn one<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl Fn(&Row) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let rows = self.rows(sql, params, read).await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::store(format!("no row from `{sql}`")))
    }

    /// The schema, quoted.
    fn schema_ident(&self) -> String {
        quote_ident(&self.config().schema)
    }
}

/// PostgreSQL's SQL for core's operations.
impl Maintenance for PostgresStore {
    /// The counts scan the tables; sizes are `pg_relation_size` and `pg_indexes_size`.
    async fn stats(&self) -> Result<StoreStats, Error> {
        let s = self.schema_ident();
        let counts = format!(
            "SELECT (SELECT count(*) FROM {s}.events), \
                    (SELECT count(DISTINCT stream_id) FROM {s}.events), \
                    (SELECT count(*) FROM {s}.snapshots), \
                    (SELECT count(*) FROM {s}.parked_events)"
        );
        let [events, streams, snapshots, parked] = self
            .one(&counts, &[], |r| {
                Ok([count(r, 0)?, count(r, 1)?, count(r, 2)?, count(r, 3)?])
            })
            .await?;
        let lags = format!(
            "SELECT t.name, t.position_commit, t.position_seq, \
                    (SELECT count(*) FROM {s}.events e \
                     WHERE (e.tx_id, e.position) > (t.position_commit::text::xid8, t.position_seq)) \
             FROM {s}.tracking t ORDER BY t.name"
        );
        let consumers = self
            .rows(&lags, &[], |r| {
                Ok(ConsumerLag {
                    name: col(r, 0)?,
                    position_commit: count(r, 1)?,
                    position_seq: count(r, 2)?,
                    behind: count(r, 3)?,
                })
            })
            .await?;
        let sizes = self
            .rows(
                "SELECT c.relname::text, pg_relation_size(c.oid), pg_indexes_size(c.oid) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)",
                &[&self.config().schema, &TABLES.as_slice()],
                |r| Ok((col::<String>(r, 0)?, count(r, 1).ok(), count(r, 2).ok())),
            )
            .await?;
        let tables = TABLES
            .iter()
            .map(|&table| {
                let size = sizes.iter().find(|(name, _, _)| name == table);
                TableSize {
                    table: table.to_owned(),
                    bytes: size.and_then(|s| s.1),
                    index_bytes: size.and_then(|s| s.2),
                }
            })
            .collect();
        Ok(StoreStats {
            events,
            streams,
            snapshots,
            parked,
            consumers,
            tables,
        })
    }

    /// Size (`pg_relation_size`) and scans since the statistics were reset
    /// (`pg_stat_user_indexes.idx_scan`) of every index of the store's schema.
    async fn index_usage(&self) -> Result<Vec<IndexUsage>, Error> {
        self.rows(
            "SELECT s.relname::text, s.indexrelname::text, pg_relation_size(s.indexrelid), \
                    s.idx_scan, i.indisunique \
             FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
             WHERE s.schemaname = $1 ORDER BY 1, 2",
            &[&self.config().schema],
            |r| {
                Ok(IndexUsage {
                    table: col(r, 0)?,
                    index: col(r, 1)?,
                    bytes: Some(count(r, 2)?),
                    scans: col::<Option<i64>>(r, 3)?.map(|n| u64::try_from(n).unwrap_or(0)),
                    unique: col(r, 4)?,
                })
            },
        )
        .await
    }

    /// One statement.
    async fn prune_snapshots(&self, prune: SnapshotPrune) -> Result<PruneReport, Error> {
        let s = self.schema_ident();
        let keep = i64::from(prune.keep.max(1));
        let older_than = prune.older_than.map(|d| d.as_secs_f64());
        let sql = format!(
            "WITH doomed AS ( \
                 DELETE FROM {s}.snapshots d USING ( \
                     SELECT stream_id, version, timestamp, row_number() OVER ( \
                         PARTITION BY stream_id ORDER BY version DESC) AS newest \
                     FROM {s}.snapshots) r \
                 WHERE d.stream_id = r.stream_id AND d.version = r.version \
                   AND r.newest > $1 \
                   AND ($2::float8 IS NULL \
                        OR r.timestamp < now() - make_interval(secs => $2::float8)) \
                 RETURNING 1) \
             SELECT (SELECT count(*) FROM doomed), \
                    (SELECT count(*) FROM {s}.snapshots) - (SELECT count(*) FROM doomed)"
        );
        self.one(&sql, &[&keep, &older_than], |r| {
            Ok(PruneReport {
                deleted: count(r, 0)?,
                kept: count(r, 1)?,
            })
        })
        .await
    }

    /// `VACUUM (ANALYZE)` on each of the store's tables: runs beside the application (no
    /// exclusive lock).
    fn vacuum_steps(&self) -> Vec<String> {
        let s = self.schema_ident();
        TABLES
            .iter()
            .map(|t| format!("VACUUM (ANALYZE) {s}.{}", quote_ident(t)))
            .collect()
    }

    async fn vacuum_step(&self, sql: &str) -> Result<Option<String>, Error> {
        let conn = self.checkout().await?;
        conn.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.error(e))?;
        Ok(None)
    }

    async fn count_events(&self) -> Result<u64, Error> {
        let sql = format!("SELECT count(*) FROM {}.events", self.schema_ident());
        self.one(&sql, &[], |r| count(r, 0)).await
    }

    async fn bad_snapshots(&self) -> Result<Vec<RawSnapshot>, Error> {
        let s = self.schema_ident();
        let sql = format!(
            "SELECT s.stream_id, s.version, e.v FROM {s}.snapshots s \
             LEFT JOIN LATERAL (SELECT max(version) AS v FROM {s}.events e \
                                WHERE e.stream_id = s.stream_id) e ON true \
             WHERE e.v IS NULL OR s.version > e.v \
             ORDER BY s.stream_id, s.version LIMIT $1"
        );
        self.rows(&sql, &[&(MAX_LISTED as i64 + 1)], |r| {
            Ok(RawSnapshot {
                stream_id: col(r, 0)?,
                version: col(r, 1)?,
                stream_version: col(r, 2)?,
            })
        })
        .await
    }

    /// In the primary key's order; the log's columns, read by the store's own reader
    /// (`rows::log_event`).
    async fn events_page(&self, after: Option<(Uuid, i64)>) -> Result<Vec<RawEvent>, Error> {
        let (stream, version) = after.unwrap_or((Uuid::nil(), 0));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {}.events \
             WHERE (stream_id, version) > ($1, $2) ORDER BY stream_id, version LIMIT $3",
            self.schema_ident()
        );
        self.rows(&sql, &[&stream, &version, &(VERIFY_PAGE as i64)], |r| {
            Ok(RawEvent {
                stream_id: col(r, 0)?,
                version: col(r, 1)?,
                event: log_event(r)?,
            })
        })
        .await
    }
}
