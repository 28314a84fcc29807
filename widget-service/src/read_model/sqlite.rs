//! The read model in the SQLite file of the store.

use eventsourcing::{
    sqlite::{
        rusqlite::{self, Transaction},
        SqliteProjection, SqliteStore,
    },
    BoxError, Error, PayloadCodec, StoredEvent, Uuid,
};

use super::{event_types, Change, Page, TenantEndpoint, PROJECTION};

/// The projection: one row per endpoint, by tenant. It decodes with the application's codec
/// (compressed or encrypted payloads included).
pub(crate) struct ByTenant(pub(crate) PayloadCodec);

impl SqliteProjection for ByTenant {
    fn name(&self) -> &str {
        PROJECTION
    }

    fn event_types(&self) -> Option<Vec<String>> {
        event_types()
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS endpoints_by_tenant (
                 endpoint_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, url TEXT NOT NULL,
                 name TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS endpoints_by_tenant_tenant
                 ON endpoints_by_tenant (tenant_id, endpoint_id);",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        match Change::of(event, &self.0)? {
            Change::Upsert { tenant, row } => tx.execute(
                "INSERT OR REPLACE INTO endpoints_by_tenant (endpoint_id, tenant_id, url, name) \
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![row.id.to_string(), tenant, row.url, row.name],
            )?,
            Change::Rename { id, name } => tx.execute(
                "UPDATE endpoints_by_tenant SET name = ?2 WHERE endpoint_id = ?1",
                rusqlite::params![id.to_string(), name],
            )?,
        };
        Ok(())
    }
}

/// A page of one tenant's endpoints, on a reader connection.
pub(crate) async fn list(
    store: &SqliteStore,
    page: Page<'_>,
) -> Result<Vec<TenantEndpoint>, Error> {
    let tenant = page.tenant.to_owned();
    let after = page.after.map(|id| id.to_string()).unwrap_or_default();
    let limit = page.sql_limit();
    let rows = store
        .query(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT endpoint_id, url, name FROM endpoints_by_tenant \
                 WHERE tenant_id = ?1 AND endpoint_id > ?2 ORDER BY endpoint_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(rusqlite::params![tenant, after, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    rows.into_iter()
        .map(|(id, url, name)| {
            let id = Uuid::parse_str(&id).map_err(|e| {
                Error::store(format!("endpoints_by_tenant holds the id {id:?}: {e}"))
            })?;
            Ok(TenantEndpoint { id, url, name })
        })
        .collect()
}
