//! The service's own settings, beside the library's (which `application_from_env` reads).

use std::{net::SocketAddr, time::Duration};

use eventsourcing::{ConfigError, Env};

/// Where to listen when neither `--listen` nor `WIDGETS_LISTEN` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// The service's settings. The store's are the library's own (`PERSISTENCE_MODULE`,
/// `SQLITE_DBNAME`, `POSTGRES_*`, `POOL_*`, `IS_SNAPSHOTTING_ENABLED`, ...), each first as
/// `WIDGETS_<NAME>`.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `WIDGETS_LISTEN` (or `--listen`) | `127.0.0.1:8000` | the address to listen on (port 0: any free port) |
/// | `WIDGETS_BODY_LIMIT` | `16384` | the largest request body, in bytes (413 above) |
/// | `WIDGETS_RENAME_ATTEMPTS` | `64` | attempts of a rename without `If-Match` that meets concurrent saves |
/// | `WIDGETS_STALL_AFTER` | `30` | seconds a projection may lag without moving before `/readyz` calls it stalled |
/// | `WIDGETS_SHUTDOWN_TIMEOUT` | `30` | seconds in-flight requests get to finish after SIGTERM or ctrl-c |
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// Attempts of a rename without `If-Match` (one load, command and save each).
    pub rename_attempts: u32,
    /// How long a lagging projection may stand still before readiness fails.
    pub stall_after: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads the table above from `env` (the service's variables carry their `WIDGETS_` prefix
    /// in their names: read them from an `Env` without an application name).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let listen = match env.text(&["WIDGETS_LISTEN"])? {
            Some((var, value)) => parse_listen(&var, &value)?,
            None => parse_listen("WIDGETS_LISTEN", DEFAULT_LISTEN)?,
        };
        Ok(Config {
            listen,
            body_limit: env
                .integer(&["WIDGETS_BODY_LIMIT"], 1..=64 * 1024 * 1024)?
                .unwrap_or(16 * 1024),
            rename_attempts: env
                .integer(&["WIDGETS_RENAME_ATTEMPTS"], 1..=10_000)?
                .unwrap_or(64),
            stall_after: env
                .seconds(&["WIDGETS_STALL_AFTER"])?
                .unwrap_or(Duration::from_secs(30)),
            shutdown_timeout: env
                .seconds(&["WIDGETS_SHUTDOWN_TIMEOUT"])?
                .unwrap_or(Duration::from_secs(30)),
        })
    }

    /// Applies the command line (`--listen ADDR` or `--listen=ADDR`) over the environment's
    /// settings. Returns `Ok(None)` for `--help`.
    pub fn with_args(
        mut self,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Option<Self>, ConfigError> {
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Ok(None);
            }
            let value = if let Some(value) = arg.strip_prefix("--listen=") {
                value.to_owned()
            } else if arg == "--listen" {
                args.next()
                    .ok_or_else(|| ConfigError::new("--listen", "needs an address"))?
            } else {
                return Err(ConfigError::new(
                    arg,
                    "unknown argument (see --help)".to_owned(),
                ));
            };
            self.listen = parse_listen("--listen", &value)?;
        }
        Ok(Some(self))
    }
}

fn parse_listen(var: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(var, value, "an address and port, e.g. 127.0.0.1:8000"))
}

/// The `--help` text.
pub const USAGE: &str = "\
widget-service: the seed's widget registry over HTTP

Usage: widget-service [--listen ADDR]

  --listen ADDR   the address to listen on (default 127.0.0.1:8000, or WIDGETS_LISTEN;
                  port 0 picks a free port). The bound address is printed on stdout.

The store is configured like the library: PERSISTENCE_MODULE (eventsourcing.sqlite by
default, eventsourcing.postgres, eventsourcing.popo), SQLITE_DBNAME (default
eventsourcing.db), POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD,
POSTGRES_DBNAME, POSTGRES_SCHEMA, POOL_SIZE, ..., IS_SNAPSHOTTING_ENABLED, SNAPSHOT_INTERVAL,
each first as WIDGETS_<NAME>. Service settings: WIDGETS_BODY_LIMIT, WIDGETS_RENAME_ATTEMPTS,
WIDGETS_STALL_AFTER, WIDGETS_SHUTDOWN_TIMEOUT. Logs: RUST_LOG (default info) on stderr.
Stops on SIGTERM or ctrl-c after finishing the requests in flight.
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_then_environment_then_arguments() {
        let none = Env::from_map::<&str, &str>([]);
        let config = Config::from_env(&none).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.body_limit, 16 * 1024);

        let env = Env::from_map([("WIDGETS_LISTEN", "127.0.0.1:9000")]);
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.listen.port(), 9000);
        let config = config
            .with_args(["--listen".to_owned(), "127.0.0.1:0".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let env = Env::from_map([("WIDGETS_LISTEN", "localhost")]);
        let err = Config::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("WIDGETS_LISTEN"), "{err}");
        let env = Env::from_map([("WIDGETS_BODY_LIMIT", "0")]);
        let err = Config::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("WIDGETS_BODY_LIMIT"), "{err}");
        let err = Config::from_env(&Env::from_map::<&str, &str>([]))
            .unwrap()
            .with_args(["--port".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--port"), "{err}");
    }
}
