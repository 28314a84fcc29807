//! Where the servers are, beyond one host: several hosts for the primary (libpq's multi-host
//! settings: a port per host, and `target_session_attrs`, which host of the list a connection
//! keeps) and the read replicas (`POSTGRES_REPLICA_HOSTS`, `POSTGRES_REPLICA_PORTS`,
//! `POSTGRES_READ_YOUR_WRITES_TIMEOUT`; held in `replica_config.rs`, routed in `replica.rs`):
//! accessors, builder methods and the variables. With `POSTGRES_HOST=a,b` and
//! `POSTGRES_TARGET_SESSION_ATTRS=read-write`, every new connection tries `a` then `b` and
//! keeps the first that accepts writes: after a standby is promoted, the pool's new
//! connections reach the new primary.

use std::time::Duration;

use eventsourcing_core::{ConfigError, Env};
use tokio_postgres::config::TargetSessionAttrs;

use crate::{
    config::{rebuild, PostgresConfig, PostgresConfigBuilder},
    replica_config::ReplicaSettings,
};

impl PostgresConfig {
    /// Which of the hosts a connection keeps (`target_session_attrs`; default any).
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.pg.get_target_session_attrs()
    }

    /// The ports, one per host, or one for all of them (5432 if none was given).
    pub fn ports(&self) -> &[u16] {
        self.pg.get_ports()
    }
}

impl PostgresConfigBuilder {
    /// The ports: one for every host, or one per host in the order of
    /// [`host`](Self::host)'s list. Replaces any port given before.
    pub fn ports(mut self, ports: &[u16]) -> Self {
        self.config.pg = rebuild(&self.config.pg, None, Some(ports));
        self
    }

    /// Which host of the list a connection keeps, as libpq's `target_session_attrs`:
    /// [`Any`](TargetSessionAttrs::Any) (the first that answers, the default),
    /// [`ReadWrite`](TargetSessionAttrs::ReadWrite) (the first that accepts writes: the
    /// primary, also after a failover) or [`ReadOnly`](TargetSessionAttrs::ReadOnly).
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.config.pg.target_session_attrs(attrs);
        self
    }
}

/// `POSTGRES_PORT` (one per host of `hosts`, or one for all) and
/// `POSTGRES_TARGET_SESSION_ATTRS`, for `env.rs`. A connection string gives its own.
pub(crate) fn from_env(
    env: &Env,
    config: &mut PostgresConfig,
    port_vars: &[&str],
) -> Result<(), ConfigError> {
    if config.pg.get_ports().is_empty() {
        if let Some((name, ports)) = env.text(port_vars)? {
            let hosts = config.pg.get_hosts().len().max(1);
            let ports = port_list(&name, &ports, hosts)?;
            // One port stays one: tokio-postgres uses it for every host.
            let ports = if ports.iter().all(|p| *p == ports[0]) {
                &ports[..1]
            } else {
                &ports[..]
            };
            for port in ports {
                config.pg.port(*port);
            }
        }
    }
    if let Some((name, attrs)) = env.text(vars::TARGET_SESSION_ATTRS)? {
        config
            .pg
            .target_session_attrs(session_attrs(&name, &attrs)?);
    }
    Ok(())
}

/// libpq's names of the modes tokio-postgres has.
fn session_attrs(name: &str, value: &str) -> Result<TargetSessionAttrs, ConfigError> {
    match value.trim() {
        "any" => Ok(TargetSessionAttrs::Any),
        "read-write" => Ok(TargetSessionAttrs::ReadWrite),
        "read-only" => Ok(TargetSessionAttrs::ReadOnly),
        other => Err(ConfigError::invalid(
            name,
            other,
            "a target_session_attrs this driver supports: any, read-write or read-only \
             (libpq's primary, standby and prefer-standby are not)",
        )),
    }
}

impl PostgresConfig {
    /// The standbys (host, port) that loads and log reads go to; empty: all go to the primary.
    /// See [Read replicas](crate#read-replicas-and-failover).
    pub fn replicas(&self) -> &[(String, u16)] {
        &self.replicas.hosts
    }

    /// How long a load after a save through the same store waits for a standby to have
    /// replayed that save before reading from the primary instead.
    pub fn read_your_writes_timeout(&self) -> Duration {
        self.replicas.read_your_writes_timeout
    }

    /// The settings of a pool on standby `index`: these, with its host and port, any
    /// `target_session_attrs` (a standby is read-only), no migrations and no replicas.
    pub(crate) fn replica_config(&self, index: usize) -> Option<PostgresConfig> {
        let (host, port) = self.replicas.hosts.get(index)?;
        let mut config = self.clone();
        config.pg = rebuild(&self.pg, Some(&[host.as_str()]), Some(&[*port]));
        config
            .pg
            .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::Any);
        config.create_table = false;
        config.replicas = ReplicaSettings::default();
        Some(config)
    }
}

impl PostgresConfigBuilder {
    /// Adds a standby that loads and log reads may go to (saves always go to the primary).
    /// See [Read replicas](crate#read-replicas-and-failover).
    pub fn replica(mut self, host: impl Into<String>, port: u16) -> Self {
        self.config.replicas.hosts.push((host.into(), port));
        self
    }

    /// How long a load after a save waits for a standby to replay it before reading from the
    /// primary (default 1 s; zero: read from the primary at once after a save).
    pub fn read_your_writes_timeout(mut self, timeout: Duration) -> Self {
        self.config.replicas.read_your_writes_timeout = timeout;
        self
    }
}

/// The variables, each with its aliases in precedence order.
mod vars {
    pub(super) const TARGET_SESSION_ATTRS: &[&str] = &["POSTGRES_TARGET_SESSION_ATTRS"];
    pub(super) const REPLICA_HOSTS: &[&str] = &["POSTGRES_REPLICA_HOSTS"];
    pub(super) const REPLICA_PORTS: &[&str] = &["POSTGRES_REPLICA_PORTS"];
    pub(super) const READ_YOUR_WRITES_TIMEOUT: &[&str] = &["POSTGRES_READ_YOUR_WRITES_TIMEOUT"];
}

/// Reads the replica settings from `env` into `config` (whose primary port is known by now).
pub(crate) fn replicas_from_env(env: &Env, config: &mut PostgresConfig) -> Result<(), ConfigError> {
    let hosts = match env.text(vars::REPLICA_HOSTS)? {
        Some((name, hosts)) => list(&name, &hosts)?,
        None => Vec::new(),
    };
    let ports = match env.text(vars::REPLICA_PORTS)? {
        Some((name, ports)) if hosts.is_empty() => {
            return Err(ConfigError::new(
                name,
                format!("replica ports `{ports}` are given, but no POSTGRES_REPLICA_HOSTS"),
            ))
        }
        Some((name, ports)) => port_list(&name, &ports, hosts.len())?,
        // The primary's port for every standby.
        None => vec![config.port(); hosts.len()],
    };
    config.replicas.hosts = hosts.into_iter().zip(ports).collect();
    if let Some(timeout) = env.seconds(vars::READ_YOUR_WRITES_TIMEOUT)? {
        config.replicas.read_your_writes_timeout = timeout;
    }
    Ok(())
}

/// A comma-separated list of names, none empty.
pub(crate) fn list(name: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = value.split(',').map(|h| h.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            name,
            "an empty host name in the comma-separated list",
        ));
    }
    Ok(items)
}

/// A comma-separated list of ports: one per host, or one for all of them.
pub(crate) fn port_list(name: &str, value: &str, hosts: usize) -> Result<Vec<u16>, ConfigError> {
    let ports = value
        .split(',')
        .map(|p| match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(ConfigError::invalid(name, p.trim(), "a port (1 to 65535)")),
        })
        .collect::<Result<Vec<u16>, ConfigError>>()?;
    match ports.len() {
        1 => Ok(vec![ports[0]; hosts]),
        n if n == hosts => Ok(ports),
        n => Err(ConfigError::new(
            name,
            format!("{n} ports for {hosts} hosts: give one port, or one per host"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ports_are_one_for_all_or_one_per_host() {
        assert_eq!(port_list("P", "5433", 3).unwrap(), vec![5433; 3]);
        assert_eq!(port_list("P", "1, 2", 2).unwrap(), vec![1, 2]);
        for bad in ["1,2", "0", "x", "70000", "1,,2"] {
            let err = port_list("P", bad, 3).unwrap_err();
            assert_eq!(err.var, "P", "{bad}");
        }
        assert!(list("H", "a,,b").is_err());
        assert_eq!(list("H", " a , b").unwrap(), vec!["a", "b"]);
        assert!(session_attrs("T", "primary").is_err());
        assert_eq!(
            session_attrs("T", "read-write").unwrap(),
            TargetSessionAttrs::ReadWrite
        );
    }
}
