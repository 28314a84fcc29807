//! `archive` (events of quiet streams out of the hot table into an archive file) and
//! `archive restore` (back in, at their original log positions).
//!
//! A stream is archived when its newest event is older than the cut-off and a snapshot at its
//! newest version exists: all its events but the newest move to the file. The newest stays, so
//! the stream keeps its version (new saves go on at version + 1) and loads from the snapshot.
//! Streams without such a snapshot are skipped and reported.
//!
//! Nothing is lost: the file is written, synced (file and directory), read back and checked
//! whole before the events are deleted, in one transaction that sets
//! `SET LOCAL eventsourcing.allow_archive = 'on'` (the setting an append-only trigger on
//! `events` checks before refusing a `DELETE`).

use std::{fs::OpenOptions, path::Path};

use chrono::{DateTime, Utc};
use eventsourcing_core::backup::{
    check_consumers, sync_file, verify_file, verify_holding, ArchiveReport, BackupError,
    BackupReader, BackupWriter, Content, Counts, Header, Record,
};
use tokio_postgres::{IsolationLevel, Transaction};
use uuid::Uuid;

use crate::{
    backup::{event_record, insert_events, next_batch, pages, Tables, EVENT_COLUMNS, PAGE},
    error::query_error,
    rows::{self, position_from_columns, version_param},
    store::PostgresStore,
    xid::Xid8,
};

impl PostgresStore {
    /// Moves the events of streams untouched since `before` (all but each stream's newest)
    /// into a new archive file at `path` (refused if it exists), then deletes them from the
    /// store. Refused with [`BackupError::ConsumerBehind`] when a consumer's tracking position
    /// is behind the newest event it would remove, unless `force`.
    pub async fn archive(
        &self,
        before: DateTime<Utc>,
        path: &Path,
        force: bool,
    ) -> Result<ArchiveReport, BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let t = Tables::new(&self.config().schema);
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(db)?;
        tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            .await
            .map_err(db)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT e.stream_id, max(e.version), \
                            EXISTS (SELECT 1 FROM {snapshots} s WHERE s.stream_id = e.stream_id \
                                    AND s.version = max(e.version)) \
                     FROM {events} e GROUP BY e.stream_id \
                     HAVING max(e.timestamp) < $1 AND count(*) > 1 ORDER BY e.stream_id",
                    snapshots = t.snapshots,
                    events = t.events
                ),
                &[&before],
            )
            .await
            .map_err(db)?;
        let mut streams = Vec::new();
        let mut lasts = Vec::new();
        let mut skipped = Vec::new();
        for row in &rows {
            let id: Uuid = row.try_get(0).map_err(db)?;
            if row.try_get::<_, bool>(2).map_err(db)? {
                streams.push(id);
                lasts.push(row.try_get::<_, i64>(1).map_err(db)?);
            } else {
                skipped.push(id);
            }
        }
        let mut report = ArchiveReport {
            streams: streams.clone(),
            skipped,
            counts: Counts::default(),
        };
        if streams.is_empty() {
            return Ok(report);
        }
        let chosen = format!(
            "FROM {} e JOIN unnest($1::uuid[], $2::int8[]) AS a(stream_id, last) \
             ON e.stream_id = a.stream_id AND e.version < a.last",
            t.events
        );
        let newest = tx
            .query_one(
                &format!("SELECT e.tx_id, e.position {chosen} ORDER BY e.tx_id DESC, e.position DESC LIMIT 1"),
                &[&streams, &lasts],
            )
            .await
            .map_err(db)?;
        let x: Xid8 = newest.try_get(0).map_err(db)?;
        let newest = rows::log_position(x, newest.try_get(1).map_err(db)?);
        if !force {
            let tracking = tx
                .query(
                    &format!(
                        "SELECT name, position_commit, position_seq FROM {} ORDER BY name",
                        t.tracking
                    ),
                    &[],
                )
                .await
                .map_err(db)?;
            let consumers = tracking
                .iter()
                .map(|row| {
                    let (commit, seq) = (row.try_get(1)?, row.try_get(2)?);
                    Ok((row.try_get(0)?, position_from_columns(commit, seq)))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(db)?;
            check_consumers(consumers, newest)?;
        }
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        // Until the commit is sent, a failure removes the file: the store still holds every
        // event in it. After that the file stays, whatever the outcome (a commit whose answer
        // is lost may have deleted them).
        let staged = async {
            let mut writer = BackupWriter::new(
                std::io::BufWriter::new(file),
                Header::new(Content::Archive, "postgres"),
            )?;
            let query = format!(
                "SELECT {} {chosen} ORDER BY e.tx_id, e.position",
                qualified()
            );
            pages(
                &tx,
                &query,
                &[&streams, &lasts],
                |row| Ok(Record::Event(event_record(row)?)),
                &mut writer,
                &db,
            )
            .await?;
            let (out, counts) = writer.finish()?;
            sync_file(out, path)?;
            check_file(path, counts).await?;
            let deleted = delete(&tx, &t, &streams, &lasts).await?;
            if deleted != counts.events {
                return Err(BackupError::Store(eventsourcing_core::Error::Store(
                    format!(
                        "archive would delete {deleted} events, the file holds {}; nothing was deleted",
                        counts.events
                    )
                    .into(),
                )));
            }
            Ok::<_, BackupError>(counts)
        }
        .await;
        let counts = match staged {
            Ok(counts) => counts,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        tx.commit().await.map_err(db)?;
        report.counts = counts;
        Ok(report)
    }

    /// Puts the events of an archive file back into this store at their original log
    /// positions, in one transaction, after checking the whole file. Refused
    /// ([`BackupError::AlreadyPresent`]) when any of them is in the store.
    pub async fn restore_archive(&self, path: &Path) -> Result<Counts, BackupError> {
        verify_holding(path, Content::Archive).await?;
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let t = Tables::new(&self.config().schema);
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            .await
            .map_err(db)?;
        let horizon: Xid8 = tx
            .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())", &[])
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let mut reader = Some(BackupReader::open(path)?);
        let mut counts = Counts::default();
        loop {
            let (back, batch) = next_batch(reader.take(), PAGE).await?;
            reader = back;
            if batch.is_empty() {
                break;
            }
            let events: Vec<_> = batch
                .into_iter()
                .filter_map(|r| match r {
                    Record::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            if let Some(e) = events.iter().find(|e| e.position.commit >= horizon.0) {
                return Err(BackupError::Store(eventsourcing_core::Error::Store(
                    format!(
                        "event {} of stream {} was written by transaction {}, which this server has not reached: the archive comes from another cluster (restore it where it was made, then export/import)",
                        e.version, e.stream_id, e.position.commit
                    )
                    .into(),
                )));
            }
            let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
            let versions = events
                .iter()
                .map(|e| version_param(e.version))
                .collect::<Result<Vec<i64>, _>>()?;
            let present = tx
                .query(
                    &format!(
                        "SELECT e.stream_id, e.version FROM {} e \
                         JOIN unnest($1::uuid[], $2::int8[]) AS a(s, v) \
                         ON e.stream_id = a.s AND e.version = a.v LIMIT 1",
                        t.events
                    ),
                    &[&ids, &versions],
                )
                .await
                .map_err(db)?;
            if let Some(row) = present.first() {
                return Err(BackupError::AlreadyPresent {
                    stream_id: row.try_get(0).map_err(db)?,
                    version: row.try_get::<_, i64>(1).map_err(db)? as u64,
                });
            }
            counts.events += events.len() as u64;
            insert_events(&tx, &t.events, &events, true).await?;
        }
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

/// Reads the archive back whole and checks it holds what was written.
pub(crate) async fn check_file(path: &Path, written: Counts) -> Result<(), BackupError> {
    let path = path.to_owned();
    let verified = tokio::task::spawn_blocking(move || verify_file(&path))
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))??;
    if verified.counts != written {
        return Err(BackupError::Counts {
            expected: written,
            found: verified.counts,
        });
    }
    Ok(())
}

async fn delete(
    tx: &Transaction<'_>,
    t: &Tables,
    streams: &[Uuid],
    lasts: &[i64],
) -> Result<u64, BackupError> {
    let db = crate::error::pg_error;
    tx.batch_execute("SET LOCAL eventsourcing.allow_archive = 'on'")
        .await
        .map_err(db)?;
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
        .map_err(db)?;
    Ok(deleted)
}
