//! What an operator runs on the store (`eventsourcing-admin`): counts and sizes, index use,
//! snapshot pruning, `VACUUM (ANALYZE)`, and the rows `verify` checks. The report types and the
//! checks themselves are shared with SQLite in `eventsourcing_core::maintenance`.

use eventsourcing_core::{
    maintenance::{
        self, ConsumerLag, IndexUsage, MaintenanceStep, PayloadCheck, PruneReport, RawEvent,
        RawSnapshot, SnapshotPrune, StoreStats, TableSize, VerifyReport, MAX_LISTED, VERIFY_PAGE,
    },
    Error, Uuid,
};
use tokio_postgres::Row;

use crate::{
    error::pg_error,
    rows::log_event,
    sql::{quote_ident, EVENT_COLUMNS},
    store::PostgresStore,
};

/// The store's tables, in the order reports list them.
const TABLES: [&str; 5] = [
    "events",
    "snapshots",
    "tracking",
    "parked_events",
    "eventsourcing_migrations",
];

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStore {
    /// Counts of events, streams, snapshots and parked events, every tracking row with its
    /// lag (events of this store's log after its position), and each table's size
    /// (`pg_relation_size`, `pg_indexes_size`). Read-only; the counts scan the tables.
    pub async fn stats(&self) -> Result<StoreStats, Error> {
        let s = quote_ident(&self.config().schema);
        let conn = self.checkout().await?;
        let row = conn
            .client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {s}.events), \
                            (SELECT count(DISTINCT stream_id) FROM {s}.events), \
                            (SELECT count(*) FROM {s}.snapshots), \
                            (SELECT count(*) FROM {s}.parked_events)"
                ),
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        let get = |i: usize| row.try_get::<_, i64>(i).map(to_u64).map_err(pg_error);
        let consumers = conn
            .client
            .query(
                &format!(
                    "SELECT t.name, t.position_commit, t.position_seq, \
                            (SELECT count(*) FROM {s}.events e \
                             WHERE (e.tx_id, e.position) > \
                                   (t.position_commit::text::xid8, t.position_seq)) \
                     FROM {s}.tracking t ORDER BY t.name"
                ),
                &[],
            )
            .await
            .map_err(|e| self.error(e))?
            .iter()
            .map(|r| {
                Ok(ConsumerLag {
                    name: r.try_get(0).map_err(pg_error)?,
                    position_commit: to_u64(r.try_get(1).map_err(pg_error)?),
                    position_seq: to_u64(r.try_get(2).map_err(pg_error)?),
                    behind: to_u64(r.try_get(3).map_err(pg_error)?),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let sizes = conn
            .client
            .query(
                "SELECT c.relname::text, pg_relation_size(c.oid), pg_indexes_size(c.oid) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)",
                &[&self.config().schema, &TABLES.as_slice()],
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut tables = Vec::new();
        for table in TABLES {
            let row = sizes
                .iter()
                .find(|r| r.try_get::<_, &str>(0).is_ok_and(|n| n == table));
            let size = |i: usize| row.and_then(|r| r.try_get::<_, i64>(i).ok()).map(to_u64);
            tables.push(TableSize {
                table: table.to_owned(),
                bytes: size(1),
                index_bytes: size(2),
            });
        }
        Ok(StoreStats {
            events: get(0)?,
            streams: get(1)?,
            snapshots: get(2)?,
            parked: get(3)?,
            consumers,
            tables,
        })
    }

    /// Every index of the store's schema: size (`pg_relation_size`) and scans since the
    /// statistics were reset (`pg_stat_user_indexes.idx_scan`).
    pub async fn index_usage(&self) -> Result<Vec<IndexUsage>, Error> {
        let conn = self.checkout().await?;
        let rows = conn
            .client
            .query(
                "SELECT s.relname::text, s.indexrelname::text, pg_relation_size(s.indexrelid), \
                        s.idx_scan, i.indisunique \
                 FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
                 WHERE s.schemaname = $1 ORDER BY 1, 2",
                &[&self.config().schema],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| {
                Ok(IndexUsage {
                    table: r.try_get(0).map_err(pg_error)?,
                    index: r.try_get(1).map_err(pg_error)?,
                    bytes: Some(to_u64(r.try_get(2).map_err(pg_error)?)),
                    scans: r
                        .try_get::<_, Option<i64>>(3)
                        .map_err(pg_error)?
                        .map(to_u64),
                    unique: r.try_get(4).map_err(pg_error)?,
                })
            })
            .collect()
    }

    /// Deletes the snapshots `prune` selects (never the newest `keep` of a stream) in one
    /// statement. Snapshots only speed up loads: removing old ones changes no state and no
    /// projection.
    pub async fn prune_snapshots(&self, prune: SnapshotPrune) -> Result<PruneReport, Error> {
        let s = quote_ident(&self.config().schema);
        let keep = i64::from(prune.keep.max(1));
        let older_than = prune.older_than.map(|d| d.as_secs_f64());
        let conn = self.checkout().await?;
        let row = conn
            .client
            .query_one(
                &format!(
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
                ),
                &[&keep, &older_than],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(PruneReport {
            deleted: to_u64(row.try_get(0).map_err(pg_error)?),
            kept: to_u64(row.try_get(1).map_err(pg_error)?),
        })
    }

    /// `VACUUM (ANALYZE)` on each of the store's tables, one after another; `step` is called
    /// before each with its index, the number of steps and its text. Runs beside the
    /// application (no exclusive lock).
    pub async fn vacuum(
        &self,
        mut step: impl FnMut(usize, usize, &str),
    ) -> Result<Vec<MaintenanceStep>, Error> {
        let s = quote_ident(&self.config().schema);
        let statements: Vec<String> = TABLES
            .iter()
            .map(|t| format!("VACUUM (ANALYZE) {s}.{}", quote_ident(t)))
            .collect();
        let mut done = Vec::with_capacity(statements.len());
        for (i, sql) in statements.iter().enumerate() {
            step(i, statements.len(), sql);
            let conn = self.checkout().await?;
            conn.client
                .batch_execute(sql)
                .await
                .map_err(|e| self.error(e))?;
            done.push(MaintenanceStep {
                step: sql.clone(),
                result: None,
            });
        }
        Ok(done)
    }

    /// Reads every event in `(stream_id, version)` order (the primary key's), a page at a
    /// time, and every snapshot that does not fit its stream, and checks them
    /// (`eventsourcing_core::maintenance::verify`). `progress` gets the events checked so far
    /// and the total. Read-only.
    pub async fn verify(
        &self,
        payload: PayloadCheck,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, Error> {
        let s = quote_ident(&self.config().schema);
        let (total, snapshots) = {
            let conn = self.checkout().await?;
            let total: i64 = conn
                .client
                .query_one(&format!("SELECT count(*) FROM {s}.events"), &[])
                .await
                .map_err(|e| self.error(e))?
                .try_get(0)
                .map_err(pg_error)?;
            let snapshots = conn
                .client
                .query(
                    &format!(
                        "SELECT s.stream_id, s.version, e.v FROM {s}.snapshots s \
                         LEFT JOIN LATERAL (SELECT max(version) AS v FROM {s}.events e \
                                            WHERE e.stream_id = s.stream_id) e ON true \
                         WHERE e.v IS NULL OR s.version > e.v \
                         ORDER BY s.stream_id, s.version LIMIT $1"
                    ),
                    &[&(MAX_LISTED as i64 + 1)],
                )
                .await
                .map_err(|e| self.error(e))?
                .iter()
                .map(|r| {
                    Ok(RawSnapshot {
                        stream_id: r.try_get(0).map_err(pg_error)?,
                        version: r.try_get(1).map_err(pg_error)?,
                        stream_version: r.try_get(2).map_err(pg_error)?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            (to_u64(total), snapshots)
        };
        // The log's columns, read by the store's own reader (`rows::log_event`) to learn
        // whether a load could read each row.
        let page_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {s}.events \
             WHERE (stream_id, version) > ($1, $2) ORDER BY stream_id, version LIMIT $3"
        );
        maintenance::verify(
            self,
            payload,
            |after| {
                let page_sql = page_sql.clone();
                async move {
                    let (stream, version) = after.unwrap_or((Uuid::nil(), 0));
                    let conn = self.checkout().await?;
                    let rows = conn
                        .client
                        .query(&page_sql, &[&stream, &version, &(VERIFY_PAGE as i64)])
                        .await
                        .map_err(|e| self.error(e))?;
                    rows.iter().map(raw_event).collect()
                }
            },
            snapshots,
            |done| progress(done, total),
        )
        .await
    }
}

/// A row of `EVENT_COLUMNS`: the key columns raw (for the next page), the rest as the store
/// reads them.
fn raw_event(r: &Row) -> Result<RawEvent, Error> {
    let event = log_event(r)?;
    Ok(RawEvent {
        stream_id: r.try_get(0).map_err(pg_error)?,
        version: r.try_get(1).map_err(pg_error)?,
        event_type: event.event_type,
        payload: event.payload,
        defect: event.defect,
    })
}
