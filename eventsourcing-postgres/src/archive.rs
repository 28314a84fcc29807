//! `archive` (events of quiet streams out of the hot table into an archive file) and
//! `archive restore` (back in, at their original log positions): this store's part of core's
//! [`Archive`] trait.
//!
//! A stream is archived when its newest event is older than the cut-off and a snapshot at its
//! newest version exists: all its events but the newest move to the file. The newest stays, so
//! the stream keeps its version (new saves go on at version + 1) and loads from the snapshot.
//! Streams without such a snapshot are skipped and reported.
//!
//! Nothing is lost: the file is written, synced (file and directory), read back and checked
//! whole (core's [`ArchiveJob`]) before the events are deleted, in one transaction that sets
//! `SET LOCAL eventsourcing.allow_archive = 'on'` (the setting an append-only trigger on
//! `events` checks before refusing a `DELETE`).

use eventsourcing_core::{
    backup::{
        check_consumers, Archive, ArchiveJob, ArchiveReport, BackupError, CheckedFile, Counts,
        Record,
    },
    Error,
};
use tokio_postgres::{IsolationLevel, Transaction};
use uuid::Uuid;

use crate::{
    backup::{insert_events, pages, start_long, Tables, PAGE},
    error::{pg_error, query_error},
    rows::{self, position_from_columns, version_param},
    sql::EVENT_COLUMNS,
    store::PostgresStore,
    xid::Xid8,
};

impl Archive for PostgresStore {
    async fn archive_with(&self, mut job: ArchiveJob) -> Result<ArchiveReport, BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let t = Tables::new(&self.config().schema);
        let snapshot = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead);
        let tx = start_long(snapshot, &db).await?;
        let quiet = format!(
            "SELECT e.stream_id, max(e.version), \
                    EXISTS (SELECT 1 FROM {snapshots} s WHERE s.stream_id = e.stream_id \
                            AND s.version = max(e.version)) \
             FROM {events} e GROUP BY e.stream_id \
             HAVING max(e.timestamp) < $1 AND count(*) > 1 ORDER BY e.stream_id",
            snapshots = t.snapshots,
            events = t.events
        );
        let mut lasts = Vec::new();
        for row in &tx.query(&quiet, &[&job.before()]).await.map_err(db)? {
            if job.stream(row.try_get(0).map_err(db)?, row.try_get(2).map_err(db)?) {
                lasts.push(row.try_get::<_, i64>(1).map_err(db)?);
            }
        }
        if lasts.is_empty() {
            return Ok(job.finish());
        }
        let streams = job.streams().to_vec();
        let chosen = format!(
            "FROM {} e JOIN unnest($1::uuid[], $2::int8[]) AS a(stream_id, last) \
             ON e.stream_id = a.stream_id AND e.version < a.last",
            t.events
        );
        let newest = tx
            .query_one(
                &format!(
                    "SELECT e.tx_id, e.position {chosen} \
                     ORDER BY e.tx_id DESC, e.position DESC LIMIT 1"
                ),
                &[&streams, &lasts],
            )
            .await
            .map_err(db)?;
        let x: Xid8 = newest.try_get(0).map_err(db)?;
        let newest = rows::log_position(x, newest.try_get(1).map_err(db)?);
        if !job.force() {
            let tracking = format!(
                "SELECT name, position_commit, position_seq FROM {} ORDER BY name",
                t.tracking
            );
            let consumers = tx
                .query(&tracking, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|row| {
                    let (commit, seq) = (row.try_get(1)?, row.try_get(2)?);
                    Ok((row.try_get(0)?, position_from_columns(commit, seq)))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(db)?;
            check_consumers(consumers, newest)?;
        }
        let query = format!(
            "SELECT {} {chosen} ORDER BY e.tx_id, e.position",
            qualified()
        );
        let event = |row: &_| Record::event(rows::log_event(row)?);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&streams, &lasts];
        pages(&tx, &query, &params, event, job.create_file()?, &db).await?;
        let job = job.sealed().await?;
        let deleted = delete(&tx, &t, &streams, &lasts).await?;
        job.deleted(deleted)?;
        // Once the commit is sent the file stays, whatever the outcome: a commit whose answer
        // is lost may have deleted the events.
        let report = job.finish();
        tx.commit().await.map_err(db)?;
        Ok(report)
    }

    async fn restore_from(&self, mut file: CheckedFile) -> Result<Counts, BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let t = Tables::new(&self.config().schema);
        let tx = start_long(client.build_transaction(), &db).await?;
        let horizon: Xid8 = tx
            .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())", &[])
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let present = format!(
            "SELECT e.stream_id, e.version FROM {} e \
             JOIN unnest($1::uuid[], $2::int8[]) AS a(s, v) \
             ON e.stream_id = a.s AND e.version = a.v LIMIT 1",
            t.events
        );
        while let Some(batch) = file.next_batch(PAGE).await? {
            let events: Vec<_> = batch
                .into_iter()
                .filter_map(|r| match r {
                    Record::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            if let Some(e) = events.iter().find(|e| e.position.commit >= horizon.0) {
                return Err(Error::store(format!(
                    "event {} of stream {} was written by transaction {}, which this server has \
                     not reached: the archive comes from another cluster (restore it where it \
                     was made, then export/import)",
                    e.version, e.stream_id, e.position.commit
                ))
                .into());
            }
            let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
            let versions = events
                .iter()
                .map(|e| version_param(e.version))
                .collect::<Result<Vec<i64>, _>>()?;
            let found = tx.query(&present, &[&ids, &versions]).await.map_err(db)?;
            if let Some(row) = found.first() {
                return Err(BackupError::AlreadyPresent {
                    stream_id: row.try_get(0).map_err(db)?,
                    version: row.try_get::<_, i64>(1).map_err(db)? as u64,
                });
            }
            insert_events(&tx, &t.events, &events, true).await?;
        }
        let counts = file.finish()?;
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }
}

/// `EVENT_COLUMNS` on the alias `e`.
fn qualified() -> String {
    EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn delete(
    tx: &Transaction<'_>,
    t: &Tables,
    streams: &[Uuid],
    lasts: &[i64],
) -> Result<u64, BackupError> {
    tx.batch_execute("SET LOCAL eventsourcing.allow_archive = 'on'")
        .await
        .map_err(pg_error)?;
    let deleted = tx
        .execute(
            &format!(
                "DELETE FROM {} e USING unnest($1::uuid[], $2::int8[]) AS a(stream_id, last) \
                 WHERE e.stream_id = a.stream_id AND e.version < a.last",
                t.events
            ),
            &[&streams, &lasts],
        )
        .await
        .map_err(pg_error)?;
    Ok(deleted)
}
