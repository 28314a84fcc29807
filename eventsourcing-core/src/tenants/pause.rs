//! [`Tenants::pause`]: one tenant closed and kept closed while the others go on, for work on
//! its store that no request may see half done (moving it to another server, say).

use std::sync::Arc;

use super::{Shared, Slot, Tenants, Wait};
use crate::{
    codec::Codec,
    error::Error,
    tenant_id::{TenantError, TenantId},
    tenants::TenantStores,
};

/// A paused tenant ([`Tenants::pause`]): its store is closed, and requests for it wait until
/// this guard is dropped (at most the registry's `wait`, then [`TenantError::Paused`]).
/// Dropping it lets them in again, opening the store afresh.
#[must_use = "the tenant is paused only while the guard lives"]
pub struct Paused<F: TenantStores, C> {
    shared: Arc<Shared<F, C>>,
    tenant: TenantId,
}

impl<F: TenantStores, C> Paused<F, C> {
    /// The paused tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

impl<F: TenantStores, C> std::fmt::Debug for Paused<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paused")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl<F: TenantStores, C> Drop for Paused<F, C> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if matches!(state.slots.get(&self.tenant), Some(Slot::Paused)) {
            state.slots.remove(&self.tenant);
        }
        drop(state);
        self.shared.changed.notify_waiters();
        tracing::debug!(tenant = %self.tenant, "resumed a paused tenant");
    }
}

impl<F: TenantStores, C: Codec> Tenants<F, C> {
    /// Pauses `tenant`: waits until no request uses it (no [`Tenant`](super::Tenant) handle of it
    /// lives; a running projection holds one), closes its store, and keeps it closed while the
    /// returned guard lives. Requests for it meanwhile wait, and after the registry's `wait`
    /// fail with [`TenantError::Paused`] (worth retrying: 503 over HTTP). Other tenants are not
    /// affected.
    ///
    /// Fails with [`TenantError::InUse`] if the tenant stays in use (or another pause holds it)
    /// for the registry's `wait`.
    ///
    /// Pausing is for this registry's requests: another process using the same tenant's store
    /// does not see it.
    pub async fn pause(&self, tenant: &TenantId) -> Result<Paused<F, C>, Error> {
        let shared = &self.shared;
        let app = shared
            .wait_for(|state| match state.slots.get(tenant) {
                None => {
                    state.slots.insert(tenant.clone(), Slot::Paused);
                    Wait::Done(None)
                }
                Some(Slot::Open { users: 0, .. }) => {
                    match state.slots.insert(tenant.clone(), Slot::Paused) {
                        Some(Slot::Open { app, .. }) => {
                            state.closing += 1;
                            Wait::Done(Some(app))
                        }
                        _ => Wait::Done(None),
                    }
                }
                // Requests use it, it is being opened, or another pause holds it.
                Some(_) => Wait::Until(
                    TenantError::InUse {
                        tenant: tenant.to_string(),
                        waited: shared.wait,
                    }
                    .into(),
                ),
            })
            .await?;
        // The guard first: if this future is dropped while the store closes, the tenant is
        // not left paused.
        let paused = Paused {
            shared: Arc::clone(shared),
            tenant: tenant.clone(),
        };
        if let Some(app) = app {
            // On a task of its own, so that it is counted down even if this future is dropped.
            let closing = Arc::clone(shared);
            let _ = tokio::spawn(async move {
                let store = app.store().clone();
                drop(app);
                closing.stores.close(store).await;
                closing.lock().closing -= 1;
                closing.changed.notify_waiters();
            })
            .await;
        }
        tracing::debug!(%tenant, "paused a tenant");
        Ok(paused)
    }
}
