//! The read model in the PostgreSQL schema of the store.

use std::sync::Arc;

use eventsourcing::{
    postgres::{
        tokio_postgres::{Client, Transaction},
        PostgresProjection, PostgresStore,
    },
    BoxError, Error, PayloadCodec, StoredEvent,
};
use tokio::sync::Mutex;

use super::{event_types, quoted_schema, Change, Page, TenantEndpoint, PROJECTION};

/// The projection: one row per endpoint, by tenant, in the store's schema.
pub(crate) struct ByTenant {
    table: String,
    /// The application's codec (compressed or encrypted payloads included).
    codec: PayloadCodec,
}

impl ByTenant {
    pub(crate) fn new(store: &PostgresStore, codec: PayloadCodec) -> Self {
        ByTenant {
            table: format!("{}.endpoints_by_tenant", quoted_schema(store)),
            codec,
        }
    }
}

impl PostgresProjection for ByTenant {
    fn name(&self) -> &str {
        PROJECTION
    }

    fn event_types(&self) -> Option<Vec<String>> {
        event_types()
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                 endpoint_id uuid PRIMARY KEY, tenant_id text NOT NULL, url text NOT NULL,
                 name text NOT NULL);
             CREATE INDEX IF NOT EXISTS endpoints_by_tenant_tenant
                 ON {t} (tenant_id, endpoint_id);",
            t = self.table
        ))
        .await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        match Change::of(event, &self.codec)? {
            Change::Upsert { tenant, row } => {
                let upsert = format!(
                    "INSERT INTO {} (endpoint_id, tenant_id, url, name) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (endpoint_id) DO UPDATE \
                     SET tenant_id = EXCLUDED.tenant_id, url = EXCLUDED.url, name = EXCLUDED.name",
                    self.table
                );
                tx.execute(&upsert, &[&row.id, &tenant, &row.url, &row.name])
                    .await?
            }
            Change::Rename { id, name } => {
                let rename = format!("UPDATE {} SET name = $2 WHERE endpoint_id = $1", self.table);
                tx.execute(&rename, &[&id, &name]).await?
            }
        };
        Ok(())
    }
}

/// Queries the read model on a connection of its own (outside the store's pool, which the
/// saves use), opened again when it was lost.
#[derive(Debug)]
pub(crate) struct Reader {
    store: PostgresStore,
    table: String,
    client: Mutex<Option<Arc<Client>>>,
}

impl Reader {
    pub(crate) fn new(store: PostgresStore) -> Self {
        let table = format!("{}.endpoints_by_tenant", quoted_schema(&store));
        Reader {
            store,
            table,
            client: Mutex::new(None),
        }
    }

    pub(crate) fn store(&self) -> &PostgresStore {
        &self.store
    }

    async fn client(&self) -> Result<Arc<Client>, Error> {
        let mut held = self.client.lock().await;
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        // A connection that cannot be opened is worth retrying later.
        let client = Arc::new(self.store.dedicated_client().await.map_err(|e| match e {
            Error::Store(source) => Error::Transient(source),
            other => other,
        })?);
        *held = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(crate) async fn list(&self, page: Page<'_>) -> Result<Vec<TenantEndpoint>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT endpoint_id, url, name FROM {} \
                     WHERE tenant_id = $1 AND ($2::uuid IS NULL OR endpoint_id > $2) \
                     ORDER BY endpoint_id LIMIT $3",
                    self.table
                ),
                &[&page.tenant, &page.after, &page.sql_limit()],
            )
            .await
            .map_err(|e| match client.is_closed() {
                true => Error::transient(e),
                false => Error::store(e),
            })?;
        rows.iter()
            .map(|row| {
                Ok(TenantEndpoint {
                    id: row.try_get(0).map_err(Error::store)?,
                    url: row.try_get(1).map_err(Error::store)?,
                    name: row.try_get(2).map_err(Error::store)?,
                })
            })
            .collect()
    }
}
