//! Tenants from the environment: the layout (`TENANT_LAYOUT`), the name pattern (in the store's
//! own name variable, as in the seed's `POSTGRES_DBNAME=tenant_{id}`) and the bounds.

use std::{sync::Arc, time::Duration};

use eventsourcing_core::{
    Application, ConfigError, Env, Error, MigrationReport, Snapshotting, TenantId, TenantLimits,
    TenantStores, Tenants, DEFAULT_TENANT_MAX_CONNECTIONS, DEFAULT_TENANT_TIMEOUT,
};

use crate::any_store::AnyStore;

/// The variable that chooses the tenant layout: `database`, `schema` or `file`.
pub const TENANT_LAYOUT: &str = "TENANT_LAYOUT";

/// The stores of tenants on any store crate, chosen at run time ([`tenants_from_env`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyTenantStores {
    /// A database or a schema per tenant.
    #[cfg(feature = "postgres")]
    Postgres(Box<eventsourcing_postgres::PostgresTenants>),
    /// A SQLite file per tenant.
    #[cfg(feature = "sqlite")]
    Sqlite(eventsourcing_sqlite::SqliteTenants),
}

impl AnyTenantStores {
    /// The tenant stores the environment describes:
    ///
    /// | variable | values | meaning |
    /// |---|---|---|
    /// | `TENANT_LAYOUT` | `database`, `schema`, `file` | a PostgreSQL database per tenant, a PostgreSQL schema per tenant, a SQLite file per tenant |
    /// | `POSTGRES_DBNAME` | `tenant_{id}` (database layout) | the tenant databases' names; every other `POSTGRES_*` setting is shared |
    /// | `POSTGRES_SCHEMA` | `tenant_{id}` (schema layout) | the tenant schemas' names, in the database `POSTGRES_DBNAME` |
    /// | `SQLITE_DBNAME` | `/var/lib/app/tenant_{id}.sqlite` (file layout) | the tenant files: a directory and a file name pattern |
    /// | `TENANT_ADMIN_DBNAME` | default `postgres` | database layout: where tenant databases are created and listed from |
    /// | `CREATE_TABLE` | `y` (default) / `n` | `y`: a tenant's database, schema or file is created and migrated on first use; `n`: nothing is created at run time (a missing tenant is an error) |
    ///
    /// The pattern holds `{id}` once; around it only `a`-`z`, `0`-`9`, `_`, `-`, `.`.
    pub fn from_env(env: &Env) -> Result<Self, Error> {
        let Some((var, value)) = env.lookup(&[TENANT_LAYOUT]) else {
            return Err(ConfigError::new(
                TENANT_LAYOUT,
                "not set: say `database`, `schema` or `file`",
            )
            .into());
        };
        match value.trim() {
            #[cfg(feature = "postgres")]
            "database" | "schema" => {
                use eventsourcing_postgres::{PostgresConfig, PostgresTenants};
                let config = PostgresConfig::from_env(env)?;
                let tenants = if value.trim() == "database" {
                    let mut t = PostgresTenants::database(config)?;
                    if let Some(admin) = env.string(&["TENANT_ADMIN_DBNAME"]) {
                        t = t.admin_dbname(admin);
                    }
                    t
                } else {
                    PostgresTenants::schema(config)?
                };
                Ok(AnyTenantStores::Postgres(Box::new(tenants)))
            }
            #[cfg(feature = "sqlite")]
            "file" => {
                let config = eventsourcing_sqlite::SqliteConfig::from_env(env)?;
                Ok(AnyTenantStores::Sqlite(
                    eventsourcing_sqlite::SqliteTenants::new(config)?,
                ))
            }
            _ => Err(ConfigError::invalid(
                var,
                &value,
                "a compiled-in tenant layout: `database`, `schema` (postgres) or `file` (sqlite)",
            )
            .into()),
        }
    }
}

/// The registry's bounds from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `TENANT_MAX_CONNECTIONS` | 100 | the most connections all open tenants hold together |
/// | `TENANT_MAX_OPEN` | as many as the connections allow (one each on PostgreSQL, two on SQLite) | the most tenants open at once; each gets `TENANT_MAX_CONNECTIONS / TENANT_MAX_OPEN` connections |
/// | `TENANT_TIMEOUT` | 30 s | how long a request waits for a place among the open tenants |
pub fn tenant_limits_from_env(env: &Env) -> Result<TenantLimits, ConfigError> {
    let max_connections = env
        .integer(&["TENANT_MAX_CONNECTIONS"], 1..=262_143u32)?
        .unwrap_or(DEFAULT_TENANT_MAX_CONNECTIONS);
    let max_open = env
        .integer(&["TENANT_MAX_OPEN"], 1..=u32::MAX)?
        .unwrap_or(max_connections);
    let wait: Duration = env
        .seconds(&["TENANT_TIMEOUT"])?
        .unwrap_or(DEFAULT_TENANT_TIMEOUT);
    Ok(TenantLimits {
        max_connections,
        max_open,
        wait,
    })
}

/// The tenant registry the environment describes ([`AnyTenantStores::from_env`],
/// [`tenant_limits_from_env`]); each tenant's application snapshots as
/// `IS_SNAPSHOTTING_ENABLED`, `SNAPSHOT_INTERVAL` and `MAX_SNAPSHOTS` say. Settings are read
/// with the application prefix first, like every other setting.
pub fn tenants_from_env(env: &Env) -> Result<Tenants<AnyTenantStores>, Error> {
    let stores = AnyTenantStores::from_env(env)?;
    let limits = tenant_limits_from_env(env)?;
    let snapshotting = Snapshotting::from_env(env)?;
    Tenants::with_application(
        stores,
        limits,
        Arc::new(move |_, store| Application::new(store).with_snapshotting(snapshotting)),
    )
}

macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "postgres")]
            AnyTenantStores::Postgres($s) => $call,
            #[cfg(feature = "sqlite")]
            AnyTenantStores::Sqlite($s) => $call,
        }
    };
}

impl TenantStores for AnyTenantStores {
    type Store = AnyStore;

    async fn open(&self, tenant: &TenantId, connections: u32) -> Result<AnyStore, Error> {
        match self {
            #[cfg(feature = "postgres")]
            AnyTenantStores::Postgres(s) => {
                Ok(AnyStore::Postgres(s.open(tenant, connections).await?))
            }
            #[cfg(feature = "sqlite")]
            AnyTenantStores::Sqlite(s) => Ok(AnyStore::Sqlite(s.open(tenant, connections).await?)),
        }
    }

    fn connections(&self, store: &AnyStore) -> u32 {
        match (self, store) {
            #[cfg(feature = "postgres")]
            (AnyTenantStores::Postgres(t), AnyStore::Postgres(s)) => t.connections(s),
            #[cfg(feature = "sqlite")]
            (AnyTenantStores::Sqlite(t), AnyStore::Sqlite(s)) => t.connections(s),
            _ => 0,
        }
    }

    fn min_connections(&self) -> u32 {
        each!(self, s => s.min_connections())
    }

    async fn close(&self, store: AnyStore) {
        match (self, store) {
            #[cfg(feature = "postgres")]
            (AnyTenantStores::Postgres(t), AnyStore::Postgres(s)) => t.close(s).await,
            #[cfg(feature = "sqlite")]
            (AnyTenantStores::Sqlite(t), AnyStore::Sqlite(s)) => t.close(s).await,
            (_, other) => drop(other),
        }
    }

    async fn create(&self, tenant: &TenantId) -> Result<MigrationReport, Error> {
        each!(self, s => s.create(tenant).await)
    }

    async fn list(&self) -> Result<Vec<TenantId>, Error> {
        each!(self, s => s.list().await)
    }

    async fn fence(&self, tenant: &TenantId) -> Result<bool, Error> {
        each!(self, s => s.fence(tenant).await)
    }

    async fn unfence(&self, tenant: &TenantId) -> Result<(), Error> {
        each!(self, s => s.unfence(tenant).await)
    }
}
