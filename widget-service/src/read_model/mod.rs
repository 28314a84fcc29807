//! `GET /tenants/{tenant}/endpoints`: a read model of the endpoints of each tenant, kept by a
//! projection on the store the service runs on.
//!
//! - SQLite: a table `endpoints_by_tenant` in the same database file ([`sqlite`]), written by a
//!   `SqliteProjection` in the transaction that moves its tracking position.
//! - PostgreSQL: the same table in the store's schema ([`postgres`]), by a
//!   `PostgresProjection`.
//! - Memory: a map in the process ([`memory`]), kept by a runner of the same engine; like the
//!   memory store itself it starts empty with every run.
//!
//! Each is eventually consistent: a save shows up once the projection has handled it
//! (`/readyz` reports how far behind it is).

pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::time::Duration;

use eventsourcing::{
    postgres::PostgresStore, sqlite::SqliteStore, AnyStore, Error, EventStore, PayloadCodec,
    Position, ProjectionOptions, RunnerHandle, StoredEvent, Uuid,
};

use crate::widget::WidgetRegistryEndpointEvent;

/// The projection's name: its tracking position is recorded under it.
pub const PROJECTION: &str = "endpoints_by_tenant";

/// The event types the read model handles.
fn event_types() -> Option<Vec<String>> {
    Some(vec!["Registered".into(), "NameUpdated".into()])
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantEndpoint {
    /// The endpoint's id.
    pub id: Uuid,
    /// Its URL.
    pub url: String,
    /// Its current name.
    pub name: String,
}

/// What one event does to the read model: every read model decodes through this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// An endpoint registered (or its registration handled again): its row, under its tenant.
    Upsert { tenant: String, row: TenantEndpoint },
    /// An endpoint renamed.
    Rename { id: Uuid, name: String },
}

impl Change {
    /// Decodes `event` with the application's codec (compressed or encrypted payloads
    /// included).
    pub(crate) fn of(event: &StoredEvent, codec: &PayloadCodec) -> Result<Change, Error> {
        let id = event.stream_id;
        Ok(
            match event.decode::<WidgetRegistryEndpointEvent, _>(codec)? {
                WidgetRegistryEndpointEvent::Registered {
                    url,
                    name,
                    tenant_id,
                } => Change::Upsert {
                    tenant: tenant_id,
                    row: TenantEndpoint { id, url, name },
                },
                WidgetRegistryEndpointEvent::NameUpdated { name } => Change::Rename { id, name },
            },
        )
    }
}

/// A page of one tenant's endpoints: those after the id `after`, by id, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) after: Option<Uuid>,
    pub(crate) limit: usize,
}

impl Page<'_> {
    /// The limit as an SQL integer.
    fn sql_limit(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

/// Where the read model is kept, and how to query it.
#[derive(Debug)]
pub(crate) enum ReadModel {
    Sqlite(SqliteStore),
    Postgres(postgres::Reader),
    Memory(memory::Table),
}

impl ReadModel {
    /// Starts the projection on `store` and waits until its table exists (its setup ran), so
    /// that the first query finds it.
    pub(crate) async fn start(
        store: &AnyStore,
        codec: &PayloadCodec,
    ) -> Result<(ReadModel, RunnerHandle), Error> {
        // A service's projection outlives any outage of its database: transient failures are
        // retried for ever (every 5 s at most once the backoff has grown), and `/readyz` says
        // it is stalled meanwhile. Only a failure that is not transient (an event the handler
        // cannot take) ends it, and that needs an operator.
        let options = ProjectionOptions {
            attempts: u32::MAX,
            ..ProjectionOptions::default()
        };
        let (model, runner) = match store {
            AnyStore::Sqlite(s) => (
                ReadModel::Sqlite(s.clone()),
                eventsourcing::sqlite::spawn_projection(
                    s.clone(),
                    sqlite::ByTenant(codec.clone()),
                    options,
                ),
            ),
            AnyStore::Postgres(s) => (
                ReadModel::Postgres(postgres::Reader::new(s.clone())),
                eventsourcing::postgres::spawn_projection(
                    s.clone(),
                    postgres::ByTenant::new(s, codec.clone()),
                    options,
                ),
            ),
            other => {
                let table = memory::Table::default();
                let runner = memory::spawn(other.clone(), table.clone(), codec.clone(), options);
                (ReadModel::Memory(table), runner)
            }
        };
        // The setup runs first thing in the runner; a fresh database takes a moment.
        let mut wait = Duration::from_millis(2);
        loop {
            let probe = Page {
                tenant: "",
                after: None,
                limit: 1,
            };
            match model.list(probe).await {
                Ok(_) => return Ok((model, runner)),
                Err(e) if runner.is_finished() => {
                    return Err(runner.join().await.err().unwrap_or(e));
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// A page of one tenant's endpoints.
    pub(crate) async fn list(&self, page: Page<'_>) -> Result<Vec<TenantEndpoint>, Error> {
        match self {
            ReadModel::Sqlite(store) => sqlite::list(store, page).await,
            ReadModel::Postgres(reader) => reader.list(page).await,
            ReadModel::Memory(table) => Ok(table.list(page)),
        }
    }

    /// How many events of the log the projection has not passed yet.
    pub(crate) async fn lag(&self, store: &AnyStore) -> Result<u64, Error> {
        match self {
            ReadModel::Sqlite(s) => s.projection_lag(PROJECTION).await,
            ReadModel::Postgres(reader) => reader.store().projection_lag(PROJECTION).await,
            ReadModel::Memory(table) => {
                let after = table.position().unwrap_or(Position::START);
                let ahead = store.read_log(after, 10_000).await?;
                Ok(ahead.len() as u64)
            }
        }
    }
}

/// Whether every migration of this code has been applied to the store (the memory store has
/// none).
pub(crate) async fn check_schema(store: &AnyStore) -> Result<(), Error> {
    match store {
        AnyStore::Sqlite(s) => s.check_schema().await,
        AnyStore::Postgres(s) => s.check_schema().await,
        _ => Ok(()),
    }
}

/// The PostgreSQL store's schema, quoted as an identifier.
fn quoted_schema(store: &PostgresStore) -> String {
    format!("\"{}\"", store.config().schema().replace('"', "\"\""))
}
