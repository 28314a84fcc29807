//! Reading a [`PostgresConfig`] from the environment, under the names the Python
//! `eventsourcing` library and the seed's `.env` files use (`POSTGRES_HOST`, `POOL_SIZE`, ...),
//! each first with the application's prefix (`WIDGETS_POSTGRES_HOST`).

use eventsourcing_core::{ConfigError, Env};

use crate::{
    config::{valid_schema, Names, PostgresConfig, MAX_CONNECTIONS, MAX_SESSION_TIMEOUT},
    conn_str::parse_conninfo,
    tls::{RootCerts, SslMode},
};

impl PostgresConfig {
    /// Reads the settings from the environment, the way the Python `eventsourcing` library and
    /// the seed's `.env` name them (see the table in the crate documentation). With
    /// `Env::from_process().with_app_name("widgets")`, `WIDGETS_POSTGRES_HOST` wins over
    /// `POSTGRES_HOST`, and so on for every variable.
    ///
    /// `DATABASE_URL`, when set, gives the connection settings it contains; the `POSTGRES_*`
    /// variables supply whatever it leaves out (libpq's rule: the connection string wins over
    /// the environment).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let (mut config, url_sslmode, url_sslrootcert) = match env.lookup(&[vars::DATABASE_URL]) {
            Some((name, url)) => {
                let given = parse_conninfo(&url, &name)?;
                (given.config, given.gave_sslmode, given.gave_sslrootcert)
            }
            None => (PostgresConfig::default(), false, false),
        };

        if config.pg.get_hosts().is_empty() {
            let (name, hosts) = required(env, vars::HOST, "DATABASE_URL")?;
            // The builder's rule: several hosts are comma-separated, tried in order.
            let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
            if hosts.iter().any(|h| h.is_empty()) {
                return Err(ConfigError::new(
                    name,
                    "an empty host name in the comma-separated list",
                ));
            }
            for host in hosts {
                config.pg.host(host);
            }
        }
        crate::hosts::from_env(env, &mut config, vars::PORT)?;
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
        // What the URL says wins: a leftover POSTGRES_SSLMODE=prefer must never weaken
        // `?sslmode=verify-full`.
        if let Some(mode) = ssl_mode(env)? {
            if !url_sslmode {
                config.ssl_mode = mode;
            } else if mode != config.ssl_mode {
                tracing::warn!(
                    url = ?config.ssl_mode,
                    ignored = ?mode,
                    "DATABASE_URL gives sslmode; POSTGRES_SSLMODE is ignored"
                );
            }
        }
        if let Some((_, path)) = env.text(vars::SSLROOTCERT)? {
            if !url_sslrootcert {
                config.root_certs = Some(RootCerts::from_setting(path.trim()));
            }
        }
        if let Some((name, schema)) = env.lookup(vars::SCHEMA) {
            config.schema = valid_schema(&name, schema.trim())?;
        }
        if let Some(size) = env.integer(vars::POOL_SIZE, 0..=MAX_CONNECTIONS)? {
            config.pool_size = size;
        }
        if let Some(overflow) = env.integer(vars::MAX_OVERFLOW, 0..=MAX_CONNECTIONS)? {
            config.max_overflow = overflow;
        }
        if config.pool_size + config.max_overflow > MAX_CONNECTIONS {
            let (name, _) = env
                .lookup(vars::MAX_OVERFLOW)
                .or_else(|| env.lookup(vars::POOL_SIZE))
                .unwrap_or_default();
            return Err(ConfigError::new(
                name,
                format!(
                    "pool size {} + overflow {} is more than PostgreSQL's limit of \
                     {MAX_CONNECTIONS} connections",
                    config.pool_size, config.max_overflow
                ),
            ));
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
        if let Some(max_waiting) = env.integer(vars::MAX_WAITING, 0..=u32::MAX)? {
            config.max_waiting = Some(max_waiting);
        }
        if let Some(timeout) = env.seconds_up_to(vars::LOCK_TIMEOUT, MAX_SESSION_TIMEOUT)? {
            config.lock_timeout = timeout;
        }
        if let Some(timeout) = env.seconds_up_to(
            vars::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            MAX_SESSION_TIMEOUT,
        )? {
            config.idle_in_transaction_session_timeout = timeout;
        }
        if let Some(create) = env.flag(vars::CREATE_TABLE)? {
            config.create_table = create;
        }
        crate::hosts::replicas_from_env(env, &mut config)?;
        if config.pool_size.saturating_add(config.max_overflow) == 0 {
            let (name, _) = env.lookup(vars::POOL_SIZE).unwrap_or_default();
            return Err(ConfigError::new(
                name,
                "the pool needs at least one connection (POSTGRES_POOL_SIZE + POSTGRES_MAX_OVERFLOW > 0)",
            ));
        }
        // Each variable was checked as it was read; this catches what only their combination
        // (or the URL) can get wrong.
        config.validate(&Names::ENV)
    }
}

/// The environment variables, each with its aliases in precedence order.
mod vars {
    pub(super) const DATABASE_URL: &str = "DATABASE_URL";
    pub(super) const HOST: &[&str] = &["POSTGRES_HOST"];
    pub(super) const PORT: &[&str] = &["POSTGRES_PORT"];
    pub(super) const USER: &[&str] = &["POSTGRES_USER"];
    pub(super) const PASSWORD: &[&str] = &["POSTGRES_PASSWORD"];
    pub(super) const PASSWORD_FILE: &[&str] = &["POSTGRES_PASSWORD_FILE"];
    pub(super) const DBNAME: &[&str] = &["POSTGRES_DBNAME", "POSTGRES_DB"];
    pub(super) const SCHEMA: &[&str] = &["POSTGRES_SCHEMA"];
    pub(super) const SSLMODE: &[&str] = &["POSTGRES_SSLMODE"];
    pub(super) const SSLROOTCERT: &[&str] = &["POSTGRES_SSLROOTCERT"];
    pub(super) const POOL_SIZE: &[&str] = &["POSTGRES_POOL_SIZE", "POOL_SIZE"];
    pub(super) const MAX_OVERFLOW: &[&str] = &["POSTGRES_MAX_OVERFLOW", "POOL_MAX_OVERFLOW"];
    pub(super) const POOL_TIMEOUT: &[&str] = &["POSTGRES_CONNECT_TIMEOUT", "POOL_TIMEOUT"];
    pub(super) const RECYCLE: &[&str] = &["POSTGRES_CONN_MAX_AGE", "POOL_RECYCLE"];
    pub(super) const PRE_PING: &[&str] = &["POSTGRES_PRE_PING", "POOL_PRE_PING"];
    pub(super) const MAX_WAITING: &[&str] = &["POSTGRES_MAX_WAITING"];
    pub(super) const LOCK_TIMEOUT: &[&str] = &["POSTGRES_LOCK_TIMEOUT"];
    pub(super) const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: &[&str] =
        &["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"];
    pub(super) const CREATE_TABLE: &[&str] = &["CREATE_TABLE"];
}

/// A value that must be given, with no NUL character in it.
fn required(env: &Env, keys: &[&str], alternative: &str) -> Result<(String, String), ConfigError> {
    env.text(keys)?.ok_or_else(|| {
        let looked = env.candidates(keys);
        ConfigError::new(
            keys.first().copied().unwrap_or_default(),
            format!(
                "not set (looked for {}, and {alternative} does not give it)",
                looked.join(", ")
            ),
        )
    })
}

/// `POSTGRES_SSLMODE`. Its own parse error repeats the value; this one shows it once, cut.
fn ssl_mode(env: &Env) -> Result<Option<SslMode>, ConfigError> {
    match env.lookup(vars::SSLMODE) {
        None => Ok(None),
        Some((name, value)) => value.parse().map(Some).map_err(|_| {
            ConfigError::invalid(
                name,
                &value,
                "an sslmode (use disable, prefer, require, verify-ca or verify-full)",
            )
        }),
    }
}

/// `POSTGRES_PASSWORD` or the contents of `POSTGRES_PASSWORD_FILE` (Docker's convention). Both
/// set at the same precedence level is an error; the more specific one (a shard's, then the
/// application's, then the plain one) wins. Errors name the variable, never the value.
fn password_from_env(env: &Env) -> Result<Option<String>, ConfigError> {
    let password = env.text(vars::PASSWORD)?;
    let file = env.text(vars::PASSWORD_FILE)?;
    let use_file = match (&password, &file) {
        (Some((p, _)), Some((f, _))) => {
            match env
                .precedence(p, vars::PASSWORD)
                .cmp(&env.precedence(f, vars::PASSWORD_FILE))
            {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => {
                    return Err(ConfigError::new(
                        p.clone(),
                        format!("both {p} and {f} are set; set only one"),
                    ))
                }
            }
        }
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
        if secret.contains('\0') {
            return Err(ConfigError::new(
                name,
                format!("`{path}` holds a NUL character"),
            ));
        }
        return Ok(Some(secret.to_owned()));
    }
    Ok(password.map(|(_, p)| p))
}
