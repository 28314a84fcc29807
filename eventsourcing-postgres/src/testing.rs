//! Test fixtures: a store on a fresh schema that is dropped when the guard is dropped, even
//! when the test panics; a role and a tenant registry's tenants dropped the same way; a
//! projection that counts events into a table. Enabled by the `testing` feature; for test
//! suites only.
//!
//! The server comes from `EVENTSOURCING_TEST_POSTGRES_URL` (default
//! `postgresql://root@127.0.0.1:5432/test`). If it cannot be reached the fixture panics with a
//! message saying how to point it at one: a database test never skips silently.
//!
//! ```no_run
//! # async fn example() {
//! let (store, _schema) = eventsourcing_postgres::testing::fresh().await;
//! // ... use `store`; the schema is dropped with `_schema`.
//! # }
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)] // a fixture's failures are test failures

use std::collections::BTreeMap;

use crate::{config::PostgresConfig, store::PostgresStore};

/// The variable naming the test server.
pub const URL_VAR: &str = "EVENTSOURCING_TEST_POSTGRES_URL";

/// The test server when [`URL_VAR`] is not set.
pub const DEFAULT_URL: &str = "postgresql://root@127.0.0.1:5432/test";

/// The test server's connection string.
pub fn url() -> String {
    std::env::var(URL_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// The test server's settings (schema `public`, small pool). Panics if [`URL_VAR`] does not
/// parse.
pub fn server_config() -> PostgresConfig {
    url()
        .parse::<PostgresConfig>()
        .unwrap_or_else(|e| panic!("{URL_VAR} is not a valid PostgreSQL connection string: {e}"))
        .to_builder()
        .pool_size(2)
        .max_overflow(8)
        .build()
        .unwrap_or_else(|e| panic!("{URL_VAR}: {e}"))
}

/// A schema with a random name, dropped (with everything in it) when this guard is dropped.
#[derive(Debug)]
pub struct TestSchema {
    name: String,
    config: PostgresConfig,
}

impl TestSchema {
    /// A fresh schema name on the test server; checks the server is reachable (panics with
    /// instructions if not). The schema itself is created by the first migration.
    pub async fn new() -> Self {
        let name = format!("es_test_{}", uuid::Uuid::new_v4().simple());
        let config = server_config()
            .to_builder()
            .schema(name.clone())
            .build()
            .expect("a generated schema name is valid");
        let schema = TestSchema { name, config };
        if let Err(e) = schema.client().await {
            panic!(
                "cannot reach the PostgreSQL test server: {e}\n\
                 Start PostgreSQL (e.g. `pg_ctlcluster 15 main start`) or point {URL_VAR} at a \
                 server you may create schemas on, e.g. \
                 {URL_VAR}=postgresql://user:password@host:5432/dbname"
            );
        }
        schema
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Settings for this schema (adjust with [`PostgresConfig::to_builder`]).
    pub fn config(&self) -> PostgresConfig {
        self.config.clone()
    }

    /// A store on this schema, migrated. Panics on failure.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("connecting to the test schema `{}`: {e}", self.name))
    }

    /// A plain client on the test server (outside any pool).
    pub async fn client(&self) -> Result<tokio_postgres::Client, eventsourcing_core::Error> {
        let connector = crate::pool::Connector::new(&self.config)?;
        connector
            .connect()
            .await
            .map_err(|e| eventsourcing_core::Error::Store(Box::new(e)))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop may run inside a runtime (even a current-thread one, during a panic), where we
        // cannot block on async work: do it on a thread of its own with its own small runtime.
        let config = self.config.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let connector = crate::pool::Connector::new(&config).map_err(|e| e.to_string())?;
                let client = connector.connect().await.map_err(|e| e.to_string())?;
                // A test that failed with a transaction open may still hold locks until
                // idle_in_transaction_session_timeout ends it; wait for that, not forever.
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '60s'; DROP SCHEMA IF EXISTS {} CASCADE",
                        crate::sql::quote_ident(&name)
                    ))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test schema `{}`: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test schema `{}` panicked", self.name),
        }
    }
}

/// A migrated store on a fresh schema, and the guard that drops the schema.
///
/// ```no_run
/// # async fn example() {
/// let (store, _guard) = eventsourcing_postgres::testing::fresh().await;
/// # }
/// ```
pub async fn fresh() -> (PostgresStore, TestSchema) {
    let schema = TestSchema::new().await;
    let store = schema.store().await;
    (store, schema)
}

/// The `lock_timeout` and `idle_in_transaction_session_timeout` a session of `store` runs
/// with, as the server shows them (`"1500ms"`, `"7s"`). Panics on failure.
pub async fn session_timeouts(store: &PostgresStore) -> (String, String) {
    let client = store
        .dedicated_client()
        .await
        .unwrap_or_else(|e| panic!("a session of the store: {e}"));
    let row = client
        .query_one(
            "SELECT current_setting('lock_timeout'), \
                    current_setting('idle_in_transaction_session_timeout')",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("reading the session's settings: {e}"));
    (row.get(0), row.get(1))
}

impl TestSchema {
    /// Settings for this schema, changed by `adjust`:
    /// `schema.config_with(|b| b.lock_timeout(Duration::from_millis(20)))`. Panics if the
    /// result is not valid.
    pub fn config_with(
        &self,
        adjust: impl FnOnce(
            crate::config::PostgresConfigBuilder,
        ) -> crate::config::PostgresConfigBuilder,
    ) -> PostgresConfig {
        adjust(self.config.to_builder())
            .build()
            .unwrap_or_else(|e| panic!("adjusted settings for `{}`: {e}", self.name))
    }

    /// A store on this schema with the settings changed by `adjust`, migrated. Panics on
    /// failure.
    pub async fn store_with(
        &self,
        adjust: impl FnOnce(
            crate::config::PostgresConfigBuilder,
        ) -> crate::config::PostgresConfigBuilder,
    ) -> PostgresStore {
        PostgresStore::connect(self.config_with(adjust))
            .await
            .unwrap_or_else(|e| panic!("connecting to the test schema `{}`: {e}", self.name))
    }
}

/// The log from the start once it holds at least `n` events. PostgreSQL's log holds back
/// committed events while an older transaction runs anywhere on the server (other tests share
/// it), so this reads again until it does; panics after a minute.
pub async fn log_holding<S: eventsourcing_core::EventStore>(
    store: &S,
    n: usize,
) -> Vec<eventsourcing_core::StoredEvent> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = store
            .read_log(eventsourcing_core::Position::START, 1_000_000)
            .await
            .unwrap_or_else(|e| panic!("reading the log: {e}"));
        if log.len() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the log holds {} events after a minute, not {n}: is a transaction left open on \
             the server?",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session of its own that took a transaction id and keeps its transaction open (a
/// forgotten `BEGIN`) under an `application_name`: it holds back every reader of the log on
/// its server until [`HeldTransaction::commit`].
#[derive(Debug)]
pub struct HeldTransaction {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    pid: i32,
}

impl HeldTransaction {
    /// Opens the session on the server and database of `config` (without TLS, and without
    /// the store's session timeouts, so that the server never ends it) and begins the
    /// transaction. Panics on failure.
    pub async fn begin(config: &PostgresConfig, application_name: &str) -> Self {
        let (client, connection) = config
            .tokio_postgres_config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("a session to hold a transaction open: {e}"));
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "SET application_name = '{}'; BEGIN; SELECT pg_current_xact_id()",
                application_name.replace('\'', "''")
            ))
            .await
            .unwrap_or_else(|e| panic!("beginning the held transaction: {e}"));
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap_or_else(|e| panic!("the held session's pid: {e}"))
            .get(0);
        HeldTransaction {
            client,
            connection,
            pid,
        }
    }

    /// The server process of the session (`pg_stat_activity.pid`).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Commits, closes the session and waits (at most 10 s) until it has closed.
    pub async fn commit(self) {
        self.client
            .batch_execute("COMMIT")
            .await
            .unwrap_or_else(|e| panic!("committing the held transaction: {e}"));
        drop(self.client);
        tokio::time::timeout(std::time::Duration::from_secs(10), self.connection)
            .await
            .unwrap_or_else(|_| panic!("the held session did not close within 10 s"))
            .unwrap_or_else(|e| panic!("the held session's task: {e}"))
            .unwrap_or_else(|e| panic!("the held session closed with an error: {e}"));
    }
}

/// Waits for every task, all of them within `within` (else panics naming `what`), and returns
/// their results in order; panics if a task panicked. For the concurrent writers and readers of
/// a test, so that a hang fails the test instead of holding it.
pub async fn join_all<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
    within: std::time::Duration,
    what: &str,
) -> Vec<T> {
    let all = async {
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.unwrap_or_else(|e| panic!("{what}: {e}")));
        }
        results
    };
    tokio::time::timeout(within, all)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {within:?}"))
}

/// A name for something a test creates on the server (a role, a tenant pattern, an
/// `application_name`): `prefix`, `_` and ten random hexadecimal digits, lower case.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A plain client of `config`'s server (outside any pool).
async fn plain_client(config: &PostgresConfig) -> Result<tokio_postgres::Client, String> {
    let connector = crate::pool::Connector::new(config).map_err(|e| e.to_string())?;
    connector.connect().await.map_err(|e| e.to_string())
}

/// Runs `work` to its end for a guard's `Drop`, which may run inside a runtime (even a
/// current-thread one, during a panic) where blocking on async work is not allowed: on a
/// thread of its own with its own small runtime. A failure is a warning about `what`.
fn run_aside<F>(what: &str, work: F)
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(work)
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not {what}: {e}"),
        Err(_) => eprintln!("warning: {what} panicked"),
    }
}

/// A LOGIN role of the test's own on the test server (which trusts 127.0.0.1 for every role),
/// named `<prefix>_<random>`: dropped with everything it owns and every right granted to it
/// (`DROP OWNED BY`, in the test server's database) when this guard is dropped, also when the
/// test panics. The test login needs `CREATEROLE`.
#[derive(Debug)]
pub struct TestRole {
    name: String,
}

impl TestRole {
    /// Creates the role. Panics if it cannot.
    pub async fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let client = plain_client(&server_config())
            .await
            .unwrap_or_else(|e| panic!("connecting to create the role {name}: {e}"));
        client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap_or_else(|e| panic!("creating the role {name}: {e}"));
        TestRole { name }
    }

    /// The role's name (lower case, no quoting needed).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_aside(&format!("drop the test role {name}"), async move {
            let client = plain_client(&server_config()).await?;
            client
                .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
                .await
                .map_err(|e| e.to_string())
        });
    }
}

/// Drops every tenant of the registry's stores (each database or schema it lists) when dropped,
/// also when the test panics; a tenant that cannot be dropped is a warning.
#[derive(Debug)]
pub struct DropTenants(pub crate::PostgresTenants);

impl Drop for DropTenants {
    fn drop(&mut self) {
        let stores = self.0.clone();
        run_aside("list the tenants to drop", async move {
            use eventsourcing_core::TenantStores;
            for tenant in stores.list().await.map_err(|e| e.to_string())? {
                if let Err(e) = stores.drop_tenant(&tenant).await {
                    eprintln!("warning: could not drop tenant {tenant}: {e}");
                }
            }
            Ok(())
        });
    }
}

/// A projection (named [`CountEvents::NAME`]) that writes the stream and version of every
/// event it handles into `table` (qualify it: `"schema".counted`), which its setup creates.
#[derive(Debug, Clone)]
pub struct CountEvents {
    /// The table, as SQL names it.
    pub table: String,
}

impl CountEvents {
    /// The projection's name.
    pub const NAME: &'static str = "count_events";

    /// How many events of each stream the table holds. Panics on failure.
    pub async fn counted(&self, store: &PostgresStore) -> BTreeMap<uuid::Uuid, u64> {
        let client = store
            .dedicated_client()
            .await
            .unwrap_or_else(|e| panic!("a session to read {}: {e}", self.table));
        let per_stream = format!("SELECT stream_id, count(*) FROM {} GROUP BY 1", self.table);
        let rows = client
            .query(&per_stream, &[])
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.table));
        rows.iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect()
    }
}

impl crate::PostgresProjection for CountEvents {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn setup(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<(), eventsourcing_core::BoxError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (stream_id uuid, version bigint, \
             PRIMARY KEY (stream_id, version))",
            self.table
        );
        tx.batch_execute(&sql).await?;
        Ok(())
    }

    async fn handle(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        event: &eventsourcing_core::StoredEvent,
    ) -> Result<(), eventsourcing_core::BoxError> {
        let sql = format!("INSERT INTO {} VALUES ($1, $2)", self.table);
        tx.execute(&sql, &[&event.stream_id, &(event.version as i64)])
            .await?;
        Ok(())
    }
}
