//! `export` and `import` of the portable backup format (`eventsourcing_core::backup`,
//! `BACKUP-FORMAT.md`): this store's part of core's [`Backup`] trait (with `archive.rs`).
//!
//! Export runs on a reader connection inside one read transaction (one consistent moment of
//! the file; WAL lets saves go on meanwhile), stepping through each table's rows one at a
//! time, so memory stays bounded whatever the store's size.
//!
//! Import gets the file checked whole by core (off the writer thread) before anything is
//! written; then, on the writer thread, in ONE `IMMEDIATE` transaction, it
//! checks the store is empty and inserts everything in the file's order, so the events keep
//! their relative log order. Any failure rolls everything back: the target is as it was.

use std::io::Write;

use eventsourcing_core::{
    backup::{Backup, BackupError, BackupWriter, CheckedFile, Counts, EventRecord, Record},
    Error, ParkedEvent, Position, Snapshot, Tracking,
};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use crate::{
    error::{sql_error, to_i64},
    rows::{get_u64, micros_to_time, position_columns, read_event},
    store::SqliteStore,
};

/// The columns `rows::read_event` reads.
pub(crate) const EVENT_COLUMNS: &str = "position, stream_id, version, timestamp, event_type, \
     schema_version, payload, metadata, stream_type";

impl Backup for SqliteStore {
    /// On a reader's thread, `progress` included.
    async fn export_to<W: Write + Send + 'static>(
        &self,
        writer: BackupWriter<W>,
    ) -> Result<(W, Counts), BackupError> {
        self.on_reader(move |conn, dbname| Ok(export(conn, dbname, writer)))
            .await?
    }

    /// On the writer's thread, `progress` included.
    async fn import_from(&self, file: CheckedFile) -> Result<Counts, BackupError> {
        let counts = self
            .write_transaction(move |tx, dbname| import(tx, dbname, file))
            .await?;
        if counts.events > 0 {
            self.notify_changes();
        }
        Ok(counts)
    }
}

fn export<W: Write>(
    conn: &mut Connection,
    dbname: &str,
    mut writer: BackupWriter<W>,
) -> Result<(W, Counts), BackupError> {
    let db = |e| sql_error(dbname, e);
    let tx = conn.transaction().map_err(db)?;
    // The rows of this snapshot, for the progress display's total.
    let total: i64 = tx
        .query_row(
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM snapshots) \
                  + (SELECT count(*) FROM tracking) + (SELECT count(*) FROM parked_events)",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    writer.set_total(total.max(0) as u64);
    each(
        &tx,
        &format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY position"),
        &mut writer,
        |row| Ok(Record::event(read_event(row)?)?),
        dbname,
    )?;
    each(
        &tx,
        "SELECT stream_id, version, timestamp, state_type, fingerprint, payload FROM snapshots \
         ORDER BY stream_id, version",
        &mut writer,
        |row| {
            Ok(Record::Snapshot(Snapshot {
                stream_id: uuid(row, 0)?,
                version: get_u64(row, 1)?,
                timestamp: micros_to_time(row.get(2)?, 2)?,
                state_type: row.get(3)?,
                fingerprint: u64::from_ne_bytes(row.get::<_, i64>(4)?.to_ne_bytes()),
                payload: row.get(5)?,
            }))
        },
        dbname,
    )?;
    each(
        &tx,
        "SELECT name, position_commit, position_seq FROM tracking ORDER BY name",
        &mut writer,
        |row| {
            Ok(Record::Tracking(Tracking {
                name: row.get(0)?,
                position: position(row, 1)?,
            }))
        },
        dbname,
    )?;
    each(
        &tx,
        "SELECT name, position_commit, position_seq, stream_id, version, event_type, error, \
         parked_at FROM parked_events ORDER BY name, position_commit, position_seq",
        &mut writer,
        |row| {
            Ok(Record::Parked(ParkedEvent {
                name: row.get(0)?,
                position: position(row, 1)?,
                stream_id: uuid(row, 3)?,
                version: get_u64(row, 4)?,
                event_type: row.get(5)?,
                error: row.get(6)?,
                parked_at: micros_to_time(row.get(7)?, 7)?,
            }))
        },
        dbname,
    )?;
    tx.commit().map_err(db)?;
    writer.finish()
}

/// An error of a row closure: the driver's, or the store's (a bad row).
pub(crate) enum RowError {
    Sql(rusqlite::Error),
    Store(Error),
}

impl From<rusqlite::Error> for RowError {
    fn from(e: rusqlite::Error) -> Self {
        RowError::Sql(e)
    }
}

impl From<Error> for RowError {
    fn from(e: Error) -> Self {
        RowError::Store(e)
    }
}

/// A driver error on `dbname` as a backup error.
pub(crate) fn db_error(dbname: &str) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |e| BackupError::Store(sql_error(dbname, e))
}

/// Runs `query` with `params`, writing each row as a record, one row in memory at a time.
pub(crate) fn each<W: Write>(
    tx: &Transaction<'_>,
    query: &str,
    writer: &mut BackupWriter<W>,
    record: impl Fn(&rusqlite::Row<'_>) -> Result<Record, RowError>,
    dbname: &str,
) -> Result<(), BackupError> {
    let mut stmt = tx.prepare(query).map_err(db_error(dbname))?;
    let mut rows = stmt.query([]).map_err(db_error(dbname))?;
    while let Some(row) = rows.next().map_err(db_error(dbname))? {
        writer.write(&record(row).map_err(|e| e.into_backup(dbname))?)?;
    }
    Ok(())
}

fn uuid(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<eventsourcing_core::Uuid> {
    Ok(eventsourcing_core::Uuid::from_bytes(
        row.get::<_, [u8; 16]>(i)?,
    ))
}

/// A position stored as its two columns, from `column` on.
pub(crate) fn position(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Position> {
    Ok(Position {
        commit: get_u64(row, column)?,
        seq: get_u64(row, column + 1)?,
    })
}

impl SqliteStore {
    /// `f` in one `IMMEDIATE` transaction on the writer's thread (no save can slip in),
    /// committed when it returns `Ok`, rolled back otherwise.
    pub(crate) async fn write_transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &str) -> Result<T, BackupError> + Send + 'static,
    ) -> Result<T, BackupError> {
        self.on_writer(move |conn, dbname| Ok(in_transaction(conn, dbname, f)))
            .await?
    }
}

fn in_transaction<T>(
    conn: &mut Connection,
    dbname: &str,
    f: impl FnOnce(&Transaction<'_>, &str) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error(dbname))?;
    let out = f(&tx, dbname)?;
    tx.commit().map_err(db_error(dbname))?;
    Ok(out)
}

fn import(
    tx: &Transaction<'_>,
    dbname: &str,
    mut file: CheckedFile,
) -> Result<Counts, BackupError> {
    for table in ["events", "snapshots", "tracking", "parked_events"] {
        let rows: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(db_error(dbname))?;
        if rows > 0 {
            return Err(BackupError::NotEmpty {
                table,
                rows: rows as u64,
            });
        }
    }
    while let Some(record) = file.next_record()? {
        match record {
            Record::Event(e) => {
                let new = insert_event(tx, &e, false).map_err(|e| e.into_backup(dbname))?;
                file.moved(e.position, new);
            }
            Record::Snapshot(s) => {
                tx.prepare_cached(
                    "INSERT INTO snapshots (stream_id, version, timestamp, state_type, \
                     fingerprint, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        s.stream_id.as_bytes(),
                        i64::try_from(s.version).unwrap_or(i64::MAX),
                        s.timestamp.timestamp_micros(),
                        s.state_type,
                        i64::from_ne_bytes(s.fingerprint.to_ne_bytes()),
                        s.payload,
                    ])
                })
                .map_err(db_error(dbname))?;
            }
            Record::Tracking(t) => {
                let (commit, seq) = position_columns(file.position(t.position))?;
                tx.execute(
                    "INSERT INTO tracking (name, position_commit, position_seq) \
                     VALUES (?1, ?2, ?3)",
                    params![t.name, commit, seq],
                )
                .map_err(db_error(dbname))?;
            }
            Record::Parked(p) => {
                let (commit, seq) = position_columns(file.position(p.position))?;
                tx.execute(
                    "INSERT INTO parked_events (name, position_commit, position_seq, stream_id, \
                     version, event_type, error, parked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        p.name,
                        commit,
                        seq,
                        p.stream_id.as_bytes(),
                        to_i64("version", p.version)?,
                        p.event_type,
                        p.error,
                        p.parked_at.timestamp_micros(),
                    ],
                )
                .map_err(db_error(dbname))?;
            }
            Record::Header(_) | Record::Trailer(_) => {}
        }
    }
    // Checked before the commit: the file must not have changed between the two passes.
    file.finish()
}

impl RowError {
    pub(crate) fn into_backup(self, dbname: &str) -> BackupError {
        match self {
            RowError::Sql(e) => db_error(dbname)(e),
            RowError::Store(e) => BackupError::Store(e),
        }
    }
}

/// Inserts one event and returns its position: a new one, or with `at_original` the one it
/// had (an archive going back into the store it came from).
pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    e: &EventRecord,
    at_original: bool,
) -> Result<Position, RowError> {
    let metadata = if e.metadata.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&e.metadata).map_err(Error::store)?)
    };
    let position = if at_original {
        Some(to_i64("position", e.position.seq)?)
    } else {
        None
    };
    tx.prepare_cached(
        "INSERT INTO events (position, stream_id, version, timestamp, event_type, \
         schema_version, payload, metadata, stream_type) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        position,
        e.stream_id.as_bytes(),
        to_i64("version", e.version)?,
        e.timestamp.timestamp_micros(),
        e.event_type,
        e.schema_version,
        e.payload,
        metadata,
        e.stream_type,
    ])?;
    let p = tx.last_insert_rowid() as u64;
    Ok(Position { commit: p, seq: p })
}
