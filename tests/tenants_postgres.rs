//! Tenants on PostgreSQL, both layouts: isolation of events, log, snapshots and projections;
//! 200 tenants served at once under a bound of 20 connections; bad tenant ids create nothing;
//! the admin functions (create, migrate with progress, list).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/common/widget.rs"]
mod widget;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing::{
    migrate_tenants,
    postgres::{
        spawn_projection, testing, tokio_postgres::Transaction, PostgresConfig, PostgresProjection,
        PostgresStore, PostgresTenants, ProjectionOptions,
    },
    prelude::*,
    BoxError, Error, Position, StoredEvent, TenantError, TenantId, TenantLimits, TenantStores,
    Tenants,
};
use widget::WidgetRegistryEndpoint;

/// The test server with an `application_name` of the test's own (to count its connections).
fn server(app_name: &str) -> PostgresConfig {
    let url = testing::url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={app_name}")
        .parse()
        .expect("the test server's URL")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Drops every tenant of `stores` when dropped (also when the test panics).
struct Cleanup(PostgresTenants);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stores = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for tenant in stores.list().await.unwrap_or_default() {
                    if let Err(e) = stores.drop_tenant(&tenant).await {
                        eprintln!("warning: could not drop tenant {tenant}: {e}");
                    }
                }
            })
        })
        .join();
    }
}

fn database_layout(app_name: &str) -> (PostgresTenants, Cleanup) {
    let prefix = unique("es_tdb");
    let config = server(app_name)
        .to_builder()
        .dbname(format!("{prefix}_{{id}}"))
        .build()
        .unwrap();
    let stores = PostgresTenants::database(config).unwrap();
    (stores.clone(), Cleanup(stores))
}

fn schema_layout(app_name: &str) -> (PostgresTenants, Cleanup) {
    let prefix = unique("es_tsc");
    let config = server(app_name)
        .to_builder()
        .schema(format!("{prefix}_{{id}}"))
        .build()
        .unwrap();
    let stores = PostgresTenants::schema(config).unwrap();
    (stores.clone(), Cleanup(stores))
}

fn limits(max_connections: u32, max_open: u32) -> TenantLimits {
    TenantLimits {
        max_connections,
        max_open,
        wait: Duration::from_secs(120),
    }
}

/// Counts each event into a table of the tenant's own schema.
struct CountEvents {
    table: String,
}

impl PostgresProjection for CountEvents {
    fn name(&self) -> &str {
        "count_events"
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (stream_id uuid, version bigint, \
             PRIMARY KEY (stream_id, version))",
            self.table
        );
        tx.batch_execute(&sql).await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        let sql = format!("INSERT INTO {} VALUES ($1, $2)", self.table);
        tx.execute(&sql, &[&event.stream_id, &(event.version as i64)])
            .await?;
        Ok(())
    }
}

/// The log of `store` once it holds `n` events (a long transaction elsewhere on the server
/// holds readers back until it ends; see the crate docs, Global order).
async fn full_log(store: &PostgresStore, n: usize) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let log = store.read_log(Position::START, 100).await.unwrap();
        if log.len() >= n || tokio::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counted_table(store: &PostgresStore) -> String {
    format!("\"{}\".counted", store.config().schema())
}

/// The streams a tenant's projection counted.
async fn counted(store: &PostgresStore) -> BTreeSet<Uuid> {
    let client = store.dedicated_client().await.unwrap();
    let rows = client
        .query(
            &format!("SELECT DISTINCT stream_id FROM {}", counted_table(store)),
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn isolation(stores: PostgresTenants) {
    let tenants = Tenants::new(stores, limits(4, 2)).unwrap();
    let a = tenants.get("acme").await.unwrap();
    let b = tenants.get("globex").await.unwrap();

    let mut ids = Vec::new();
    for (tenant, name) in [(&a, "a"), (&b, "b")] {
        let mut w = WidgetRegistryEndpoint::create(
            format!("https://{name}.example"),
            name.into(),
            tenant.id().to_string(),
        );
        for i in 0..3 {
            w.update_name(format!("{name}{i}"));
        }
        tenant.save(&mut w).await.unwrap();
        tenant
            .take_snapshot::<WidgetRegistryEndpoint>(w.id(), None)
            .await
            .unwrap();
        ids.push(w.id());
    }
    let (id_a, id_b) = (ids[0], ids[1]);

    // Events: each tenant loads its own and not the other's.
    let loaded: WidgetRegistryEndpoint = a.repository().get(id_a).await.unwrap();
    assert_eq!(loaded.name, "a2");
    assert!(a
        .repository()
        .get::<WidgetRegistryEndpoint>(id_b)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(b
        .repository()
        .get::<WidgetRegistryEndpoint>(id_a)
        .await
        .unwrap_err()
        .is_not_found());
    // The log (a transaction of another test on the server may hold it back for a while).
    for (tenant, own) in [(&a, id_a), (&b, id_b)] {
        let log = full_log(tenant.store(), 4).await;
        assert_eq!(log.len(), 4);
        assert!(log.iter().all(|e| e.stream_id == own));
    }
    // Snapshots.
    assert!(a.store().load_snapshot(id_a, None).await.unwrap().is_some());
    assert!(a.store().load_snapshot(id_b, None).await.unwrap().is_none());
    assert!(b.store().load_snapshot(id_a, None).await.unwrap().is_none());

    // Projections: the same runner on each tenant's store sees that tenant's events only.
    for (tenant, own) in [(&a, id_a), (&b, id_b)] {
        let store = tenant.store().clone();
        let table = counted_table(&store);
        let handle = spawn_projection(
            store.clone(),
            CountEvents { table },
            ProjectionOptions::default(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while store.projection_lag("count_events").await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never caught up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.stop().await.unwrap();
        assert_eq!(counted(&store).await, BTreeSet::from([own]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_per_tenant_isolates_events_log_snapshots_and_projections() {
    let (stores, _cleanup) = database_layout("es_tenants_iso_db");
    isolation(stores.clone()).await;
    let listed: Vec<String> = stores
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(listed, ["acme", "globex"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_per_tenant_isolates_events_log_snapshots_and_projections() {
    let (stores, _cleanup) = schema_layout("es_tenants_iso_schema");
    isolation(stores.clone()).await;
    let listed: Vec<String> = stores
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(listed, ["acme", "globex"]);
}

/// `tenants_n` tasks, one tenant each, saving and loading at once, under `CAP` connections in
/// all.
async fn many_tenants<const CAP: u32>(stores: PostgresTenants, app_name: &str, tenants_n: usize) {
    let tenants = Tenants::new(stores, limits(CAP, CAP)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let most_held = Arc::new(AtomicU32::new(0));
    let most_seen = Arc::new(AtomicU32::new(0));

    // Samples the registry (connections its stores hold, by their pools) and the server (the
    // sessions with this test's application_name) while the tasks run.
    let sampler = {
        let (tenants, done) = (tenants.clone(), Arc::clone(&done));
        let (most_held, most_seen) = (Arc::clone(&most_held), Arc::clone(&most_seen));
        let watcher = testing::TestSchema::new().await.client().await.unwrap();
        let app_name = app_name.to_owned();
        tokio::spawn(async move {
            let mut samples = 0u32;
            while !done.load(Ordering::Acquire) || samples == 0 {
                let stats = tenants.stats();
                assert!(
                    stats.open + stats.opening + stats.closing <= CAP,
                    "{stats:?}"
                );
                most_held.fetch_max(stats.connections, Ordering::Relaxed);
                let row = watcher
                    .query_one(
                        "SELECT count(*)::int4 FROM pg_stat_activity WHERE application_name = $1",
                        &[&app_name],
                    )
                    .await
                    .unwrap();
                most_seen.fetch_max(row.get::<_, i32>(0) as u32, Ordering::Relaxed);
                samples += 1;
                tokio::task::yield_now().await;
            }
            samples
        })
    };

    let tasks: Vec<_> = (0..tenants_n)
        .map(|i| {
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let id = format!("t{i:03}");
                let mut w = {
                    let tenant = tenants.get(&id).await?;
                    let mut w = WidgetRegistryEndpoint::create(
                        format!("https://{id}.example"),
                        id.clone(),
                        id.clone(),
                    );
                    tenant.save(&mut w).await?;
                    w
                };
                // Again later, probably after the tenant was closed to make room.
                tokio::task::yield_now().await;
                let tenant = tenants.get(&id).await?;
                let mut loaded: WidgetRegistryEndpoint = tenant.repository().get(w.id()).await?;
                loaded.update_name(format!("{id}!"));
                tenant.save(&mut loaded).await?;
                w.update_name(String::new()); // stale: the id is all we keep
                Ok::<_, Error>((id, w.id()))
            })
        })
        .collect();
    let mut saved = Vec::new();
    for task in tasks {
        saved.push(task.await.unwrap().unwrap());
    }
    done.store(true, Ordering::Release);
    let samples = sampler.await.unwrap();

    // Every save acknowledged is there, in its own tenant.
    for (id, stream) in &saved {
        let tenant = tenants.get(id).await.unwrap();
        let w: WidgetRegistryEndpoint = tenant.repository().get(*stream).await.unwrap();
        assert_eq!(
            (w.name.as_str(), w.version()),
            (format!("{id}!").as_str(), 2)
        );
        assert_eq!(full_log(tenant.store(), 2).await.len(), 2);
    }
    assert_eq!(tenants.stores().list().await.unwrap().len(), tenants_n);
    let (held, seen) = (
        most_held.load(Ordering::Relaxed),
        most_seen.load(Ordering::Relaxed),
    );
    println!("{samples} samples: at most {held} pooled connections, {seen} sessions on the server");
    assert!(held <= CAP, "the tenants' pools held {held} connections");
    assert!(seen <= CAP, "the server saw {seen} sessions of the tenants");
    assert!(held > 0 && seen > 0, "the sampler saw no connection at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenants_share_twenty_connections_schema_layout() {
    let app_name = unique("es_tenants200s");
    let (stores, _cleanup) = schema_layout(&app_name);
    many_tenants::<20>(stores, &app_name, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenant_databases_share_twenty_connections() {
    // As many as the schema layout: each tenant is a CREATE DATABASE (0.3 to 1 s on a busy
    // 2-core machine) and a DROP DATABASE afterwards, so this test takes a minute or two.
    let app_name = unique("es_tenants200d");
    let (stores, _cleanup) = database_layout(&app_name);
    many_tenants::<20>(stores, &app_name, 200).await;
}

#[tokio::test]
async fn bad_tenant_ids_are_refused_and_create_nothing() {
    let (stores, _cleanup) = database_layout("es_tenants_bad");
    let tenants = Tenants::new(stores.clone(), limits(4, 2)).unwrap();
    let long = "a".repeat(200);
    let bad = [
        "/",
        "..",
        "a/b",
        "it's",
        "\"q\"",
        "a b",
        " ",
        &long,
        "postgres",
        "template0",
        "template1",
        "public",
        "information_schema",
        "pg_x",
    ];
    for id in bad {
        match tenants.get(id).await {
            Err(Error::Tenant(TenantError::InvalidId { id: shown, .. })) => {
                assert!(shown.starts_with('"'), "{shown}")
            }
            other => panic!("{id:?}: {other:?}"),
        }
        assert!(TenantId::new(id).is_err());
    }
    // A valid id whose database name would be too long is refused the same way.
    let near = "b".repeat(63);
    assert!(matches!(
        tenants.get(&near).await,
        Err(Error::Tenant(TenantError::InvalidId { .. }))
    ));
    assert!(
        stores.list().await.unwrap().is_empty(),
        "something was created"
    );
    assert_eq!(tenants.stats().open, 0);
}

#[tokio::test]
async fn admin_creates_migrates_and_lists_tenants_and_a_registry_without_create_finds_them() {
    let (stores, _cleanup) = schema_layout("es_tenants_admin");
    for id in ["alpha", "beta", "gamma"] {
        let report = stores.create(&TenantId::new(id).unwrap()).await.unwrap();
        assert!(!report.applied.is_empty());
    }
    let mut seen = Vec::new();
    let report = migrate_tenants(&stores, |p| {
        seen.push((p.tenant.to_string(), p.done, p.total, p.result.is_ok()))
    })
    .await
    .unwrap();
    assert_eq!(report.migrated.len(), 3);
    assert!(report.failed.is_empty());
    assert_eq!(
        seen,
        [
            ("alpha".to_owned(), 1, 3, true),
            ("beta".to_owned(), 2, 3, true),
            ("gamma".to_owned(), 3, 3, true)
        ]
    );

    // The least-privilege set-up: the application creates nothing at run time.
    let (base, _) = (
        stores
            .tenant_config(&TenantId::new("x").unwrap(), 1)
            .unwrap(),
        (),
    );
    let no_create = PostgresTenants::schema(
        base.to_builder()
            .schema(stores.pattern().to_string())
            .create_table(false)
            .build()
            .unwrap(),
    )
    .unwrap();
    let tenants = Tenants::new(no_create.clone(), limits(2, 2)).unwrap();
    let beta = tenants.get("beta").await.unwrap();
    let mut w = WidgetRegistryEndpoint::create("u".into(), "n".into(), "beta".into());
    beta.save(&mut w).await.unwrap();
    drop(beta);
    assert!(tenants.get("delta").await.is_err());
    assert_eq!(
        no_create.list().await.unwrap().len(),
        3,
        "delta was created"
    );
}

#[tokio::test]
async fn tenants_from_the_environment_on_postgres() {
    let pattern = format!("{}_{{id}}", unique("es_tenv"));
    let url = testing::url();
    let env = eventsourcing::Env::from_map([
        ("TENANT_LAYOUT", "schema"),
        ("DATABASE_URL", url.as_str()),
        ("POSTGRES_SCHEMA", pattern.as_str()),
        ("TENANT_MAX_CONNECTIONS", "6"),
        ("TENANT_MAX_OPEN", "3"),
    ]);
    let tenants = eventsourcing::tenants_from_env(&env).unwrap();
    let eventsourcing::AnyTenantStores::Postgres(stores) = tenants.stores().clone() else {
        panic!("not the PostgreSQL layout")
    };
    let _cleanup = Cleanup(*stores);
    let stats = tenants.stats();
    assert_eq!((stats.max_open, stats.per_tenant), (3, 2));
    let acme = tenants.get("acme").await.unwrap();
    let mut w = WidgetRegistryEndpoint::create("u".into(), "n".into(), "acme".into());
    acme.save(&mut w).await.unwrap();
    let eventsourcing::AnyStore::Postgres(store) = acme.store() else {
        panic!("not a PostgreSQL store")
    };
    assert_eq!(store.config().schema(), pattern.replace("{id}", "acme"));
    assert!(store.pool_state().connections <= 2);
}
