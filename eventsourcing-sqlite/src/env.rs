//! Reading a [`SqliteConfig`] from the environment (the table on [`SqliteConfig`]).

use eventsourcing_core::{ConfigError, Env};

use crate::config::{SqliteConfig, Synchronous, DEFAULT_DBNAME, MAX_LOCK_TIMEOUT};

impl SqliteConfig {
    /// Reads the settings in the table above from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut builder = SqliteConfig::builder().dbname(
            env.text(&["SQLITE_DBNAME"])?
                .map_or_else(|| DEFAULT_DBNAME.to_owned(), |(_, name)| name),
        );
        // Past SQLite's INT_MAX milliseconds the driver would panic when opening.
        if let Some(timeout) = env.seconds_up_to(&["SQLITE_LOCK_TIMEOUT"], MAX_LOCK_TIMEOUT)? {
            builder = builder.lock_timeout(timeout);
        }
        if let Some(bytes) = env.integer(&["SQLITE_WAL_SIZE_LIMIT"], 0..=i64::MAX as u64)? {
            builder = builder.wal_size_limit(Some(bytes));
        }
        if let Some(synchronous) = env.parse::<Synchronous>(&["SQLITE_SYNCHRONOUS"])? {
            builder = builder.synchronous(synchronous);
        }
        if let Some(create) = env.flag(&["CREATE_TABLE"])? {
            builder = builder.create_table(create);
        }
        Ok(builder.build())
    }
}
