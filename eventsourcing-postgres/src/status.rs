//! The state of a schema, as `eventsourcing-admin status` prints it, and the checks made at
//! start-up: every migration applied, and a log not copied from another cluster.

use eventsourcing_core::Error;

use crate::{
    error::{is_missing_table, missing_tables, pg_error, query_error},
    horizon::{self, LogHorizon},
    migrate::{self, AppliedMigration, MIGRATIONS},
    pool::Pool,
    read,
    sql::quote_ident,
};

/// The state of a store's schema, as `eventsourcing-admin status` prints it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// The schema.
    pub schema: String,
    /// The migrations recorded in the schema (empty if it has no migrations table).
    pub applied: Vec<AppliedMigration>,
    /// Migrations this code has that are not applied, as `(version, description)`.
    pub pending: Vec<(u32, &'static str)>,
    /// The number of events, if the events table exists.
    pub events: Option<i64>,
    /// True if the newest event's transaction id is not below the server's next transaction id:
    /// the events were copied from another cluster (dump/restore, logical replication) and the
    /// log order is broken until the server's transaction ids are moved past them (see the crate
    /// docs, "Dump and restore").
    pub log_ahead_of_server: bool,
    /// Whether committed events wait behind a running transaction, and which (if the events
    /// table exists).
    pub log_horizon: Option<LogHorizon>,
}

/// Whether committed events of the store wait behind a running transaction (the horizon is
/// at or below the newest event's transaction), and the oldest running transactions.
pub(crate) async fn log_horizon(pool: &Pool) -> Result<LogHorizon, Error> {
    let (horizon, newest) = read::log_head(pool).await?;
    Ok(LogHorizon {
        held_back: newest.is_some_and(|newest| horizon <= newest),
        holders: horizon::holders(pool).await?,
    })
}

/// The applied and pending migrations, the number of events and the log-order check.
pub(crate) async fn status(pool: &Pool) -> Result<SchemaStatus, Error> {
    let schema = pool.schema();
    let conn = pool.checkout().await?;
    let applied = migrate::applied(&conn.client, schema)
        .await?
        .unwrap_or_default();
    let pending = MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| (m.version, m.description))
        .collect();
    let events = match conn
        .client
        .query_one(
            &format!("SELECT count(*) FROM {}.events", quote_ident(schema)),
            &[],
        )
        .await
    {
        Ok(row) => Some(row.get::<_, i64>(0)),
        Err(e) if is_missing_table(&e) => None,
        Err(e) => return Err(pg_error(e)),
    };
    let log_ahead_of_server = events.is_some() && log_ahead(&conn.client, schema).await?;
    drop(conn);
    let log_horizon = match events {
        Some(_) => Some(log_horizon(pool).await?),
        None => None,
    };
    Ok(SchemaStatus {
        schema: schema.to_owned(),
        applied,
        pending,
        events,
        log_ahead_of_server,
        log_horizon,
    })
}

/// `Ok` if every migration of this code is applied; otherwise [`Error::Schema`] saying to run
/// `eventsourcing-admin migrate`.
pub(crate) async fn check_schema(pool: &Pool) -> Result<(), Error> {
    let status = status(pool).await?;
    if status.pending.is_empty() {
        return Ok(());
    }
    let pending: Vec<String> = status
        .pending
        .iter()
        .map(|(v, d)| format!("{v} ({d})"))
        .collect();
    Err(missing_tables(
        &status.schema,
        &format!("pending migrations: {}", pending.join(", ")),
    ))
}

/// Whether the newest event's transaction id is at or beyond the server's next one.
async fn log_ahead(client: &tokio_postgres::Client, schema: &str) -> Result<bool, Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT COALESCE((SELECT tx_id FROM {}.events ORDER BY tx_id DESC LIMIT 1) \
                                 >= pg_snapshot_xmax(pg_current_snapshot()), false)",
                quote_ident(schema)
            ),
            &[],
        )
        .await
        .map_err(|e| query_error(e, schema))?;
    Ok(row.get(0))
}

/// Refuses to start on a log copied from another cluster (see the crate docs): its order would
/// silently break. A missing table is left for the first operation to report.
pub(crate) async fn check_log_horizon(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<(), Error> {
    match log_ahead(client, schema).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(Error::Schema(format!(
            "the events in schema `{schema}` carry transaction ids at or beyond this server's \
             next transaction id: they were copied from another cluster (pg_dump/restore or \
             logical replication), and new events would sort before them in the log. Before \
             writing, stop the server and raise its transaction-id epoch above the stored ids \
             with `pg_resetwal -e <epoch>` (see the eventsourcing-postgres docs, \"Dump and \
             restore\")"
        ))),
        Err(Error::Schema(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
