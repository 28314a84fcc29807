//! An embedded SQLite event store for `eventsourcing`: durable, no server, SQLite bundled.
//!
//! ```no_run
//! use eventsourcing_core::{Env, EventStore, Position};
//! use eventsourcing_sqlite::{SqliteConfig, SqliteStore};
//!
//! # async fn demo() -> Result<(), eventsourcing_core::Error> {
//! // From SQLITE_DBNAME, SQLITE_LOCK_TIMEOUT, SQLITE_SYNCHRONOUS and CREATE_TABLE ...
//! let store = SqliteStore::from_env(&Env::from_process().with_app_name("widgets")).await?;
//! // ... or built in code.
//! let store = SqliteStore::open(SqliteConfig::new("widgets.db")).await?;
//! let first_page = store.read_log(Position::START, 100).await?;
//! # Ok(()) }
//! ```
//!
//! # Settings
//! See [`SqliteConfig`] for the table of variables and defaults.
//!
//! # Guarantees
//! - **Atomic saves.** [`append`](eventsourcing_core::EventStore::append) writes all the events
//!   of all the streams of a save in one transaction. A stream whose first new version is not its
//!   current version + 1 fails the save with [`Error::Conflict`](eventsourcing_core::Error)
//!   carrying the actual version, and nothing is written.
//! - **Durability.** A save is acknowledged after it commits. File databases use write-ahead
//!   logging; with the default [`Synchronous::Full`] each commit is synced to disk, so an
//!   acknowledged save survives a crash of the process and a power loss. With
//!   [`Synchronous::Normal`] it survives a crash of the process but the last saves before a power
//!   loss may be lost. A save interrupted by a crash is never half-written. (`tests/crash.rs`
//!   aborts, and kills, a process in the middle of concurrent saves under both levels, then checks
//!   both promises on the reopened file.)
//! - **Tracking.** [`append_tracked`](eventsourcing_core::EventStore::append_tracked) writes a
//!   consumer's events and its upstream position in the same transaction, and refuses a position
//!   it has already recorded.
//! - **The notification log.** SQLite has one writer at a time, so the global `position` (the
//!   rowid of the `events` table) is assigned in commit order: a reader that asks for the events
//!   after the last position it saw never skips one. Positions are never reused. An event's
//!   [`Position`](eventsourcing_core::Position) has `commit == seq == position`.
//! - **Timestamps** are stored as microseconds since the epoch (UTC) and read back exactly at
//!   that precision.
//!
//! # Costs
//! Each call is handed to a connection thread and its result handed back: tens of microseconds
//! on top of SQLite's own work. Next to the `fsync` of a commit under [`Synchronous::Full`] that
//! is small; under [`Synchronous::Normal`], where a commit costs about as much, it is not. The
//! benchmark (`cargo run --release -p eventsourcing-bench -- sqlite`) compares the store with
//! rusqlite doing the same SQL on the same file.
//!
//! # Schema
//! Versioned migrations (SQL files in `migrations/`, embedded in the binary) create the
//! `events`, `snapshots` and `tracking` tables. Each is recorded with its SHA-256 checksum in
//! `eventsourcing_migrations`; [`SqliteStore::migrate`] applies the missing ones in one
//! IMMEDIATE transaction and refuses a database whose applied migrations differ. Opening a store
//! migrates unless `CREATE_TABLE=n`, in which case the store issues no DDL and a missing table
//! is an [`Error::Schema`](eventsourcing_core::Error) that names `SqliteStore::migrate()`.
//!
//! | table | key | index | serves |
//! |---|---|---|---|
//! | `events` | `position` (rowid) | – | `read_log` (`position > ?`) |
//! | | | `UNIQUE (stream_id, version)` | `load`, `stream_version`, the conflict check of `append` |
//! | `snapshots` | `(stream_id, version)` | – | `load_snapshot`, the pruning of `save_snapshot` |
//! | `tracking` | `name` | – | `tracking_position`, the check of `append_tracked` |
//!
//! # Features
//! | feature | what |
//! |---|---|
//! | `testing` | the `testing` module: stores on temporary files for test suites (not for production) |

mod config;
mod error;
mod projection;
mod schema;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use config::{
    ParseSynchronousError, SqliteConfig, Synchronous, DEFAULT_DBNAME, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_READERS,
};
pub use projection::{spawn_projection, OnError, ParkedEvent, ProjectionOptions, SqliteProjection};
pub use store::SqliteStore;

/// The driver, re-exported so that code downcasting an
/// [`Error::Store`](eventsourcing_core::Error) to [`rusqlite::Error`] uses the same version.
pub use rusqlite;
