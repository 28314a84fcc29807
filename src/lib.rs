//! Event-sourced aggregates from plain Rust structs, stored in PostgreSQL, SQLite or memory.
//!
//! A struct with `#[derive(Aggregate)]` and an `#[events]` impl block whose methods are marked
//! `#[event]` becomes an event-sourced aggregate: calling an event method records an event whose
//! fields are the method's arguments and applies it by running the method's body. The macros
//! write the event enum, its serialization and the replay code; the compiler checks them.
//!
//! ```
//! use eventsourcing::prelude::*;
//!
//! #[derive(Aggregate, Debug, Serialize, Deserialize)]
//! #[serde(crate = "eventsourcing::serde")]
//! pub struct WidgetRegistryEndpoint {
//!     meta: Meta<Self>,
//!     pub url: String,
//!     pub name: String,
//!     pub tenant_id: String,
//! }
//!
//! #[events]
//! impl WidgetRegistryEndpoint {
//!     #[event("Registered")]
//!     pub fn create(url: String, name: String, tenant_id: String) -> Self {
//!         Self { meta: Meta::default(), url, name, tenant_id }
//!     }
//!
//!     #[event("NameUpdated")]
//!     pub fn update_name(&mut self, name: String) {
//!         self.name = name;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), eventsourcing::Error> {
//! let app = Application::new(MemoryStore::new());
//! let mut endpoint = WidgetRegistryEndpoint::create(
//!     "https://example.com".into(), "Test".into(), "tenant-123".into());
//! app.save(&mut endpoint).await?;
//!
//! let mut loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await?;
//! loaded.update_name("Updated".into());
//! app.save(&mut loaded).await?;
//!
//! let reloaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await?;
//! assert_eq!(reloaded.name, "Updated");
//! assert_eq!(reloaded.version(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Serde without a serde dependency
//!
//! The code the macros generate names serde through this crate, so `#[events]` needs nothing
//! from your `Cargo.toml`. An aggregate's state is serialized too (for snapshots), by serde's
//! own `#[derive(Serialize, Deserialize)]`, and that derive looks for a crate called `serde`:
//! the line `#[serde(crate = "eventsourcing::serde")]` points it at the copy re-exported here
//! instead. Put it on the aggregate and on every type of yours that an event argument or the
//! state contains. With `serde` (feature `derive`) in your own dependencies the line is not
//! needed.
//!
//! # What is where
//!
//! | you want | names |
//! |---|---|
//! | to write aggregates | [`Aggregate`], [`events`], [`event`], [`Meta`], [`id_from_name`], [`new_id`] |
//! | to save and load them | [`Application`], [`Repository`], [`Retry`], [`Metadata`], [`Error`] |
//! | to choose a store | [`MemoryStore`], [`sqlite`], [`postgres`], [`application_from_env`], [`AnyStore`] |
//! | settings from the environment | [`Env`], [`Snapshotting`], [`ConfigError`] |
//! | a store per tenant | [`Tenants`], [`tenants_from_env`], [`TenantId`], [`migrate_tenants`] |
//! | tenants over several servers, one moved at a time | [`TENANT_SHARDS`], [`Shards`], [`ShardDirectory`], [`move_tenant`], [`Tenants::pause`] |
//! | to operate a store: migrate, statistics, check, prune, vacuum, export, import, archive | [`Maintenance`], [`Backup`], [`Archive`] (on each store and [`AnyStore`]), [`maintenance`], [`backup`] |
//! | to read the log | [`Subscription`], [`read_log_stream`], [`StoredEvent`], [`Position`] |
//! | process applications | [`Process`], [`Outbox`], [`spawn_process`], [`ProjectionOptions`] |
//! | projections | [`ProjectionOptions`], [`OnError`], [`ParkedEvent`], and each store's `spawn_projection` |
//! | another encoding | [`Codec`], [`JsonCodec`] |
//! | compressed or encrypted payloads, key rotation, crypto-shredding | [`PayloadCodec`], [`codecs`] |
//! | to write a store or a runner | [`EventStore`] and the [`plumbing`] module |
//!
//! `use eventsourcing::prelude::*;` brings what a domain module needs.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | yes | `#[derive(Aggregate)]`, `#[events]`, `#[event]` |
//! | `sqlite` | yes | [`sqlite`]: the embedded SQLite store |
//! | `postgres` | yes | [`postgres`]: the PostgreSQL store |

// Aggregates: the traits the macros implement, their bookkeeping, ids, and replay.
pub use eventsourcing_core::{
    id_from_name, new_id, now, replay, Aggregate, DomainEvent, EventDecodeError, EventSourced,
    Meta, Recorded, ID_NAMESPACE,
};

// Saving and loading.
pub use eventsourcing_core::{Application, Repository, Retry, Unsaved};

// What is stored: events, their metadata and place in the log, snapshots, consumer positions.
pub use eventsourcing_core::{Metadata, NewEvent, Position, Snapshot, StoredEvent, Tracking};

// Stores: the seam, the in-memory store, and the one chosen from the environment.
mod any_store;
pub use any_store::{
    application_from, application_from_env, AnyApplication, AnyStore, StoreKind, ACCEPTED,
    PERSISTENCE_MODULE,
};
pub use eventsourcing_core::{EventStore, MemoryStore};

// Tenants: a store per tenant, bounded, from the environment.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod tenants;
pub use eventsourcing_core::{
    migrate_tenants, move_tenant, move_tenant_with_progress, AsShards, MoveError, Paused,
    ShardDirectory, Shards, Tenant, TenantError, TenantId, TenantLimits, TenantMoved,
    TenantProgress, TenantStats, TenantStores, Tenants, TenantsMigrated, TENANT_DIRECTORY,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use tenants::{
    tenant_limits_from_env, tenants_from_env, AnyTenantStores, TENANT_LAYOUT, TENANT_SHARDS,
};
// Operating a store: migrations, statistics, the store check, backups and archives, the same
// on every store (`eventsourcing-admin` runs them), and the portable backup format.
pub use eventsourcing_core::backup::{self, Archive, Backup};
pub use eventsourcing_core::maintenance::{self, Maintenance};

// Encoding; compression and encryption.
pub use eventsourcing_codecs::PayloadCodec;
pub use eventsourcing_core::{Codec, CodecError, EncodeContext, JsonCodec, PayloadKind};

/// Compression and encryption of payloads, key rotation, crypto-shredding (the
/// `eventsourcing-codecs` crate): [`PayloadCodec`](codecs::PayloadCodec), [`Keyring`](codecs::Keyring),
/// [`SubjectKeys`](codecs::SubjectKeys), [`FileSubjectKeys`](codecs::FileSubjectKeys).
pub use eventsourcing_codecs as codecs;

// Settings.
pub use eventsourcing_core::{
    ConfigError, Env, Snapshotting, IS_SNAPSHOTTING_ENABLED, MAX_SNAPSHOTS, SNAPSHOT_INTERVAL,
};

// Errors.
pub use eventsourcing_core::{BoxError, Error};

// Reading the log, process applications, projections.
pub use eventsourcing_core::{
    read_log_stream, spawn_process, OnError, Outbox, ParkedEvent, Process, ProcessHandle,
    ProjectionOptions, RunnerHandle, Subscription,
};

// Metrics (through the `metrics` facade; the application installs the exporter) and spans.
pub use eventsourcing_core::metrics;

// The crates that appear in this crate's API, so users need not match their versions.
pub use eventsourcing_core::{chrono, serde, serde_json, uuid, Uuid};

#[cfg(feature = "derive")]
pub use eventsourcing_derive::{event, events, Aggregate};

/// The embedded SQLite store.
#[cfg(feature = "sqlite")]
pub use eventsourcing_sqlite as sqlite;

/// The PostgreSQL store.
#[cfg(feature = "postgres")]
pub use eventsourcing_postgres as postgres;

/// Building blocks for writing an [`EventStore`] or a runner (a projection or process loop):
/// what the store crates use, and what an application never needs to name.
///
/// | name | what it is for |
/// |---|---|
/// | [`ChangeNotifier`](plumbing::ChangeNotifier), [`Changes`](plumbing::Changes) | a store wakes its subscribers; [`EventStore::changes`] returns the receiving side |
/// | [`StopSignal`](plumbing::StopSignal), [`PositionCell`](plumbing::PositionCell) | what [`RunnerHandle::spawn`] hands a runner: when to stop, where to record progress |
/// | [`backoff`](plumbing::backoff) | the wait before a runner's next retry |
/// | [`Collector`](plumbing::Collector) | what [`Unsaved`] fills: the events and snapshots of one save |
/// | [`SavedHook`](plumbing::SavedHook) | the type of the hook [`Application::on_saved`] stores |
/// | [`engine`](plumbing::engine) | the one projection engine: a store implements [`BatchTarget`](plumbing::engine::BatchTarget) (its batch transaction) and starts runners with [`spawn_runner`](plumbing::engine::spawn_runner) |
/// | [`check_save`](plumbing::check_save) | the checks every store makes on a save (contiguity, what no store could keep alike) |
/// | [`Fold`](plumbing::Fold), [`EventView`](plumbing::EventView), [`StoredTime`](plumbing::StoredTime), [`fold_stored`](plumbing::fold_stored) | what [`EventStore::replay_into`] feeds a load's replay: events borrowed from a store's rows |
/// | [`read_ahead`](plumbing::read_ahead) | pages of the log read ahead of a reader catching up: which are held, and whether a reader ahead goes on |
pub mod plumbing {
    pub use eventsourcing_core::{
        backoff, check_save, engine, fold_stored, read_ahead, ChangeNotifier, Changes, Collector,
        EventView, Fold, PositionCell, SavedHook, StopSignal, StoredTime,
    };
}

/// Everything a domain module needs: `use eventsourcing::prelude::*;`.
pub mod prelude {
    pub use eventsourcing_core::{
        Aggregate, Application, Error, EventStore, MemoryStore, Meta, Metadata, Retry, Uuid,
    };
    #[cfg(feature = "derive")]
    pub use eventsourcing_derive::{event, events, Aggregate};
    pub use serde::{Deserialize, Serialize};
}

/// Support for the code the macros generate: it names serde and the recording functions through
/// here, so a user's crate needs no dependency but this one. Not a public API.
#[doc(hidden)]
pub use eventsourcing_core::__private;

/// The README's code blocks, compiled and run as doctests so they never drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
