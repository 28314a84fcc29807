//! The raw tokio-postgres baseline's own table: a connection, the table's DDL, and the prepared
//! statements that write and load it.

use std::time::{Duration, Instant};

use eventsourcing::prelude::*;
use tokio_postgres::{Client, NoTls, Statement};

use crate::common::{
    counter::{added_payload, raw_payloads},
    fold::{Fold, Folded},
    BoxError,
};

/// One raw tokio-postgres connection, driven by its own task.
pub(crate) async fn connect(config: &tokio_postgres::Config) -> Result<Client, BoxError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("raw connection: {e}");
        }
    });
    Ok(client)
}

/// A new connection (see [`connect`]) and the statements it prepared from `sql`, in order.
pub(crate) async fn connect_prepared<const N: usize>(
    config: &tokio_postgres::Config,
    sql: [String; N],
) -> Result<(Client, [Statement; N]), BoxError> {
    let client = connect(config).await?;
    let mut statements = Vec::with_capacity(N);
    for sql in &sql {
        statements.push(client.prepare(sql).await?);
    }
    let statements = <[Statement; N]>::try_from(statements)
        .map_err(|_| "prepared another number of statements than asked")?;
    Ok((client, statements))
}

/// The store's `events` table, less what the log order costs (`tx_id` and its index) and the
/// BRIN time index: what a plain implementation would create.
pub(crate) fn raw_ddl(schema: &str) -> String {
    format!(
        "CREATE SCHEMA \"{schema}\";
         CREATE TABLE \"{schema}\".events (
             stream_id      uuid        NOT NULL,
             version        bigint      NOT NULL,
             position       bigserial,
             timestamp      timestamptz NOT NULL,
             event_type     text        NOT NULL,
             schema_version integer     NOT NULL,
             payload        bytea       NOT NULL,
             metadata       jsonb,
             PRIMARY KEY (stream_id, version)
         );"
    )
}

/// A raw connection with its prepared statements on the raw table.
pub(crate) struct Prepared {
    client: Client,
    insert_one: Statement,
    insert_many: Statement,
    load: Statement,
}

/// A raw stream being appended to.
pub(crate) struct RawStream {
    id: Uuid,
    version: i64,
}

impl RawStream {
    /// The stream's id.
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// Its newest version.
    pub(crate) fn version(&self) -> u64 {
        self.version as u64
    }
}

impl Prepared {
    /// A new connection preparing its statements on the raw table in `schema`.
    pub(crate) async fn connect(
        config: &tokio_postgres::Config,
        schema: &str,
    ) -> Result<Self, BoxError> {
        let table = format!("\"{schema}\".events");
        let (client, [insert_one, insert_many, load]) = connect_prepared(
            config,
            [
                format!(
                    "INSERT INTO {table} \
                     (stream_id, version, timestamp, event_type, schema_version, payload, \
                      metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL)"
                ),
                format!(
                    "INSERT INTO {table} \
                     (stream_id, version, timestamp, event_type, schema_version, payload, \
                      metadata) \
                     SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], \
                                          $4::text[], $5::int4[], $6::bytea[], $7::jsonb[])"
                ),
                format!(
                    "SELECT version, timestamp, event_type, payload FROM {table} \
                     WHERE stream_id = $1 ORDER BY version"
                ),
            ],
        )
        .await?;
        Ok(Prepared {
            client,
            insert_one,
            insert_many,
            load,
        })
    }

    async fn insert_stream(&self, stream: Uuid, events: usize) -> Result<(), BoxError> {
        let payloads = raw_payloads(events)?;
        let timestamp = eventsourcing::now();
        if events == 1 {
            let (event_type, payload) = &payloads[0];
            self.client
                .execute(
                    &self.insert_one,
                    &[&stream, &1i64, &timestamp, event_type, &1i32, payload],
                )
                .await?;
            return Ok(());
        }
        let n = payloads.len();
        let ids = vec![stream; n];
        let versions: Vec<i64> = (1..=n as i64).collect();
        let timestamps = vec![timestamp; n];
        let types: Vec<&str> = payloads.iter().map(|(t, _)| *t).collect();
        let schema_versions = vec![1i32; n];
        let bodies: Vec<&[u8]> = payloads.iter().map(|(_, p)| p.as_slice()).collect();
        let metadata: Vec<Option<serde_json::Value>> = vec![None; n];
        self.client
            .execute(
                &self.insert_many,
                &[
                    &ids,
                    &versions,
                    &timestamps,
                    &types,
                    &schema_versions,
                    &bodies,
                    &metadata,
                ],
            )
            .await?;
        Ok(())
    }

    /// Saves `saves` new streams of `events` events each, one statement each.
    pub(crate) async fn append_new(
        &self,
        events: usize,
        saves: usize,
    ) -> Result<Duration, BoxError> {
        let start = Instant::now();
        for _ in 0..saves {
            self.insert_stream(Uuid::new_v4(), events).await?;
        }
        Ok(start.elapsed())
    }

    /// A new stream of one event, to append to.
    pub(crate) async fn new_stream(&self) -> Result<RawStream, BoxError> {
        let id = Uuid::new_v4();
        self.insert_stream(id, 1).await?;
        Ok(RawStream { id, version: 1 })
    }

    /// Appends `saves` single events to `stream`, one `INSERT` each.
    pub(crate) async fn append_next(
        &self,
        stream: &mut RawStream,
        saves: usize,
    ) -> Result<Duration, BoxError> {
        let start = Instant::now();
        for i in 0..saves {
            let payload = added_payload(i as i64)?;
            stream.version += 1;
            self.client
                .execute(
                    &self.insert_one,
                    &[
                        &stream.id,
                        &stream.version,
                        &eventsourcing::now(),
                        &"Added",
                        &1i32,
                        &payload,
                    ],
                )
                .await?;
        }
        Ok(start.elapsed())
    }

    /// A new stream of `events` events; its id.
    pub(crate) async fn save_stream(&self, events: usize) -> Result<Uuid, BoxError> {
        let stream = Uuid::new_v4();
        self.insert_stream(stream, events).await?;
        Ok(stream)
    }

    /// Loads a stream: one prepared `SELECT` in version order, decoded and folded.
    pub(crate) async fn load(&self, stream: Uuid) -> Result<Folded, BoxError> {
        let rows = self.client.query(&self.load, &[&stream]).await?;
        fold_events(Fold::new(), &rows)
    }
}

/// Folds event rows of `version, timestamp, event_type, payload` onto `fold`.
pub(crate) fn fold_events(
    mut fold: Fold,
    rows: &[tokio_postgres::Row],
) -> Result<Folded, BoxError> {
    let mut modified = eventsourcing::now();
    for row in rows {
        let version: i64 = row.try_get(0)?;
        modified = row.try_get(1)?;
        fold.event(version, row.try_get(2)?, row.try_get(3)?)?;
    }
    Ok(fold.finish(modified))
}
