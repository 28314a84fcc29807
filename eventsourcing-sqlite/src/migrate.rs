//! The SQLite side of the migration engine of `eventsourcing_core`: the migrations table, and
//! applying migrations inside one IMMEDIATE transaction, which is also the lock (SQLite has no
//! advisory locks: the write lock keeps other processes' runs out). What is pending, and
//! whether the applied migrations fit this code, the engine ([`Migrations::run_blocking`])
//! decides.

use eventsourcing_core::{
    AppliedMigration, BlockingMigrator, Error, Migration, MigrationReport, MigrationStatus,
    Migrations,
};
use rusqlite::{Connection, OptionalExtension};

use crate::{
    error::{missing_schema, sql_error},
    rows::micros_to_time,
    sql::{
        CREATE_MIGRATIONS_TABLE, LIST_MIGRATIONS, MIGRATIONS_TABLE, RECORD_MIGRATION, TABLE_EXISTS,
    },
};

/// The migrations of the SQLite store, in order. Append new ones; never edit or reorder
/// released ones.
pub const MIGRATIONS: Migrations = Migrations::new(&[
    Migration::new(
        1,
        "events, snapshots and tracking tables",
        include_str!("../migrations/0001_events_snapshots_tracking.sql"),
    ),
    Migration::new(
        2,
        "parked_events table of projections",
        include_str!("../migrations/0002_parked_events.sql"),
    ),
    Migration::new(
        3,
        "the aggregate type of each event's stream",
        include_str!("../migrations/0003_stream_type.sql"),
    ),
]);

/// Applies the missing migrations. The run holds the write lock from start to end, so two
/// processes never migrate at once; each migration is a savepoint of its own, so one that fails
/// leaves the ones before it applied.
pub(crate) fn migrate(conn: &mut Connection, dbname: &str) -> Result<MigrationReport, Error> {
    let result = MIGRATIONS.run_blocking(&mut SqliteMigrator {
        conn,
        dbname,
        target: format!("SQLite database `{dbname}`"),
    });
    if !conn.is_autocommit() {
        // Only if the engine broke off between lock and unlock (it does not): a transaction
        // left open would block every later write of this connection.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

struct SqliteMigrator<'a> {
    conn: &'a Connection,
    dbname: &'a str,
    target: String,
}

impl SqliteMigrator<'_> {
    fn batch(&self, sql: &str) -> Result<(), Error> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| sql_error(self.dbname, e))
    }
}

impl BlockingMigrator for SqliteMigrator<'_> {
    fn target(&self) -> &str {
        &self.target
    }

    fn lock(&mut self) -> Result<(), Error> {
        self.batch("BEGIN IMMEDIATE")
    }

    fn ensure_table(&mut self) -> Result<(), Error> {
        self.batch(CREATE_MIGRATIONS_TABLE)
    }

    fn list_applied(&mut self) -> Result<Vec<AppliedMigration>, Error> {
        list(self.conn, self.dbname)
    }

    fn apply(&mut self, migration: &Migration) -> Result<(), Error> {
        self.batch("SAVEPOINT migration")?;
        let applied = self
            .conn
            .execute_batch(migration.sql)
            .and_then(|()| {
                self.conn.execute(
                    RECORD_MIGRATION,
                    rusqlite::params![
                        migration.version,
                        migration.description,
                        migration.checksum(),
                        chrono::Utc::now().timestamp_micros()
                    ],
                )
            })
            .map_err(|e| sql_error(self.dbname, e));
        match applied {
            Ok(_) => self.batch("RELEASE migration"),
            Err(e) => {
                let _ = self.batch("ROLLBACK TO migration; RELEASE migration");
                Err(e)
            }
        }
    }

    fn unlock(&mut self) -> Result<(), Error> {
        self.batch("COMMIT").inspect_err(|_| {
            let _ = self.conn.execute_batch("ROLLBACK");
        })
    }
}

/// The rows of the migrations table, which must exist.
fn list(conn: &Connection, dbname: &str) -> Result<Vec<AppliedMigration>, Error> {
    conn.prepare(LIST_MIGRATIONS)
        .and_then(|mut stmt| {
            stmt.query_map([], |row| {
                Ok(AppliedMigration::new(
                    row.get(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    micros_to_time(row.get(3)?, 3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| sql_error(dbname, e))
}

/// The rows of the migrations table, or `None` if it does not exist. Writes nothing.
fn applied(conn: &Connection, dbname: &str) -> Result<Option<Vec<AppliedMigration>>, Error> {
    let exists = conn
        .query_row(TABLE_EXISTS, [MIGRATIONS_TABLE], |_| Ok(()))
        .optional()
        .map_err(|e| sql_error(dbname, e))?;
    match exists {
        None => Ok(None),
        Some(()) => list(conn, dbname).map(Some),
    }
}

/// Every migration of the code and of the database, and where it stands. Writes nothing.
pub(crate) fn status(conn: &Connection, dbname: &str) -> Result<Vec<MigrationStatus>, Error> {
    Ok(MIGRATIONS.status(&applied(conn, dbname)?.unwrap_or_default()))
}

/// Checks, without writing anything, that every embedded migration has been applied unchanged.
pub(crate) fn check(conn: &Connection, dbname: &str) -> Result<(), Error> {
    let Some(applied) = applied(conn, dbname)? else {
        return Err(missing_schema(
            dbname,
            &format!("no table `{MIGRATIONS_TABLE}`"),
        ));
    };
    let plan = MIGRATIONS
        .plan(&applied)
        .map_err(|e| e.into_error(&format!("SQLite database `{dbname}`")))?;
    if let Some(first) = plan.pending.first() {
        return Err(Error::Schema(format!(
            "SQLite database `{dbname}` lacks migration {} ({}): call `SqliteStore::migrate()` \
             once, or open the store with CREATE_TABLE=y",
            first.version, first.description
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_ascend() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }

    /// The checksums the releases before the shared engine recorded (SHA-256 of each file with
    /// carriage returns removed): every existing database must still verify.
    #[test]
    fn the_recorded_checksums_of_earlier_releases_still_verify() {
        let released = [
            "9d0c628c660b429b44485467dd9e806dad231f5fd3eee97ba656caa47fd3eb3f",
            "d6d7e404814b767dce1824af8b31deb17473eb05618c9bd9245e263b2f0aec22",
        ];
        let checksums: Vec<String> = MIGRATIONS.iter().map(|m| m.checksum_hex()).collect();
        assert_eq!(checksums[..released.len()], released);
    }

    #[test]
    fn migrate_is_idempotent_on_a_connection() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn, "m").unwrap().applied_versions(),
            [1, 2, 3]
        );
        let again = migrate(&mut conn, "m").unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.already_applied, [1, 2, 3]);
        assert!(conn.is_autocommit());
        check(&conn, "m").unwrap();
    }

    #[test]
    fn a_failing_migration_rolls_back_alone_and_releases_the_lock() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "m").unwrap();
        let broken = Migration::new(99, "broken", "CREATE TABLE x (a INTEGER); SELECT nonsense;");
        let mut migrator = SqliteMigrator {
            conn: &conn,
            dbname: "m",
            target: "m".into(),
        };
        migrator.lock().unwrap();
        assert!(migrator.apply(&broken).is_err());
        migrator.unlock().unwrap();
        assert!(conn.is_autocommit());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'x'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the failed migration's table is rolled back");
        assert_eq!(list(&conn, "m").unwrap().len(), MIGRATIONS.iter().count());
    }
}
