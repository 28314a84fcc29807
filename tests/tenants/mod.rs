//! The tenant suite, written once against `TenantStores` and run on each store's tenants by
//! `tests/tenants_postgres.rs` (both layouts) and `tests/tenants_sqlite.rs` (a file each): two
//! tenants kept apart (events, log, snapshots, projections), many tenants at once under the
//! registry's bound, bad ids refused, the admin functions and a registry that creates nothing.
//! What only one store has (database names, files, the server's sessions) stays in its file.

#![allow(dead_code, unreachable_pub, async_fn_in_trait, clippy::unwrap_used)]

#[path = "../../examples/common/widget.rs"]
pub mod widget;

#[path = "../common/wait.rs"]
pub mod wait;

#[path = "../common/stores.rs"]
pub mod stores;

use std::{collections::BTreeSet, future::Future, time::Duration};

use eventsourcing::{
    migrate_tenants, postgres::testing::log_holding, prelude::*, Error, RunnerHandle, TenantError,
    TenantId, TenantLimits, TenantStores, Tenants,
};

use stores::{caught_up, Projections};
use widget::WidgetRegistryEndpoint as Widget;

/// A registry's bounds: `max_connections` in all, `max_open` tenants open at once, waiting up
/// to two minutes for room.
pub fn limits(max_connections: u32, max_open: u32) -> TenantLimits {
    TenantLimits {
        max_connections,
        max_open,
        wait: Duration::from_secs(120),
    }
}

/// A tenant's store with a projection counting its events into a table of the tenant's own.
pub trait Counted: Projections {
    /// The counting projection's name.
    const COUNT: &'static str;

    /// Starts the counting projection.
    fn spawn_count(&self) -> RunnerHandle;

    /// The streams the counting projection counted.
    async fn counted(&self) -> BTreeSet<Uuid>;
}

/// A widget registered for `tenant`, renamed `renames` times (`<name>0`, `<name>1`, …), saved.
async fn saved_widget<F: TenantStores>(
    tenant: &Application<F::Store>,
    tenant_id: &str,
    name: &str,
    renames: usize,
) -> Widget {
    let mut w = Widget::create(
        format!("https://{name}.example"),
        name.into(),
        tenant_id.into(),
    );
    for i in 0..renames {
        w.update_name(format!("{name}{i}"));
    }
    tenant.save(&mut w).await.unwrap();
    w
}

/// Two tenants, `acme` and `globex`, a widget of four events and a snapshot each: each tenant
/// loads its own widget and not the other's, its log and snapshots hold its own only, and the
/// same projection on each tenant's store counts that tenant's events only. Both are listed.
pub async fn isolation<F>(stores: F)
where
    F: TenantStores,
    F::Store: Counted,
{
    let tenants = Tenants::new(stores, limits(4, 2)).unwrap();
    let a = tenants.get("acme").await.unwrap();
    let b = tenants.get("globex").await.unwrap();
    let mut ids = Vec::new();
    for (tenant, name) in [(&a, "a"), (&b, "b")] {
        let w = saved_widget::<F>(tenant, tenant.id().as_ref(), name, 3).await;
        tenant.take_snapshot::<Widget>(w.id(), None).await.unwrap();
        ids.push(w.id());
    }
    let (id_a, id_b) = (ids[0], ids[1]);
    let loaded: Widget = a.repository().get(id_a).await.unwrap();
    assert_eq!(loaded.name, "a2");

    for (tenant, own, other) in [(&a, id_a, id_b), (&b, id_b, id_a)] {
        // Events, the log, snapshots.
        let err = tenant.repository().get::<Widget>(other).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let log = log_holding(tenant.store(), 4).await;
        assert_eq!(log.len(), 4);
        assert!(log.iter().all(|e| e.stream_id == own));
        let store = tenant.store();
        assert!(store.load_snapshot(own, None).await.unwrap().is_some());
        assert!(store.load_snapshot(other, None).await.unwrap().is_none());

        // Projections: the same runner on each tenant's store sees that tenant's events only.
        let handle = store.spawn_count();
        caught_up(store, F::Store::COUNT).await;
        handle.stop().await.unwrap();
        assert_eq!(store.counted().await, BTreeSet::from([own]));
    }
    let listed: Vec<String> = tenants
        .stores()
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(listed, ["acme", "globex"]);
}

/// Runs `work` while calling `sample` over and over (at least once, yielding between calls);
/// returns what `work` returned and the largest of each figure sampled.
async fn sampling<T, S, Fut, const N: usize>(
    work: impl Future<Output = T>,
    mut sample: S,
) -> (T, [u32; N])
where
    S: FnMut() -> Fut,
    Fut: Future<Output = [u32; N]>,
{
    let mut work = std::pin::pin!(work);
    let mut most = sample().await;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return (out, most),
            figures = sample() => {
                for (most, n) in most.iter_mut().zip(figures) {
                    *most = (*most).max(n);
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

/// `n` tasks at once, each on a tenant of its own (`t000`, `t001`, …): save a new widget, then
/// (probably after the tenant was closed to make room) load it, rename it and save again. The
/// open tenants never exceed the registry's bound; every save acknowledged is there, in its
/// own tenant; every tenant is listed; closing the idle ones closes all. Returns the most
/// connections the open tenants' stores held at once while the tasks ran, and the most
/// `server_sessions` counted meanwhile (a server's own count; `|| async { 0 }` without one).
pub async fn many_tenants<F, S, Fut>(
    tenants: &Tenants<F>,
    n: usize,
    mut server_sessions: S,
) -> (u32, u32)
where
    F: TenantStores,
    S: FnMut() -> Fut,
    Fut: Future<Output = u32>,
{
    let work = async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let tenants = tenants.clone();
                tokio::spawn(async move {
                    let id = format!("t{i:03}");
                    let stream = {
                        let tenant = tenants.get(&id).await?;
                        saved_widget::<F>(&tenant, &id, &id, 0).await.id()
                    };
                    // Again later, probably after the tenant was closed to make room.
                    tokio::task::yield_now().await;
                    let tenant = tenants.get(&id).await?;
                    let mut loaded: Widget = tenant.repository().get(stream).await?;
                    assert_eq!(loaded.name, id);
                    loaded.update_name(format!("{id}!"));
                    tenant.save(&mut loaded).await?;
                    Ok::<_, Error>((id, stream))
                })
            })
            .collect();
        let mut saved = Vec::new();
        for task in tasks {
            saved.push(task.await.unwrap().unwrap());
        }
        saved
    };
    let (saved, [held, seen]) = sampling(work, || {
        let s = tenants.stats();
        assert!(s.open + s.opening + s.closing <= s.max_open, "{s:?}");
        let sessions = server_sessions();
        async move { [s.connections, sessions.await] }
    })
    .await;

    for (id, stream) in &saved {
        let tenant = tenants.get(id).await.unwrap();
        let w: Widget = tenant.repository().get(*stream).await.unwrap();
        assert_eq!(
            (w.name.as_str(), w.version()),
            (format!("{id}!").as_str(), 2)
        );
        let log = log_holding(tenant.store(), 2).await;
        assert_eq!(
            log.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
            [*stream, *stream]
        );
    }
    assert_eq!(tenants.stores().list().await.unwrap().len(), n);
    tenants.close_idle().await;
    assert_eq!(tenants.stats().open, 0);
    (held, seen)
}

/// Ids no tenant may have, by what is wrong with them: a path, quotes, blanks, length, and the
/// names of what a server or a file system already has.
pub fn bad_ids() -> Vec<String> {
    let paths = ["/", "..", ".", "../x", "a/b"];
    let quotes = ["it's", "\"q\""];
    let blanks = ["a b", " "];
    let reserved = [
        "postgres",
        "template0",
        "template1",
        "public",
        "information_schema",
    ];
    let long = "a".repeat(200);
    let ids = paths
        .into_iter()
        .chain(quotes)
        .chain(blanks)
        .chain(reserved);
    ids.chain([long.as_str(), "pg_x"])
        .map(str::to_owned)
        .collect()
}

/// Every id of [`bad_ids`] is refused by `tenants` (and by `TenantId::new`), quoted in the
/// error with the reason; nothing is created, nothing is open.
pub async fn bad_ids_are_refused_and_create_nothing<F: TenantStores>(tenants: &Tenants<F>) {
    for id in bad_ids() {
        match tenants.get(&id).await {
            Err(Error::Tenant(TenantError::InvalidId { id: shown, reason })) => {
                assert!(shown.starts_with('"') && !reason.is_empty(), "{shown}")
            }
            other => panic!("{id:?}: {other:?}"),
        }
        assert!(TenantId::new(&id).is_err(), "{id:?}");
    }
    let created = tenants.stores().list().await.unwrap();
    assert!(created.is_empty(), "created: {created:?}");
    assert_eq!(tenants.stats().open, 0);
}

/// `admin` creates three tenants (each migrated) and migrates them all, in order, reporting
/// progress; a registry over `no_create` (the same tenants, `CREATE_TABLE=n`) serves them but
/// creates no new one.
pub async fn admin_creates_and_migrates_and_no_create_creates_nothing<F: TenantStores>(
    admin: &F,
    no_create: F,
) {
    for id in ["beta", "alpha", "gamma"] {
        let report = admin.create(&TenantId::new(id).unwrap()).await.unwrap();
        assert!(!report.applied.is_empty(), "{id}");
    }
    let mut progress = Vec::new();
    let report = migrate_tenants(admin, |p| {
        progress.push((p.tenant.to_string(), p.done, p.total, p.result.is_ok()))
    })
    .await
    .unwrap();
    assert_eq!(report.migrated.len(), 3);
    assert!(report.failed.is_empty());
    assert_eq!(
        progress,
        [
            ("alpha".to_owned(), 1, 3, true),
            ("beta".to_owned(), 2, 3, true),
            ("gamma".to_owned(), 3, 3, true)
        ]
    );

    let tenants = Tenants::new(no_create, limits(4, 2)).unwrap();
    let beta = tenants.get("beta").await.unwrap();
    saved_widget::<F>(&beta, "beta", "n", 0).await;
    drop(beta);
    match tenants.get("delta").await {
        Err(Error::Tenant(TenantError::NotFound { .. })) => {}
        other => panic!("delta: {other:?}"),
    }
    assert_eq!(admin.list().await.unwrap().len(), 3, "delta was created");
}
