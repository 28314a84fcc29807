//! Tenants on PostgreSQL, both layouts: the tenant suite (`tests/tenants/`: isolation of
//! events, log, snapshots and projections; 200 tenants served at once under a bound of 20
//! connections, seen by the registry and by the server; bad tenant ids create nothing; the
//! admin functions), plus a database name too long and tenants from the environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenants;

use std::collections::BTreeSet;

use eventsourcing::{
    postgres::{
        spawn_projection,
        testing::{self, CountEvents, DropTenants},
        PostgresConfig, PostgresStore, PostgresTenants, ProjectionOptions, TenantLayout,
    },
    prelude::*,
    Error, RunnerHandle, TenantError, TenantId, TenantStores, Tenants,
};
use tenants::{limits, widget::WidgetRegistryEndpoint, Counted};

/// Each tenant counts into `counted` in its own schema.
impl Counted for PostgresStore {
    const COUNT: &'static str = CountEvents::NAME;

    fn spawn_count(&self) -> RunnerHandle {
        spawn_projection(self.clone(), count(self), ProjectionOptions::default())
    }

    async fn counted(&self) -> BTreeSet<Uuid> {
        count(self).counted(self).await.into_keys().collect()
    }
}

fn count(store: &PostgresStore) -> CountEvents {
    CountEvents {
        table: format!("\"{}\".counted", store.config().schema()),
    }
}

/// The test server with an `application_name` of the test's own (to count its connections).
fn server(app_name: &str) -> PostgresConfig {
    let url = testing::url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={app_name}")
        .parse()
        .expect("the test server's URL")
}

/// A database (`es_tdb_<random>_<id>`) or a schema (`es_tsc_<random>_<id>`) per tenant, each
/// dropped afterwards.
fn layout(layout: TenantLayout, app_name: &str) -> DropTenants {
    let builder = server(app_name).to_builder();
    let stores = match layout {
        TenantLayout::Database => {
            let pattern = format!("{}_{{id}}", testing::unique_name("es_tdb"));
            PostgresTenants::database(builder.dbname(pattern).build().unwrap())
        }
        TenantLayout::Schema => {
            let pattern = format!("{}_{{id}}", testing::unique_name("es_tsc"));
            PostgresTenants::schema(builder.schema(pattern).build().unwrap())
        }
    };
    DropTenants(stores.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_per_tenant_isolates_events_log_snapshots_and_projections() {
    let stores = layout(TenantLayout::Database, "es_tenants_iso_db");
    tenants::isolation(stores.0.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_per_tenant_isolates_events_log_snapshots_and_projections() {
    let stores = layout(TenantLayout::Schema, "es_tenants_iso_schema");
    tenants::isolation(stores.0.clone()).await;
}

/// The suite's 200 tenants under 20 connections, and the server's count of the sessions with
/// this test's `application_name` while they run, in the tenants' own databases. (The database
/// layout creates a tenant's database over a short connection to the admin database, inside the
/// tenant's place and closed before its pool opens; the server may still list that session for
/// a moment after the client closed it, so it is not counted.)
async fn two_hundred_tenants(stores: PostgresTenants, app_name: &str) {
    const CAP: u32 = 20;
    let tenants = Tenants::new(stores, limits(CAP, CAP)).unwrap();
    let watcher = &testing::TestSchema::new().await.client().await.unwrap();
    let count = move || async move {
        let row = watcher
            .query_one(
                "SELECT count(*)::int4 FROM pg_stat_activity \
                 WHERE application_name = $1 AND datname <> 'postgres'",
                &[&app_name],
            )
            .await
            .unwrap();
        row.get::<_, i32>(0) as u32
    };
    // A session whose client has closed it (a tenant closed to make room) may still be listed
    // until its backend has exited: a count over the cap is read again until those backends
    // are gone, for at most 10 s (then the count stands). The pools' own count (`held`) is
    // exact and checked as it is.
    let sessions = move || async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let seen = count().await;
            if seen <= CAP || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let (held, seen) = tenants::many_tenants(&tenants, 200, sessions).await;
    println!("at most {held} pooled connections, {seen} sessions on the server");
    assert!(held <= CAP, "the tenants' pools held {held} connections");
    assert!(seen <= CAP, "the server saw {seen} sessions of the tenants");
    assert!(
        held > 0 && seen > 0,
        "the samplers saw no connection at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenants_share_twenty_connections_schema_layout() {
    let app_name = testing::unique_name("es_tenants200s");
    let stores = layout(TenantLayout::Schema, &app_name);
    two_hundred_tenants(stores.0.clone(), &app_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenant_databases_share_twenty_connections() {
    // As many as the schema layout: each tenant is a CREATE DATABASE (0.3 to 1 s on a busy
    // 2-core machine) and a DROP DATABASE afterwards, so this test takes a minute or two.
    let app_name = testing::unique_name("es_tenants200d");
    let stores = layout(TenantLayout::Database, &app_name);
    two_hundred_tenants(stores.0.clone(), &app_name).await;
}

#[tokio::test]
async fn bad_tenant_ids_are_refused_and_create_nothing() {
    let stores = layout(TenantLayout::Database, "es_tenants_bad");
    let tenants = Tenants::new(stores.0.clone(), limits(4, 2)).unwrap();
    tenants::bad_ids_are_refused_and_create_nothing(&tenants).await;
    // A valid id whose database name would be too long is refused the same way.
    let near = "b".repeat(63);
    assert!(matches!(
        tenants.get(&near).await,
        Err(Error::Tenant(TenantError::InvalidId { .. }))
    ));
    assert!(
        stores.0.list().await.unwrap().is_empty(),
        "something was created"
    );
}

#[tokio::test]
async fn admin_creates_migrates_and_lists_tenants_and_a_registry_without_create_finds_them() {
    let stores = layout(TenantLayout::Schema, "es_tenants_admin");
    // The least-privilege set-up: the application creates nothing at run time.
    let base = stores
        .0
        .tenant_config(&TenantId::new("x").unwrap(), 1)
        .unwrap();
    let no_create = PostgresTenants::schema(
        base.to_builder()
            .schema(stores.0.pattern().to_string())
            .create_table(false)
            .build()
            .unwrap(),
    )
    .unwrap();
    tenants::admin_creates_and_migrates_and_no_create_creates_nothing(&stores.0, no_create).await;
}

#[tokio::test]
async fn tenants_from_the_environment_on_postgres() {
    let pattern = format!("{}_{{id}}", testing::unique_name("es_tenv"));
    let url = testing::url();
    let env = eventsourcing::Env::from_map([
        ("TENANT_LAYOUT", "schema"),
        ("DATABASE_URL", url.as_str()),
        ("POSTGRES_SCHEMA", pattern.as_str()),
        ("TENANT_MAX_CONNECTIONS", "6"),
        ("TENANT_MAX_OPEN", "3"),
    ]);
    let tenants = eventsourcing::tenants_from_env(&env).unwrap();
    let eventsourcing::AnyTenantStores::Postgres(stores) = tenants.stores() else {
        panic!("not the PostgreSQL layout")
    };
    let _cleanup = DropTenants((**stores).clone());
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

#[test]
fn tenant_shards_from_the_environment_read_each_shards_own_settings_first() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("tenants");
    std::fs::write(&directory, "acme = eu2\n").unwrap();
    let url = testing::url();
    let vars = |extra: &[(&'static str, &str)]| {
        let mut vars = vec![
            ("TENANT_LAYOUT", "schema"),
            ("DATABASE_URL", url.as_str()),
            ("POSTGRES_SCHEMA", "one_{id}"),
            ("TENANT_SHARDS", "eu1, eu2"),
            ("TENANT_DIRECTORY", directory.to_str().unwrap()),
            ("EU2_POSTGRES_SCHEMA", "two_{id}"),
        ];
        vars.extend_from_slice(extra);
        eventsourcing::Env::from_map(vars)
    };
    let stores = eventsourcing::AnyTenantStores::from_env(&vars(&[])).unwrap();
    let eventsourcing::AnyTenantStores::PostgresShards(shards) = &stores else {
        panic!("not sharded: {stores:?}")
    };
    let pattern = |shard: &str| shards.shard(shard).unwrap().pattern().to_string();
    assert_eq!(
        (pattern("eu1"), pattern("eu2")),
        ("one_{id}".into(), "two_{id}".into())
    );
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();
    assert_eq!(shards.directory().shard_of(&acme), "eu2");
    assert_eq!(shards.directory().shard_of(&globex), "eu1");

    let refused = |extra: &[(&'static str, &str)], says: &str| {
        let err = eventsourcing::AnyTenantStores::from_env(&vars(extra)).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    };
    refused(
        &[("TENANT_SHARDS", "eu-2,eu_2")],
        "would read the same variables",
    );
    refused(&[("TENANT_SHARDS", "eu1,EU 2")], "shard name");
    refused(&[("TENANT_SHARDS", "eu1")], "eu2");
    refused(&[("TENANT_DIRECTORY", "")], "TENANT_DIRECTORY");
    refused(
        &[("TENANT_LAYOUT", "file"), ("SQLITE_DBNAME", "t_{id}.db")],
        "shards are for the PostgreSQL layouts",
    );
}
