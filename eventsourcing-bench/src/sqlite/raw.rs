//! The raw rusqlite baseline: one connection to the store's database file with the store's
//! pragmas, its own `raw_events` table (the store's `events` table under another name), and the
//! hand-written reads of the store's own tables.

use std::time::Duration;

use eventsourcing::{chrono::DateTime, prelude::*, sqlite::Synchronous, Position, StoredEvent};
use rusqlite::{params, Connection, Rows, TransactionBehavior};

use crate::common::{
    counter::{added_payload, raw_payloads},
    fold::{Fold, Folded},
    BoxError,
};

const RAW_INSERT: &str = "INSERT INTO raw_events \
    (stream_id, version, timestamp, event_type, schema_version, payload, metadata) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)";

const RAW_LOAD: &str = "SELECT version, timestamp, event_type, payload FROM raw_events \
    WHERE stream_id = ?1 ORDER BY version";

/// The store's `events` table (as its migrations made it in this file), under another name: the
/// raw baseline writes the same rows into the same shape.
fn raw_ddl(conn: &Connection) -> Result<String, BoxError> {
    let ddl: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |row| row.get(0),
    )?;
    let columns = ddl
        .split_once('(')
        .map(|(_, rest)| rest)
        .ok_or("the store's events table has no column list")?;
    Ok(format!("CREATE TABLE IF NOT EXISTS raw_events ({columns}"))
}

/// rusqlite by hand: one connection, prepared statements, one transaction per save.
pub(crate) struct Raw {
    conn: Connection,
}

impl Raw {
    /// Opens `dbname` in WAL mode with `synchronous`, as the store does, and creates the raw
    /// table.
    pub(crate) fn open(dbname: &str, synchronous: Synchronous) -> Result<Self, BoxError> {
        let conn = Connection::open(dbname)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("raw connection: journal_mode is {mode}").into());
        }
        conn.pragma_update(None, "synchronous", synchronous.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(&raw_ddl(&conn)?)?;
        Ok(Raw { conn })
    }

    fn insert_stream(&mut self, stream: Uuid, events: usize) -> Result<(), BoxError> {
        let payloads = raw_payloads(events)?;
        let timestamp = eventsourcing::now().timestamp_micros();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(RAW_INSERT)?;
            for (i, (event_type, payload)) in payloads.iter().enumerate() {
                insert.execute(params![
                    stream.as_bytes(),
                    i as i64 + 1,
                    timestamp,
                    event_type,
                    1,
                    payload
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One `Added` event at `version` of `stream`, in its own transaction.
    pub(crate) fn append_one(&mut self, stream: Uuid, version: u64) -> Result<(), BoxError> {
        let payload = added_payload(version as i64)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(RAW_INSERT)?.execute(params![
            stream.as_bytes(),
            i64::try_from(version)?,
            eventsourcing::now().timestamp_micros(),
            "Added",
            1,
            payload
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// A new stream of `events` events in one transaction; its id.
    pub(crate) fn save_stream(&mut self, events: usize) -> Result<Uuid, BoxError> {
        let stream = Uuid::new_v4();
        self.insert_stream(stream, events)?;
        Ok(stream)
    }

    /// Loads a stream of the raw table: one prepared `SELECT` in version order, decoded and
    /// folded.
    pub(crate) fn load(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let mut stmt = self.conn.prepare_cached(RAW_LOAD)?;
        let rows = stmt.query([stream.as_bytes()])?;
        fold_events(Fold::new(), rows)
    }

    /// A hand-written snapshot load from the store's own `snapshots` and `events` tables.
    pub(crate) fn load_with_snapshot(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, state_type, fingerprint, payload FROM snapshots \
             WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1",
        )?;
        let mut rows = stmt.query([stream.as_bytes()])?;
        let mut fold = Fold::new();
        if let Some(row) = rows.next()? {
            fold.snapshot(
                row.get(0)?,
                row.get_ref(1)?.as_str()?,
                row.get(2)?,
                row.get_ref(3)?.as_blob()?,
            )?;
        }
        drop(rows);
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, timestamp, event_type, payload FROM events \
             WHERE stream_id = ?1 AND version > ?2 ORDER BY version",
        )?;
        let rows = stmt.query(params![stream.as_bytes(), i64::try_from(fold.version())?])?;
        fold_events(fold, rows)
    }

    /// Reads the page of the store's log after `after` into `out`, each row turned into a
    /// `StoredEvent` (what the store's `read_log` returns).
    fn read_page(
        &self,
        after: i64,
        limit: usize,
        out: &mut Vec<StoredEvent>,
    ) -> Result<(), BoxError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT position, stream_id, version, timestamp, event_type, schema_version, \
             payload, metadata FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![after, i64::try_from(limit)?])?;
        while let Some(row) = rows.next()? {
            let position = u64::try_from(row.get::<_, i64>(0)?)?;
            let metadata = match row.get_ref(7)?.as_str_or_null()? {
                None => Metadata::default(),
                Some(json) => serde_json::from_str(json)?,
            };
            out.push(StoredEvent {
                stream_id: Uuid::from_bytes(row.get(1)?),
                version: u64::try_from(row.get::<_, i64>(2)?)?,
                position: Position {
                    commit: position,
                    seq: position,
                },
                event_type: row.get(4)?,
                schema_version: row.get(5)?,
                timestamp: DateTime::from_timestamp_micros(row.get(3)?)
                    .ok_or("timestamp out of range")?,
                payload: row.get(6)?,
                metadata,
                stream_type: String::new(),
                defect: None,
            });
        }
        Ok(())
    }

    /// Reads the first `count` events of the store's log in pages of `page`, and returns the
    /// last one's position.
    pub(crate) fn read_log(&self, count: usize, page: usize) -> Result<Position, BoxError> {
        let mut buffer = Vec::with_capacity(page);
        let (mut after, mut read) = (Position::START, 0usize);
        while read < count {
            buffer.clear();
            self.read_page(
                i64::try_from(after.commit)?,
                page.min(count - read),
                &mut buffer,
            )?;
            let Some(last) = buffer.last() else { break };
            after = last.position;
            read += buffer.len();
            for event in buffer.drain(..) {
                std::hint::black_box(event);
            }
        }
        Ok(after)
    }

    /// A hand-written exactly-once projection with a no-op handler: the paged read, and one
    /// write transaction per page recording the position.
    pub(crate) fn project(&mut self, name: &str, page: usize) -> Result<(), BoxError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS raw_tracking (name TEXT PRIMARY KEY, position INTEGER)",
        )?;
        let mut batch = Vec::with_capacity(page);
        let mut after = 0i64;
        loop {
            batch.clear();
            self.read_page(after, page, &mut batch)?;
            let Some(last) = batch.last() else { break };
            let last = i64::try_from(last.position.commit)?;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for event in &batch {
                std::hint::black_box(event);
            }
            tx.execute(
                "INSERT OR REPLACE INTO raw_tracking (name, position) VALUES (?1, ?2)",
                params![name, last],
            )?;
            tx.commit()?;
            after = last;
        }
        Ok(())
    }
}

/// Folds event rows of `version, timestamp, event_type, payload` onto `fold`.
fn fold_events(mut fold: Fold, mut rows: Rows<'_>) -> Result<Folded, BoxError> {
    let mut modified = 0i64;
    while let Some(row) = rows.next()? {
        let version: i64 = row.get(0)?;
        modified = row.get(1)?;
        fold.event(
            version,
            row.get_ref(2)?.as_str()?,
            row.get_ref(3)?.as_blob()?,
        )?;
    }
    Ok(fold.finish(modified))
}
