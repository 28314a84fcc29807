//! `archive` (events of quiet streams out of the hot table into an archive file) and
//! `archive restore` (back in, at their original log positions): this store's part of core's
//! [`Archive`] trait.
//!
//! A stream is archived when its newest event is older than the cut-off and a snapshot at its
//! newest version exists: all its events but the newest move to the file. The newest stays, so
//! the stream keeps its version (new saves go on at version + 1) and loads from the snapshot.
//! Streams without such a snapshot are skipped and reported.
//!
//! Nothing is lost: the whole job runs on the writer thread in one `IMMEDIATE` transaction
//! (no save can slip in); the file is written, synced (file and directory), read back and
//! checked whole (core's [`ArchiveJob`]) before the events are deleted and the transaction
//! commits.

use eventsourcing_core::{
    backup::{
        check_consumers, Archive, ArchiveJob, ArchiveReport, BackupError, CheckedFile, Counts,
        Record,
    },
    Position, Uuid,
};
use rusqlite::{params, Transaction};

use crate::{
    backup::{db_error, each, insert_event, position, EVENT_COLUMNS},
    error::to_i64,
    rows::read_event,
    store::SqliteStore,
};

/// The streams chosen, in a temporary table of the writer connection.
const CHOSEN: &str = "FROM events e JOIN temp.archive_streams a \
                      ON e.stream_id = a.stream_id AND e.version < a.last";

/// The whole of each on the writer's thread, in one `IMMEDIATE` transaction.
impl Archive for SqliteStore {
    async fn archive_with(&self, job: ArchiveJob) -> Result<ArchiveReport, BackupError> {
        self.write_transaction(move |tx, dbname| archive(tx, dbname, job))
            .await
    }

    async fn restore_from(&self, file: CheckedFile) -> Result<Counts, BackupError> {
        self.write_transaction(move |tx, dbname| restore(tx, dbname, file))
            .await
    }
}

fn archive(
    tx: &Transaction<'_>,
    dbname: &str,
    mut job: ArchiveJob,
) -> Result<ArchiveReport, BackupError> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS archive_streams \
             (stream_id BLOB PRIMARY KEY, last INTEGER NOT NULL); \
         DELETE FROM temp.archive_streams;",
    )
    .map_err(db_error(dbname))?;
    {
        let mut stmt = tx
            .prepare(
                "WITH q AS (SELECT stream_id, max(version) AS last FROM events \
                            GROUP BY stream_id HAVING max(timestamp) < ?1 AND count(*) > 1) \
                 SELECT q.stream_id, q.last, EXISTS (SELECT 1 FROM snapshots s \
                        WHERE s.stream_id = q.stream_id AND s.version = q.last) \
                 FROM q ORDER BY q.stream_id",
            )
            .map_err(db_error(dbname))?;
        let mut rows = stmt
            .query([job.before().timestamp_micros()])
            .map_err(db_error(dbname))?;
        while let Some(row) = rows.next().map_err(db_error(dbname))? {
            let id = Uuid::from_bytes(row.get(0).map_err(db_error(dbname))?);
            if job.stream(id, row.get(2).map_err(db_error(dbname))?) {
                tx.execute(
                    "INSERT INTO temp.archive_streams (stream_id, last) VALUES (?1, ?2)",
                    params![
                        id.as_bytes(),
                        row.get::<_, i64>(1).map_err(db_error(dbname))?
                    ],
                )
                .map_err(db_error(dbname))?;
            }
        }
    }
    if job.streams().is_empty() {
        return Ok(job.finish());
    }
    let newest: i64 = tx
        .query_row(&format!("SELECT max(e.position) {CHOSEN}"), [], |r| {
            r.get(0)
        })
        .map_err(db_error(dbname))?;
    let newest = Position {
        commit: newest as u64,
        seq: newest as u64,
    };
    if !job.force() {
        let mut stmt = tx
            .prepare("SELECT name, position_commit, position_seq FROM tracking ORDER BY name")
            .map_err(db_error(dbname))?;
        let consumers = stmt
            .query_map([], |row| Ok((row.get(0)?, position(row, 1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db_error(dbname))?;
        check_consumers(consumers, newest)?;
    }
    let columns = EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    each(
        tx,
        &format!("SELECT {columns} {CHOSEN} ORDER BY e.position"),
        job.create_file()?,
        |row| Ok(Record::event(read_event(row)?)?),
        dbname,
    )?;
    job.seal()?;
    let deleted = tx
        .execute(
            &format!("DELETE FROM events WHERE position IN (SELECT e.position {CHOSEN})"),
            [],
        )
        .map_err(db_error(dbname))?;
    job.deleted(deleted as u64)?;
    tx.execute("DELETE FROM temp.archive_streams", [])
        .map_err(db_error(dbname))?;
    // Until the commit, a failure removes the file (the job's drop): the store still holds
    // every event in it. From here on (the commit follows) the file stays, whatever the
    // outcome.
    Ok(job.finish())
}

fn restore(
    tx: &Transaction<'_>,
    dbname: &str,
    mut file: CheckedFile,
) -> Result<Counts, BackupError> {
    while let Some(record) = file.next_record()? {
        let Record::Event(e) = record else { continue };
        let present: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?1 AND version = ?2)",
                params![e.stream_id.as_bytes(), to_i64("version", e.version)?],
                |r| r.get(0),
            )
            .map_err(db_error(dbname))?;
        if present {
            return Err(BackupError::AlreadyPresent {
                stream_id: e.stream_id,
                version: e.version,
            });
        }
        insert_event(tx, &e, true).map_err(|err| err.into_backup(dbname))?;
    }
    file.finish()
}
