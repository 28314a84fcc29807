//! The typed settings: [`PostgresConfig`], its builder and its defaults. Reading them from
//! the environment is in `env.rs`, parsing connection strings in `conn_str.rs`.

use std::{fmt, path::PathBuf, time::Duration};

use eventsourcing_core::ConfigError;

use crate::{
    replica_config::ReplicaSettings,
    tls::{RootCerts, SslMode},
};

/// Settings of a [`PostgresStore`](crate::PostgresStore): where the server is, how to reach it,
/// the pool, the session timeouts and the schema.
///
/// Build one with [`PostgresConfig::builder`], parse a connection string with
/// [`str::parse`] (`key=value` pairs or a `postgres://` URL, as libpq and tokio-postgres accept),
/// or read the environment with [`PostgresConfig::from_env`]. The table below has every
/// setting, its environment variables, its default and what it does.
///
/// `Debug` never shows the password.
///
/// # Settings
///
/// [`PostgresConfig::from_env`] reads these variables. Each is first looked up with the
/// application prefix when there is one (`WIDGETS_POSTGRES_HOST` before `POSTGRES_HOST`), then
/// without; where several names are listed, all are tried in that order. A missing required
/// value or a malformed one is a [`ConfigError`](eventsourcing_core::ConfigError) naming the
/// variable. The builder method of each setting is given in the first column.
///
/// | setting (builder) | variables | default | meaning |
/// |---|---|---|---|
/// | connection string | `DATABASE_URL` | — | `postgres://` URL or libpq `key=value` pairs; gives whatever it contains, the variables below fill in the rest (libpq's rule) |
/// | `host` | `POSTGRES_HOST` | required | host name, IP address or Unix socket directory; several comma-separated, tried in order |
/// | `port` / `ports` | `POSTGRES_PORT` | 5432 | one for every host, or one per host (comma-separated) |
/// | `target_session_attrs` | `POSTGRES_TARGET_SESSION_ATTRS` (`target_session_attrs`) | `any` | which host of the list a connection keeps: `any`, `read-write` (the primary, also after a failover), `read-only`; see [Read replicas and failover](crate#read-replicas-and-failover) |
/// | `user` | `POSTGRES_USER` | required | |
/// | `password` | `POSTGRES_PASSWORD`, or `POSTGRES_PASSWORD_FILE` (a file holding it, Docker's convention; a trailing newline is dropped) | none (trust, peer or certificate authentication) | never shown by `Debug`, logs or errors; both variables set at the same prefix level is an error |
/// | `dbname` | `POSTGRES_DBNAME`, `POSTGRES_DB` | required | |
/// | `schema` | `POSTGRES_SCHEMA` | `public` | schema of all tables, used as given (quoted); created by the first migration if missing |
/// | `ssl_mode` | `POSTGRES_SSLMODE` (`sslmode` in a connection string) | `prefer` | see [TLS](crate#tls) |
/// | `ssl_root_cert` | `POSTGRES_SSLROOTCERT` (`sslrootcert`) | Mozilla roots | PEM file of trusted roots; `system` = the Mozilla roots |
/// | `pool_size` | `POSTGRES_POOL_SIZE`, `POOL_SIZE` | 5 | bb8 `min_idle`: connections the pool keeps open and idle, ready for use. bb8 keeps this many *idle*, so under load it opens more (up to the maximum) rather than waiting |
/// | `max_overflow` | `POSTGRES_MAX_OVERFLOW`, `POOL_MAX_OVERFLOW` | 10 | bb8 `max_size` = pool size + overflow: the most connections open at once. Connections above the pool size close after bb8's `idle_timeout` (10 min) unused |
/// | `pool_timeout` | `POSTGRES_CONNECT_TIMEOUT`, `POOL_TIMEOUT` | 30 s | bb8 `connection_timeout`: how long an operation waits for a connection before failing (the error says why the last connection attempt failed); also tokio-postgres' `connect_timeout` for opening one |
/// | `recycle` | `POSTGRES_CONN_MAX_AGE`, `POOL_RECYCLE` | 3600 s | bb8 `max_lifetime`: a connection older than this is closed and replaced; 0 = never |
/// | `pre_ping` | `POSTGRES_PRE_PING`, `POOL_PRE_PING` | no | bb8 `test_on_check_out`: run an empty query on a connection before each use, costing one round trip per operation |
/// | `max_waiting` | `POSTGRES_MAX_WAITING` | no limit | bb8 has no such knob. This crate enforces it in front of bb8 with a semaphore of pool maximum + this many permits: when it is exhausted an operation fails at once instead of queueing |
/// | `lock_timeout` | `POSTGRES_LOCK_TIMEOUT` | 0 (wait forever) | the session's `lock_timeout`, set on every new connection (seconds, fractions allowed; at most 2147483.647, PostgreSQL's INT_MAX milliseconds) |
/// | `idle_in_transaction_session_timeout` | `POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT` | 5 s | the session's `idle_in_transaction_session_timeout`, set on every new connection; 0 = never. It also bounds how long a forgotten open transaction can hold the log back ([Global order](crate#global-order)) |
/// | `replica` (once per standby) | `POSTGRES_REPLICA_HOSTS` (comma-separated), `POSTGRES_REPLICA_PORTS` (one for all, or one per host) | none; ports: the primary's | standbys that loads and log reads go to; saves go to the primary. See [Read replicas and failover](crate#read-replicas-and-failover) |
/// | `read_your_writes_timeout` | `POSTGRES_READ_YOUR_WRITES_TIMEOUT` | 1 s | how long a load after a save through the same store waits for a standby to replay it, then reads from the primary |
/// | `create_table` | `CREATE_TABLE` | yes | [`PostgresStore::connect`](crate::PostgresStore::connect) applies pending migrations. With `n` nothing issues DDL at run time and a missing table is [`Error::Schema`](eventsourcing_core::Error::Schema) saying to run `eventsourcing-admin migrate` |
///
/// Yes/no values: `y`, `yes`, `t`, `true`, `on`, `1` / `n`, `no`, `f`, `false`, `off`, `0`.
/// Durations are seconds, at most a year; the two session timeouts at most 2147483.647 s
/// (PostgreSQL's limit, INT_MAX milliseconds). Pool size + overflow is at most 262143
/// (PostgreSQL's own limit on connections). An empty value counts as unset. A value with a NUL
/// character, a port of 0, or an empty entry in a comma-separated host list is an error. The Python library requires a password; here it is optional, since
/// trust, peer and certificate authentication need none.
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_certs: Option<RootCerts>,
    pub(crate) schema: String,
    pub(crate) pool_size: u32,
    pub(crate) max_overflow: u32,
    pub(crate) pool_timeout: Duration,
    pub(crate) recycle: Option<Duration>,
    pub(crate) pre_ping: bool,
    pub(crate) max_waiting: Option<u32>,
    pub(crate) lock_timeout: Duration,
    pub(crate) idle_in_transaction_session_timeout: Duration,
    pub(crate) create_table: bool,
    /// The standbys reads may go to (`replica_config.rs`).
    pub(crate) replicas: ReplicaSettings,
}

/// Default of `POSTGRES_POOL_SIZE`.
pub const DEFAULT_POOL_SIZE: u32 = 5;
/// Default of `POSTGRES_MAX_OVERFLOW`.
pub const DEFAULT_MAX_OVERFLOW: u32 = 10;
/// Default of `POSTGRES_CONNECT_TIMEOUT` (seconds).
pub const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `POSTGRES_CONN_MAX_AGE` (seconds).
pub const DEFAULT_RECYCLE: Duration = Duration::from_secs(3600);
/// Default of `POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT` (seconds).
pub const DEFAULT_IDLE_IN_TRANSACTION_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `POSTGRES_SCHEMA`.
pub const DEFAULT_SCHEMA: &str = "public";

/// The longest session timeout: PostgreSQL takes `lock_timeout` and
/// `idle_in_transaction_session_timeout` in `int` milliseconds (INT_MAX, about 24.8 days), and
/// a longer one would make every new connection's `SET` fail.
pub(crate) const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The most connections a pool may open: PostgreSQL's own ceiling for `max_connections`
/// (2^18 - 1). A larger pool is a typo, and bb8 would try to keep it open.
pub(crate) const MAX_CONNECTIONS: u32 = (1 << 18) - 1;

impl Default for PostgresConfig {
    fn default() -> Self {
        let mut pg = tokio_postgres::Config::new();
        pg.connect_timeout(DEFAULT_POOL_TIMEOUT);
        PostgresConfig {
            pg,
            ssl_mode: SslMode::Prefer,
            root_certs: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            max_overflow: DEFAULT_MAX_OVERFLOW,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
            recycle: Some(DEFAULT_RECYCLE),
            pre_ping: false,
            max_waiting: None,
            lock_timeout: Duration::ZERO,
            idle_in_transaction_session_timeout: DEFAULT_IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            create_table: true,
            replicas: ReplicaSettings::default(),
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = self.pg.get_password().map(|_| "<redacted>");
        f.debug_struct("PostgresConfig")
            .field("hosts", &self.hosts_display())
            .field("ports", &self.pg.get_ports())
            .field("user", &self.pg.get_user())
            .field("password", &password)
            .field("dbname", &self.pg.get_dbname())
            .field("ssl_mode", &self.ssl_mode)
            .field("root_certs", &self.root_certs)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("max_overflow", &self.max_overflow)
            .field("pool_timeout", &self.pool_timeout)
            .field("recycle", &self.recycle)
            .field("pre_ping", &self.pre_ping)
            .field("max_waiting", &self.max_waiting)
            .field("lock_timeout", &self.lock_timeout)
            .field(
                "idle_in_transaction_session_timeout",
                &self.idle_in_transaction_session_timeout,
            )
            .field("create_table", &self.create_table)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl PostgresConfig {
    /// A builder with every default; `host`, `user` and `dbname` must be set.
    pub fn builder() -> PostgresConfigBuilder {
        PostgresConfigBuilder {
            config: PostgresConfig::default(),
        }
    }

    /// A builder starting from these settings (to change a few of them).
    pub fn to_builder(&self) -> PostgresConfigBuilder {
        PostgresConfigBuilder {
            config: self.clone(),
        }
    }

    /// The hosts, comma-separated.
    pub fn host(&self) -> String {
        self.hosts_display().join(",")
    }

    /// The first port (5432 if none was given).
    pub fn port(&self) -> u16 {
        self.pg.get_ports().first().copied().unwrap_or(5432)
    }

    /// The user name.
    pub fn user(&self) -> Option<&str> {
        self.pg.get_user()
    }

    /// The database name.
    pub fn dbname(&self) -> Option<&str> {
        self.pg.get_dbname()
    }

    /// Whether a password is set (the password itself is never handed out).
    pub fn has_password(&self) -> bool {
        self.pg.get_password().is_some()
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The TLS mode.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The root certificate file, if one was given.
    pub fn ssl_root_cert(&self) -> Option<&std::path::Path> {
        match &self.root_certs {
            Some(RootCerts::File(path)) => Some(path),
            _ => None,
        }
    }

    /// Connections kept open (bb8 `min_idle`).
    pub fn pool_size(&self) -> u32 {
        self.pool_size
    }

    /// Connections allowed beyond the pool size.
    pub fn max_overflow(&self) -> u32 {
        self.max_overflow
    }

    /// The most connections the pool opens (bb8 `max_size`): pool size + overflow.
    pub fn max_connections(&self) -> u32 {
        self.pool_size.saturating_add(self.max_overflow).max(1)
    }

    /// How long to wait for a pooled connection (bb8 `connection_timeout`).
    pub fn pool_timeout(&self) -> Duration {
        self.pool_timeout
    }

    /// How long a connection lives before it is replaced (bb8 `max_lifetime`); `None` = forever.
    pub fn recycle(&self) -> Option<Duration> {
        self.recycle
    }

    /// Whether a connection is checked before each use (bb8 `test_on_check_out`).
    pub fn pre_ping(&self) -> bool {
        self.pre_ping
    }

    /// The most callers allowed to wait for a connection; `None` = no limit.
    pub fn max_waiting(&self) -> Option<u32> {
        self.max_waiting
    }

    /// The session's `lock_timeout`; zero = wait forever.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// The session's `idle_in_transaction_session_timeout`; zero = never.
    pub fn idle_in_transaction_session_timeout(&self) -> Duration {
        self.idle_in_transaction_session_timeout
    }

    /// Whether [`PostgresStore::connect`](crate::PostgresStore::connect) applies the migrations.
    pub fn create_table(&self) -> bool {
        self.create_table
    }

    /// The tokio-postgres settings (host, port, user, password, database, timeouts).
    pub fn tokio_postgres_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    /// `host:port/dbname as user`, for messages. Never contains the password.
    pub(crate) fn target(&self) -> String {
        format!(
            "{}:{}/{} as {}",
            self.host(),
            self.port(),
            self.dbname().unwrap_or("?"),
            self.user().unwrap_or("?")
        )
    }

    fn hosts_display(&self) -> Vec<String> {
        self.pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    }

    /// Checks what every way of making a config must give; `names` name the settings in errors.
    pub(crate) fn validate(self, names: &Names) -> Result<Self, ConfigError> {
        if self.pg.get_hosts().is_empty() {
            return Err(ConfigError::new(names.host, "a host is required"));
        }
        if self.pg.get_user().is_none() {
            return Err(ConfigError::new(names.user, "a user is required"));
        }
        if self.pg.get_dbname().is_none() {
            return Err(ConfigError::new(
                names.dbname,
                "a database name is required",
            ));
        }
        if self.pool_timeout.is_zero() {
            return Err(ConfigError::new(
                names.pool_timeout,
                "must be more than 0 seconds",
            ));
        }
        if self.pool_size.saturating_add(self.max_overflow) == 0 {
            return Err(ConfigError::new(
                names.pool_size,
                "the pool needs at least one connection (pool size + overflow > 0)",
            ));
        }
        if self.pool_size.saturating_add(self.max_overflow) > MAX_CONNECTIONS {
            return Err(ConfigError::new(
                names.pool_size,
                format!(
                    "pool size + overflow is more than PostgreSQL's limit of {MAX_CONNECTIONS} \
                     connections"
                ),
            ));
        }
        for (name, timeout) in [
            (names.lock_timeout, self.lock_timeout),
            (
                names.idle_in_transaction_session_timeout,
                self.idle_in_transaction_session_timeout,
            ),
        ] {
            if timeout > MAX_SESSION_TIMEOUT {
                return Err(ConfigError::new(
                    name,
                    format!(
                        "{timeout:?} is longer than PostgreSQL's limit of {} s (INT_MAX ms)",
                        MAX_SESSION_TIMEOUT.as_secs_f64()
                    ),
                ));
            }
        }
        Ok(self)
    }
}

/// Builds a [`PostgresConfig`]; every setting not given keeps its default.
#[derive(Debug, Clone)]
pub struct PostgresConfigBuilder {
    pub(crate) config: PostgresConfig,
}

impl PostgresConfigBuilder {
    /// The server's host name, IP address or Unix socket directory (several comma-separated,
    /// tried in order). Required. Replaces any host given before.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        let hosts: Vec<&str> = host.split(',').map(str::trim).collect();
        self.config.pg = rebuild(&self.config.pg, Some(&hosts), None);
        self
    }

    /// The server's port (default 5432). Replaces any port given before.
    pub fn port(mut self, port: u16) -> Self {
        self.config.pg = rebuild(&self.config.pg, None, Some(&[port]));
        self
    }

    /// The user name. Required.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.config.pg.user(user);
        self
    }

    /// The password (never shown by `Debug` or in errors).
    pub fn password(mut self, password: impl AsRef<[u8]>) -> Self {
        self.config.pg.password(password);
        self
    }

    /// The database name. Required.
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.config.pg.dbname(dbname);
        self
    }

    /// The schema holding the tables (default `public`). Used exactly as given (quoted).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.config.schema = schema.into();
        self
    }

    /// A PEM file of trusted root certificates for `verify-ca` / `verify-full`; without one, the
    /// Mozilla roots of `webpki-roots` are trusted.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.root_certs = Some(RootCerts::File(path.into()));
        self
    }

    /// How long to wait for a pooled connection, and for a new connection to be established
    /// (bb8 `connection_timeout` and tokio-postgres `connect_timeout`, default 30 s).
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeout = timeout;
        if !timeout.is_zero() {
            self.config.pg.connect_timeout(timeout);
        }
        self
    }

    /// Replace connections older than this (bb8 `max_lifetime`, default 1 hour); `None` = never.
    pub fn recycle(mut self, max_age: Option<Duration>) -> Self {
        self.config.recycle = max_age.filter(|d| !d.is_zero());
        self
    }

    eventsourcing_core::config_setters! {
        /// TLS mode (default [`SslMode::Prefer`]).
        ssl_mode: SslMode;
        /// Connections kept open (bb8 `min_idle`, default 5).
        pool_size: u32;
        /// Connections allowed beyond the pool size (default 10); bb8 `max_size` = size +
        /// overflow.
        max_overflow: u32;
        /// Check each connection with an empty query before handing it out (bb8
        /// `test_on_check_out`, default off).
        pre_ping: bool;
        /// Fail at once, instead of waiting, when this many callers already wait for a
        /// connection (default: no limit).
        max_waiting: Option<u32>;
        /// The session's `lock_timeout` (default zero: wait forever). At most INT_MAX
        /// milliseconds (about 24.8 days, PostgreSQL's limit): [`build`](Self::build) refuses
        /// more.
        lock_timeout: Duration;
        /// The session's `idle_in_transaction_session_timeout` (default 5 s; zero: never). At
        /// most INT_MAX milliseconds, like [`lock_timeout`](Self::lock_timeout).
        idle_in_transaction_session_timeout: Duration;
        /// Whether [`PostgresStore::connect`](crate::PostgresStore::connect) applies the
        /// migrations (default true). With false nothing issues DDL at run time.
        create_table: bool;
    }

    /// Checks the settings: `host`, `user` and `dbname` are required, the pool needs at least
    /// one connection (and at most PostgreSQL's 262143) and a non-zero timeout, the session
    /// timeouts must fit PostgreSQL's INT_MAX milliseconds, and the schema name must be valid.
    pub fn build(self) -> Result<PostgresConfig, ConfigError> {
        let mut config = self.config;
        config.schema = valid_schema("schema", &config.schema)?;
        config.validate(&Names::BUILDER)
    }
}

/// A copy of `pg` with other hosts and/or ports: tokio-postgres' setters only append.
pub(crate) fn rebuild(
    pg: &tokio_postgres::Config,
    hosts: Option<&[&str]>,
    ports: Option<&[u16]>,
) -> tokio_postgres::Config {
    use tokio_postgres::config::Host;
    let mut c = tokio_postgres::Config::new();
    // The settings copied as they are (`get_x` to `x`); those that may be unset, when set.
    macro_rules! copy {
        ($($get:ident => $set:ident),* $(,)?) => {$( c.$set(pg.$get()); )*};
    }
    macro_rules! copy_set {
        ($($get:ident => $set:ident),* $(,)?) => {$( if let Some(v) = pg.$get() { c.$set(v); } )*};
    }
    copy_set!(
        get_user => user,
        get_password => password,
        get_dbname => dbname,
        get_options => options,
        get_application_name => application_name,
        get_keepalives_interval => keepalives_interval,
        get_keepalives_retries => keepalives_retries,
    );
    copy!(
        get_ssl_mode => ssl_mode,
        get_ssl_negotiation => ssl_negotiation,
        get_keepalives => keepalives,
        get_keepalives_idle => keepalives_idle,
        get_target_session_attrs => target_session_attrs,
        get_channel_binding => channel_binding,
        get_load_balance_hosts => load_balance_hosts,
    );
    match hosts {
        Some(hosts) => {
            for host in hosts {
                c.host(*host);
            }
        }
        None => {
            for host in pg.get_hosts() {
                match host {
                    Host::Tcp(name) => c.host(name),
                    #[cfg(unix)]
                    Host::Unix(path) => c.host_path(path),
                };
            }
            // Addresses belong to the hosts they came with.
            for addr in pg.get_hostaddrs() {
                c.hostaddr(*addr);
            }
        }
    }
    for port in ports.unwrap_or(pg.get_ports()) {
        c.port(*port);
    }
    if let Some(timeout) = pg.get_connect_timeout() {
        c.connect_timeout(*timeout);
    }
    if let Some(timeout) = pg.get_tcp_user_timeout() {
        c.tcp_user_timeout(*timeout);
    }
    c
}

/// The setting names used in errors.
pub(crate) struct Names {
    host: &'static str,
    user: &'static str,
    dbname: &'static str,
    pool_timeout: &'static str,
    pool_size: &'static str,
    lock_timeout: &'static str,
    idle_in_transaction_session_timeout: &'static str,
}

impl Names {
    pub(crate) const BUILDER: Names = Names {
        host: "host",
        user: "user",
        dbname: "dbname",
        pool_timeout: "pool_timeout",
        pool_size: "pool_size",
        lock_timeout: "lock_timeout",
        idle_in_transaction_session_timeout: "idle_in_transaction_session_timeout",
    };
    pub(crate) const CONNECTION_STRING: Names = Names {
        host: "connection string (host)",
        user: "connection string (user)",
        dbname: "connection string (dbname)",
        ..Names::BUILDER
    };
    /// `from_env` checks each variable as it reads it, naming it as found (with its
    /// prefix); these only name what is checked once more at the end.
    pub(crate) const ENV: Names = Names {
        host: "POSTGRES_HOST",
        user: "POSTGRES_USER",
        dbname: "POSTGRES_DBNAME",
        pool_timeout: "POSTGRES_CONNECT_TIMEOUT",
        pool_size: "POSTGRES_POOL_SIZE",
        lock_timeout: "POSTGRES_LOCK_TIMEOUT",
        idle_in_transaction_session_timeout: "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
    };
}

/// A schema name PostgreSQL accepts as a quoted identifier.
pub(crate) fn valid_schema(var: &str, schema: &str) -> Result<String, ConfigError> {
    if schema.is_empty() {
        return Err(ConfigError::new(var, "the schema name is empty"));
    }
    if schema.len() > 63 {
        return Err(ConfigError::new(
            var,
            format!("`{schema}` is longer than PostgreSQL's 63-byte limit for names"),
        ));
    }
    if schema.contains('\0') {
        return Err(ConfigError::new(
            var,
            "the schema name contains a NUL character",
        ));
    }
    Ok(schema.to_owned())
}
