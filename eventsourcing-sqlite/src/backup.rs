//! `export` and `import` of the portable backup format (`eventsourcing_core::backup`,
//! `BACKUP-FORMAT.md`).
//!
//! Export runs on a reader connection inside one read transaction (one consistent moment of
//! the file; WAL lets saves go on meanwhile), stepping through each table's rows one at a
//! time, so memory stays bounded whatever the store's size.
//!
//! Import first reads the whole file once ([`verify_file`], off the writer thread) and writes
//! nothing unless it is sound; then, on the writer thread, in ONE `IMMEDIATE` transaction, it
//! checks the store is empty and inserts everything in the file's order, so the events keep
//! their relative log order. Any failure rolls everything back: the target is as it was.

use std::{io::Write, path::Path};

use eventsourcing_core::{
    backup::{
        no_progress, verify_holding, BackupError, BackupReader, BackupWriter, Content, Counts,
        EventRecord, Header, ParkedRecord, Progress, Record, Remap, SnapshotRecord, TrackingRecord,
        Verified, PROGRESS_EVERY,
    },
    Error, Position,
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

impl SqliteStore {
    /// Writes every event (in log order), snapshot, tracking position and parked event to
    /// `out` in the backup format, from one consistent moment of the store. Returns `out`
    /// (flushed; sync a file yourself) and the counts.
    ///
    /// A stored row that cannot be read ([`Error::BadRow`]) stops the export.
    pub async fn export<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> Result<(W, Counts), BackupError> {
        self.export_with_progress(out, no_progress()).await
    }

    /// [`export`](Self::export), calling `progress` every [`PROGRESS_EVERY`] records (on the
    /// reader's thread).
    pub async fn export_with_progress<W: Write + Send + 'static>(
        &self,
        out: W,
        progress: Progress,
    ) -> Result<(W, Counts), BackupError> {
        self.on_reader(move |conn, dbname| Ok(export(conn, dbname, out, progress)))
            .await?
    }

    /// Imports the backup at `path` into this store, which must be empty (no events,
    /// snapshots, tracking or parked rows: [`BackupError::NotEmpty`] otherwise).
    ///
    /// The file is checked whole before anything is written; then everything is written in
    /// one transaction (all or nothing). Streams keep their ids, versions, timestamps, types
    /// and metadata, and the events keep their relative log order; tracking and parked
    /// positions are moved to the new positions of the same events ([`Remap`]).
    pub async fn import(&self, path: &Path) -> Result<Counts, BackupError> {
        self.import_with_progress(path, no_progress()).await
    }

    /// [`import`](Self::import), calling `progress` every [`PROGRESS_EVERY`] records of the
    /// writing pass (on the writer's thread).
    pub async fn import_with_progress(
        &self,
        path: &Path,
        progress: Progress,
    ) -> Result<Counts, BackupError> {
        let verified = verify_holding(path, Content::Full).await?;
        let path = path.to_owned();
        let counts = self
            .on_writer(move |conn, dbname| Ok(import(conn, dbname, &path, verified, progress)))
            .await??;
        if counts.events > 0 {
            self.notify_changes();
        }
        Ok(counts)
    }
}

fn export<W: Write>(
    conn: &mut Connection,
    dbname: &str,
    out: W,
    progress: Progress,
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
    let mut writer = BackupWriter::new(out, Header::new(Content::Full, "sqlite"))?
        .with_progress(progress, total.max(0) as u64);
    each(
        &tx,
        &format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY position"),
        &mut writer,
        |row| Ok(Record::Event(event_record(row)?)),
        dbname,
    )?;
    each(
        &tx,
        "SELECT stream_id, version, timestamp, state_type, fingerprint, payload FROM snapshots \
         ORDER BY stream_id, version",
        &mut writer,
        |row| {
            Ok(Record::Snapshot(SnapshotRecord {
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
            Ok(Record::Tracking(TrackingRecord {
                name: row.get(0)?,
                position: Position {
                    commit: get_u64(row, 1)?,
                    seq: get_u64(row, 2)?,
                },
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
            Ok(Record::Parked(ParkedRecord {
                name: row.get(0)?,
                position: Position {
                    commit: get_u64(row, 1)?,
                    seq: get_u64(row, 2)?,
                },
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

/// Runs `query` with `params`, writing each row as a record, one row in memory at a time.
pub(crate) fn each<W: Write>(
    tx: &Transaction<'_>,
    query: &str,
    writer: &mut BackupWriter<W>,
    record: impl Fn(&rusqlite::Row<'_>) -> Result<Record, RowError>,
    dbname: &str,
) -> Result<(), BackupError> {
    let db = |e| BackupError::Store(sql_error(dbname, e));
    let mut stmt = tx.prepare(query).map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        match record(row) {
            Ok(r) => writer.write(&r)?,
            Err(RowError::Sql(e)) => return Err(db(e)),
            Err(RowError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

fn uuid(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<eventsourcing_core::Uuid> {
    Ok(eventsourcing_core::Uuid::from_bytes(
        row.get::<_, [u8; 16]>(i)?,
    ))
}

/// A row of [`EVENT_COLUMNS`] as a record; a row that cannot be read is [`Error::BadRow`].
pub(crate) fn event_record(row: &rusqlite::Row<'_>) -> Result<EventRecord, RowError> {
    Ok(EventRecord::from_stored(read_event(row)?)?)
}

fn import(
    conn: &mut Connection,
    dbname: &str,
    path: &Path,
    verified: Verified,
    mut progress: Progress,
) -> Result<Counts, BackupError> {
    let c = &verified.counts;
    let total = c.events + c.snapshots + c.tracking + c.parked;
    let db = |e| BackupError::Store(sql_error(dbname, e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    for table in ["events", "snapshots", "tracking", "parked_events"] {
        let rows: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(db)?;
        if rows > 0 {
            return Err(BackupError::NotEmpty {
                table,
                rows: rows as u64,
            });
        }
    }
    let mut remap = Remap::new(verified.positions);
    let mut reader = BackupReader::open(path)?;
    let mut written = Counts::default();
    let mut done = 0u64;
    while let Some(record) = reader.next_record()? {
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            progress(done, total);
        }
        match record {
            Record::Event(e) => {
                written.events += 1;
                let new = insert_event(&tx, &e, false).map_err(|e| e.into_backup(dbname))?;
                remap.event(e.position, new);
            }
            Record::Snapshot(s) => {
                written.snapshots += 1;
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
                .map_err(db)?;
            }
            Record::Tracking(t) => {
                written.tracking += 1;
                let (commit, seq) = position_columns(remap.get(t.position))?;
                tx.execute(
                    "INSERT INTO tracking (name, position_commit, position_seq) \
                     VALUES (?1, ?2, ?3)",
                    params![t.name, commit, seq],
                )
                .map_err(db)?;
            }
            Record::Parked(p) => {
                written.parked += 1;
                let (commit, seq) = position_columns(remap.get(p.position))?;
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
                .map_err(db)?;
            }
            Record::Header(_) | Record::Trailer(_) => {}
        }
    }
    if written != verified.counts {
        return Err(BackupError::Counts {
            expected: verified.counts,
            found: written,
        });
    }
    tx.commit().map_err(db)?;
    Ok(written)
}

impl RowError {
    pub(crate) fn into_backup(self, dbname: &str) -> BackupError {
        match self {
            RowError::Sql(e) => BackupError::Store(sql_error(dbname, e)),
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
