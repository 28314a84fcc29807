//! Tenants on SQLite: a database file per tenant, in one directory, named by a pattern
//! (`SQLITE_DBNAME=/var/lib/widgets/tenant_{id}.sqlite`), opened, created, migrated and listed
//! for core's [`Tenants`](eventsourcing_core::Tenants) registry.

use std::{
    future::Future,
    path::{Path, PathBuf},
};

use eventsourcing_core::{
    ConfigError, Error, MigrationReport, TenantError, TenantId, TenantPattern, TenantStores,
};

use crate::{config::SqliteConfig, store::SqliteStore};

/// The tenants of one directory: a file each, the other settings shared.
///
/// A tenant's store holds one writer and `connections - 1` reader connections (at least one:
/// [`min_connections`](TenantStores::min_connections) is 2), each with its thread. With
/// `create_table` on (`CREATE_TABLE=y`) a tenant's file is created on first use and migrated;
/// with it off, a missing file is [`TenantError::NotFound`] and nothing is created.
#[derive(Debug, Clone)]
pub struct SqliteTenants {
    base: SqliteConfig,
    dir: PathBuf,
    pattern: TenantPattern,
}

impl SqliteTenants {
    /// The tenants of `config`'s database name, a path whose file name is the pattern
    /// (`/var/lib/widgets/tenant_{id}.sqlite`; a bare `tenant_{id}.sqlite` is in the current
    /// directory).
    pub fn new(config: SqliteConfig) -> Result<Self, ConfigError> {
        let path = Path::new(config.dbname());
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        let pattern = TenantPattern::parse("SQLITE_DBNAME", file)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir
            .to_string_lossy()
            .contains(eventsourcing_core::TENANT_PLACEHOLDER)
        {
            return Err(ConfigError::new(
                "SQLITE_DBNAME",
                "`{id}` may only appear in the file name, not in the directory",
            ));
        }
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Ok(SqliteTenants {
            base: config,
            dir,
            pattern,
        })
    }

    /// The directory holding the tenants' files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `tenant`.
    pub fn path_of(&self, tenant: &TenantId) -> Result<PathBuf, TenantError> {
        Ok(self.dir.join(self.pattern.name(tenant)?))
    }

    fn tenant_config(
        &self,
        tenant: &TenantId,
        connections: u32,
        create: bool,
    ) -> Result<SqliteConfig, Error> {
        let path = self.path_of(tenant)?;
        let readers = connections.saturating_sub(1).max(1) as usize;
        Ok(self
            .base
            .to_builder()
            .dbname(path.to_string_lossy())
            .readers(readers)
            .create_table(create)
            .build())
    }

    /// Creates the tenants' directory if it is missing.
    fn create_dir(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::store(format!("cannot create {}: {e}", self.dir.display())))
    }
}

/// Closes a store on a thread that may block (dropping the last clone waits for its threads).
async fn close(store: SqliteStore) {
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
}

impl TenantStores for SqliteTenants {
    type Store = SqliteStore;

    async fn open(&self, tenant: &TenantId, connections: u32) -> Result<SqliteStore, Error> {
        let create = self.base.create_table();
        let config = self.tenant_config(tenant, connections, create)?;
        let path = PathBuf::from(config.dbname());
        if !create && !path.exists() {
            return Err(TenantError::NotFound {
                tenant: tenant.to_string(),
                name: format!("file {}", path.display()),
            }
            .into());
        }
        if create {
            self.create_dir()?;
        }
        SqliteStore::open(config).await
    }

    fn connections(&self, store: &SqliteStore) -> u32 {
        1 + store.config().readers() as u32
    }

    fn min_connections(&self) -> u32 {
        2
    }

    fn close(&self, store: SqliteStore) -> impl Future<Output = ()> + Send {
        close(store)
    }

    async fn create(&self, tenant: &TenantId) -> Result<MigrationReport, Error> {
        let config = self.tenant_config(tenant, 2, false)?;
        self.create_dir()?;
        let store = SqliteStore::open(config).await?;
        let report = store.migrate().await;
        close(store).await;
        report
    }

    async fn list(&self) -> Result<Vec<TenantId>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::store(format!(
                    "cannot list {}: {e}",
                    self.dir.display()
                )))
            }
        };
        let names = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok());
        Ok(self.pattern.tenants_among(names))
    }
}
