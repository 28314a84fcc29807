//! The pool: opening connections with the store's settings (the bb8 manager) and handing
//! them out, with `POSTGRES_MAX_WAITING` enforced in front of bb8.

use std::{
    fmt,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use eventsourcing_core::{
    metrics::{InUse, PoolGauges},
    ConfigError, Error,
};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    config::PostgresConfig,
    conn::PgConn,
    error::{query_error, ConnectError, PoolTimeout, TooManyWaiting},
    sql::{Sql, Stmt},
};

/// The `store` label of this crate's metrics.
pub(crate) const KIND: &str = "postgres";
/// Callers waiting for and holding pooled connections, in every store of the process.
static POOL_GAUGES: PoolGauges = PoolGauges::new(KIND, "pooled");

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
        let (tls, ssl_mode) = crate::tls::connector(config.ssl_mode, config.root_certs.as_ref())?;
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

/// The store's connections, and what an operation needs to use one: the statements of the
/// schema and the schema's name for errors.
pub(crate) struct Pool {
    pool: bb8::Pool<Manager>,
    sql: Sql,
    schema: String,
    /// `POSTGRES_MAX_WAITING`: permits for the connections plus the callers allowed to wait.
    waiting: Option<Semaphore>,
    max_waiting: u32,
    pool_timeout: Duration,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Pool {
    /// The pool of `config`, starting with `first`, a connection already open. bb8 opens the
    /// others in the background.
    pub(crate) fn new(config: &PostgresConfig, connector: Connector, first: Client) -> Self {
        let last_error = Arc::new(Mutex::new(None));
        let manager = Manager {
            connector,
            last_error: Arc::clone(&last_error),
        };
        let max_size = config.max_connections();
        let pool = bb8::Pool::builder()
            .max_size(max_size)
            .min_idle(Some(config.pool_size.min(max_size)))
            .connection_timeout(config.pool_timeout)
            .max_lifetime(config.recycle)
            .test_on_check_out(config.pre_ping)
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .error_sink(Box::new(LogErrors {
                last_error: Arc::clone(&last_error),
            }))
            .build_unchecked(manager);
        // Hand the connection we already have to the pool rather than dropping it.
        let _ = pool.add(PgConn::from_client(first));
        let waiting = config
            .max_waiting
            .map(|w| Semaphore::new((max_size as usize).saturating_add(w as usize)));
        Pool {
            pool,
            sql: Sql::new(&config.schema),
            schema: config.schema.clone(),
            waiting,
            max_waiting: config.max_waiting.unwrap_or_default(),
            pool_timeout: config.pool_timeout,
            last_error,
        }
    }

    /// The pool's connections and their use.
    pub(crate) fn state(&self) -> bb8::State {
        self.pool.state()
    }

    /// The schema's statements.
    pub(crate) fn sql(&self) -> &Sql {
        &self.sql
    }

    /// The schema.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// A driver error as the store reports it (a missing table says what to run).
    pub(crate) fn error(&self, err: tokio_postgres::Error) -> Error {
        query_error(err, &self.schema)
    }

    /// A connection, or at once an error if too many callers wait already, or after
    /// `pool_timeout` an error saying why the last connection attempt failed.
    pub(crate) async fn checkout(&self) -> Result<Checkout<'_>, Error> {
        let queued = POOL_GAUGES.queued();
        let permit = match &self.waiting {
            Some(semaphore) => Some(semaphore.try_acquire().map_err(|_| {
                Error::Transient(Box::new(TooManyWaiting {
                    max_waiting: self.max_waiting,
                }))
            })?),
            None => None,
        };
        let conn = self.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => Error::Transient(Box::new(e)),
            bb8::RunError::TimedOut => Error::Transient(Box::new(PoolTimeout {
                waited: self.pool_timeout,
                last_error: self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })),
        })?;
        Ok(Checkout {
            conn,
            _permit: permit,
            _busy: queued.start(),
            pool: self,
        })
    }
}

/// A checked-out connection (and, with `POSTGRES_MAX_WAITING`, its place in the queue).
pub(crate) struct Checkout<'a> {
    conn: bb8::PooledConnection<'a, Manager>,
    _permit: Option<SemaphorePermit<'a>>,
    /// The connection counted in use until it goes back.
    _busy: InUse,
    pool: &'a Pool,
}

impl Checkout<'_> {
    /// The prepared statement, preparing it on first use on this connection.
    pub(crate) async fn statement(&mut self, stmt: Stmt) -> Result<Statement, Error> {
        let pool = self.pool;
        self.conn.prepared(stmt, &pool.sql, &pool.schema).await
    }
}

impl Deref for Checkout<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        &self.conn
    }
}

impl DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        &mut self.conn
    }
}

/// The bb8 manager.
struct Manager {
    connector: Connector,
    /// The last connection failure, so that a pool timeout can say why.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Manager {
    fn record_error(&self, message: String) {
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
        conn.is_broken()
    }
}

/// Logs connection failures that happen in the background (bb8 replenishing the pool).
#[derive(Debug, Clone)]
struct LogErrors {
    last_error: Arc<Mutex<Option<String>>>,
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
