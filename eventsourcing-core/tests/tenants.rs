//! The tenant registry on a store factory that counts what it opens and closes: one open per
//! tenant however many ask at once, never more open than the bound, only idle tenants closed
//! (least recently used first), waiting with a typed error at the end, places given back after
//! a failed or abandoned open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use eventsourcing_core::{
    Error, EventStore, MemoryStore, MigrationReport, NewEvent, Position, Snapshot, TenantError,
    TenantId, TenantLimits, TenantStores, Tenants,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Default)]
struct Counts {
    opened: HashMap<String, u32>,
    closed: Vec<String>,
    live: u32,
    most_live: u32,
}

/// Opens a memory store per tenant once `gate` lets it; "broken" fails to open.
#[derive(Clone)]
struct Fake {
    counts: Arc<Mutex<Counts>>,
    gate: Arc<Semaphore>,
}

impl Fake {
    fn new(open_gate: bool) -> Self {
        let permits = if open_gate { Semaphore::MAX_PERMITS } else { 0 };
        Fake {
            counts: Arc::default(),
            gate: Arc::new(Semaphore::new(permits)),
        }
    }

    fn opened(&self, tenant: &str) -> u32 {
        self.counts
            .lock()
            .unwrap()
            .opened
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    fn closed(&self) -> Vec<String> {
        self.counts.lock().unwrap().closed.clone()
    }
}

/// Each store keeps its tenant's name in a snapshot of the nil stream, so `close` knows whose
/// it is.
fn name_tag(tenant: &str) -> Snapshot {
    Snapshot {
        stream_id: Uuid::nil(),
        version: 1,
        state_type: tenant.to_owned(),
        fingerprint: 0,
        timestamp: chrono::Utc::now(),
        payload: Vec::new(),
    }
}

impl TenantStores for Fake {
    type Store = MemoryStore;

    fn open(
        &self,
        tenant: &TenantId,
        _connections: u32,
    ) -> impl Future<Output = Result<Self::Store, Error>> + Send {
        let tenant = tenant.to_string();
        async move {
            let _permit = self.gate.acquire().await.unwrap();
            if tenant == "broken" {
                return Err(Error::store("cannot open"));
            }
            let store = MemoryStore::new();
            store.save_snapshot(name_tag(&tenant), None).await?;
            let mut c = self.counts.lock().unwrap();
            *c.opened.entry(tenant.clone()).or_default() += 1;
            c.live += 1;
            c.most_live = c.most_live.max(c.live);
            Ok(store)
        }
    }

    fn connections(&self, _store: &Self::Store) -> u32 {
        1
    }

    async fn close(&self, store: Self::Store) {
        let tag = store
            .load_snapshot(Uuid::nil(), None)
            .await
            .unwrap()
            .unwrap();
        let mut c = self.counts.lock().unwrap();
        c.live -= 1;
        c.closed.push(tag.state_type);
    }

    async fn create(&self, _tenant: &TenantId) -> Result<MigrationReport, Error> {
        Ok(MigrationReport::default())
    }

    async fn list(&self) -> Result<Vec<TenantId>, Error> {
        Ok(Vec::new())
    }
}

fn limits(max_open: u32, wait: Duration) -> TenantLimits {
    TenantLimits {
        max_connections: max_open,
        max_open,
        wait,
    }
}

const LONG: Duration = Duration::from_secs(120);

async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_for_one_tenant_open_it_once_and_share_it() {
    let fake = Fake::new(false);
    let tenants = Tenants::new(fake.clone(), limits(4, LONG)).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let t = tenants.get("acme").await?;
                let id = Uuid::new_v4();
                t.store()
                    .append(vec![NewEvent::new(id, 1, "E", format!("{i}").into_bytes())])
                    .await?;
                Ok::<_, Error>(())
            })
        })
        .collect();
    until(|| tenants.stats().opening == 1).await;
    fake.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.opened("acme"), 1);
    let t = tenants.get("acme").await.unwrap();
    assert_eq!(
        t.store()
            .read_log(Position::START, 100)
            .await
            .unwrap()
            .len(),
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_bound_waits_for_an_idle_tenant_or_fails_typed() {
    let fake = Fake::new(true);
    let short = Tenants::new(fake.clone(), limits(2, Duration::from_millis(50))).unwrap();
    let a = short.get("a").await.unwrap();
    let b = short.get("b").await.unwrap();
    match short.get("c").await {
        Err(Error::Tenant(TenantError::Busy {
            tenant, max_open, ..
        })) => {
            assert_eq!((tenant.as_str(), max_open), ("c", 2))
        }
        other => panic!("{other:?}"),
    }
    assert!(short.get("c").await.unwrap_err().is_transient());
    assert!(fake.closed().is_empty(), "a tenant in use was closed");

    drop((a, b));

    // With time to wait: the request gets its place as soon as a tenant is no longer used.
    let fake = Fake::new(true);
    let tenants = Tenants::new(fake.clone(), limits(2, LONG)).unwrap();
    let a = tenants.get("a").await.unwrap();
    let b = tenants.get("b").await.unwrap();
    let waiting = {
        let tenants = tenants.clone();
        tokio::spawn(async move { tenants.get("c").await.map(|t| t.id().to_string()) })
    };
    tokio::task::yield_now().await;
    assert!(fake.closed().is_empty());
    drop(a);
    assert_eq!(waiting.await.unwrap().unwrap(), "c");
    assert_eq!(fake.closed(), ["a"]);
    assert!(fake.counts.lock().unwrap().most_live <= 2);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_is_made_by_closing_the_least_recently_used_idle_tenant() {
    let fake = Fake::new(true);
    let tenants = Tenants::new(fake.clone(), limits(2, LONG)).unwrap();
    drop(tenants.get("a").await.unwrap());
    drop(tenants.get("b").await.unwrap());
    drop(tenants.get("a").await.unwrap()); // a is now the more recent
    let c = tenants.get("c").await.unwrap();
    assert_eq!(fake.closed(), ["b"]);
    let _a = tenants.get("a").await.unwrap();
    assert_eq!(fake.opened("a"), 1, "a stayed open");
    // Both places in use: d waits until c is dropped, then c (the only idle one) is closed.
    let waiting = {
        let tenants = tenants.clone();
        tokio::spawn(async move { tenants.get("d").await.map(drop) })
    };
    until(|| tenants.stats().in_use == 2).await;
    drop(c);
    waiting.await.unwrap().unwrap();
    assert_eq!(fake.closed(), ["b", "c"]);
    let most_live = fake.counts.lock().unwrap().most_live;
    assert!(most_live <= 2, "{most_live} open at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_abandoned_open_gives_its_place_back() {
    let fake = Fake::new(false);
    let tenants = Tenants::new(fake.clone(), limits(1, LONG)).unwrap();
    let abandoned = {
        let tenants = tenants.clone();
        tokio::spawn(async move { tenants.get("x").await.map(drop) })
    };
    until(|| tenants.stats().opening == 1).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    until(|| tenants.stats().opening == 0).await;
    fake.gate.add_permits(Semaphore::MAX_PERMITS / 2);

    assert!(matches!(tenants.get("broken").await, Err(Error::Store(_))));
    let stats = tenants.stats();
    assert_eq!((stats.open, stats.opening), (0, 0));
    tenants.get("y").await.unwrap();
    assert!(matches!(
        tenants.get("no/slash").await,
        Err(Error::Tenant(TenantError::InvalidId { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_tenant_is_closed_and_waited_for_while_the_others_are_served() {
    let fake = Fake::new(true);
    let tenants = Tenants::new(fake.clone(), limits(4, LONG)).unwrap();
    drop(tenants.get("a").await.unwrap());
    let a = TenantId::new("a").unwrap();
    let paused = tenants.pause(&a).await.unwrap();
    assert_eq!(fake.closed(), ["a"], "pausing closes the tenant's store");
    assert_eq!(tenants.stats().paused, 1);

    let waiting = {
        let tenants = tenants.clone();
        tokio::spawn(async move { tenants.get("a").await.map(drop) })
    };
    // Another tenant is served meanwhile; the paused one is not opened while the guard lives.
    drop(tenants.get("b").await.unwrap());
    assert!(!waiting.is_finished());
    assert_eq!(fake.opened("a"), 1);

    drop(paused);
    waiting.await.unwrap().unwrap();
    assert_eq!(
        fake.opened("a"),
        2,
        "the tenant is opened afresh after the pause"
    );
    assert_eq!(tenants.stats().paused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_waits_for_the_requests_using_the_tenant_and_gives_up_typed() {
    let fake = Fake::new(true);
    let short = Tenants::new(fake.clone(), limits(4, Duration::from_millis(50))).unwrap();
    let a = TenantId::new("a").unwrap();
    let used = short.get("a").await.unwrap();
    match short.pause(&a).await {
        Err(Error::Tenant(TenantError::InUse { tenant, .. })) => assert_eq!(tenant, "a"),
        other => panic!("{other:?}"),
    }
    assert!(fake.closed().is_empty(), "a tenant in use was closed");
    drop(used);

    // A request that waits longer than the registry's wait for a paused tenant fails typed,
    // worth retrying (503 over HTTP).
    let paused = short.pause(&a).await.unwrap();
    let err = short.get("a").await.unwrap_err();
    assert!(
        matches!(&err, Error::Tenant(TenantError::Paused { tenant, .. }) if tenant == "a"),
        "{err:?}"
    );
    assert!(err.is_transient());
    drop(paused);
    short.get("a").await.unwrap();

    // With time to wait, the pause comes once the last request is done.
    let tenants = Tenants::new(fake.clone(), limits(4, LONG)).unwrap();
    let used = tenants.get("a").await.unwrap();
    let pausing = {
        let tenants = tenants.clone();
        let a = a.clone();
        tokio::spawn(async move { tenants.pause(&a).await.map(drop) })
    };
    until(|| tenants.stats().in_use == 1).await;
    assert!(!pausing.is_finished());
    drop(used);
    pausing.await.unwrap().unwrap();
}
