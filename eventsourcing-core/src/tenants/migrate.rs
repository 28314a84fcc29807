//! [`migrate_tenants`]: the pending migrations applied to every tenant, one at a time.

use super::TenantStores;
use crate::{error::Error, migrate::MigrationReport, tenant_id::TenantId};

/// How far [`migrate_tenants`] got: called after each tenant.
#[derive(Debug)]
#[non_exhaustive]
pub struct TenantProgress<'a> {
    /// The tenant just done.
    pub tenant: &'a TenantId,
    /// Tenants done so far, this one included.
    pub done: usize,
    /// Tenants in all.
    pub total: usize,
    /// What migrating it did, or why it failed.
    pub result: &'a Result<MigrationReport, Error>,
}

/// What [`migrate_tenants`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TenantsMigrated {
    /// Tenants migrated (or already up to date).
    pub migrated: Vec<TenantId>,
    /// Tenants whose migration failed, with the error.
    pub failed: Vec<(TenantId, Error)>,
}

/// Applies the pending migrations to every tenant [`TenantStores::list`] finds, one at a time,
/// reporting each through `progress`. A failure is reported and the run goes on with the next
/// tenant; the result lists both.
pub async fn migrate_tenants<F: TenantStores>(
    stores: &F,
    mut progress: impl FnMut(TenantProgress<'_>),
) -> Result<TenantsMigrated, Error> {
    let tenants = stores.list().await?;
    let total = tenants.len();
    let mut report = TenantsMigrated::default();
    for (i, tenant) in tenants.into_iter().enumerate() {
        let result = stores.create(&tenant).await;
        progress(TenantProgress {
            tenant: &tenant,
            done: i + 1,
            total,
            result: &result,
        });
        match result {
            Ok(_) => report.migrated.push(tenant),
            Err(e) => report.failed.push((tenant, e)),
        }
    }
    Ok(report)
}
