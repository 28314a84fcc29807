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
//! let store = SqliteStore::open(SqliteConfig::builder().dbname("widgets.db").build()).await?;
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
//! - **Group commit.** Saves that wait for the writer together (concurrent saves through one
//!   store) are written in one transaction with one commit — with [`Synchronous::Full`], one
//!   `fsync` for all of them. Each runs under a savepoint of its own: a save that conflicts, or
//!   records a position already recorded, is rolled back alone and fails with its own error,
//!   while the others commit; each is acknowledged only after the commit that made it durable.
//!   (`tests/group.rs`.)
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
//! # Projections
//! A [`SqliteProjection`] keeps a read model in tables of the store's own database;
//! [`spawn_projection`] runs it: from its recorded position, through the log in pages, then live.
//!
//! ```no_run
//! use eventsourcing_core::{BoxError, StoredEvent};
//! use eventsourcing_sqlite::{
//!     rusqlite::Transaction, spawn_projection, OnError, ProjectionOptions, SqliteProjection,
//!     SqliteStore,
//! };
//!
//! /// How many events each stream has.
//! struct EventsPerStream;
//!
//! impl SqliteProjection for EventsPerStream {
//!     fn name(&self) -> &str {
//!         "events_per_stream"
//!     }
//!
//!     fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
//!         tx.execute_batch(
//!             "CREATE TABLE IF NOT EXISTS events_per_stream \
//!              (stream_id BLOB PRIMARY KEY, events INTEGER NOT NULL)",
//!         )?;
//!         Ok(())
//!     }
//!
//!     fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
//!         tx.execute(
//!             "INSERT INTO events_per_stream VALUES (?1, 1) \
//!              ON CONFLICT (stream_id) DO UPDATE SET events = events + 1",
//!             [event.stream_id.as_bytes()],
//!         )?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo(store: SqliteStore) -> Result<(), eventsourcing_core::Error> {
//! let options = ProjectionOptions { on_error: OnError::Park, ..ProjectionOptions::default() };
//! let runner = spawn_projection(store.clone(), EventsPerStream, options);
//! // Meanwhile: read the model, watch the lag and the parked events.
//! let streams: i64 = store
//!     .query(|tx| tx.query_row("SELECT count(*) FROM events_per_stream", [], |r| r.get(0)))
//!     .await?;
//! let behind = store.projection_lag("events_per_stream").await?;
//! let parked = store.parked("events_per_stream").await?;
//! runner.stop().await?;
//! # Ok(()) }
//! ```
//!
//! - **Exactly once.** Each batch of events (at most
//!   [`page_size`](ProjectionOptions::page_size)) is handled in one IMMEDIATE transaction on
//!   the writer thread, and the same transaction records the projection's position in
//!   `tracking`: the read model's rows and the position commit together, or neither. The
//!   transaction first reads the recorded position, under the write lock, and skips the events
//!   it covers. So a restarted runner, one started while an aborted runner's last batch was
//!   still in flight, or a second runner of the same projection (in this process or another)
//!   never applies an event twice: the loser of a race finds its events done, rolls back, and
//!   moves on (the [`AlreadyProcessed`](eventsourcing_core::Error::AlreadyProcessed) rule of
//!   [`append_tracked`](eventsourcing_core::EventStore::append_tracked)). A crash or an
//!   [`abort`](eventsourcing_core::RunnerHandle::abort) loses only uncommitted batches, which
//!   the next runner reads again. (`tests/projection.rs` aborts a runner three times in the
//!   middle of a catch-up, and runs two at once, then compares the read model with the log.)
//! - **Failures.** Each event is handled under a savepoint. When the handler returns an error
//!   or panics, that event's writes are rolled back, and [`OnError`] decides:
//!   [`Stop`](OnError::Stop) (the default) commits the batch's events before it and ends the
//!   runner with [`Error::Handler`](eventsourcing_core::Error::Handler) naming the projection
//!   and the event's type, stream, version and position; a restart tries that event again.
//!   [`Park`](OnError::Park) records it in `parked_events`, in the transaction that moves the
//!   position past it, and goes on; [`SqliteStore::parked`] lists those and
//!   [`SqliteStore::unpark`] removes one once dealt with. No event is ever skipped silently.
//!   `SQLITE_BUSY` and `SQLITE_LOCKED` (another process holding the write lock past the lock
//!   timeout) are transient: the runner backs off (doubling from
//!   [`backoff`](ProjectionOptions::backoff), at most 5 s) and retries, and ends with the error
//!   after [`attempts`](ProjectionOptions::attempts) failures in a row.
//! - **Live.** Caught up, the runner waits for a save through this store or its clones, which
//!   wakes it at once, and polls every [`poll_interval`](ProjectionOptions::poll_interval) for
//!   saves by other processes.
//! - **Lag.** [`SqliteStore::projection_lag`] counts the events after the recorded position.
//!   Events a projection filters out ([`SqliteProjection::event_types`]) count until its
//!   position passes them; a run of them with nothing to handle is recorded once a page of it
//!   has gone by, and when the runner stops, so a running projection may show fewer than a
//!   page of them as lag.
//! - **Costs.** The handler runs on the writer thread, so saves wait while a batch is handled:
//!   keep handlers to SQL. Each batch is one commit (an `fsync` under [`Synchronous::Full`]);
//!   catching up handles a page per commit, following live one commit per wake-up, covering
//!   every event saved since the last.
//! - **In-memory state.** Keep the read model in the database. After a failed commit the
//!   runner hands the same events to `handle` again, so state kept in the projection value
//!   itself can run ahead of the database.
//!
//! # Costs
//! A save made while no other is being made, on a multi-thread runtime, is written on the
//! caller's own thread (`block_in_place`, the writer connection lent for it). Concurrent saves
//! (and every other write) are handed to the writer's thread, which commits the saves queued
//! together, and their results handed back: tens of microseconds on top of SQLite's own work.
//! Next to the `fsync` of a commit under [`Synchronous::Full`] that is small; under
//! [`Synchronous::Normal`], where a commit costs about as much, it is not.
//! A read on a multi-thread runtime pays no hand-off: it runs on the caller's thread
//! (`block_in_place`) on an idle reader connection; elsewhere it is handed to a reader thread
//! like a write. Two things keep reads fast: reader connections are taken last in, first out,
//! so consecutive reads find a warm page cache; and
//! when `read_log` returns a full page to a caller off a multi-thread runtime (which waits for a
//! reader thread anyway), a reader reads the next page ahead while the caller
//! works through the first (a full page of the log never changes, so what was read ahead is
//! exactly what a read would return; at most two pages ahead of each reader, and eight in all,
//! are held). A caller on a multi-thread runtime, which reads its pages itself, has a reader
//! thread read the page it guesses comes next (positions contiguous so far: right after this
//! page's `limit` positions) while it reads its own, so that two threads read a catch-up, a
//! page each at a time. The benchmark (`cargo run --release -p eventsourcing-bench -- sqlite`) compares
//! the store with rusqlite doing the same SQL on the same file.
//!
//! # Schema
//! Versioned migrations ([`MIGRATIONS`]: SQL files in `migrations/`, embedded in the binary)
//! create the `events`, `snapshots` and `tracking` tables (migration 1) and `parked_events`
//! (migration 2). Each is recorded with its SHA-256 checksum in `eventsourcing_migrations`.
//! [`SqliteStore::migrate`] runs core's engine ([`Migrations`], shared with the PostgreSQL
//! store) inside one IMMEDIATE transaction, which keeps other processes out, applying each
//! missing migration under a savepoint of its own; it refuses a database whose applied
//! migrations differ from the embedded ones or include one this release does not know, and
//! returns a [`MigrationReport`]. [`SqliteStore::migration_status`] lists where each migration
//! stands. Opening a store migrates unless `CREATE_TABLE=n`, in which case the store issues no
//! DDL and a missing table
//! is an [`Error::Schema`](eventsourcing_core::Error) that names `SqliteStore::migrate()`.
//!
//! | table | key | index | serves |
//! |---|---|---|---|
//! | `events` | `position` (rowid) | – | `read_log` (`position > ?`) |
//! | | | `UNIQUE (stream_id, version)` | `load`, `stream_version`, the conflict check of `append` |
//! | `snapshots` | `(stream_id, version)` | – | `load_snapshot`, the pruning of `save_snapshot` |
//! | `tracking` | `name` | – | `tracking_position`, the check of `append_tracked` and of each projection batch, `projection_lag` |
//! | `parked_events` | `(name, position_commit, position_seq)` | – | `parked`, `unpark`; written by projections under [`OnError::Park`] |
//!
//! `events.stream_type` holds the aggregate type on a stream's first event and `''` on the others
//! (a load checks it: [`Error::WrongType`](eventsourcing_core::Error::WrongType)).
//!
//! Projections' own tables live beside these; their names are the projections' business.
//!
//! # Tenants
//!
//! [`SqliteTenants`] gives core's [`Tenants`](eventsourcing_core::Tenants) registry a database
//! file per tenant, in one directory, named by the pattern in the file name of `SQLITE_DBNAME`
//! (`/var/lib/widgets/tenant_{id}.sqlite`). Each open tenant holds a writer and at least one
//! reader connection (two "connections" towards the registry's bound, more when the bound
//! allows).
//!
//! # Features
//! | feature | what |
//! |---|---|
//! | `testing` | the `testing` module: stores on temporary files and concurrent writers for test suites (not for production) |

// One job per module, and no module uses one that uses it back. Listed from the bottom up: each
// may use only those above it.
//
// - `error`, `sql`, `config`, `job` (a job for a connection's thread): nothing of this crate
// - `env`: config
// - `rows`: error, sql
// - `migrate`: error, rows, sql
// - `read`: error, rows, sql
// - `append`: error, read, rows, sql
// - `group` (group commit of queued saves): append
// - `readers` (the reader connections, lent or queued): job
// - `read_ahead` (pages of the log read ahead on a reader thread): job, read, rows
// - `worker` (the writer and reader threads, the writer lent to a lone save): error, group,
//   job, readers
// - `store` (`SqliteStore`): append, config, error, group, migrate, read, read_ahead, rows,
//   worker
// - `projection`: error, rows, store
// - `maintenance`: error, rows, sql, store
// - `tenant` (a file per tenant): config, store
// - `backup` (core's `Backup`): error, rows, store
// - `archive` (core's `Archive`): backup, error, rows, store
// - `testing`: the public API only
mod append;
mod archive;
mod backup;
mod config;
mod env;
mod error;
mod group;
mod job;
mod maintenance;
mod migrate;
mod projection;
mod read;
mod read_ahead;
mod readers;
mod rows;
mod sql;
mod store;
mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use config::{
    ParseSynchronousError, SqliteConfig, SqliteConfigBuilder, Synchronous, DEFAULT_DBNAME,
    DEFAULT_LOCK_TIMEOUT, DEFAULT_READERS,
};
pub use eventsourcing_core::backup::{Archive, Backup};
pub use eventsourcing_core::maintenance::{
    ConsumerLag, IndexUsage, Maintenance, MaintenanceStep, PayloadCheck, Problem, PruneReport,
    SnapshotPrune, StoreStats, TableSize, VerifyReport,
};
pub use eventsourcing_core::{
    AppliedMigration, MigrateError, Migration, MigrationReport, MigrationState, MigrationStatus,
    Migrations,
};
pub use migrate::MIGRATIONS;
pub use projection::{spawn_projection, OnError, ParkedEvent, ProjectionOptions, SqliteProjection};
pub use store::SqliteStore;
pub use tenant::SqliteTenants;

/// The driver, re-exported so that code downcasting an
/// [`Error::Store`](eventsourcing_core::Error) to [`rusqlite::Error`] uses the same version.
pub use rusqlite;
