//! Versioned migrations, embedded in the binary and recorded in `eventsourcing_migrations`.

use eventsourcing_core::Error;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::error::{missing_schema, sql_error};

/// One migration: applied once, in version order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order. Append new ones; never edit or reorder released ones.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "events, snapshots and tracking tables",
        sql: include_str!("../migrations/0001_events_snapshots_tracking.sql"),
    },
    Migration {
        version: 2,
        description: "parked_events table of projections",
        sql: include_str!("../migrations/0002_parked_events.sql"),
    },
];

/// The table that records applied migrations.
pub(crate) const MIGRATIONS_TABLE: &str = "eventsourcing_migrations";

impl Migration {
    /// SHA-256 of the SQL with `\r` removed, so a checkout with CRLF line endings does not look
    /// like an edited migration.
    pub(crate) fn checksum(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for chunk in self.sql.split('\r') {
            hasher.update(chunk.as_bytes());
        }
        hasher.finalize().to_vec()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn applied(conn: &Connection, dbname: &str) -> Result<Vec<(u32, Vec<u8>)>, Error> {
    let sql = format!("SELECT version, checksum FROM {MIGRATIONS_TABLE} ORDER BY version");
    let mut stmt = conn.prepare(&sql).map_err(|e| sql_error(dbname, e))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, u32>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(|e| sql_error(dbname, e))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| sql_error(dbname, e))
}

/// Compares the recorded migrations with the embedded ones. Returns the embedded migrations
/// still to apply.
fn pending(recorded: &[(u32, Vec<u8>)], dbname: &str) -> Result<Vec<&'static Migration>, Error> {
    for (version, checksum) in recorded {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::Schema(format!(
                    "SQLite database `{dbname}` has migration {version}, which this version of \
                     eventsourcing-sqlite does not know: it was migrated by a newer release"
                )))
            }
            Some(m) if m.checksum() != *checksum => {
                return Err(Error::Schema(format!(
                    "migration {version} ({}) of SQLite database `{dbname}` was applied with \
                     checksum {} but the embedded migration has checksum {}: a released \
                     migration was edited",
                    m.description,
                    hex(checksum),
                    hex(&m.checksum())
                )))
            }
            Some(_) => {}
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !recorded.iter().any(|(v, _)| *v == m.version))
        .collect())
}

/// Applies the missing migrations in one IMMEDIATE transaction (which also keeps two processes
/// from migrating at once). Returns the versions applied.
pub(crate) fn migrate(conn: &mut Connection, dbname: &str) -> Result<Vec<u32>, Error> {
    let err = |e| sql_error(dbname, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
             version     INTEGER NOT NULL PRIMARY KEY,
             description TEXT    NOT NULL,
             checksum    BLOB    NOT NULL,
             applied_at  INTEGER NOT NULL
         ) STRICT"
    ))
    .map_err(err)?;
    let recorded = applied(&tx, dbname)?;
    let todo = pending(&recorded, dbname)?;
    let now = chrono::Utc::now().timestamp_micros();
    let mut done = Vec::with_capacity(todo.len());
    for migration in todo {
        tx.execute_batch(migration.sql).map_err(err)?;
        tx.execute(
            &format!(
                "INSERT INTO {MIGRATIONS_TABLE} (version, description, checksum, applied_at) \
                 VALUES (?1, ?2, ?3, ?4)"
            ),
            rusqlite::params![
                migration.version,
                migration.description,
                migration.checksum(),
                now
            ],
        )
        .map_err(err)?;
        tracing::info!(
            dbname,
            version = migration.version,
            "applied SQLite migration"
        );
        done.push(migration.version);
    }
    tx.commit().map_err(err)?;
    Ok(done)
}

/// Checks, without writing anything, that every embedded migration has been applied unchanged.
pub(crate) fn check(conn: &Connection, dbname: &str) -> Result<(), Error> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [MIGRATIONS_TABLE],
            |_| Ok(()),
        )
        .optional()
        .map_err(|e| sql_error(dbname, e))?;
    if exists.is_none() {
        return Err(missing_schema(
            dbname,
            &format!("no table `{MIGRATIONS_TABLE}`"),
        ));
    }
    let recorded = applied(conn, dbname)?;
    let todo = pending(&recorded, dbname)?;
    if let Some(first) = todo.first() {
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
    fn versions_are_ascending_and_checksums_ignore_carriage_returns() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        let unix = Migration {
            version: 9,
            description: "",
            sql: "CREATE TABLE t (x INTEGER);\nSELECT 1;\n",
        };
        let dos = Migration {
            sql: "CREATE TABLE t (x INTEGER);\r\nSELECT 1;\r\n",
            ..unix
        };
        assert_eq!(unix.checksum(), dos.checksum());
        assert_eq!(unix.checksum().len(), 32);
    }

    #[test]
    fn migrate_is_idempotent_on_a_connection() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, "m").unwrap(), vec![1, 2]);
        assert_eq!(migrate(&mut conn, "m").unwrap(), Vec::<u32>::new());
        check(&conn, "m").unwrap();
    }
}
