//! Versioned SQL migrations, embedded in the crate and recorded with checksums.

use chrono::{DateTime, Utc};
use eventsourcing_core::Error;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::{
    error::{pg_error, PgError},
    sql::quote_ident,
};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) description: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Never edit an applied one: add a new file instead (a changed
/// checksum stops `migrate` with an error).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "events",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        description: "snapshots",
        sql: include_str!("../migrations/0002_snapshots.sql"),
    },
    Migration {
        version: 3,
        description: "tracking",
        sql: include_str!("../migrations/0003_tracking.sql"),
    },
    Migration {
        version: 4,
        description: "parked_events",
        sql: include_str!("../migrations/0004_parked_events.sql"),
    },
];

/// The table recording the applied migrations.
pub(crate) const MIGRATIONS_TABLE: &str = "eventsourcing_migrations";

impl Migration {
    /// SHA-256 of the file as embedded (before the schema name is filled in), so the same
    /// migration has the same checksum in every schema.
    pub(crate) fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).to_vec()
    }

    fn sql_for(&self, schema: &str) -> String {
        self.sql.replace("{schema}", &quote_ident(schema))
    }
}

/// What [`PostgresStore::migrate`](crate::PostgresStore::migrate) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The schema migrated.
    pub schema: String,
    /// The migrations applied by this call, as `(version, description)`.
    pub applied: Vec<(i32, &'static str)>,
    /// The migrations that were already applied.
    pub already_applied: usize,
    /// Versions recorded in the database that this code does not know (applied by a newer
    /// release). They are left alone.
    pub unknown: Vec<i32>,
}

/// One row of the migrations table, as [`SchemaStatus`](crate::SchemaStatus) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: i32,
    /// Its description.
    pub description: String,
    /// When it was applied.
    pub applied_at: DateTime<Utc>,
    /// Whether the recorded checksum matches the migration embedded in this code (`None` if
    /// this code does not know the version).
    pub checksum_matches: Option<bool>,
}

/// Applies the pending migrations in one transaction, under a transaction-level advisory lock
/// keyed by the schema name, so concurrent `migrate` calls (several instances starting at once)
/// run one after the other and the later ones find nothing to do.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<MigrationReport, Error> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let report = match apply(&tx, schema).await {
        Ok(report) => report,
        Err(e) => {
            // Dropping a transaction only queues its ROLLBACK; wait for it, so that the
            // advisory lock is released now, not when the connection is next polled.
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    tx.commit().await.map_err(pg_error)?;
    if !report.unknown.is_empty() {
        tracing::warn!(
            schema,
            unknown = ?report.unknown,
            "the database has migrations this code does not know (applied by a newer release)"
        );
    }
    if !report.applied.is_empty() {
        tracing::info!(schema, applied = ?report.applied, "applied migrations");
    }
    Ok(report)
}

async fn apply(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<MigrationReport, Error> {
    let quoted = quote_ident(schema);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock_key(schema)],
    )
    .await
    .map_err(pg_error)?;
    // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database even when the
    // schema exists: look first, so a role without it can still migrate an existing schema.
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .map_err(pg_error)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {quoted}.{MIGRATIONS_TABLE} (
             version     integer     PRIMARY KEY,
             description text        NOT NULL,
             checksum    bytea       NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await
    .map_err(pg_error)?;
    let rows = tx
        .query(
            &format!("SELECT version, checksum FROM {quoted}.{MIGRATIONS_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .map_err(pg_error)?;
    let mut report = MigrationReport {
        schema: schema.to_owned(),
        applied: Vec::new(),
        already_applied: 0,
        unknown: Vec::new(),
    };
    let mut applied = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.get(0);
        let checksum: Vec<u8> = row.get(1);
        match MIGRATIONS.iter().find(|m| m.version == version) {
            Some(m) if m.checksum() != checksum => {
                return Err(Error::Schema(format!(
                    "migration {version} ({}) in schema `{schema}` was applied with checksum {} \
                     but this code embeds checksum {}: an applied migration must never change; \
                     restore the original migration file or migrate into a fresh schema",
                    m.description,
                    hex(&checksum),
                    hex(&m.checksum())
                )));
            }
            Some(_) => report.already_applied += 1,
            None => report.unknown.push(version),
        }
        applied.push(version);
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(&m.sql_for(schema)).await.map_err(|e| {
            Error::Schema(format!(
                "migration {} ({}) failed in schema `{schema}`: {}",
                m.version,
                m.description,
                PgError(e)
            ))
        })?;
        tx.execute(
            &format!(
                "INSERT INTO {quoted}.{MIGRATIONS_TABLE} (version, description, checksum) \
                 VALUES ($1, $2, $3)"
            ),
            &[&m.version, &m.description, &m.checksum()],
        )
        .await
        .map_err(pg_error)?;
        report.applied.push((m.version, m.description));
    }
    Ok(report)
}

/// The applied migrations, or `None` if the migrations table does not exist.
pub(crate) async fn applied(
    client: &Client,
    schema: &str,
) -> Result<Option<Vec<AppliedMigration>>, Error> {
    let table = format!("{}.{MIGRATIONS_TABLE}", quote_ident(schema));
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, description, checksum, applied_at FROM {table} ORDER BY version"
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(Some(
        rows.into_iter()
            .map(|row| {
                let version: i32 = row.get(0);
                let checksum: Vec<u8> = row.get(2);
                AppliedMigration {
                    version,
                    description: row.get(1),
                    applied_at: row.get(3),
                    checksum_matches: MIGRATIONS
                        .iter()
                        .find(|m| m.version == version)
                        .map(|m| m.checksum() == checksum),
                }
            })
            .collect(),
    ))
}

fn lock_key(schema: &str) -> String {
    format!("eventsourcing-migrate:{schema}")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_every_file_uses_the_schema_placeholder() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            assert!(m.sql.contains("{schema}."), "migration {}", m.version);
            assert!(!m.sql_for("x").contains("{schema}"));
            assert_eq!(m.checksum().len(), 32);
        }
    }
}
