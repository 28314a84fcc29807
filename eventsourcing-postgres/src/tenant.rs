//! Tenants on PostgreSQL: a database per tenant (the seed's `POSTGRES_DBNAME=tenant_{id}`) or
//! a schema per tenant in one database (`POSTGRES_SCHEMA=tenant_{id}`), opened, created,
//! migrated and listed for core's [`Tenants`](eventsourcing_core::Tenants) registry.

use eventsourcing_core::{
    ConfigError, Error, MigrationReport, TenantError, TenantId, TenantPattern, TenantStores,
};
use tokio_postgres::{error::SqlState, Client};

use crate::{
    config::PostgresConfig, error::pg_error, migrate, pool::Connector, sql::quote_ident,
    store::PostgresStore,
};

/// Where each tenant's tables live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantLayout {
    /// A database per tenant, named by the pattern in `POSTGRES_DBNAME` (`tenant_{id}`); the
    /// tables in `POSTGRES_SCHEMA` of each.
    Database,
    /// One database (`POSTGRES_DBNAME`), a schema per tenant named by the pattern in
    /// `POSTGRES_SCHEMA` (`tenant_{id}`): cheaper at thousands of tenants.
    Schema,
}

/// The default of [`PostgresTenants::admin_dbname`] (`TENANT_ADMIN_DBNAME`): the database the
/// database layout connects to for creating and listing tenant databases.
pub const DEFAULT_TENANT_ADMIN_DBNAME: &str = "postgres";

/// The tenants of one PostgreSQL server: the server settings shared, one name pattern.
///
/// Each tenant's store is opened with [`PostgresStore::connect_pool_only`] (no `LISTEN` or
/// `NOTIFY` connection: it holds exactly its pool) and a pool of at most the connections the
/// registry gives it (`pool_size` 0, overflow = that share), so the registry's bound on
/// connections is exact. With `create_table` on (`CREATE_TABLE=y`), a tenant's database or
/// schema is created on first use and migrated; with it off (the least-privilege set-up),
/// nothing is created at run time and a missing tenant database is
/// [`TenantError::NotFound`].
#[derive(Debug, Clone)]
pub struct PostgresTenants {
    base: PostgresConfig,
    layout: TenantLayout,
    pattern: TenantPattern,
    admin_dbname: String,
}

impl PostgresTenants {
    /// A database per tenant: `config`'s database name is the pattern (`tenant_{id}`).
    pub fn database(config: PostgresConfig) -> Result<Self, ConfigError> {
        let pattern = TenantPattern::parse("POSTGRES_DBNAME", config.dbname().unwrap_or(""))?;
        Ok(PostgresTenants {
            base: config,
            layout: TenantLayout::Database,
            pattern,
            admin_dbname: DEFAULT_TENANT_ADMIN_DBNAME.to_owned(),
        })
    }

    /// A schema per tenant in `config`'s database: its schema is the pattern (`tenant_{id}`).
    pub fn schema(config: PostgresConfig) -> Result<Self, ConfigError> {
        let pattern = TenantPattern::parse("POSTGRES_SCHEMA", config.schema())?;
        Ok(PostgresTenants {
            base: config,
            layout: TenantLayout::Schema,
            pattern,
            admin_dbname: DEFAULT_TENANT_ADMIN_DBNAME.to_owned(),
        })
    }

    /// The database to connect to for creating and listing tenant databases (database layout
    /// only; default `postgres`).
    pub fn admin_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.admin_dbname = dbname.into();
        self
    }

    /// The layout.
    pub fn layout(&self) -> TenantLayout {
        self.layout
    }

    /// The name pattern.
    pub fn pattern(&self) -> &TenantPattern {
        &self.pattern
    }

    /// The settings of `tenant`'s store, with a pool of at most `connections`.
    pub fn tenant_config(
        &self,
        tenant: &TenantId,
        connections: u32,
    ) -> Result<PostgresConfig, Error> {
        let name = self.pattern.name(tenant)?;
        let builder = self.base.to_builder();
        let builder = match self.layout {
            TenantLayout::Database => builder.dbname(name),
            TenantLayout::Schema => builder.schema(name),
        };
        Ok(builder
            .pool_size(0)
            .max_overflow(connections.max(1))
            .build()?)
    }

    /// The database or schema name of `tenant`.
    pub fn name_of(&self, tenant: &TenantId) -> Result<String, TenantError> {
        self.pattern.name(tenant)
    }

    /// A connection to the database the layout administers tenants from: the admin database
    /// (database layout) or the shared one (schema layout).
    async fn admin_client(&self) -> Result<Client, Error> {
        let config = match self.layout {
            TenantLayout::Database => self.base.to_builder().dbname(&self.admin_dbname).build()?,
            TenantLayout::Schema => self.base.clone(),
        };
        connect(&config).await
    }

    /// Creates the database of `tenant` unless it exists (database layout; the schema layout's
    /// schema is created by the first migration).
    async fn ensure_database(&self, name: &str) -> Result<(), Error> {
        let admin = self.admin_client().await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(pg_error)?
            .is_some();
        if exists {
            return Ok(());
        }
        match admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
        {
            Ok(()) => Ok(()),
            // Created meanwhile by another process (or a concurrent CREATE that won the race
            // on the catalog's unique index).
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                Ok(())
            }
            Err(e) => Err(pg_error(e)),
        }
    }

    /// Drops `tenant`'s database (`WITH (FORCE)`: its sessions are ended) or schema (with
    /// everything in it). Irreversible: for tests and for deleting a tenant on purpose.
    pub async fn drop_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let name = self.pattern.name(tenant)?;
        let admin = self.admin_client().await?;
        let sql = match self.layout {
            TenantLayout::Database => {
                format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                )
            }
            TenantLayout::Schema => format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&name)),
        };
        admin.batch_execute(&sql).await.map_err(pg_error)
    }
}

/// The name of the trigger (and its function) that fences a moved tenant's events.
const FENCE: &str = "eventsourcing_moved";

async fn connect(config: &PostgresConfig) -> Result<Client, Error> {
    Connector::new(config)?
        .connect()
        .await
        .map_err(|e| Error::Store(Box::new(e)))
}

/// True if `err` says the database does not exist (SQLSTATE 3D000).
fn is_missing_database(err: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match err {
        Error::Store(e) | Error::Transient(e) => Some(&**e),
        _ => None,
    };
    while let Some(e) = source {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            return pg.code() == Some(&SqlState::INVALID_CATALOG_NAME);
        }
        source = e.source();
    }
    false
}

impl TenantStores for PostgresTenants {
    type Store = PostgresStore;

    async fn open(&self, tenant: &TenantId, connections: u32) -> Result<PostgresStore, Error> {
        let config = self.tenant_config(tenant, connections)?;
        if self.base.create_table() && self.layout == TenantLayout::Database {
            // One connection at a time: this one is closed before the store opens its own.
            self.ensure_database(config.dbname().unwrap_or_default())
                .await?;
        }
        let not_found = |what: String| {
            Error::from(TenantError::NotFound {
                tenant: tenant.to_string(),
                name: what,
            })
        };
        let store = match PostgresStore::connect_pool_only(config.clone()).await {
            Err(e) if is_missing_database(&e) => Err(not_found(format!(
                "database {}",
                config.dbname().unwrap_or_default()
            ))),
            other => other,
        }?;
        if !self.base.create_table() {
            // Nothing is created at run time: a schema without the tables is no tenant.
            if let Err(Error::Schema(reason)) = store.check_schema().await {
                return Err(not_found(format!("schema {}: {reason}", config.schema())));
            }
        }
        Ok(store)
    }

    fn connections(&self, store: &PostgresStore) -> u32 {
        store.pool_state().connections
    }

    async fn create(&self, tenant: &TenantId) -> Result<MigrationReport, Error> {
        let config = self.tenant_config(tenant, 1)?;
        if self.layout == TenantLayout::Database {
            self.ensure_database(config.dbname().unwrap_or_default())
                .await?;
        }
        let mut client = connect(&config).await?;
        migrate::migrate(&mut client, config.schema()).await
    }

    /// A trigger on the tenant's `events` table that fails every statement writing to it
    /// (SQLSTATE `ES001`, "this tenant was moved"). Creating it waits for the transactions
    /// writing to the table to end, so every save acknowledged before is in what a move
    /// exports, and none after it is.
    async fn fence(&self, tenant: &TenantId) -> Result<bool, Error> {
        let config = self.tenant_config(tenant, 1)?;
        let client = connect(&config).await?;
        let schema = quote_ident(config.schema());
        // One simple query: one implicit transaction.
        let sql = format!(
            "CREATE OR REPLACE FUNCTION {schema}.{FENCE}() RETURNS trigger LANGUAGE plpgsql AS \
             $fence$ BEGIN RAISE EXCEPTION 'this tenant was moved to another server: its events \
             are no longer written here (reload the tenant directory)' USING ERRCODE = 'ES001'; \
             END $fence$; \
             DROP TRIGGER IF EXISTS {FENCE} ON {schema}.events; \
             CREATE TRIGGER {FENCE} BEFORE INSERT OR UPDATE OR DELETE ON {schema}.events \
             FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{FENCE}()"
        );
        client.batch_execute(&sql).await.map_err(pg_error)?;
        Ok(true)
    }

    async fn unfence(&self, tenant: &TenantId) -> Result<(), Error> {
        let config = self.tenant_config(tenant, 1)?;
        let client = connect(&config).await?;
        let schema = quote_ident(config.schema());
        let sql = format!(
            "DROP TRIGGER IF EXISTS {FENCE} ON {schema}.events; \
             DROP FUNCTION IF EXISTS {schema}.{FENCE}()"
        );
        client.batch_execute(&sql).await.map_err(pg_error)
    }

    async fn list(&self) -> Result<Vec<TenantId>, Error> {
        let admin = self.admin_client().await?;
        let sql = match self.layout {
            TenantLayout::Database => {
                "SELECT datname::text FROM pg_database WHERE NOT datistemplate"
            }
            TenantLayout::Schema => "SELECT nspname::text FROM pg_namespace",
        };
        let rows = admin.query(sql, &[]).await.map_err(pg_error)?;
        let names = rows.iter().filter_map(|row| row.try_get(0).ok());
        Ok(self.pattern.tenants_among(names))
    }
}
