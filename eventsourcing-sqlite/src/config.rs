//! The settings of a [`SqliteStore`](crate::SqliteStore) and their builder.

use std::{fmt, str::FromStr, time::Duration};

/// The database name when none is given (and `SQLITE_DBNAME` is not set): a file in the working
/// directory.
pub const DEFAULT_DBNAME: &str = "eventsourcing.db";

/// How long a connection waits for another one's lock before failing with "database is locked",
/// unless `SQLITE_LOCK_TIMEOUT` says otherwise (the Python `sqlite3` module's default).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The write-ahead log size past which the writer truncates it, unless
/// `SQLITE_WAL_SIZE_LIMIT` or [`SqliteConfigBuilder::wal_size_limit`] says otherwise: 64 MiB.
pub(crate) const DEFAULT_WAL_SIZE_LIMIT: u64 = 64 << 20;

/// The longest lock timeout: SQLite's `busy_timeout` is an `int` of milliseconds (INT_MAX,
/// about 24.8 days). `SQLITE_LOCK_TIMEOUT` refuses more; the builder keeps a longer one at this.
pub(crate) const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The number of reader connections of a file database, unless set with
/// [`SqliteConfigBuilder::readers`].
pub const DEFAULT_READERS: usize = 4;

/// When SQLite makes a commit durable (its `synchronous` pragma), for file databases.
///
/// Both levels keep every acknowledged save through a crash or abort of the process: a commit
/// returns only after its pages are written to the write-ahead log. They differ on a power loss
/// or operating-system crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous=FULL` (the default): every commit waits for the write-ahead log to reach the
    /// disk (`fsync`), so an acknowledged save also survives a power loss. Like PostgreSQL's
    /// default `synchronous_commit = on`.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the log is synced only at checkpoints. An acknowledged save survives
    /// a crash of the process, but the last saves before a power loss or OS crash can be lost
    /// (the database itself stays consistent). Much faster on disks with slow `fsync`.
    Normal,
    /// `synchronous=EXTRA`: like `Full`, and also syncs the directory after the log is reset.
    Extra,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pragma_value().to_ascii_lowercase())
    }
}

/// The error of parsing a [`Synchronous`] level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `full`, `normal` or `extra`")]
pub struct ParseSynchronousError;

impl FromStr for Synchronous {
    type Err = ParseSynchronousError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" | "2" => Ok(Synchronous::Full),
            "normal" | "1" => Ok(Synchronous::Normal),
            "extra" | "3" => Ok(Synchronous::Extra),
            _ => Err(ParseSynchronousError),
        }
    }
}

/// How to open a [`SqliteStore`](crate::SqliteStore): built in code or read from the environment.
///
/// Build one with [`SqliteConfig::builder`] (or [`SqliteConfig::new`] for a database with every
/// other setting at its default), or read the environment with [`SqliteConfig::from_env`]:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `SQLITE_DBNAME` | `eventsourcing.db` ([`DEFAULT_DBNAME`]) | a file path, `:memory:`, or a `file:` URI |
/// | `SQLITE_LOCK_TIMEOUT` | `5` | seconds to wait for another connection's lock (`busy_timeout`); `0` fails at once; at most 2147483.647 (SQLite's INT_MAX milliseconds) |
/// | `SQLITE_SYNCHRONOUS` | `full` | `full`, `normal` or `extra`: see [`Synchronous`] |
/// | `SQLITE_WAL_SIZE_LIMIT` | `67108864` (64 MiB) | bytes: the write-ahead log's bound (see [The write-ahead log](SqliteConfig#the-write-ahead-log)); `0` = SQLite's own checkpoints only |
/// | `CREATE_TABLE` | `y` | `y`: apply the migrations when opening; `n`: issue no DDL (run [`SqliteStore::migrate`](crate::SqliteStore::migrate) yourself) |
///
/// Every variable is first looked up with the application prefix of the [`Env`](eventsourcing_core::Env)
/// (`WIDGETS_SQLITE_DBNAME` before `SQLITE_DBNAME`, see
/// [`Env::with_app_name`](eventsourcing_core::Env::with_app_name)). A malformed value is a
/// [`ConfigError`](eventsourcing_core::ConfigError) naming the variable (so is a NUL character in
/// the database name); an empty value counts as unset. The number of reader
/// connections has no variable: set it with [`readers`](SqliteConfigBuilder::readers).
///
/// # The write-ahead log
///
/// A file database runs in WAL mode. SQLite checkpoints the log into the database every 1000
/// pages, but it can only start the log over when no reader still reads an older snapshot,
/// and never shrinks the file: with the store's reader connections busy while saves go on, the
/// `-wal` file could grow without bound. So the writer thread, after each piece of work, looks
/// at the log's size; past the limit it runs `PRAGMA wal_checkpoint(TRUNCATE)`, which waits
/// (up to the lock timeout) only for the reads already running, and empties the file. The same
/// limit is SQLite's `journal_size_limit`, so a log that SQLite starts over is cut back to it.
/// If a reader in another process keeps the truncation from finishing, the writer tries again
/// once the log has grown by another limit's worth, rather than waiting on every save.
///
/// ```
/// use std::time::Duration;
/// use eventsourcing_sqlite::{SqliteConfig, Synchronous};
///
/// let config = SqliteConfig::builder()
///     .dbname("widgets.db")
///     .lock_timeout(Duration::from_secs(10))
///     .synchronous(Synchronous::Normal)
///     .create_table(false)
///     .build();
/// assert_eq!(config.dbname(), "widgets.db");
/// assert_eq!(config.lock_timeout(), Duration::from_secs(10));
/// assert!(!config.is_memory());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    dbname: String,
    lock_timeout: Duration,
    synchronous: Synchronous,
    create_table: bool,
    readers: usize,
    wal_size_limit: Option<u64>,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            dbname: DEFAULT_DBNAME.to_owned(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            synchronous: Synchronous::default(),
            create_table: true,
            readers: DEFAULT_READERS,
            wal_size_limit: Some(DEFAULT_WAL_SIZE_LIMIT),
        }
    }
}

impl SqliteConfig {
    /// A builder with every default (the database [`DEFAULT_DBNAME`] unless
    /// [`dbname`](SqliteConfigBuilder::dbname) says otherwise).
    pub fn builder() -> SqliteConfigBuilder {
        SqliteConfigBuilder {
            config: SqliteConfig::default(),
        }
    }

    /// A builder starting from these settings (to change a few of them).
    pub fn to_builder(&self) -> SqliteConfigBuilder {
        SqliteConfigBuilder {
            config: self.clone(),
        }
    }

    /// The database `dbname` (see [`SqliteConfigBuilder::dbname`]) with every other setting at
    /// its default.
    pub fn new(dbname: impl Into<String>) -> Self {
        SqliteConfig::builder().dbname(dbname).build()
    }

    /// A private in-memory database (`:memory:`), gone when the store is dropped.
    pub fn memory() -> Self {
        SqliteConfig::new(":memory:")
    }

    /// The database name (a path, `:memory:` or a `file:` URI).
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// How long a connection waits for a lock held by another one.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// When a commit is durable.
    pub fn synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// Whether opening the store applies the migrations.
    pub fn create_table(&self) -> bool {
        self.create_table
    }

    /// The number of reader connections of a file database.
    pub fn readers(&self) -> usize {
        self.readers
    }

    /// The write-ahead log size (bytes) past which the writer truncates it; `None`: SQLite's
    /// own checkpoints only.
    pub fn wal_size_limit(&self) -> Option<u64> {
        self.wal_size_limit
    }

    /// True for an in-memory database (`:memory:`, `file::memory:`, a URI with `mode=memory`, or
    /// the empty name, SQLite's private temporary database), which lives in a single connection.
    pub fn is_memory(&self) -> bool {
        let name = self.dbname.trim();
        if name == ":memory:" || name.is_empty() {
            return true;
        }
        match name.strip_prefix("file:") {
            None => false,
            Some(rest) => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory")
            }
        }
    }
}

/// Builds a [`SqliteConfig`]; every setting not given keeps its default. Every value is valid,
/// so [`build`](Self::build) cannot fail.
#[derive(Debug, Clone)]
pub struct SqliteConfigBuilder {
    config: SqliteConfig,
}

impl SqliteConfigBuilder {
    /// The database: a file path (created if missing), `:memory:`, or a `file:` URI
    /// (<https://sqlite.org/uri.html>). Default [`DEFAULT_DBNAME`].
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.config.dbname = dbname.into();
        self
    }

    /// How long to wait for a lock held by another connection (another process, or another
    /// store on the same file). Default 5 s. SQLite counts it in `int` milliseconds, so a wait
    /// longer than INT_MAX milliseconds (about 24.8 days) is kept at that.
    pub fn lock_timeout(mut self, lock_timeout: Duration) -> Self {
        self.config.lock_timeout = lock_timeout.min(MAX_LOCK_TIMEOUT);
        self
    }

    eventsourcing_core::config_setters! {
        /// When a commit is durable. Default [`Synchronous::Full`].
        synchronous: Synchronous;
        /// Whether opening the store applies the migrations (creating the tables). Default
        /// `true`. With `false` the store issues no DDL; a missing table is an
        /// [`Error::Schema`](eventsourcing_core::Error::Schema) telling to run
        /// [`SqliteStore::migrate`](crate::SqliteStore::migrate).
        create_table: bool;
    }

    /// The number of reader connections (and threads) of a file database; at least 1. Default 4.
    /// An in-memory database has a single connection that serves reads and writes.
    pub fn readers(mut self, readers: usize) -> Self {
        self.config.readers = readers.max(1);
        self
    }

    /// Bytes the write-ahead log may reach before the writer truncates it (see
    /// [The write-ahead log](SqliteConfig#the-write-ahead-log)); default 64 MiB. `None` or
    /// `Some(0)`: SQLite's own checkpoints only. Above `i64::MAX` is kept at that.
    pub fn wal_size_limit(mut self, bytes: Option<u64>) -> Self {
        self.config.wal_size_limit = bytes.filter(|b| *b > 0).map(|b| b.min(i64::MAX as u64));
        self
    }

    /// The settings.
    pub fn build(self) -> SqliteConfig {
        self.config
    }
}
