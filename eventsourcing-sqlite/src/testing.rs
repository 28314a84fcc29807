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
