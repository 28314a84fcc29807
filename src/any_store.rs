//! Choosing the store from the environment, as the Python library's `PERSISTENCE_MODULE` does,
//! and the one place that dispatches to it: `AnyStore` forwards [`EventStore`] and the
//! operator's traits ([`Maintenance`], [`Backup`], [`Archive`]) to the store it holds.

use std::{fmt, io::Write};

use eventsourcing_codecs::PayloadCodec;
use eventsourcing_core::{
    backup::{
        Archive, ArchiveJob, ArchiveReport, Backup, BackupError, BackupWriter, CheckedFile, Counts,
    },
    maintenance::{
        IndexUsage, Maintenance, PruneReport, RawEvent, RawSnapshot, SnapshotPrune, StoreStats,
    },
    Application, Changes, ConfigError, Env, Error, EventStore, Fold, MemoryStore, MigrationReport,
    MigrationStatus, NewEvent, ParkedEvent, Position, Snapshot, Snapshotting, StoredEvent,
    Tracking, Uuid,
};

/// The variable that chooses the store.
pub const PERSISTENCE_MODULE: &str = "PERSISTENCE_MODULE";

/// The values `PERSISTENCE_MODULE` accepts, by store.
pub const ACCEPTED: &[(&str, &[&str])] = &[
    ("memory", &["eventsourcing.popo", "popo", "memory"]),
    ("sqlite", &["eventsourcing.sqlite", "sqlite"]),
    (
        "postgres",
        &["eventsourcing.postgres", "postgres", "postgresql"],
    ),
];

/// Which store `PERSISTENCE_MODULE` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory (`eventsourcing.popo`, `popo`, `memory`).
    Memory,
    /// SQLite (`eventsourcing.sqlite`, `sqlite`): the default.
    Sqlite,
    /// PostgreSQL (`eventsourcing.postgres`, `postgres`, `postgresql`).
    Postgres,
}

impl StoreKind {
    /// Reads `PERSISTENCE_MODULE` (after `<APP>_PERSISTENCE_MODULE`); SQLite when unset.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some((var, value)) = env.lookup(&[PERSISTENCE_MODULE]) else {
            return Ok(StoreKind::Sqlite);
        };
        let wanted = value.trim().to_ascii_lowercase();
        let kind = ACCEPTED
            .iter()
            .find(|(_, names)| names.contains(&wanted.as_str()))
            .map(|(kind, _)| *kind);
        match kind {
            Some("memory") => Ok(StoreKind::Memory),
            Some("sqlite") => Ok(StoreKind::Sqlite),
            Some("postgres") => Ok(StoreKind::Postgres),
            _ => {
                let accepted: Vec<&str> = ACCEPTED
                    .iter()
                    .flat_map(|(_, n)| n.iter().copied())
                    .collect();
                Err(ConfigError::invalid(
                    var,
                    &value,
                    format_args!("a known store; accepted: {}", accepted.join(", ")),
                ))
            }
        }
    }
}

/// Any of the stores, chosen at run time. It is an [`EventStore`], and [`Maintenance`],
/// [`Backup`] and [`Archive`] for SQLite and PostgreSQL (the in-memory store keeps nothing to
/// administer: those operations fail on it).
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// In memory.
    Memory(MemoryStore),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(eventsourcing_sqlite::SqliteStore),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(eventsourcing_postgres::PostgresStore),
}

/// `$call` on the store `$self` holds (bound to `$s`); the in-memory store takes the `$memory`
/// arm where one is given.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        dispatch!($self, $s => $call, AnyStore::Memory($s) => $call)
    };
    ($self:ident, $s:ident => $call:expr, $memory:pat => $other:expr) => {
        match $self {
            $memory => $other,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $call,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $call,
        }
    };
}

/// Async trait methods that forward to the store `AnyStore` holds, one signature a line; after
/// `memory: f;`, the in-memory store answers `Err(f(name))` instead.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {$(
        async fn $name(&self $(, $arg: $ty)*) -> $ret {
            dispatch!(self, s => s.$name($($arg),*).await)
        }
    )*};
    (memory: $memory:expr; $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {$(
        async fn $name(&self $(, $arg: $ty)*) -> $ret {
            dispatch!(self, s => s.$name($($arg),*).await, AnyStore::Memory(_) => {
                // Built without any other store, the memory arm is the only one using them.
                let _ = ($($arg,)*);
                Err($memory(stringify!($name)).into())
            })
        }
    )*};
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyStore::Memory(s) => f.debug_tuple("Memory").field(s).finish(),
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(s) => f.debug_tuple("Sqlite").field(s).finish(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => f.debug_tuple("Postgres").field(s).finish(),
        }
    }
}

impl AnyStore {
    /// Opens the store `PERSISTENCE_MODULE` names, configured from the same environment.
    /// With nothing set: a SQLite file in the working directory (`SQLITE_DBNAME`, default
    /// `eventsourcing.db`).
    pub async fn from_env(env: &Env) -> Result<Self, Error> {
        match StoreKind::from_env(env)? {
            StoreKind::Memory => Ok(AnyStore::Memory(MemoryStore::new())),
            #[cfg(feature = "sqlite")]
            StoreKind::Sqlite => Ok(AnyStore::Sqlite(
                eventsourcing_sqlite::SqliteStore::from_env(env).await?,
            )),
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => Ok(AnyStore::Postgres(
                eventsourcing_postgres::PostgresStore::from_env(env).await?,
            )),
            #[allow(unreachable_patterns)]
            other => Err(Error::Config(ConfigError::new(
                PERSISTENCE_MODULE,
                format!("the {other:?} store is not compiled in (enable its cargo feature)"),
            ))),
        }
    }

    /// Applies the pending migrations of the store (each store's `migrate`); the in-memory
    /// store has none to apply.
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        dispatch!(self, s => s.migrate().await,
            AnyStore::Memory(_) => Ok(MigrationReport::default()))
    }

    /// Where each migration of the store stands (each store's `migration_status`); the
    /// in-memory store has none.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, Error> {
        dispatch!(self, s => s.migration_status().await, AnyStore::Memory(_) => Ok(Vec::new()))
    }

    /// Which store this is.
    pub fn kind(&self) -> StoreKind {
        match self {
            AnyStore::Memory(_) => StoreKind::Memory,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(_) => StoreKind::Sqlite,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(_) => StoreKind::Postgres,
        }
    }
}

/// What [`application_from_env`] returns: an application on the store the environment names,
/// with the codec it names (plain JSON unless `COMPRESSOR_TOPIC` or `CIPHER_TOPIC` is set).
pub type AnyApplication = Application<AnyStore, PayloadCodec>;

/// An application on the store the environment names: `PERSISTENCE_MODULE`, read with the
/// application-name prefix first (`WIDGETS_PERSISTENCE_MODULE` wins when `app_name` is
/// `"widgets"`), like every other setting, and snapshotting as `IS_SNAPSHOTTING_ENABLED`,
/// `SNAPSHOT_INTERVAL` and `MAX_SNAPSHOTS` say ([`Snapshotting::from_env`]). Events and
/// snapshots are compressed and encrypted as `COMPRESSOR_TOPIC`, `CIPHER_TOPIC`, `CIPHER_KEY`,
/// `CIPHER_OLD_KEYS` and `CIPHER_SUBJECT_KEYS` say ([`PayloadCodec::from_env`]). A malformed
/// setting fails before any store is opened.
///
/// [`Snapshotting::from_env`]: eventsourcing_core::Snapshotting::from_env
pub async fn application_from_env(app_name: Option<&str>) -> Result<AnyApplication, Error> {
    let mut env = Env::from_process();
    if let Some(name) = app_name {
        env = env.with_app_name(name);
    }
    application_from(&env).await
}

/// Like [`application_from_env`], with the settings from `env` (a map in tests, or a file).
pub async fn application_from(env: &Env) -> Result<AnyApplication, Error> {
    let snapshotting = Snapshotting::from_env(env)?;
    let codec = PayloadCodec::from_env(env)?;
    Ok(
        Application::with_codec(AnyStore::from_env(env).await?, codec)
            .with_snapshotting(snapshotting),
    )
}

impl EventStore for AnyStore {
    forward! {
        fn append(&self, events: Vec<NewEvent>) -> Result<(), Error>;
        fn load(&self, stream_id: Uuid, after_version: u64, up_to: Option<u64>)
            -> Result<Vec<StoredEvent>, Error>;
        fn load_for_replay(&self, stream_id: Uuid, after_version: u64, up_to: Option<u64>)
            -> Result<Vec<StoredEvent>, Error>;
        fn stream_version(&self, stream_id: Uuid) -> Result<u64, Error>;
        fn read_log(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, Error>;
        fn save_snapshot(&self, snapshot: Snapshot, keep: Option<u32>) -> Result<(), Error>;
        fn load_snapshot(&self, stream_id: Uuid, at_or_below: Option<u64>)
            -> Result<Option<Snapshot>, Error>;
        fn load_from_snapshot(&self, stream_id: Uuid, up_to: Option<u64>)
            -> Result<(Option<Snapshot>, Vec<StoredEvent>), Error>;
        fn append_tracked(&self, events: Vec<NewEvent>, tracking: Tracking) -> Result<(), Error>;
        fn tracking_position(&self, name: &str) -> Result<Option<Position>, Error>;
        fn park(&self, parked: ParkedEvent) -> Result<(), Error>;
        fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, Error>;
    }

    async fn replay_into<F: Fold>(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        fold: F,
    ) -> Result<F, Error> {
        dispatch!(self, s => s.replay_into(stream_id, after_version, up_to, fold).await)
    }

    fn changes(&self) -> Changes {
        dispatch!(self, s => s.changes())
    }

    fn store_kind(&self) -> &'static str {
        dispatch!(self, s => s.store_kind())
    }
}

/// What the in-memory store answers to an operation of [`Maintenance`], [`Backup`] or
/// [`Archive`]: it keeps nothing to administer.
fn not_kept(operation: &str) -> Error {
    Error::store(format!(
        "`{operation}` is not available for the in-memory store, which keeps nothing to \
         administer"
    ))
}

impl Maintenance for AnyStore {
    forward! {
        memory: not_kept;
        fn stats(&self) -> Result<StoreStats, Error>;
        fn index_usage(&self) -> Result<Vec<IndexUsage>, Error>;
        fn prune_snapshots(&self, prune: SnapshotPrune) -> Result<PruneReport, Error>;
        fn vacuum_step(&self, sql: &str) -> Result<Option<String>, Error>;
        fn count_events(&self) -> Result<u64, Error>;
        fn bad_snapshots(&self) -> Result<Vec<RawSnapshot>, Error>;
        fn events_page(&self, after: Option<(Uuid, i64)>) -> Result<Vec<RawEvent>, Error>;
    }

    fn vacuum_steps(&self) -> Vec<String> {
        dispatch!(self, s => s.vacuum_steps(), AnyStore::Memory(_) => Vec::new())
    }
}

impl Backup for AnyStore {
    async fn export_to<W: Write + Send + 'static>(
        &self,
        writer: BackupWriter<W>,
    ) -> Result<(W, Counts), BackupError> {
        dispatch!(self, s => s.export_to(writer).await, AnyStore::Memory(_) => {
            drop(writer);
            Err(not_kept("export").into())
        })
    }

    forward! {
        memory: not_kept;
        fn import_from(&self, file: CheckedFile) -> Result<Counts, BackupError>;
    }
}

impl Archive for AnyStore {
    forward! {
        memory: not_kept;
        fn archive_with(&self, job: ArchiveJob) -> Result<ArchiveReport, BackupError>;
        fn restore_from(&self, file: CheckedFile) -> Result<Counts, BackupError>;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn python_names_and_short_names_are_accepted() {
        for (value, kind) in [
            ("eventsourcing.popo", StoreKind::Memory),
            ("memory", StoreKind::Memory),
            ("eventsourcing.sqlite", StoreKind::Sqlite),
            ("SQLITE", StoreKind::Sqlite),
            ("eventsourcing.postgres", StoreKind::Postgres),
            ("postgresql", StoreKind::Postgres),
        ] {
            let env = Env::from_map([(PERSISTENCE_MODULE, value)]);
            assert_eq!(StoreKind::from_env(&env).unwrap(), kind, "{value}");
        }
        assert_eq!(
            StoreKind::from_env(&Env::from_map::<&str, &str>([])).unwrap(),
            StoreKind::Sqlite
        );
    }

    #[tokio::test]
    async fn the_memory_store_refuses_what_it_cannot_administer_naming_the_operation() {
        let store = AnyStore::Memory(MemoryStore::new());
        let err = store.stats().await.unwrap_err().to_string();
        assert!(
            err.contains("`stats`") && err.contains("in-memory"),
            "{err}"
        );
        let err = store.export(Vec::new()).await.unwrap_err().to_string();
        assert!(err.contains("`export`"), "{err}");
        assert!(store.vacuum_steps().is_empty());
        assert!(store.migration_status().await.unwrap().is_empty());
    }

    #[test]
    fn prefixed_setting_wins() {
        let env = Env::from_map([
            ("PERSISTENCE_MODULE", "eventsourcing.postgres"),
            ("WIDGETS_PERSISTENCE_MODULE", "eventsourcing.popo"),
        ])
        .with_app_name("widgets");
        assert_eq!(StoreKind::from_env(&env).unwrap(), StoreKind::Memory);
    }

    #[test]
    fn unknown_value_lists_the_accepted_ones() {
        let env = Env::from_map([(PERSISTENCE_MODULE, "eventsourcing.mongo")]);
        let err = StoreKind::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("PERSISTENCE_MODULE"), "{err}");
        assert!(err.contains("`eventsourcing.mongo`"), "{err}");
        for (_, names) in ACCEPTED {
            for name in *names {
                assert!(err.contains(name), "{err} lacks {name}");
            }
        }
    }
}
