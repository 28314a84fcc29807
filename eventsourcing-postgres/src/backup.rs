//! `export` and `import` of the portable backup format (`eventsourcing_core::backup`,
//! `BACKUP-FORMAT.md`).
//!
//! Export reads everything in one `REPEATABLE READ, READ ONLY` transaction on a dedicated
//! connection (one consistent moment of the store), through server-side portals of
//! [`PAGE`] rows, so memory stays bounded whatever the store's size.
//!
//! Import first reads the whole file once ([`verify_file`]: header version, record order,
//! trailer counts and hash) and writes nothing unless it is sound; then, in ONE transaction
//! that also locks the four tables against other writers, it checks the store is empty and
//! inserts the events in the file's order, batch by batch, so they keep their relative log
//! order. A failure at any point (a bad record, a lost connection) rolls everything back: the
//! target is as it was. The client holds one batch at a time; the server holds the transaction.

use std::{collections::HashMap, io::Write, path::Path};

use eventsourcing_core::{
    backup::{
        no_progress, verify_holding, BackupError, BackupReader, BackupWriter, Content, Counts,
        EventRecord, Header, ParkedRecord, Progress, Record, Remap, SnapshotRecord, TrackingRecord,
    },
    Error, Metadata, Position,
};
use tokio_postgres::{types::Json, IsolationLevel, Row, Transaction};
use uuid::Uuid;

use crate::{
    error::query_error,
    rows::{self, fingerprint_column, position_columns, version_param},
    sql::quote_ident,
    store::PostgresStore,
    xid::Xid8,
};

/// Rows fetched per round trip on export, and records written per statement on import.
pub(crate) const PAGE: usize = 2000;

/// The columns `rows::log_event` decodes.
pub(crate) const EVENT_COLUMNS: &str = "stream_id, version, tx_id, position, event_type, \
     schema_version, timestamp, payload, metadata, stream_type";

impl PostgresStore {
    /// Writes every event (in log order), snapshot, tracking position and parked event to
    /// `out` in the backup format, from one consistent moment of the store. Returns `out`
    /// (flushed; sync a file yourself) and the counts.
    ///
    /// A stored row that cannot be read ([`Error::BadRow`]) stops the export: fix or remove it
    /// first (`eventsourcing-admin verify` lists them).
    pub async fn export<W: Write + Send>(&self, out: W) -> Result<(W, Counts), BackupError> {
        self.export_with_progress(out, no_progress()).await
    }

    /// [`export`](Self::export), calling `progress` every
    /// [`PROGRESS_EVERY`](eventsourcing_core::backup::PROGRESS_EVERY) records.
    pub async fn export_with_progress<W: Write + Send>(
        &self,
        out: W,
        progress: Progress,
    ) -> Result<(W, Counts), BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            .await
            .map_err(db)?;
        let t = Tables::new(&self.config().schema);
        // The rows of this snapshot, for the progress display's total: a count is a small
        // fraction of reading them all.
        let total: i64 = tx
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {}) \
                          + (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
                    t.events, t.snapshots, t.tracking, t.parked
                ),
                &[],
            )
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let mut writer = BackupWriter::new(out, Header::new(Content::Full, "postgres"))?
            .with_progress(progress, total.max(0) as u64);
        let events = format!(
            "SELECT {EVENT_COLUMNS} FROM {} ORDER BY tx_id, position",
            t.events
        );
        pages(
            &tx,
            &events,
            &[],
            |row| Ok(Record::Event(event_record(row)?)),
            &mut writer,
            &db,
        )
        .await?;
        let snapshots = format!(
            "SELECT version, timestamp, state_type, fingerprint, payload, stream_id FROM {} \
             ORDER BY stream_id, version",
            t.snapshots
        );
        pages(
            &tx,
            &snapshots,
            &[],
            |row| {
                let s = rows::snapshot(row, row.try_get(5).map_err(crate::error::pg_error)?)?;
                Ok(Record::Snapshot(SnapshotRecord {
                    stream_id: s.stream_id,
                    version: s.version,
                    state_type: s.state_type,
                    fingerprint: s.fingerprint,
                    timestamp: s.timestamp,
                    payload: s.payload,
                }))
            },
            &mut writer,
            &db,
        )
        .await?;
        let tracking = format!(
            "SELECT name, position_commit, position_seq FROM {} ORDER BY name",
            t.tracking
        );
        pages(
            &tx,
            &tracking,
            &[],
            |row| {
                let get = |i| row.try_get::<_, i64>(i).map_err(crate::error::pg_error);
                Ok(Record::Tracking(TrackingRecord {
                    name: row.try_get(0).map_err(crate::error::pg_error)?,
                    position: rows::position_from_columns(get(1)?, get(2)?),
                }))
            },
            &mut writer,
            &db,
        )
        .await?;
        let parked = format!(
            "SELECT position_commit, position_seq, stream_id, version, event_type, error, \
                    parked_at, name FROM {} ORDER BY name, position_commit, position_seq",
            t.parked
        );
        pages(
            &tx,
            &parked,
            &[],
            |row| {
                let name: String = row.try_get(7).map_err(crate::error::pg_error)?;
                let p = rows::parked_event(row, &name)?;
                Ok(Record::Parked(ParkedRecord {
                    name,
                    position: p.position,
                    stream_id: p.stream_id,
                    version: p.version,
                    event_type: p.event_type,
                    error: p.error,
                    parked_at: p.parked_at,
                }))
            },
            &mut writer,
            &db,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        writer.finish()
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

    /// [`import`](Self::import), calling `progress` after each batch of the writing pass.
    pub async fn import_with_progress(
        &self,
        path: &Path,
        mut progress: Progress,
    ) -> Result<Counts, BackupError> {
        let verified = verify_holding(path, Content::Full).await?;
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let tx = client.transaction().await.map_err(db)?;
        let t = Tables::new(&self.config().schema);
        tx.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = 0; \
             LOCK TABLE {}, {}, {}, {} IN EXCLUSIVE MODE",
            t.events, t.snapshots, t.tracking, t.parked
        ))
        .await
        .map_err(db)?;
        for (table, name) in [
            (&t.events, "events"),
            (&t.snapshots, "snapshots"),
            (&t.tracking, "tracking"),
            (&t.parked, "parked_events"),
        ] {
            let row = tx
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map_err(db)?;
            let rows: i64 = row.try_get(0).map_err(db)?;
            if rows > 0 {
                return Err(BackupError::NotEmpty {
                    table: name,
                    rows: rows as u64,
                });
            }
        }
        let mut remap = Remap::new(verified.positions);
        let mut reader = Some(BackupReader::open(path)?);
        let mut written = Counts::default();
        loop {
            let (back, batch) = next_batch(reader.take(), PAGE).await?;
            reader = back;
            if batch.is_empty() {
                break;
            }
            progress(
                total(&written) + batch.len() as u64,
                total(&verified.counts),
            );
            let mut events = Vec::new();
            let mut snapshots = Vec::new();
            let mut rest = Vec::new();
            for record in batch {
                match record {
                    Record::Event(e) => events.push(e),
                    Record::Snapshot(s) => snapshots.push(s),
                    other => rest.push(other),
                }
            }
            written.events += events.len() as u64;
            for (old, new) in insert_events(&tx, &t.events, &events, false).await? {
                remap.event(old, new);
            }
            written.snapshots += snapshots.len() as u64;
            insert_snapshots(&tx, &t.snapshots, &snapshots).await?;
            for record in rest {
                match record {
                    Record::Tracking(r) => {
                        written.tracking += 1;
                        let (commit, seq) = position_columns(remap.get(r.position))?;
                        tx.execute(
                            &format!(
                                "INSERT INTO {} (name, position_commit, position_seq) \
                                 VALUES ($1, $2, $3)",
                                t.tracking
                            ),
                            &[&r.name, &commit, &seq],
                        )
                        .await
                        .map_err(db)?;
                    }
                    Record::Parked(p) => {
                        written.parked += 1;
                        let (commit, seq) = position_columns(remap.get(p.position))?;
                        tx.execute(
                            &format!(
                                "INSERT INTO {} (name, position_commit, position_seq, stream_id, \
                                 version, event_type, error, parked_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                t.parked
                            ),
                            &[
                                &p.name,
                                &commit,
                                &seq,
                                &p.stream_id,
                                &version_param(p.version)?,
                                &p.event_type,
                                &p.error,
                                &p.parked_at,
                            ],
                        )
                        .await
                        .map_err(db)?;
                    }
                    _ => {}
                }
            }
        }
        if written != verified.counts {
            // The file changed between the two passes.
            return Err(BackupError::Counts {
                expected: verified.counts,
                found: written,
            });
        }
        tx.commit().await.map_err(db)?;
        if written.events > 0 {
            self.announce_events();
        }
        Ok(written)
    }
}

/// Every record of `counts`.
pub(crate) fn total(counts: &Counts) -> u64 {
    counts.events + counts.snapshots + counts.tracking + counts.parked
}

/// The store's four tables, schema-qualified and quoted.
pub(crate) struct Tables {
    pub(crate) events: String,
    pub(crate) snapshots: String,
    pub(crate) tracking: String,
    pub(crate) parked: String,
}

impl Tables {
    pub(crate) fn new(schema: &str) -> Self {
        let q = quote_ident(schema);
        Tables {
            events: format!("{q}.events"),
            snapshots: format!("{q}.snapshots"),
            tracking: format!("{q}.tracking"),
            parked: format!("{q}.parked_events"),
        }
    }
}

/// Runs `query` through a portal, [`PAGE`] rows at a time, writing each row as a record.
pub(crate) async fn pages<W: Write>(
    tx: &Transaction<'_>,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    record: impl Fn(&Row) -> Result<Record, Error>,
    writer: &mut BackupWriter<W>,
    db: &impl Fn(tokio_postgres::Error) -> Error,
) -> Result<(), BackupError> {
    let portal = tx.bind(query, params).await.map_err(db)?;
    loop {
        let rows = tx.query_portal(&portal, PAGE as i32).await.map_err(db)?;
        for row in &rows {
            writer.write(&record(row)?)?;
        }
        if rows.len() < PAGE {
            return Ok(());
        }
    }
}

/// A row of [`EVENT_COLUMNS`] as a record; a row that cannot be read is [`Error::BadRow`].
pub(crate) fn event_record(row: &Row) -> Result<EventRecord, Error> {
    EventRecord::from_stored(rows::log_event(row)?)
}

/// Inserts `events` in their order and returns each one's (old, new) position. With
/// `at_original`, each keeps its recorded position (`tx_id` and `position`: an archive going
/// back into the store it came from); otherwise the transaction's id and the identity give new
/// ones, ascending in the given order (checked).
pub(crate) async fn insert_events(
    tx: &Transaction<'_>,
    table: &str,
    events: &[EventRecord],
    at_original: bool,
) -> Result<Vec<(Position, Position)>, BackupError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let db = crate::error::pg_error;
    let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    let versions = events
        .iter()
        .map(|e| version_param(e.version))
        .collect::<Result<Vec<i64>, Error>>()?;
    let times: Vec<_> = events.iter().map(|e| e.timestamp).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schemas = events
        .iter()
        .map(|e| i32::try_from(e.schema_version))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| crate::error::out_of_range("a schema version is above integer range"))?;
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let metadata: Vec<Option<Json<&Metadata>>> = events
        .iter()
        .map(|e| (!e.metadata.is_empty()).then_some(Json(&e.metadata)))
        .collect();
    let stream_types: Vec<&str> = events.iter().map(|e| e.stream_type.as_str()).collect();
    let txids: Vec<Xid8> = events.iter().map(|e| Xid8(e.position.commit)).collect();
    let seqs = events
        .iter()
        .map(|e| i64::try_from(e.position.seq))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| crate::error::out_of_range("a position is above bigint range"))?;
    let unnest = "unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::int4[], \
                  $6::bytea[], $7::jsonb[], $8::text[], $9::xid8[], $10::int8[]) \
                  WITH ORDINALITY AS t(s, v, ts, et, sv, p, m, st, x, q, n)";
    let sql = if at_original {
        format!(
            "INSERT INTO {table} (stream_id, version, timestamp, event_type, schema_version, \
             payload, metadata, stream_type, tx_id, position) OVERRIDING SYSTEM VALUE \
             SELECT s, v, ts, et, sv, p, m, st, x, q FROM {unnest} ORDER BY n \
             RETURNING stream_id, version, tx_id, position"
        )
    } else {
        format!(
            "INSERT INTO {table} (stream_id, version, timestamp, event_type, schema_version, \
             payload, metadata, stream_type) \
             SELECT s, v, ts, et, sv, p, m, st FROM {unnest} ORDER BY n \
             RETURNING stream_id, version, tx_id, position"
        )
    };
    let rows = tx
        .query(
            &sql,
            &[
                &ids,
                &versions,
                &times,
                &types,
                &schemas,
                &payloads,
                &metadata,
                &stream_types,
                &txids,
                &seqs,
            ],
        )
        .await
        .map_err(db)?;
    let mut new = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get(0).map_err(db)?;
        let version: i64 = row.try_get(1).map_err(db)?;
        let x: Xid8 = row.try_get(2).map_err(db)?;
        let seq: i64 = row.try_get(3).map_err(db)?;
        new.insert((id, version), rows::log_position(x, seq));
    }
    let mut out = Vec::with_capacity(events.len());
    let mut last = None;
    for (e, version) in events.iter().zip(&versions) {
        let Some(&position) = new.get(&(e.stream_id, *version)) else {
            return Err(Error::Store(
                format!(
                    "event {} of stream {} was not inserted",
                    e.version, e.stream_id
                )
                .into(),
            )
            .into());
        };
        if last.is_some_and(|last| last >= position) {
            return Err(Error::Store(
                "the inserted events did not keep the file's order; nothing was imported".into(),
            )
            .into());
        }
        last = Some(position);
        out.push((e.position, position));
    }
    Ok(out)
}

async fn insert_snapshots(
    tx: &Transaction<'_>,
    table: &str,
    snapshots: &[SnapshotRecord],
) -> Result<(), BackupError> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = snapshots.iter().map(|s| s.stream_id).collect();
    let versions = snapshots
        .iter()
        .map(|s| version_param(s.version))
        .collect::<Result<Vec<i64>, Error>>()?;
    let times: Vec<_> = snapshots.iter().map(|s| s.timestamp).collect();
    let types: Vec<&str> = snapshots.iter().map(|s| s.state_type.as_str()).collect();
    let prints: Vec<i64> = snapshots
        .iter()
        .map(|s| fingerprint_column(s.fingerprint))
        .collect();
    let payloads: Vec<&[u8]> = snapshots.iter().map(|s| s.payload.as_slice()).collect();
    tx.execute(
        &format!(
            "INSERT INTO {table} (stream_id, version, timestamp, state_type, fingerprint, payload) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                  $5::int8[], $6::bytea[])"
        ),
        &[&ids, &versions, &times, &types, &prints, &payloads],
    )
    .await
    .map_err(crate::error::pg_error)?;
    Ok(())
}

/// [`verify_file`] off the async threads.
type FileReader = BackupReader<std::fs::File>;

/// Up to `n` records, read (and decompressed) off the async threads; an empty batch at the
/// checked end of the file.
pub(crate) async fn next_batch(
    reader: Option<FileReader>,
    n: usize,
) -> Result<(Option<FileReader>, Vec<Record>), BackupError> {
    let Some(mut reader) = reader else {
        return Ok((None, Vec::new()));
    };
    tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            match reader.next_record()? {
                Some(record) => batch.push(record),
                None => return Ok((None, batch)),
            }
        }
        Ok((Some(reader), batch))
    })
    .await
    .map_err(|e| BackupError::Io(std::io::Error::other(e)))?
}
