//! Tenants: one event store per tenant (a database, a schema or a file each), opened on first
//! use, kept while used, and closed least recently used first, under a bound on the tenants
//! open at once and on the connections they hold together.
//!
//! This module knows no database: a store crate supplies a [`TenantStores`] (how to open,
//! create and list its tenants), the registry [`Tenants`] does the rest.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

mod migrate;
mod pause;

pub use migrate::{migrate_tenants, TenantProgress, TenantsMigrated};
pub use pause::Paused;

use crate::{
    application::Application,
    codec::{Codec, JsonCodec},
    error::Error,
    migrate::MigrationReport,
    store::EventStore,
    tenant_id::{TenantError, TenantId},
};

/// How a store crate opens, creates and lists the stores of its tenants.
pub trait TenantStores: Send + Sync + 'static {
    /// The store of one tenant.
    type Store: EventStore + Clone + Send + Sync + 'static;

    /// Opens `tenant`'s store holding at most `connections` connections (never fewer than
    /// [`min_connections`](Self::min_connections)) and nothing else that counts against the
    /// registry's bound. Called once per tenant while it stays open.
    fn open(
        &self,
        tenant: &TenantId,
        connections: u32,
    ) -> impl Future<Output = Result<Self::Store, Error>> + Send;

    /// The connections `store` holds now (for [`Tenants::stats`]).
    fn connections(&self, store: &Self::Store) -> u32;

    /// The fewest connections one open tenant needs (1 by default).
    fn min_connections(&self) -> u32 {
        1
    }

    /// Closes a store no request uses any more; when the future ends, its connections are
    /// closed. By default the store is dropped.
    fn close(&self, store: Self::Store) -> impl Future<Output = ()> + Send {
        drop(store);
        async {}
    }

    /// Creates `tenant`'s database, schema or file if it does not exist, and applies the
    /// pending migrations to it. Safe to call again: it then only migrates.
    fn create(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<MigrationReport, Error>> + Send;

    /// The tenants that exist (whose database, schema or file is there), sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<TenantId>, Error>> + Send;

    /// Makes every later write of events to `tenant`'s store fail, from any process, once the
    /// writes already under way have committed (what [`move_tenant`](crate::move_tenant) does
    /// to the copy it leaves behind). `Ok(false)` if these stores cannot (the default): then
    /// only the moving registry's own requests are held.
    fn fence(&self, tenant: &TenantId) -> impl Future<Output = Result<bool, Error>> + Send {
        let _ = tenant;
        async { Ok(false) }
    }

    /// Lifts [`fence`](Self::fence) (a move that failed after fencing).
    fn unfence(&self, tenant: &TenantId) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = tenant;
        async { Ok(()) }
    }
}

/// The bounds of a [`Tenants`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// The most connections all open tenants hold together (`TENANT_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// The most tenants open at once (`TENANT_MAX_OPEN`); lowered so that each open tenant
    /// gets at least the store's minimum of connections.
    pub max_open: u32,
    /// How long a request for a tenant waits for room before failing with
    /// [`TenantError::Busy`] (`TENANT_TIMEOUT`).
    pub wait: Duration,
}

/// Default of `TENANT_MAX_CONNECTIONS`.
pub const DEFAULT_TENANT_MAX_CONNECTIONS: u32 = 100;
/// Default of `TENANT_TIMEOUT`.
pub const DEFAULT_TENANT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for TenantLimits {
    /// 100 connections, as many tenants open as that allows, 30 s of waiting.
    fn default() -> Self {
        TenantLimits {
            max_connections: DEFAULT_TENANT_MAX_CONNECTIONS,
            max_open: DEFAULT_TENANT_MAX_CONNECTIONS,
            wait: DEFAULT_TENANT_TIMEOUT,
        }
    }
}

/// Builds a tenant's [`Application`] from its newly opened store.
pub type MakeApplication<S, C> = Arc<dyn Fn(&TenantId, S) -> Application<S, C> + Send + Sync>;

/// The registry of tenants: [`get`](Tenants::get) gives the [`Application`] of a tenant,
/// opening its store on first use and keeping it open.
///
/// - At most `max_open` tenants are open at once, each with at most
///   `max_connections / max_open` connections, so open tenants hold at most
///   `max_connections` connections together. A store being opened or closed counts as open.
/// - When a tenant not open is asked for and all places are taken, the least recently used
///   tenant that no request uses is closed to make room. When every open tenant is in use,
///   the request waits (up to `wait`, then [`TenantError::Busy`]); it never exceeds the bound.
/// - Many requests for the same tenant open its store once; the others wait for it.
/// - A tenant's store has `max_connections / max_open` connections: a tenant that runs a
///   projection (which holds a connection while it handles a batch) beside its saves wants at
///   least two, so set `max_open` to at most half of `max_connections` then.
/// - A tenant is in use while a [`Tenant`] handle of it lives (a running projection holds
///   one). Its store is closed only after the last handle is dropped and room is needed. A
///   clone of the [`Application`] taken out of a handle keeps the store alive past that, and
///   outside the bound: keep the handle instead.
///
/// Cheap to clone: clones share the registry.
pub struct Tenants<F: TenantStores, C = JsonCodec> {
    shared: Arc<Shared<F, C>>,
}

impl<F: TenantStores, C> Clone for Tenants<F, C> {
    fn clone(&self) -> Self {
        Tenants {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<F: TenantStores, C> {
    stores: F,
    make: MakeApplication<F::Store, C>,
    max_open: u32,
    per_tenant: u32,
    wait: Duration,
    state: Mutex<State<F::Store, C>>,
    /// Woken whenever a place may have become free or a store finished opening.
    changed: Notify,
}

struct State<S, C> {
    slots: HashMap<TenantId, Slot<S, C>>,
    /// Stores evicted and still closing: their connections still count.
    closing: u32,
    /// A counter standing for time, for least-recently-used order.
    tick: u64,
}

enum Slot<S, C> {
    Opening,
    /// Closed and kept closed until a [`Paused`] guard is dropped ([`Tenants::pause`]).
    Paused,
    Open {
        app: Application<S, C>,
        users: u32,
        last_used: u64,
    },
}

/// What [`Tenants::stats`] sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantStats {
    /// Tenants open.
    pub open: u32,
    /// Tenants being opened.
    pub opening: u32,
    /// Tenants being closed.
    pub closing: u32,
    /// Tenants paused ([`Tenants::pause`]): closed, and requests for them wait.
    pub paused: u32,
    /// Tenants open and used by at least one request.
    pub in_use: u32,
    /// The connections the open tenants' stores hold now, as each store reports it.
    pub connections: u32,
    /// The most connections one tenant's store may open.
    pub per_tenant: u32,
    /// The most tenants open at once.
    pub max_open: u32,
}

impl<F: TenantStores, C> fmt::Debug for Tenants<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("max_open", &self.shared.max_open)
            .field("per_tenant", &self.shared.per_tenant)
            .field("wait", &self.shared.wait)
            .finish_non_exhaustive()
    }
}

impl<F: TenantStores> Tenants<F, JsonCodec> {
    /// A registry whose tenants each get `Application::new(store)`.
    pub fn new(stores: F, limits: TenantLimits) -> Result<Self, Error> {
        Tenants::with_application(stores, limits, Arc::new(|_, store| Application::new(store)))
    }
}

impl<F: TenantStores, C: Codec> Tenants<F, C> {
    /// A registry whose tenants' applications `make` builds (a codec, snapshotting, hooks).
    pub fn with_application(
        stores: F,
        limits: TenantLimits,
        make: MakeApplication<F::Store, C>,
    ) -> Result<Self, Error> {
        let min = stores.min_connections().max(1);
        if limits.max_connections < min {
            return Err(crate::ConfigError::new(
                "TENANT_MAX_CONNECTIONS",
                format!(
                    "{} is fewer than the {min} connections one tenant needs",
                    limits.max_connections
                ),
            )
            .into());
        }
        if limits.max_open == 0 {
            return Err(crate::ConfigError::new("TENANT_MAX_OPEN", "must be at least 1").into());
        }
        let max_open = limits.max_open.min(limits.max_connections / min);
        let per_tenant = limits.max_connections / max_open;
        Ok(Tenants {
            shared: Arc::new(Shared {
                stores,
                make,
                max_open,
                per_tenant,
                wait: limits.wait,
                state: Mutex::new(State {
                    slots: HashMap::new(),
                    closing: 0,
                    tick: 0,
                }),
                changed: Notify::new(),
            }),
        })
    }

    /// The store factory.
    pub fn stores(&self) -> &F {
        &self.shared.stores
    }

    /// The application of tenant `id` (checked first: a bad id is [`TenantError::InvalidId`]
    /// and reaches no store), opening its store if it is not open. The tenant stays in use
    /// until the returned handle is dropped.
    pub async fn get(&self, id: &str) -> Result<Tenant<F, C>, Error> {
        let tenant = TenantId::new(id)?;
        self.get_tenant(&tenant).await
    }

    /// [`get`](Self::get) with an id already checked.
    pub async fn get_tenant(&self, tenant: &TenantId) -> Result<Tenant<F, C>, Error> {
        let shared = &self.shared;
        let got = shared
            .wait_for(|state| {
                state.tick += 1;
                let tick = state.tick;
                let taken = state.slots.len() as u32 + state.closing;
                match state.slots.get_mut(tenant) {
                    Some(Slot::Open {
                        app,
                        users,
                        last_used,
                    }) => {
                        *users += 1;
                        *last_used = tick;
                        Wait::Done(Got::Open(app.clone()))
                    }
                    Some(Slot::Opening) => Wait::Until(self.busy(tenant)),
                    Some(Slot::Paused) => Wait::Until(
                        TenantError::Paused {
                            tenant: tenant.to_string(),
                            waited: shared.wait,
                        }
                        .into(),
                    ),
                    None if taken < shared.max_open => {
                        state.slots.insert(tenant.clone(), Slot::Opening);
                        Wait::Done(Got::ToOpen)
                    }
                    None => {
                        if let Some(victim) = least_recently_used_idle(state) {
                            if let Some(Slot::Open { app, .. }) = state.slots.remove(&victim) {
                                state.closing += 1;
                                self.close_in_background(victim, app);
                            }
                        }
                        Wait::Until(self.busy(tenant))
                    }
                }
            })
            .await?;
        match got {
            Got::Open(app) => Ok(self.handle(tenant, app)),
            Got::ToOpen => self.open(tenant).await,
        }
    }

    /// What a request for `tenant` fails with when no place frees up in time.
    fn busy(&self, tenant: &TenantId) -> Error {
        TenantError::Busy {
            tenant: tenant.to_string(),
            max_open: self.shared.max_open,
            waited: self.shared.wait,
        }
        .into()
    }

    /// Opens the store of `tenant`, whose place is taken (`Slot::Opening`).
    async fn open(&self, tenant: &TenantId) -> Result<Tenant<F, C>, Error> {
        let shared = &self.shared;
        // Gives the place back if the open fails or this future is dropped.
        let mut guard = OpeningGuard {
            shared: Some(shared),
            tenant,
        };
        let store = shared.stores.open(tenant, shared.per_tenant).await?;
        let app = (shared.make)(tenant, store);
        guard.shared = None;
        {
            let mut state = shared.lock();
            state.tick += 1;
            let last_used = state.tick;
            state.slots.insert(
                tenant.clone(),
                Slot::Open {
                    app: app.clone(),
                    users: 1,
                    last_used,
                },
            );
        }
        shared.changed.notify_waiters();
        tracing::debug!(%tenant, "opened the store of a tenant");
        Ok(self.handle(tenant, app))
    }

    fn close_in_background(&self, tenant: TenantId, app: Application<F::Store, C>) {
        let shared = Arc::clone(&self.shared);
        let close = async move {
            let store = app.store().clone();
            drop(app);
            shared.stores.close(store).await;
            shared.lock().closing -= 1;
            shared.changed.notify_waiters();
            tracing::debug!(%tenant, "closed the store of a tenant");
        };
        tokio::spawn(close);
    }

    fn handle(&self, tenant: &TenantId, app: Application<F::Store, C>) -> Tenant<F, C> {
        Tenant {
            app,
            tenant: tenant.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The tenants open, being opened or closed, and the connections they hold.
    pub fn stats(&self) -> TenantStats {
        let shared = &self.shared;
        let state = shared.lock();
        let mut stats = TenantStats {
            open: 0,
            opening: 0,
            closing: state.closing,
            paused: 0,
            in_use: 0,
            connections: 0,
            per_tenant: shared.per_tenant,
            max_open: shared.max_open,
        };
        for slot in state.slots.values() {
            match slot {
                Slot::Opening => stats.opening += 1,
                Slot::Paused => stats.paused += 1,
                Slot::Open { app, users, .. } => {
                    stats.open += 1;
                    stats.in_use += u32::from(*users > 0);
                    stats.connections += shared.stores.connections(app.store());
                }
            }
        }
        stats
    }

    /// Closes every open tenant that no request uses (waiting until they are closed).
    pub async fn close_idle(&self) {
        let idle: Vec<(TenantId, Application<F::Store, C>)> = {
            let mut state = self.shared.lock();
            let ids: Vec<TenantId> = state
                .slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Open { users: 0, .. }))
                .map(|(id, _)| id.clone())
                .collect();
            let mut idle = Vec::new();
            for id in ids {
                if let Some(Slot::Open { app, .. }) = state.slots.remove(&id) {
                    idle.push((id, app));
                }
            }
            state.closing += idle.len() as u32;
            idle
        };
        for (_, app) in idle {
            let store = app.store().clone();
            drop(app);
            self.shared.stores.close(store).await;
            self.shared.lock().closing -= 1;
            self.shared.changed.notify_waiters();
        }
    }
}

/// What a request found: its tenant's open application, or its place taken to open it.
enum Got<A> {
    Open(A),
    ToOpen,
}

/// What a step of [`Shared::wait_for`] found.
pub(super) enum Wait<T> {
    /// Done, with this.
    Done(T),
    /// Not yet: wait for a change of the registry and look again; if none comes before the
    /// registry's `wait` is over, fail with this.
    Until(Error),
}

fn least_recently_used_idle<S, C>(state: &State<S, C>) -> Option<TenantId> {
    state
        .slots
        .iter()
        .filter_map(|(id, slot)| match slot {
            Slot::Open {
                users: 0,
                last_used,
                ..
            } => Some((*last_used, id)),
            _ => None,
        })
        .min_by_key(|(last_used, _)| *last_used)
        .map(|(_, id)| id.clone())
}

impl<F: TenantStores, C> Shared<F, C> {
    fn lock(&self) -> MutexGuard<'_, State<F::Store, C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `step` on the state, under the lock, until it is [`Wait::Done`]; after each
    /// [`Wait::Until`] waits for the next change, failing with its error once the registry's
    /// `wait` (counted from the first step) is over. No change is missed between a step and
    /// the wait: the wait is armed before the step runs.
    async fn wait_for<T>(
        &self,
        mut step: impl FnMut(&mut State<F::Store, C>) -> Wait<T>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = step(&mut self.lock());
            match found {
                Wait::Done(done) => return Ok(done),
                Wait::Until(error) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(error);
                    }
                }
            }
        }
    }
}

struct OpeningGuard<'a, F: TenantStores, C> {
    shared: Option<&'a Shared<F, C>>,
    tenant: &'a TenantId,
}

impl<F: TenantStores, C> Drop for OpeningGuard<'_, F, C> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared {
            shared.lock().slots.remove(self.tenant);
            shared.changed.notify_waiters();
        }
    }
}

/// A tenant in use: its [`Application`] (through `Deref`) and its id. The tenant's store stays
/// open at least until this handle is dropped.
pub struct Tenant<F: TenantStores, C = JsonCodec> {
    app: Application<F::Store, C>,
    tenant: TenantId,
    shared: Arc<Shared<F, C>>,
}

impl<F: TenantStores, C> Tenant<F, C> {
    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        &self.tenant
    }

    /// The tenant's application.
    pub fn app(&self) -> &Application<F::Store, C> {
        &self.app
    }
}

impl<F: TenantStores, C> Deref for Tenant<F, C> {
    type Target = Application<F::Store, C>;
    fn deref(&self) -> &Application<F::Store, C> {
        &self.app
    }
}

impl<F: TenantStores, C> fmt::Debug for Tenant<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl<F: TenantStores, C> Drop for Tenant<F, C> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.tick += 1;
        let tick = state.tick;
        if let Some(Slot::Open {
            users, last_used, ..
        }) = state.slots.get_mut(&self.tenant)
        {
            *users = users.saturating_sub(1);
            *last_used = tick;
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}
