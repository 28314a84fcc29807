//! Test fixtures: stores on temporary files that are deleted afterwards, and concurrent
//! writers for any store. Behind the `testing` feature; not for production use.
#![allow(clippy::expect_used)] // Fixtures for tests: failing loudly is what a test wants.

use std::path::{Path, PathBuf};

use eventsourcing_core::{EventStore, NewEvent, Uuid};

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

/// `writers` tasks saving at once, each `saves` times to a stream of its own: 1, 2, 3, 1, 2, 3,
/// … events a save (versions from 1, each a `Happened` event with the payload
/// `{"n":<version>}`). Generic over the store: the facade's projection suite runs them on
/// PostgreSQL too.
#[derive(Debug)]
pub struct Writers {
    /// Each writer's stream.
    pub streams: Vec<Uuid>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts the writers on the current Tokio runtime.
    pub fn spawn<S>(store: &S, writers: usize, saves: u64) -> Self
    where
        S: EventStore + Clone + Send + Sync + 'static,
    {
        let streams: Vec<Uuid> = (0..writers).map(|_| Uuid::new_v4()).collect();
        let tasks = streams
            .iter()
            .map(|&stream| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut from = 1;
                    for to in Self::save_ends(saves) {
                        let events = (from..=to).map(|v| {
                            let payload = format!(r#"{{"n":{v}}}"#).into_bytes();
                            NewEvent::new(stream, v, "Happened", payload)
                        });
                        store
                            .append(events.collect())
                            .await
                            .expect("a writer's save");
                        from = to + 1;
                    }
                })
            })
            .collect();
        Writers { streams, tasks }
    }

    /// The version each writer's stream is at after each of its `saves` saves: where a reader
    /// may see a stream end, since saves become visible whole.
    pub fn save_ends(saves: u64) -> Vec<u64> {
        (0..saves)
            .scan(0, |version, save| {
                *version += save % 3 + 1;
                Some(*version)
            })
            .collect()
    }

    /// The events one writer saves in all.
    pub fn per_writer(saves: u64) -> u64 {
        Self::save_ends(saves).last().copied().unwrap_or(0)
    }

    /// Waits until every writer is done.
    ///
    /// # Panics
    /// If a writer's save failed.
    pub async fn join(self) {
        for task in self.tasks {
            task.await.expect("a writer panicked");
        }
    }
}
