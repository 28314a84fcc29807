//! Test fixtures: stores on temporary files that are deleted afterwards. Behind the `testing`
//! feature; not for production use.
#![allow(clippy::expect_used)] // Fixtures for tests: failing loudly is what a test wants.

use std::path::{Path, PathBuf};

use crate::{SqliteConfig, SqliteConfigBuilder, SqliteStore};

/// A temporary directory holding one database file (and its `-wal` and `-shm` files); deletes
/// them all when dropped. Drop the stores using it first.
#[derive(Debug)]
pub struct TempGuard {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempGuard {
    /// A fresh temporary directory; the database file in it does not exist yet.
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("eventsourcing-sqlite-")
            .tempdir()
            .expect("cannot create a temporary directory");
        TempGuard {
            path: dir.path().join("events.db"),
            _dir: dir,
        }
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database file's path as a `SQLITE_DBNAME` value.
    pub fn dbname(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A configuration for the database file, with every other setting at its default.
    pub fn config(&self) -> SqliteConfig {
        SqliteConfig::new(self.dbname())
    }

    /// A builder for the database file, to change other settings:
    /// `guard.builder().create_table(false).build()`.
    pub fn builder(&self) -> SqliteConfigBuilder {
        SqliteConfig::builder().dbname(self.dbname())
    }
}

impl Default for TempGuard {
    fn default() -> Self {
        TempGuard::new()
    }
}

/// A store on a fresh temporary file (tables created), and the guard that deletes the file.
///
/// # Panics
/// If the file cannot be created or opened.
pub fn temp_file_store() -> (SqliteStore, TempGuard) {
    let guard = TempGuard::new();
    let store = SqliteStore::open_blocking(guard.config())
        .expect("cannot open a SQLite store on a temporary file");
    (store, guard)
}

/// A store on a private in-memory database (tables created).
///
/// # Panics
/// If it cannot be opened.
pub fn memory_store() -> SqliteStore {
    SqliteStore::open_memory().expect("cannot open an in-memory SQLite store")
}

impl TempGuard {
    /// A fresh temporary database file with its tables created (as opening a store creates
    /// them), closed again: for tests that change it before they open a store on it.
    ///
    /// # Panics
    /// If the file cannot be created or migrated.
    pub fn created() -> Self {
        let guard = TempGuard::new();
        drop(
            SqliteStore::open_blocking(guard.config())
                .expect("cannot create a SQLite database on a temporary file"),
        );
        guard
    }

    /// Runs `sql` (one or more statements) on the database file through a connection of its
    /// own, closed afterwards: for changing a database on purpose.
    ///
    /// # Panics
    /// If the file cannot be opened or a statement fails.
    pub fn execute(&self, sql: &str) {
        rusqlite::Connection::open(&self.path)
            .and_then(|conn| conn.execute_batch(sql))
            .unwrap_or_else(|e| panic!("running {sql:?} on {}: {e}", self.path.display()));
    }
}

impl TempGuard {
    /// A store on the database file, every setting at its default (tables created).
    ///
    /// # Panics
    /// If the store cannot be opened.
    pub async fn store(&self) -> SqliteStore {
        self.store_with(|b| b).await
    }

    /// A store on the database file with the settings changed by `adjust`:
    /// `guard.store_with(|b| b.create_table(false))`.
    ///
    /// # Panics
    /// If the store cannot be opened.
    pub async fn store_with(
        &self,
        adjust: impl FnOnce(SqliteConfigBuilder) -> SqliteConfigBuilder,
    ) -> SqliteStore {
        SqliteStore::open(adjust(self.builder()).build())
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.path.display()))
    }
}
