//! The read-replica settings of a [`PostgresConfig`]: the standbys (host and port each) and
//! the bound on a read-your-writes wait, their builder methods, and reading them from the
//! environment (`POSTGRES_REPLICA_HOSTS`, `POSTGRES_REPLICA_PORTS`,
//! `POSTGRES_READ_YOUR_WRITES_TIMEOUT`). The routing itself is in `replica.rs`.

use std::time::Duration;

use eventsourcing_core::{ConfigError, Env};

use crate::config::{rebuild, PostgresConfig, PostgresConfigBuilder};

/// Default of `POSTGRES_READ_YOUR_WRITES_TIMEOUT`: how long a load after a save waits for a
/// standby to replay that save before it reads from the primary.
pub const DEFAULT_READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(1);

/// The standbys reads may go to, and how long a read waits for one to catch up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaSettings {
    /// Host and port of each standby, in the order given.
    pub(crate) hosts: Vec<(String, u16)>,
    pub(crate) read_your_writes_timeout: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            hosts: Vec::new(),
            read_your_writes_timeout: DEFAULT_READ_YOUR_WRITES_TIMEOUT,
        }
    }
}

impl PostgresConfig {
    /// The standbys (host, port) that loads and log reads go to; empty: all go to the primary.
    /// See [Read replicas](crate#read-replicas).
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
    /// See [Read replicas](crate#read-replicas).
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
pub(crate) mod vars {
    pub(crate) const REPLICA_HOSTS: &[&str] = &["POSTGRES_REPLICA_HOSTS"];
    pub(crate) const REPLICA_PORTS: &[&str] = &["POSTGRES_REPLICA_PORTS"];
    pub(crate) const READ_YOUR_WRITES_TIMEOUT: &[&str] = &["POSTGRES_READ_YOUR_WRITES_TIMEOUT"];
}

/// Reads the replica settings from `env` into `config` (whose primary port is known by now).
pub(crate) fn from_env(env: &Env, config: &mut PostgresConfig) -> Result<(), ConfigError> {
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
    }
}
