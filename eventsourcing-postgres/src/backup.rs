//! `export` and `import` of the portable backup format (`eventsourcing_core::backup`,
//! `BACKUP-FORMAT.md`): this store's part of core's [`Backup`] trait (with `archive.rs`).
//!
//! Export reads everything in one `REPEATABLE READ, READ ONLY` transaction on a dedicated
//! connection (one consistent moment of the store), through server-side portals of
//! [`PAGE`] rows, so memory stays bounded whatever the store's size.
//!
//! Import gets the file checked whole (header version, record order, trailer counts and hash)
//! by core before anything is written; then, in ONE transaction that also locks the four
//! tables against other writers, it checks the store is empty and inserts the events in the
//! file's order, batch by batch, so they keep their relative log order. A failure at any point
//! (a bad record, a lost connection) rolls everything back: the target is as it was. The client
//! holds one batch at a time; the server holds the transaction.

use std::{collections::HashMap, io::Write};

use eventsourcing_core::{
    backup::{Backup, BackupError, BackupWriter, CheckedFile, Counts, EventRecord, Record},
    Error, Metadata, Position, Tracking,
};
use tokio_postgres::{
    types::{Json, ToSql},
    IsolationLevel, Row, Transaction, TransactionBuilder,
};
use uuid::Uuid;

use crate::{
    error::{out_of_range, pg_error, query_error},
    rows::{self, fingerprint_column, position_columns, version_param},
    sql::{quote_ident, EVENT_COLUMNS},
    store::PostgresStore,
    xid::Xid8,
};

/// Rows fetched per round trip on export, and records written per statement on import.
pub(crate) const PAGE: usize = 2000;

impl Backup for PostgresStore {
    async fn export_to<W: Write + Send + 'static>(
        &self,
        mut writer: BackupWriter<W>,
    ) -> Result<(W, Counts), BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let consistent = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true);
        let tx = start_long(consistent, &db).await?;
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
        writer.set_total(total.max(0) as u64);
        let events = format!(
            "SELECT {EVENT_COLUMNS} FROM {} ORDER BY tx_id, position",
            t.events
        );
        let event = |row: &Row| Record::event(rows::log_event(row)?);
        pages(&tx, &events, &[], event, &mut writer, &db).await?;
        let snapshots = format!(
            "SELECT version, timestamp, state_type, fingerprint, payload, stream_id FROM {} \
             ORDER BY stream_id, version",
            t.snapshots
        );
        let snapshot = |row: &Row| {
            let stream_id = row.try_get(5).map_err(pg_error)?;
            Ok(Record::Snapshot(rows::snapshot(row, stream_id)?))
        };
        pages(&tx, &snapshots, &[], snapshot, &mut writer, &db).await?;
        let tracking = format!(
            "SELECT name, position_commit, position_seq FROM {} ORDER BY name",
            t.tracking
        );
        let consumer = |row: &Row| {
            let get = |i| row.try_get::<_, i64>(i).map_err(pg_error);
            Ok(Record::Tracking(Tracking {
                name: row.try_get(0).map_err(pg_error)?,
                position: rows::position_from_columns(get(1)?, get(2)?),
            }))
        };
        pages(&tx, &tracking, &[], consumer, &mut writer, &db).await?;
        let parked = format!(
            "SELECT position_commit, position_seq, stream_id, version, event_type, error, \
                    parked_at, name FROM {} ORDER BY name, position_commit, position_seq",
            t.parked
        );
        let parked_event = |row: &Row| {
            let name: String = row.try_get(7).map_err(pg_error)?;
            Ok(Record::Parked(rows::parked_event(row, &name)?))
        };
        pages(&tx, &parked, &[], parked_event, &mut writer, &db).await?;
        tx.commit().await.map_err(db)?;
        writer.finish()
    }

    async fn import_from(&self, mut file: CheckedFile) -> Result<Counts, BackupError> {
        let mut client = self.dedicated_client().await?;
        let db = |e| query_error(e, &self.config().schema);
        let tx = start_long(client.build_transaction(), &db).await?;
        let t = Tables::new(&self.config().schema);
        tx.batch_execute(&format!(
            "LOCK TABLE {}, {}, {}, {} IN EXCLUSIVE MODE",
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
        while let Some(batch) = file.next_batch(PAGE).await? {
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
            for (old, new) in insert_events(&tx, &t.events, &events, false).await? {
                file.moved(old, new);
            }
            insert_snapshots(&tx, &t.snapshots, &snapshots).await?;
            for record in rest {
                match record {
                    Record::Tracking(r) => {
                        let (commit, seq) = position_columns(file.position(r.position))?;
                        tx.execute(&t.insert_tracking, &[&r.name, &commit, &seq])
                            .await
                            .map_err(db)?;
                    }
                    Record::Parked(p) => {
                        let (commit, seq) = position_columns(file.position(p.position))?;
                        let version = version_param(p.version)?;
                        let params: [&(dyn ToSql + Sync); 8] = [
                            &p.name,
                            &commit,
                            &seq,
                            &p.stream_id,
                            &version,
                            &p.event_type,
                            &p.error,
                            &p.parked_at,
                        ];
                        tx.execute(&t.insert_parked, &params).await.map_err(db)?;
                    }
                    _ => {}
                }
            }
        }
        // Checked before the commit: the file must not have changed between the two passes.
        let written = file.finish()?;
        tx.commit().await.map_err(db)?;
        if written.events > 0 {
            self.announce_events();
        }
        Ok(written)
    }
}

/// The store's four tables, schema-qualified and quoted, and the inserts of the rows that are
/// not events or snapshots.
pub(crate) struct Tables {
    pub(crate) events: String,
    pub(crate) snapshots: String,
    pub(crate) tracking: String,
    pub(crate) parked: String,
    insert_tracking: String,
    insert_parked: String,
}

impl Tables {
    pub(crate) fn new(schema: &str) -> Self {
        let q = quote_ident(schema);
        Tables {
            events: format!("{q}.events"),
            snapshots: format!("{q}.snapshots"),
            tracking: format!("{q}.tracking"),
            parked: format!("{q}.parked_events"),
            insert_tracking: format!(
                "INSERT INTO {q}.tracking (name, position_commit, position_seq) \
                 VALUES ($1, $2, $3)"
            ),
            insert_parked: format!(
                "INSERT INTO {q}.parked_events (name, position_commit, position_seq, stream_id, \
                 version, event_type, error, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
        }
    }
}

/// Starts `builder`'s transaction for work that lasts as long as the store is large (an export,
/// an import, an archive): the session's `idle_in_transaction_session_timeout` is lifted for
/// it, since the client holds it open between statements while it reads or writes the file.
pub(crate) async fn start_long<'c>(
    builder: TransactionBuilder<'c>,
    db: &impl Fn(tokio_postgres::Error) -> Error,
) -> Result<Transaction<'c>, Error> {
    let tx = builder.start().await.map_err(db)?;
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        .await
        .map_err(db)?;
    Ok(tx)
}

/// Runs `query` through a portal, [`PAGE`] rows at a time, writing each row as a record.
pub(crate) async fn pages<W: Write>(
    tx: &Transaction<'_>,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
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

/// One column of `rows`, as an array parameter of an `unnest` insert.
fn column<'a, T, U>(rows: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

/// [`column`] of values that may not fit their column's type.
fn try_column<'a, T, U>(
    rows: &'a [T],
    value: impl Fn(&'a T) -> Result<U, Error>,
) -> Result<Vec<U>, Error> {
    rows.iter().map(value).collect()
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
    let ids = column(events, |e| e.stream_id);
    let versions = try_column(events, |e| version_param(e.version))?;
    let times = column(events, |e| e.timestamp);
    let types = column(events, |e| e.event_type.as_str());
    let schemas = try_column(events, |e| {
        i32::try_from(e.schema_version)
            .map_err(|_| out_of_range("a schema version is above integer range"))
    })?;
    let payloads = column(events, |e| e.payload.as_slice());
    let metadata: Vec<Option<Json<&Metadata>>> = column(events, |e| {
        (!e.metadata.is_empty()).then_some(Json(&e.metadata))
    });
    let stream_types = column(events, |e| e.stream_type.as_str());
    let txids = column(events, |e| Xid8(e.position.commit));
    let seqs = try_column(events, |e| {
        i64::try_from(e.position.seq).map_err(|_| out_of_range("a position is above bigint range"))
    })?;
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
        .map_err(pg_error)?;
    let mut new = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get(0).map_err(pg_error)?;
        let version: i64 = row.try_get(1).map_err(pg_error)?;
        let x: Xid8 = row.try_get(2).map_err(pg_error)?;
        let seq: i64 = row.try_get(3).map_err(pg_error)?;
        new.insert((id, version), rows::log_position(x, seq));
    }
    let mut out = Vec::with_capacity(events.len());
    let mut last = None;
    for (e, version) in events.iter().zip(&versions) {
        let Some(&position) = new.get(&(e.stream_id, *version)) else {
            return Err(Error::store(format!(
                "event {} of stream {} was not inserted",
                e.version, e.stream_id
            ))
            .into());
        };
        if last.is_some_and(|last| last >= position) {
            return Err(Error::store(
                "the inserted events did not keep the file's order; nothing was imported",
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
    snapshots: &[eventsourcing_core::Snapshot],
) -> Result<(), BackupError> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let ids = column(snapshots, |s| s.stream_id);
    let versions = try_column(snapshots, |s| version_param(s.version))?;
    let times = column(snapshots, |s| s.timestamp);
    let types = column(snapshots, |s| s.state_type.as_str());
    let prints = column(snapshots, |s| fingerprint_column(s.fingerprint));
    let payloads = column(snapshots, |s| s.payload.as_slice());
    tx.execute(
        &format!(
            "INSERT INTO {table} (stream_id, version, timestamp, state_type, fingerprint, payload) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], \
                                  $5::int8[], $6::bytea[])"
        ),
        &[&ids, &versions, &times, &types, &prints, &payloads],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}
