//! `archive` (events of quiet streams out of the hot table into an archive file) and
//! `archive restore` (back in, at their original log positions).
//!
//! A stream is archived when its newest event is older than the cut-off and a snapshot at its
//! newest version exists: all its events but the newest move to the file. The newest stays, so
//! the stream keeps its version (new saves go on at version + 1) and loads from the snapshot.
//! Streams without such a snapshot are skipped and reported.
//!
//! Nothing is lost: the whole job runs on the writer thread in one `IMMEDIATE` transaction
//! (no save can slip in); the file is written, synced (file and directory), read back and
//! checked whole before the events are deleted and the transaction commits.

use std::{
    fs::OpenOptions,
    io::BufWriter,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use eventsourcing_core::{
    backup::{
        check_consumers, sync_file, verify_file, verify_holding, ArchiveReport, BackupError,
        BackupReader, BackupWriter, Content, Counts, Header, Record,
    },
    Position, Uuid,
};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::{
    backup::{each, event_record, insert_event, EVENT_COLUMNS},
    error::{sql_error, to_i64},
    rows::get_u64,
    store::SqliteStore,
};

/// The streams chosen, in a temporary table of the writer connection.
const CHOSEN: &str = "FROM events e JOIN temp.archive_streams a \
                      ON e.stream_id = a.stream_id AND e.version < a.last";

impl SqliteStore {
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
        let path = path.to_owned();
        self.on_writer(move |conn, dbname| Ok(archive(conn, dbname, before, &path, force)))
            .await?
    }

    /// Puts the events of an archive file back into this store at their original log
    /// positions, in one transaction, after checking the whole file. Refused
    /// ([`BackupError::AlreadyPresent`]) when any of them is in the store.
    pub async fn restore_archive(&self, path: &Path) -> Result<Counts, BackupError> {
        verify_holding(path, Content::Archive).await?;
        let path: PathBuf = path.to_owned();
        self.on_writer(move |conn, dbname| Ok(restore(conn, dbname, &path)))
            .await?
    }
}

fn archive(
    conn: &mut Connection,
    dbname: &str,
    before: DateTime<Utc>,
    path: &Path,
    force: bool,
) -> Result<ArchiveReport, BackupError> {
    let db = |e| BackupError::Store(sql_error(dbname, e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS archive_streams \
             (stream_id BLOB PRIMARY KEY, last INTEGER NOT NULL); \
         DELETE FROM temp.archive_streams;",
    )
    .map_err(db)?;
    let mut report = ArchiveReport::default();
    {
        let mut stmt = tx
            .prepare(
                "WITH q AS (SELECT stream_id, max(version) AS last FROM events \
                            GROUP BY stream_id HAVING max(timestamp) < ?1 AND count(*) > 1) \
                 SELECT q.stream_id, q.last, EXISTS (SELECT 1 FROM snapshots s \
                        WHERE s.stream_id = q.stream_id AND s.version = q.last) \
                 FROM q ORDER BY q.stream_id",
            )
            .map_err(db)?;
        let mut rows = stmt.query([before.timestamp_micros()]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let id = Uuid::from_bytes(row.get(0).map_err(db)?);
            if row.get::<_, bool>(2).map_err(db)? {
                tx.execute(
                    "INSERT INTO temp.archive_streams (stream_id, last) VALUES (?1, ?2)",
                    params![id.as_bytes(), row.get::<_, i64>(1).map_err(db)?],
                )
                .map_err(db)?;
                report.streams.push(id);
            } else {
                report.skipped.push(id);
            }
        }
    }
    if report.streams.is_empty() {
        return Ok(report);
    }
    let newest: i64 = tx
        .query_row(&format!("SELECT max(e.position) {CHOSEN}"), [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    let newest = Position {
        commit: newest as u64,
        seq: newest as u64,
    };
    if !force {
        let mut stmt = tx
            .prepare("SELECT name, position_commit, position_seq FROM tracking ORDER BY name")
            .map_err(db)?;
        let consumers = stmt
            .query_map([], |row| {
                let (commit, seq) = (get_u64(row, 1)?, get_u64(row, 2)?);
                Ok((row.get(0)?, Position { commit, seq }))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db)?;
        check_consumers(consumers, newest)?;
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    // Until the commit, a failure removes the file: the store still holds every event in it.
    // After that the file stays, whatever the outcome.
    let staged = (|| {
        let mut writer = BackupWriter::new(
            BufWriter::new(file),
            Header::new(Content::Archive, "sqlite"),
        )?;
        let columns = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        each(
            &tx,
            &format!("SELECT {columns} {CHOSEN} ORDER BY e.position"),
            &mut writer,
            |row| Ok(Record::Event(event_record(row)?)),
            dbname,
        )?;
        let (out, counts) = writer.finish()?;
        sync_file(out, path)?;
        let verified = verify_file(path)?;
        if verified.counts != counts {
            return Err(BackupError::Counts {
                expected: counts,
                found: verified.counts,
            });
        }
        let deleted = tx
            .execute(
                &format!("DELETE FROM events WHERE position IN (SELECT e.position {CHOSEN})"),
                [],
            )
            .map_err(db)?;
        if deleted as u64 != counts.events {
            return Err(BackupError::Store(eventsourcing_core::Error::store(
                format!(
                    "archive would delete {deleted} events, the file holds {}; nothing was deleted",
                    counts.events
                ),
            )));
        }
        Ok::<_, BackupError>(counts)
    })();
    let counts = match staged {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    tx.execute("DELETE FROM temp.archive_streams", [])
        .map_err(db)?;
    tx.commit().map_err(db)?;
    report.counts = counts;
    Ok(report)
}

fn restore(conn: &mut Connection, dbname: &str, path: &Path) -> Result<Counts, BackupError> {
    let db = |e| BackupError::Store(sql_error(dbname, e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let mut reader = BackupReader::open(path)?;
    let mut counts = Counts::default();
    while let Some(record) = reader.next_record()? {
        let Record::Event(e) = record else { continue };
        let present: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?1 AND version = ?2)",
                params![e.stream_id.as_bytes(), to_i64("version", e.version)?],
                |r| r.get(0),
            )
            .map_err(db)?;
        if present {
            return Err(BackupError::AlreadyPresent {
                stream_id: e.stream_id,
                version: e.version,
            });
        }
        insert_event(&tx, &e, true).map_err(|err| err.into_backup(dbname))?;
        counts.events += 1;
    }
    tx.commit().map_err(db)?;
    Ok(counts)
}
