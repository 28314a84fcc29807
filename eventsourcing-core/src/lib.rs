//! The runtime of `eventsourcing`: domain traits, the [`Application`] with its repository,
//! the stored-event envelope, codecs, configuration from the environment, the
//! [`EventStore`] trait every backend implements, and an in-memory store.
//!
//! Most users depend on the facade crate `eventsourcing`, which re-exports this crate and the
//! derive macros. The pieces:
//!
//! | concept | where |
//! |---|---|
//! | aggregate traits, [`Meta`], replay | `aggregate.rs` |
//! | stored-event envelope, [`Metadata`]; [`Position`] in the log | `event.rs`, `position.rs` |
//! | [`Codec`] seam, [`JsonCodec`] | `codec.rs` |
//! | [`EventStore`] trait | `store.rs` |
//! | [`Subscription`], [`read_log_stream`], [`ChangeNotifier`] | `subscription.rs`, `changes.rs` |
//! | [`MemoryStore`] | `memory.rs` |
//! | [`Application`], [`Repository`] | `application.rs` |
//! | [`Process`], [`spawn_process`]: exactly-once process applications | `process.rs` |
//! | the projection engine ([`engine`]): run loop, retries, failure policy | `engine.rs`, `batch.rs` |
//! | [`RunnerHandle`]: a running projection or process | `runner.rs` |
//! | [`Env`]: settings from the environment | `config.rs` |
//! | [`Migrations`], [`Migrator`]: versioned SQL migrations, the engine the stores share | `migrate.rs` |
//! | [`Snapshotting`]: when snapshots are taken and kept | `snapshot.rs` |
//! | [`Tenants`], [`TenantStores`], [`TenantId`]: a store per tenant, bounded; [`Tenants::pause`] | `tenants/`, `tenant_id.rs` |
//! | [`Shards`], [`ShardDirectory`], [`move_tenant`]: tenants over several servers, one moved at a time | `shards/` |
//! | [`maintenance`]: the [`Maintenance`](maintenance::Maintenance) trait: store statistics, index use, snapshot pruning, vacuum, the store check (`verify`) | `maintenance.rs` |
//! | [`backup`]: the portable backup format, the [`Backup`](backup::Backup) and [`Archive`](backup::Archive) traits | `backup/` |
//! | [`metrics`]: every metric name, kind, unit and label; the `tracing` spans | `metrics.rs` |
//! | [`Error`] | `error.rs` |
//!
//! # Invariants
//! - The versions of a stream are contiguous and start at 1; a save whose first version is not
//!   the stream's current version + 1 is a [`Error::Conflict`] and writes nothing.
//! - Event methods cannot fail, so replaying the same events always rebuilds the same state.
//! - A save is atomic across all the aggregates in it.

mod aggregate;
mod application;
mod applying;
pub mod backup;
mod batch;
mod changes;
mod check;
mod codec;
mod config;
pub mod engine;
mod error;
mod event;
pub mod maintenance;
mod memory;
pub mod metrics;
mod migrate;
mod position;
mod process;
mod projection;
pub mod read_ahead;
mod replay;
mod runner;
mod shards;
mod snapshot;
mod store;
mod subscription;
mod tenant_id;
mod tenants;

pub use aggregate::{
    id_from_name, new_id, Aggregate, DomainEvent, EventSourced, Meta, Recorded, ID_NAMESPACE,
};
pub use application::{Application, Collector, Repository, Retry, SavedHook, Unsaved};
pub use changes::{ChangeNotifier, Changes};
pub use check::check_save;
pub use codec::{Codec, CodecError, EncodeContext, InContext, JsonCodec, PayloadKind};
pub use config::{ConfigError, Env, MAX_SECONDS};
pub use error::{BoxError, Error, EventDecodeError};
pub use event::{now, Metadata, NewEvent, Position, Snapshot, StoredEvent, Tracking};
pub use memory::MemoryStore;
pub use migrate::{
    AppliedMigration, BlockingMigrator, MigrateError, Migration, MigrationPlan, MigrationReport,
    MigrationState, MigrationStatus, Migrations, Migrator,
};
pub use process::{spawn_process, Outbox, Process};
pub use projection::{OnError, ParkedEvent, ProjectionOptions};
pub use replay::{fold_stored, replay, EventView, Fold, StoredTime};
pub use runner::{backoff, PositionCell, ProcessHandle, RunnerHandle, StopSignal};

pub use shards::{
    move_tenant, move_tenant_with_progress, AsShards, MoveError, ShardDirectory, Shards,
    TenantMoved, TENANT_DIRECTORY,
};
pub use snapshot::{Snapshotting, IS_SNAPSHOTTING_ENABLED, MAX_SNAPSHOTS, SNAPSHOT_INTERVAL};
pub use store::EventStore;
pub use subscription::{read_log_stream, Subscription};
pub use tenant_id::{
    TenantError, TenantId, TenantPattern, MAX_TENANT_NAME, RESERVED_TENANT_NAMES,
    TENANT_PLACEHOLDER,
};
pub use tenants::{
    migrate_tenants, MakeApplication, Paused, Tenant, TenantLimits, TenantProgress, TenantStats,
    TenantStores, Tenants, TenantsMigrated, DEFAULT_TENANT_MAX_CONNECTIONS, DEFAULT_TENANT_TIMEOUT,
};

pub use chrono;
pub use serde;
pub use serde_json;
pub use uuid;
pub use uuid::Uuid;

/// Support for the code that `#[derive(Aggregate)]` and `#[aggregate]` generate. Not a public
/// API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::{record, record_creation, NoEvents};
    pub use serde;
    pub use serde_json;
    pub use std::borrow::Cow;
}
