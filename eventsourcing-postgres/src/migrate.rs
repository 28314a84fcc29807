//! The PostgreSQL side of the migration engine of `eventsourcing_core`: the session advisory
//! lock, the migrations table in the store's schema, and applying one migration in a
//! transaction. What is pending, and whether the applied migrations fit this code, the engine
//! ([`Migrations::run`]) decides.

use chrono::{DateTime, Utc};
use eventsourcing_core::{Error, Migration, Migrations, Migrator};
use tokio_postgres::Client;

pub(crate) use eventsourcing_core::{AppliedMigration, MigrationReport};

use crate::{
    error::{pg_error, PgError},
    sql::quote_ident,
};

/// The migrations of the PostgreSQL store, in order. `{schema}` in their SQL stands for the
/// store's schema (quoted); the checksum is of the text with the placeholder. Never edit an
/// applied one: add a new file instead.
pub const MIGRATIONS: Migrations = Migrations::new(&[
    Migration::new(1, "events", include_str!("../migrations/0001_events.sql")),
    Migration::new(
        2,
        "snapshots",
        include_str!("../migrations/0002_snapshots.sql"),
    ),
    Migration::new(
        3,
        "tracking",
        include_str!("../migrations/0003_tracking.sql"),
    ),
    Migration::new(
        4,
        "parked_events",
        include_str!("../migrations/0004_parked_events.sql"),
    ),
    Migration::new(
        5,
        "stream_type",
        include_str!("../migrations/0005_stream_type.sql"),
    ),
    Migration::new(
        6,
        "no_version_check",
        include_str!("../migrations/0006_no_version_check.sql"),
    ),
]);

/// The table recording the applied migrations.
pub(crate) const MIGRATIONS_TABLE: &str = "eventsourcing_migrations";

/// Applies the pending migrations to `schema`, creating it if needed. Concurrent calls (several
/// instances starting at once) take turns on an advisory lock keyed by the schema name, and the
/// later ones find nothing to do.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<MigrationReport, Error> {
    let mut migrator = PgMigrator {
        client,
        schema,
        quoted: quote_ident(schema),
        target: format!("schema `{schema}`"),
    };
    MIGRATIONS.run(&mut migrator).await
}

struct PgMigrator<'a> {
    client: &'a mut Client,
    schema: &'a str,
    quoted: String,
    target: String,
}

impl Migrator for PgMigrator<'_> {
    fn target(&self) -> &str {
        &self.target
    }

    /// A session-level lock: held across the transactions of the migrations, released by
    /// `unlock` (or when the connection closes). The key is the one the transaction-level lock
    /// of earlier releases took, so a rolling upgrade still migrates one instance at a time.
    async fn lock(&mut self) -> Result<(), Error> {
        self.advisory("pg_advisory_lock").await
    }

    async fn ensure_table(&mut self) -> Result<(), Error> {
        // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database even when the
        // schema exists: look first, so a role without it can still migrate an existing schema.
        let exists: bool = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&self.schema],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        let quoted = &self.quoted;
        if !exists {
            self.client
                .batch_execute(&format!("CREATE SCHEMA {quoted}"))
                .await
                .map_err(pg_error)?;
        }
        // Likewise the table: `CREATE TABLE IF NOT EXISTS` checks the CREATE privilege on the
        // schema even when the table exists, so an application role (which has no CREATE, see
        // `roles.rs`) could not even find out that nothing is pending.
        let table = format!("{quoted}.{MIGRATIONS_TABLE}");
        let has_table: bool = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .map_err(pg_error)?
            .get(0);
        if has_table {
            return Ok(());
        }
        self.client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {quoted}.{MIGRATIONS_TABLE} (
                     version     integer     PRIMARY KEY,
                     description text        NOT NULL,
                     checksum    bytea       NOT NULL,
                     applied_at  timestamptz NOT NULL DEFAULT now()
                 )"
            ))
            .await
            .map_err(pg_error)
    }

    async fn list_applied(&mut self) -> Result<Vec<AppliedMigration>, Error> {
        list(self.client, &self.quoted).await
    }

    async fn apply(&mut self, migration: &Migration) -> Result<(), Error> {
        let version = i32::try_from(migration.version).map_err(|_| {
            Error::Schema(format!(
                "migration {} does not fit the integer version column",
                migration.version
            ))
        })?;
        let failed = |e| {
            Error::Schema(format!(
                "migration {} ({}) failed in {}: {}",
                migration.version,
                migration.description,
                self.target,
                PgError(e)
            ))
        };
        let tx = self.client.transaction().await.map_err(pg_error)?;
        let sql = migration.sql.replace("{schema}", &self.quoted);
        let result = async {
            tx.batch_execute(&sql).await.map_err(failed)?;
            tx.execute(
                &format!(
                    "INSERT INTO {}.{MIGRATIONS_TABLE} (version, description, checksum) \
                     VALUES ($1, $2, $3)",
                    self.quoted
                ),
                &[&version, &migration.description, &migration.checksum()],
            )
            .await
            .map_err(pg_error)
        }
        .await;
        match result {
            Ok(_) => tx.commit().await.map_err(pg_error),
            Err(e) => {
                // Dropping a transaction only queues its ROLLBACK; wait for it, so the
                // connection is clean for `unlock` and for the pool.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn unlock(&mut self) -> Result<(), Error> {
        self.advisory("pg_advisory_unlock").await
    }
}

impl PgMigrator<'_> {
    /// Calls the session-level advisory lock `function` (take or release) on this schema's key.
    async fn advisory(&mut self, function: &str) -> Result<(), Error> {
        let sql = format!("SELECT {function}(hashtextextended($1, 0))");
        self.client
            .execute(&sql, &[&lock_key(self.schema)])
            .await
            .map(drop)
            .map_err(pg_error)
    }
}

/// The applied migrations, or `None` if the migrations table does not exist.
pub(crate) async fn applied(
    client: &Client,
    schema: &str,
) -> Result<Option<Vec<AppliedMigration>>, Error> {
    let quoted = quote_ident(schema);
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{quoted}.{MIGRATIONS_TABLE}")],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    list(client, &quoted).await.map(Some)
}

async fn list(client: &Client, quoted: &str) -> Result<Vec<AppliedMigration>, Error> {
    let rows = client
        .query(
            &format!(
                "SELECT version, description, checksum, applied_at \
                 FROM {quoted}.{MIGRATIONS_TABLE} ORDER BY version"
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    rows.into_iter()
        .map(|row| {
            let version: i32 = row.try_get(0).map_err(pg_error)?;
            let version = u32::try_from(version).map_err(|_| {
                Error::Schema(format!(
                    "{quoted}.{MIGRATIONS_TABLE} records version {version}, which no release has"
                ))
            })?;
            let description: String = row.try_get(1).map_err(pg_error)?;
            let checksum: Vec<u8> = row.try_get(2).map_err(pg_error)?;
            let applied_at: DateTime<Utc> = row.try_get(3).map_err(pg_error)?;
            Ok(AppliedMigration::new(
                version,
                description,
                checksum,
                applied_at,
            ))
        })
        .collect()
}

fn lock_key(schema: &str) -> String {
    format!("eventsourcing-migrate:{schema}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_every_file_uses_the_schema_placeholder() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        for m in MIGRATIONS.iter() {
            assert!(m.sql.contains("{schema}."), "migration {}", m.version);
        }
    }

    /// The checksums the releases before the shared engine recorded (SHA-256 of each file as
    /// embedded): every existing database must still verify.
    #[test]
    fn the_recorded_checksums_of_earlier_releases_still_verify() {
        let released = [
            "c1e9fcf1356fad91d498b2899edf1aeebae3af7486078df9696de173443d16a1",
            "34b0736b9b78b37fb8a437b2bdeb719d34f1dd8cabb527cee2a3e6a912624000",
            "dd7878ec882601d38d178fd0a654adc8d0083751c74c410503ed0673b2d30c6e",
            "d46674199dd523e0c44b4fbb044b7d3fb7b5476561a9d167b83e83c9dfdfd262",
        ];
        let checksums: Vec<String> = MIGRATIONS.iter().map(|m| m.checksum_hex()).collect();
        assert_eq!(checksums[..released.len()], released);
    }
}
