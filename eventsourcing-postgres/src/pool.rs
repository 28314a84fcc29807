//! The bb8 connection manager: a tokio-postgres client plus its prepared statements.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use eventsourcing_core::{ConfigError, Error};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    config::PostgresConfig,
    error::{query_error, ConnectError},
    sql::{Sql, Stmt},
};

/// Opens connections with the store's settings: TLS as configured, then one round trip setting
/// the session's timeouts.
#[derive(Clone)]
pub(crate) struct Connector {
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    session: String,
    target: String,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres' own Debug of its config redacts the password.
        f.debug_struct("Connector")
            .field("pg", &self.pg)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(config: &PostgresConfig) -> Result<Self, ConfigError> {
        let (tls, ssl_mode) = crate::tls::connector(config)?;
        let mut pg = config.pg.clone();
        pg.ssl_mode(ssl_mode);
        Ok(Connector {
            pg,
            tls,
            session: session_sql(config),
            target: config.target(),
        })
    }

    /// A new client (its connection task spawned on the current runtime), session set up.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectError> {
        let wrap = |source| ConnectError {
            target: self.target.clone(),
            source,
        };
        let (client, connection) = self.pg.connect(self.tls.clone()).await.map_err(wrap)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed with an error");
            }
        });
        client.batch_execute(&self.session).await.map_err(wrap)?;
        Ok(client)
    }
}

/// `SET` the session timeouts on connect rather than through the startup `options` parameter,
/// which PgBouncer rejects by default.
fn session_sql(config: &PostgresConfig) -> String {
    format!(
        "SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        millis(config.lock_timeout),
        millis(config.idle_in_transaction_session_timeout)
    )
}

/// Whole milliseconds, rounded up so that a tiny non-zero timeout does not become "none".
fn millis(d: Duration) -> u128 {
    let ms = d.as_millis();
    if Duration::from_millis(ms as u64) < d {
        ms + 1
    } else {
        ms
    }
}

/// A pooled connection: the client and the statements it has prepared so far.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    statements: [Option<Statement>; Stmt::COUNT],
}

impl PgConn {
    pub(crate) fn from_client(client: Client) -> Self {
        PgConn {
            client,
            statements: Default::default(),
        }
    }

    /// The prepared statement, preparing it on first use on this connection.
    pub(crate) async fn statement(
        &mut self,
        stmt: Stmt,
        sql: &Sql,
        schema: &str,
    ) -> Result<Statement, Error> {
        if let Some(prepared) = &self.statements[stmt as usize] {
            return Ok(prepared.clone());
        }
        let prepared = self
            .client
            .prepare(sql.get(stmt))
            .await
            .map_err(|e| query_error(e, schema))?;
        self.statements[stmt as usize] = Some(prepared.clone());
        Ok(prepared)
    }
}

/// The bb8 manager.
pub(crate) struct Manager {
    pub(crate) connector: Connector,
    /// The last connection failure, so that a pool timeout can say why.
    pub(crate) last_error: Arc<Mutex<Option<String>>>,
}

impl Manager {
    pub(crate) fn record_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgConn, ConnectError> {
        match self.connector.connect().await {
            Ok(client) => Ok(PgConn::from_client(client)),
            Err(e) => {
                self.record_error(e.to_string());
                Err(e)
            }
        }
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        conn.client
            .simple_query("")
            .await
            .map(|_| ())
            .map_err(|source| ConnectError {
                target: self.connector.target.clone(),
                source,
            })
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Logs connection failures that happen in the background (bb8 replenishing the pool).
#[derive(Debug, Clone)]
pub(crate) struct LogErrors {
    pub(crate) last_error: Arc<Mutex<Option<String>>>,
}

impl bb8::ErrorSink<ConnectError> for LogErrors {
    fn sink(&self, error: ConnectError) {
        tracing::warn!(error = %error, "opening a pooled PostgreSQL connection failed");
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ConnectError>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_secs(5)), 5000);
        assert_eq!(millis(Duration::from_secs_f64(2.5)), 2500);
    }
}
