//! Tenant shards: the tenants of one registry spread over several servers. A [`Shards`] holds
//! one [`TenantStores`] per server (each a PostgreSQL server, say, with the same layout) and a
//! [`ShardDirectory`] saying which tenant lives where; it is itself a [`TenantStores`], so a
//! [`Tenants`](crate::Tenants) registry over it opens each tenant on its own server.
//! [`move_tenant`] moves one tenant to another server through the backup format, pausing only
//! that tenant.
//!
//! This module knows no database, like the registry: the store crates supply the
//! [`TenantStores`] of each server.

mod directory;
mod relocate;

pub use directory::{ShardDirectory, TENANT_DIRECTORY};
pub use relocate::{move_tenant, move_tenant_with_progress, MoveError, TenantMoved};

use std::{fmt, future::Future};

use crate::{error::Error, migrate::MigrationReport, tenant_id::TenantId, tenants::TenantStores};

/// The tenant stores of several servers ("shards"), each tenant on the one its
/// [`ShardDirectory`] names. Every shard's stores are of the same kind.
pub struct Shards<T: TenantStores> {
    shards: Vec<(String, T)>,
    directory: ShardDirectory,
}

impl<T: TenantStores> fmt::Debug for Shards<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.shards.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Shards")
            .field("shards", &names)
            .field("directory", &self.directory)
            .finish()
    }
}

impl<T: TenantStores> Shards<T> {
    /// The named shards, in the directory's order (its first is the default shard). Fails if
    /// the names differ from the directory's.
    pub fn new(shards: Vec<(String, T)>, directory: ShardDirectory) -> Result<Self, Error> {
        let names: Vec<&String> = shards.iter().map(|(n, _)| n).collect();
        let expected: Vec<&String> = directory.shards().iter().collect();
        if names != expected {
            return Err(crate::ConfigError::new(
                "TENANT_SHARDS",
                format!(
                    "the shards given ({}) are not the directory's ({})",
                    shards
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    directory.shards().join(", ")
                ),
            )
            .into());
        }
        Ok(Shards { shards, directory })
    }

    /// Which tenant lives where.
    pub fn directory(&self) -> &ShardDirectory {
        &self.directory
    }

    /// The tenant stores of shard `name`.
    pub fn shard(&self, name: &str) -> Option<&T> {
        self.shards.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The tenant stores of the shard holding `tenant`.
    pub fn of(&self, tenant: &TenantId) -> &T {
        let name = self.directory.shard_of(tenant);
        self.shard(&name).unwrap_or(&self.shards[0].1)
    }

    /// The first shard's stores: every shard's are of the same kind, so any of them can count
    /// and close a store.
    fn any(&self) -> &T {
        &self.shards[0].1
    }
}

/// Tenant stores that may spread their tenants over shards: what [`move_tenant`] moves a
/// tenant within. A store crate's own tenant stores are one server's; [`Shards`] are several;
/// a type choosing between them at run time (the facade's) says which it is.
pub trait AsShards: TenantStores {
    /// The tenant stores of each shard.
    type Shard: TenantStores;

    /// The shards, or `None` when these stores are one server's.
    fn as_shards(&self) -> Option<&Shards<Self::Shard>>;
}

impl<T: TenantStores> AsShards for Shards<T> {
    type Shard = T;

    fn as_shards(&self) -> Option<&Shards<T>> {
        Some(self)
    }
}

impl<T: TenantStores> TenantStores for Shards<T> {
    type Store = T::Store;

    fn open(
        &self,
        tenant: &TenantId,
        connections: u32,
    ) -> impl Future<Output = Result<Self::Store, Error>> + Send {
        self.of(tenant).open(tenant, connections)
    }

    fn connections(&self, store: &Self::Store) -> u32 {
        self.any().connections(store)
    }

    fn min_connections(&self) -> u32 {
        self.shards
            .iter()
            .map(|(_, s)| s.min_connections())
            .max()
            .unwrap_or(1)
    }

    fn close(&self, store: Self::Store) -> impl Future<Output = ()> + Send {
        self.any().close(store)
    }

    fn create(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<MigrationReport, Error>> + Send {
        self.of(tenant).create(tenant)
    }

    fn fence(&self, tenant: &TenantId) -> impl Future<Output = Result<bool, Error>> + Send {
        self.of(tenant).fence(tenant)
    }

    fn unfence(&self, tenant: &TenantId) -> impl Future<Output = Result<(), Error>> + Send {
        self.of(tenant).unfence(tenant)
    }

    /// The tenants each shard holds by the directory, sorted. What a shard holds of a tenant
    /// the directory places elsewhere (the source of a move, kept after it) is not listed.
    async fn list(&self) -> Result<Vec<TenantId>, Error> {
        let mut all = Vec::new();
        for (name, stores) in &self.shards {
            for tenant in stores.list().await? {
                if self.directory.shard_of(&tenant) == *name {
                    all.push(tenant);
                }
            }
        }
        all.sort();
        Ok(all)
    }
}
