//! Tenants from the environment: the layout (`TENANT_LAYOUT`), the name pattern (in the store's
//! own name variable, as in the seed's `POSTGRES_DBNAME=tenant_{id}`), the shards
//! (`TENANT_SHARDS`, `TENANT_DIRECTORY`) and the bounds.

use std::{sync::Arc, time::Duration};

use eventsourcing_core::{
    Application, AsShards, ConfigError, Env, Error, MigrationReport, Shards, Snapshotting,
    TenantId, TenantLimits, TenantStores, Tenants, DEFAULT_TENANT_MAX_CONNECTIONS,
    DEFAULT_TENANT_TIMEOUT,
};

use crate::any_store::AnyStore;

/// The variable that chooses the tenant layout: `database`, `schema` or `file`.
pub const TENANT_LAYOUT: &str = "TENANT_LAYOUT";

/// The variable naming the shards (servers) tenants are spread over: `eu1,eu2`.
pub const TENANT_SHARDS: &str = "TENANT_SHARDS";

/// The stores of tenants on any store crate, chosen at run time ([`tenants_from_env`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyTenantStores {
    /// A database or a schema per tenant.
    #[cfg(feature = "postgres")]
    Postgres(Box<eventsourcing_postgres::PostgresTenants>),
    /// A database or a schema per tenant, the tenants spread over several servers.
    #[cfg(feature = "postgres")]
    PostgresShards(Box<Shards<eventsourcing_postgres::PostgresTenants>>),
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
    /// | `TENANT_SHARDS` | `eu1,eu2` (database and schema layouts) | the tenants are spread over these servers ("shards"); each shard's settings are the ones above, looked up under the shard's name first (`EU2_POSTGRES_HOST`, then `POSTGRES_HOST`; with an application name `APP`, `APP_EU2_POSTGRES_HOST` then `APP_POSTGRES_HOST`) |
    /// | `TENANT_DIRECTORY` | a file path, needed with `TENANT_SHARDS` | which tenant lives on which shard: `tenant = shard` lines (see [`ShardDirectory`](crate::ShardDirectory)); a tenant not listed lives on the first shard. [`move_tenant`](crate::move_tenant) (`eventsourcing-admin tenants move`) rewrites it |
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
        let layout = value.trim();
        let shards = shard_names(env)?;
        match layout {
            #[cfg(feature = "postgres")]
            "database" | "schema" => match shards {
                None => Ok(AnyTenantStores::Postgres(Box::new(postgres_tenants(
                    env, layout,
                )?))),
                Some(names) => {
                    let directory = shard_directory(env, &names)?;
                    let shards = names
                        .iter()
                        .map(|name| {
                            Ok((name.clone(), postgres_tenants(&env.within(name), layout)?))
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    Ok(AnyTenantStores::PostgresShards(Box::new(Shards::new(
                        shards, directory,
                    )?)))
                }
            },
            #[cfg(feature = "sqlite")]
            "file" => {
                if let Some((var, _)) = env.lookup(&[TENANT_SHARDS]) {
                    return Err(ConfigError::new(
                        var,
                        "shards are for the PostgreSQL layouts (`database`, `schema`): SQLite \
                         tenant files cannot be fenced while one moves",
                    )
                    .into());
                }
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

/// One server's PostgreSQL tenant stores of `layout` (`database` or `schema`).
#[cfg(feature = "postgres")]
fn postgres_tenants(
    env: &Env,
    layout: &str,
) -> Result<eventsourcing_postgres::PostgresTenants, Error> {
    use eventsourcing_postgres::{PostgresConfig, PostgresTenants};
    let config = PostgresConfig::from_env(env)?;
    if layout == "database" {
        let mut tenants = PostgresTenants::database(config)?;
        if let Some(admin) = env.string(&["TENANT_ADMIN_DBNAME"]) {
            tenants = tenants.admin_dbname(admin);
        }
        Ok(tenants)
    } else {
        Ok(PostgresTenants::schema(config)?)
    }
}

/// `TENANT_SHARDS`: the shard names, or `None` when unset. Two names that read the same
/// variables (`eu-2` and `eu_2`) are refused.
fn shard_names(env: &Env) -> Result<Option<Vec<String>>, Error> {
    let Some((var, value)) = env.text(&[TENANT_SHARDS])? else {
        return Ok(None);
    };
    let names: Vec<String> = value.split(',').map(|n| n.trim().to_owned()).collect();
    // The directory checks each name (a-z, 0-9, `_`, `-`); here only that their variables
    // differ (`EU_2_` for both `eu-2` and `eu_2`).
    let spelled = |name: &str| name.replace('-', "_");
    for (i, name) in names.iter().enumerate() {
        if let Some(other) = names[..i]
            .iter()
            .find(|o| *o != name && spelled(o) == spelled(name))
        {
            return Err(ConfigError::new(
                var,
                format!("shards `{other}` and `{name}` would read the same variables"),
            )
            .into());
        }
    }
    Ok(Some(names))
}

/// `TENANT_DIRECTORY` over `names`: required with shards.
fn shard_directory(
    env: &Env,
    names: &[String],
) -> Result<eventsourcing_core::ShardDirectory, Error> {
    let Some((_, path)) = env.text(&[eventsourcing_core::TENANT_DIRECTORY])? else {
        return Err(ConfigError::new(
            eventsourcing_core::TENANT_DIRECTORY,
            "not set: TENANT_SHARDS needs a directory file saying which tenant is on which shard \
             (it may not exist yet: then every tenant is on the first shard)",
        )
        .into());
    };
    eventsourcing_core::ShardDirectory::load(path.trim(), names.to_vec())
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
            #[cfg(feature = "postgres")]
            AnyTenantStores::PostgresShards($s) => $call,
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
            #[cfg(feature = "postgres")]
            AnyTenantStores::PostgresShards(s) => {
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
            #[cfg(feature = "postgres")]
            (AnyTenantStores::PostgresShards(t), AnyStore::Postgres(s)) => t.connections(s),
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
            #[cfg(feature = "postgres")]
            (AnyTenantStores::PostgresShards(t), AnyStore::Postgres(s)) => t.close(s).await,
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

/// Tenants can be moved between the shards of `TENANT_SHARDS` ([`move_tenant`](crate::move_tenant));
/// without shards there is nowhere to move them.
#[cfg(feature = "postgres")]
impl AsShards for AnyTenantStores {
    type Shard = eventsourcing_postgres::PostgresTenants;

    fn as_shards(&self) -> Option<&Shards<Self::Shard>> {
        match self {
            AnyTenantStores::PostgresShards(shards) => Some(shards),
            _ => None,
        }
    }
}
