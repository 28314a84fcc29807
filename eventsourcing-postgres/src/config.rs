//! Typed settings: builder, connection string and environment.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use eventsourcing_core::{ConfigError, Env};

/// How the connection is encrypted and how the server's certificate is checked, as libpq's
/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt if the server offers it, without checking its certificate (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt; do not check the certificate, unless a root certificate is given, in
    /// which case behave like [`VerifyCa`](SslMode::VerifyCa) (as libpq does).
    Require,
    /// Always encrypt; the certificate must chain to a trusted root. The host name is not
    /// checked.
    VerifyCa,
    /// Always encrypt; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` value that is not one of the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an sslmode (use disable, prefer, require, verify-ca or verify-full)")]
pub struct UnknownSslMode(String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify_ca" => Ok(SslMode::VerifyCa),
            "verify-full" | "verify_full" => Ok(SslMode::VerifyFull),
            other => Err(UnknownSslMode(other.to_owned())),
        }
    }
}

/// Where the trusted root certificates come from for `verify-ca` / `verify-full`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// The Mozilla roots bundled by `webpki-roots` (libpq's `sslrootcert=system`).
    System,
    /// Exactly the certificates of this PEM file.
    File(PathBuf),
}

/// Settings of a [`PostgresStore`](crate::PostgresStore): where the server is, how to reach it,
/// the pool, the session timeouts and the schema.
///
/// Build one with [`PostgresConfig::builder`], parse a connection string with
/// [`str::parse`] (`key=value` pairs or a `postgres://` URL, as libpq and tokio-postgres accept),
/// or read the environment with [`PostgresConfig::from_env`]. The crate documentation has the
/// table of every setting, its environment variables, its default and what it does.
///
/// `Debug` never shows the password.
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

    /// Reads the settings from the environment, the way the Python `eventsourcing` library and
    /// the seed's `.env` name them (see the table in the crate documentation). With
    /// `Env::from_process().with_app_name("widgets")`, `WIDGETS_POSTGRES_HOST` wins over
    /// `POSTGRES_HOST`, and so on for every variable.
    ///
    /// `DATABASE_URL`, when set, gives the connection settings it contains; the `POSTGRES_*`
    /// variables supply whatever it leaves out (libpq's rule: the connection string wins over
    /// the environment).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut config = match env.lookup(&[vars::DATABASE_URL]) {
            Some((name, url)) => parse_conninfo(&url, &name)?,
            None => PostgresConfig::default(),
        };

        if config.pg.get_hosts().is_empty() {
            let (name, host) = required(env, vars::HOST, "DATABASE_URL")?;
            check_not_blank(&name, &host)?;
            config.pg.host(host.trim());
        }
        if config.pg.get_ports().is_empty() {
            if let Some(port) = env.parse::<u16>(vars::PORT)? {
                config.pg.port(port);
            }
        }
        if config.pg.get_user().is_none() {
            let (_, user) = required(env, vars::USER, "DATABASE_URL")?;
            config.pg.user(user.trim());
        }
        if config.pg.get_dbname().is_none() {
            let (_, dbname) = required(env, vars::DBNAME, "DATABASE_URL")?;
            config.pg.dbname(dbname.trim());
        }
        if config.pg.get_password().is_none() {
            if let Some(password) = password_from_env(env)? {
                config.pg.password(password);
            }
        }
        if let Some(mode) = env.parse::<SslMode>(vars::SSLMODE)? {
            config.ssl_mode = mode;
        }
        if let Some((_, path)) = env.lookup(vars::SSLROOTCERT) {
            config.root_certs = Some(root_certs(path.trim()));
        }
        if let Some((name, schema)) = env.lookup(vars::SCHEMA) {
            config.schema = valid_schema(&name, schema.trim())?;
        }
        if let Some(size) = env.parse::<u32>(vars::POOL_SIZE)? {
            config.pool_size = size;
        }
        if let Some(overflow) = env.parse::<u32>(vars::MAX_OVERFLOW)? {
            config.max_overflow = overflow;
        }
        if let Some(timeout) = env.seconds(vars::POOL_TIMEOUT)? {
            if timeout.is_zero() {
                let (name, _) = env.lookup(vars::POOL_TIMEOUT).unwrap_or_default();
                return Err(ConfigError::new(name, "must be more than 0 seconds"));
            }
            config.pool_timeout = timeout;
            config.pg.connect_timeout(timeout);
        }
        if let Some(recycle) = env.seconds(vars::RECYCLE)? {
            config.recycle = (!recycle.is_zero()).then_some(recycle);
        }
        if let Some(pre_ping) = env.flag(vars::PRE_PING)? {
            config.pre_ping = pre_ping;
        }
        if let Some(max_waiting) = env.parse::<u32>(vars::MAX_WAITING)? {
            config.max_waiting = Some(max_waiting);
        }
        if let Some(timeout) = env.seconds(vars::LOCK_TIMEOUT)? {
            config.lock_timeout = timeout;
        }
        if let Some(timeout) = env.seconds(vars::IDLE_IN_TRANSACTION_SESSION_TIMEOUT)? {
            config.idle_in_transaction_session_timeout = timeout;
        }
        if let Some(create) = env.flag(vars::CREATE_TABLE)? {
            config.create_table = create;
        }
        if config.pool_size.saturating_add(config.max_overflow) == 0 {
            let (name, _) = env.lookup(vars::POOL_SIZE).unwrap_or_default();
            return Err(ConfigError::new(
                name,
                "the pool needs at least one connection (POSTGRES_POOL_SIZE + POSTGRES_MAX_OVERFLOW > 0)",
            ));
        }
        Ok(config)
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

    fn validate(self, names: &Names) -> Result<Self, ConfigError> {
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
        Ok(self)
    }
}

impl FromStr for PostgresConfig {
    type Err = ConfigError;

    /// Parses `key=value` pairs (`host=localhost user=app dbname=widgets sslmode=verify-full`)
    /// or a URL (`postgresql://app:secret@localhost:5432/widgets?sslmode=require`). Besides the
    /// keys tokio-postgres knows, `sslmode` accepts `verify-ca` and `verify-full`, and
    /// `sslrootcert` names a PEM file of trusted roots. Errors never show the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_conninfo(s, "connection string")?.validate(&Names::CONNECTION_STRING)
    }
}

/// Builds a [`PostgresConfig`]; every setting not given keeps its default.
#[derive(Debug, Clone)]
pub struct PostgresConfigBuilder {
    config: PostgresConfig,
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

    /// TLS mode (default [`SslMode::Prefer`]).
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.config.ssl_mode = mode;
        self
    }

    /// A PEM file of trusted root certificates for `verify-ca` / `verify-full`; without one, the
    /// Mozilla roots of `webpki-roots` are trusted.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.root_certs = Some(RootCerts::File(path.into()));
        self
    }

    /// Connections kept open (bb8 `min_idle`, default 5).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.config.pool_size = size;
        self
    }

    /// Connections allowed beyond the pool size (default 10); bb8 `max_size` = size + overflow.
    pub fn max_overflow(mut self, overflow: u32) -> Self {
        self.config.max_overflow = overflow;
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

    /// Check each connection with an empty query before handing it out (bb8
    /// `test_on_check_out`, default off).
    pub fn pre_ping(mut self, pre_ping: bool) -> Self {
        self.config.pre_ping = pre_ping;
        self
    }

    /// Fail at once, instead of waiting, when this many callers already wait for a connection
    /// (default: no limit).
    pub fn max_waiting(mut self, max_waiting: Option<u32>) -> Self {
        self.config.max_waiting = max_waiting;
        self
    }

    /// The session's `lock_timeout` (default zero: wait forever).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.lock_timeout = timeout;
        self
    }

    /// The session's `idle_in_transaction_session_timeout` (default 5 s; zero: never).
    pub fn idle_in_transaction_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_in_transaction_session_timeout = timeout;
        self
    }

    /// Whether [`PostgresStore::connect`](crate::PostgresStore::connect) applies the migrations
    /// (default true). With false nothing issues DDL at run time.
    pub fn create_table(mut self, create: bool) -> Self {
        self.config.create_table = create;
        self
    }

    /// Checks the settings: `host`, `user` and `dbname` are required, the pool needs at least
    /// one connection and a non-zero timeout, and the schema name must be valid.
    pub fn build(self) -> Result<PostgresConfig, ConfigError> {
        let mut config = self.config;
        config.schema = valid_schema("schema", &config.schema)?;
        config.validate(&Names::BUILDER)
    }
}

/// A copy of `pg` with other hosts and/or ports: tokio-postgres' setters only append.
fn rebuild(
    pg: &tokio_postgres::Config,
    hosts: Option<&[&str]>,
    ports: Option<&[u16]>,
) -> tokio_postgres::Config {
    use tokio_postgres::config::Host;
    let mut c = tokio_postgres::Config::new();
    if let Some(user) = pg.get_user() {
        c.user(user);
    }
    if let Some(password) = pg.get_password() {
        c.password(password);
    }
    if let Some(dbname) = pg.get_dbname() {
        c.dbname(dbname);
    }
    if let Some(options) = pg.get_options() {
        c.options(options);
    }
    if let Some(name) = pg.get_application_name() {
        c.application_name(name);
    }
    c.ssl_mode(pg.get_ssl_mode());
    c.ssl_negotiation(pg.get_ssl_negotiation());
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
    c.keepalives(pg.get_keepalives());
    c.keepalives_idle(pg.get_keepalives_idle());
    if let Some(interval) = pg.get_keepalives_interval() {
        c.keepalives_interval(interval);
    }
    if let Some(retries) = pg.get_keepalives_retries() {
        c.keepalives_retries(retries);
    }
    c.target_session_attrs(pg.get_target_session_attrs());
    c.channel_binding(pg.get_channel_binding());
    c.load_balance_hosts(pg.get_load_balance_hosts());
    c
}

/// The setting names used in errors.
struct Names {
    host: &'static str,
    user: &'static str,
    dbname: &'static str,
    pool_timeout: &'static str,
    pool_size: &'static str,
}

impl Names {
    const BUILDER: Names = Names {
        host: "host",
        user: "user",
        dbname: "dbname",
        pool_timeout: "pool_timeout",
        pool_size: "pool_size",
    };
    const CONNECTION_STRING: Names = Names {
        host: "connection string (host)",
        user: "connection string (user)",
        dbname: "connection string (dbname)",
        pool_timeout: "pool_timeout",
        pool_size: "pool_size",
    };
}

/// The environment variables, each with its aliases in precedence order.
pub(crate) mod vars {
    pub(crate) const DATABASE_URL: &str = "DATABASE_URL";
    pub(crate) const HOST: &[&str] = &["POSTGRES_HOST"];
    pub(crate) const PORT: &[&str] = &["POSTGRES_PORT"];
    pub(crate) const USER: &[&str] = &["POSTGRES_USER"];
    pub(crate) const PASSWORD: &[&str] = &["POSTGRES_PASSWORD"];
    pub(crate) const PASSWORD_FILE: &[&str] = &["POSTGRES_PASSWORD_FILE"];
    pub(crate) const DBNAME: &[&str] = &["POSTGRES_DBNAME", "POSTGRES_DB"];
    pub(crate) const SCHEMA: &[&str] = &["POSTGRES_SCHEMA"];
    pub(crate) const SSLMODE: &[&str] = &["POSTGRES_SSLMODE"];
    pub(crate) const SSLROOTCERT: &[&str] = &["POSTGRES_SSLROOTCERT"];
    pub(crate) const POOL_SIZE: &[&str] = &["POSTGRES_POOL_SIZE", "POOL_SIZE"];
    pub(crate) const MAX_OVERFLOW: &[&str] = &["POSTGRES_MAX_OVERFLOW", "POOL_MAX_OVERFLOW"];
    pub(crate) const POOL_TIMEOUT: &[&str] = &["POSTGRES_CONNECT_TIMEOUT", "POOL_TIMEOUT"];
    pub(crate) const RECYCLE: &[&str] = &["POSTGRES_CONN_MAX_AGE", "POOL_RECYCLE"];
    pub(crate) const PRE_PING: &[&str] = &["POSTGRES_PRE_PING", "POOL_PRE_PING"];
    pub(crate) const MAX_WAITING: &[&str] = &["POSTGRES_MAX_WAITING"];
    pub(crate) const LOCK_TIMEOUT: &[&str] = &["POSTGRES_LOCK_TIMEOUT"];
    pub(crate) const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &[&str] =
        &["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"];
    pub(crate) const CREATE_TABLE: &[&str] = &["CREATE_TABLE"];
}

fn required(env: &Env, keys: &[&str], alternative: &str) -> Result<(String, String), ConfigError> {
    env.lookup(keys).ok_or_else(|| {
        let looked: Vec<String> = env
            .app_prefix()
            .into_iter()
            .flat_map(|p| keys.iter().map(move |k| format!("{p}_{k}")))
            .chain(keys.iter().map(|k| (*k).to_owned()))
            .collect();
        ConfigError::new(
            keys.first().copied().unwrap_or_default(),
            format!(
                "not set (looked for {}, and {alternative} does not give it)",
                looked.join(", ")
            ),
        )
    })
}

fn check_not_blank(name: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(name, "is empty"));
    }
    Ok(())
}

/// `POSTGRES_PASSWORD` or the contents of `POSTGRES_PASSWORD_FILE` (Docker's convention). Both
/// set at the same precedence level is an error; an application-prefixed one wins over a plain
/// one. Errors name the variable, never the value.
fn password_from_env(env: &Env) -> Result<Option<String>, ConfigError> {
    let password = env.lookup(vars::PASSWORD);
    let file = env.lookup(vars::PASSWORD_FILE);
    let prefixed = |name: &str| {
        env.app_prefix().is_some_and(|p| {
            name.len() > p.len() && name.starts_with(p) && name[p.len()..].starts_with('_')
        })
    };
    let use_file = match (&password, &file) {
        (Some((p, _)), Some((f, _))) => match (prefixed(p), prefixed(f)) {
            (true, false) => false,
            (false, true) => true,
            _ => {
                return Err(ConfigError::new(
                    p.clone(),
                    format!("both {p} and {f} are set; set only one"),
                ))
            }
        },
        (_, Some(_)) => true,
        _ => false,
    };
    if use_file {
        let Some((name, path)) = file else {
            return Ok(None);
        };
        let path = path.trim();
        let contents = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(name.clone(), format!("cannot read `{path}`: {e}")))?;
        // Files written by editors and `echo` end with a newline that is not part of the
        // password.
        let secret = contents.trim_end_matches(['\r', '\n']);
        if secret.is_empty() {
            return Err(ConfigError::new(name, format!("`{path}` is empty")));
        }
        return Ok(Some(secret.to_owned()));
    }
    Ok(password.map(|(_, p)| p))
}

fn root_certs(value: &str) -> RootCerts {
    if value.eq_ignore_ascii_case("system") {
        RootCerts::System
    } else {
        RootCerts::File(PathBuf::from(value))
    }
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

/// Parses a connection string: our own keys (`sslmode` with the verify modes, `sslrootcert`)
/// are taken out, the rest goes to tokio-postgres. `var` names the source in errors; the
/// string itself never appears in them (it may hold a password).
pub(crate) fn parse_conninfo(s: &str, var: &str) -> Result<PostgresConfig, ConfigError> {
    let s = s.trim();
    let split = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        split_url(s, var)?
    } else {
        split_key_values(s, var)?
    };
    let mut pg = tokio_postgres::Config::from_str(&split.rest)
        .map_err(|e| ConfigError::new(var, sanitize_parse_error(&e.to_string())))?;
    let mut config = PostgresConfig::default();
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_POOL_TIMEOUT);
    }
    config.pg = pg;
    if let Some(mode) = split.sslmode {
        config.ssl_mode = mode
            .parse()
            .map_err(|e: UnknownSslMode| ConfigError::new(var, format!("sslmode: {e}")))?;
    }
    config.root_certs = split.sslrootcert.as_deref().map(root_certs);
    Ok(config)
}

/// tokio-postgres' "unexpected character ... got `x`" could show one character of a password.
fn sanitize_parse_error(message: &str) -> String {
    let message = match message.find(" but got") {
        Some(at) => &message[..at],
        None => message,
    };
    format!("malformed connection string: {message}")
}

struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_url(url: &str, var: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| {
                    ConfigError::new(var, "malformed connection string: invalid percent-encoding")
                })
        };
        match decode(key)?.as_str() {
            "sslmode" => split.sslmode = Some(decode(value)?),
            "sslrootcert" => split.sslrootcert = Some(decode(value)?),
            _ => kept.push(pair),
        }
    }
    split.rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(split)
}

/// libpq's `key = value` syntax: values may be single-quoted, and `\` escapes the next
/// character.
fn split_key_values(s: &str, var: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let malformed =
        |what: &str| ConfigError::new(var, format!("malformed connection string: {what}"));
    let mut kept: Vec<&str> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(malformed(&format!("expected `=` after `{key}`")));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(malformed("unterminated quoted value")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        i += 1;
                        let c = next_char(s, i);
                        value.push(c);
                        i += c.len_utf8();
                    }
                    Some(_) => {
                        let c = next_char(s, i);
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                let c = next_char(s, i);
                value.push(c);
                i += c.len_utf8();
            }
        }
        match key {
            "sslmode" => split.sslmode = Some(value),
            "sslrootcert" => split.sslrootcert = Some(value),
            _ => kept.push(&s[start..i]),
        }
    }
    split.rest = kept.join(" ");
    Ok(split)
}

fn next_char(s: &str, at: usize) -> char {
    s[at..].chars().next().unwrap_or('\0')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_values_keep_quoted_values_and_take_out_our_keys() {
        let config: PostgresConfig =
            r"host=db.example user=app password='its \'secret\'' dbname = widgets sslmode=verify-full sslrootcert='/etc/my ca.pem'"
                .parse()
                .unwrap();
        assert_eq!(config.host(), "db.example");
        assert_eq!(config.user(), Some("app"));
        assert_eq!(config.dbname(), Some("widgets"));
        assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            config.ssl_root_cert(),
            Some(std::path::Path::new("/etc/my ca.pem"))
        );
        assert_eq!(config.pg.get_password(), Some(&b"its 'secret'"[..]));
    }

    #[test]
    fn urls_take_out_our_keys_and_keep_the_rest() {
        let config: PostgresConfig =
            "postgresql://app:p%40ss@localhost:6543/widgets?sslmode=verify-ca&application_name=w&sslrootcert=%2Ftmp%2Fca.pem"
                .parse()
                .unwrap();
        assert_eq!(config.port(), 6543);
        assert_eq!(config.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            config.ssl_root_cert(),
            Some(std::path::Path::new("/tmp/ca.pem"))
        );
        assert_eq!(config.pg.get_application_name(), Some("w"));
        assert_eq!(config.pg.get_password(), Some(&b"p@ss"[..]));
    }

    #[test]
    fn malformed_strings_never_echo_the_password() {
        for s in [
            "postgresql://app:hunter2secret@localhost:notaport/widgets",
            "host=x password=hunter2secret port=nope",
            "host=x password='hunter2secret",
        ] {
            let err = s.parse::<PostgresConfig>().unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn missing_user_is_named() {
        let err = "host=localhost dbname=x"
            .parse::<PostgresConfig>()
            .unwrap_err();
        assert!(err.var.contains("user"), "{err}");
    }
}
