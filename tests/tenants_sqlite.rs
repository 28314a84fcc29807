//! Tenants on SQLite, a file each: isolation of events, log, snapshots and projections; 200
//! tenants served at once under a bound of 20 connections; bad tenant ids create no file; the
//! admin functions; tenants from the environment.
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
    prelude::*,
    sqlite::{
        rusqlite::Transaction, spawn_projection, ProjectionOptions, SqliteConfig, SqliteProjection,
        SqliteStore, SqliteTenants,
    },
    tenants_from_env, AnyStore, BoxError, Env, Position, StoredEvent, TenantError, TenantLimits,
    TenantStores, Tenants,
};
use widget::WidgetRegistryEndpoint;

fn stores(dir: &tempfile::TempDir, create: bool) -> SqliteTenants {
    let pattern = dir.path().join("tenant_{id}.sqlite");
    let config = SqliteConfig::builder()
        .dbname(pattern.to_string_lossy())
        .create_table(create)
        .build();
    SqliteTenants::new(config).unwrap()
}

fn limits(max_connections: u32, max_open: u32) -> TenantLimits {
    TenantLimits {
        max_connections,
        max_open,
        wait: Duration::from_secs(120),
    }
}

fn files(dir: &tempfile::TempDir) -> BTreeSet<String> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

struct Count;

impl SqliteProjection for Count {
    fn name(&self) -> &str {
        "count"
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS counted (stream_id BLOB, version INTEGER, \
             PRIMARY KEY (stream_id, version))",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        tx.execute(
            "INSERT INTO counted VALUES (?1, ?2)",
            (event.stream_id.as_bytes().to_vec(), event.version as i64),
        )?;
        Ok(())
    }
}

async fn counted(store: &SqliteStore) -> BTreeSet<Uuid> {
    store
        .query(|tx| {
            let mut stmt = tx.prepare("SELECT DISTINCT stream_id FROM counted")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            rows.map(|r| r.map(|b| Uuid::from_slice(&b).unwrap()))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_per_tenant_isolates_events_log_snapshots_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Tenants::new(stores(&dir, true), limits(4, 2)).unwrap();
    let a = tenants.get("acme").await.unwrap();
    let b = tenants.get("globex").await.unwrap();
    let mut ids = Vec::new();
    for (tenant, name) in [(&a, "a"), (&b, "b")] {
        let mut w = WidgetRegistryEndpoint::create("u".into(), name.into(), name.into());
        w.update_name(format!("{name}1"));
        tenant.save(&mut w).await.unwrap();
        tenant
            .take_snapshot::<WidgetRegistryEndpoint>(w.id(), None)
            .await
            .unwrap();
        ids.push(w.id());
    }
    let (id_a, id_b) = (ids[0], ids[1]);
    assert_eq!(
        a.repository()
            .get::<WidgetRegistryEndpoint>(id_a)
            .await
            .unwrap()
            .name,
        "a1"
    );
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
    for (tenant, own, other) in [(&a, id_a, id_b), (&b, id_b, id_a)] {
        let log = tenant.store().read_log(Position::START, 100).await.unwrap();
        assert_eq!(log.len(), 2);
        assert!(log.iter().all(|e| e.stream_id == own));
        assert!(tenant
            .store()
            .load_snapshot(own, None)
            .await
            .unwrap()
            .is_some());
        assert!(tenant
            .store()
            .load_snapshot(other, None)
            .await
            .unwrap()
            .is_none());

        let store = tenant.store().clone();
        let handle = spawn_projection(store.clone(), Count, ProjectionOptions::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while store.projection_lag("count").await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never caught up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.stop().await.unwrap();
        assert_eq!(counted(&store).await, BTreeSet::from([own]));
    }
    assert_eq!(
        files(&dir)
            .into_iter()
            .filter(|f| f.ends_with(".sqlite"))
            .collect::<Vec<_>>(),
        ["tenant_acme.sqlite", "tenant_globex.sqlite"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenant_files_share_twenty_connections() {
    const CAP: u32 = 20;
    let dir = tempfile::tempdir().unwrap();
    let tenants = Tenants::new(stores(&dir, true), limits(CAP, CAP)).unwrap();
    assert_eq!(
        tenants.stats().max_open,
        CAP / 2,
        "a writer and a reader each"
    );
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU32::new(0));
    let sampler = {
        let (tenants, done, most) = (tenants.clone(), Arc::clone(&done), Arc::clone(&most));
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                let s = tenants.stats();
                assert!(s.open + s.opening + s.closing <= s.max_open, "{s:?}");
                most.fetch_max(s.connections, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let id = format!("t{i:03}");
                let stream = {
                    let tenant = tenants.get(&id).await?;
                    let mut w = WidgetRegistryEndpoint::create("u".into(), id.clone(), id.clone());
                    tenant.save(&mut w).await?;
                    w.id()
                };
                tokio::task::yield_now().await;
                let tenant = tenants.get(&id).await?;
                let w: WidgetRegistryEndpoint = tenant.repository().get(stream).await?;
                assert_eq!(w.name, id);
                Ok::<_, eventsourcing::Error>((id, stream))
            })
        })
        .collect();
    let mut saved = Vec::new();
    for t in tasks {
        saved.push(t.await.unwrap().unwrap());
    }
    done.store(true, Ordering::Release);
    sampler.await.unwrap();
    for (id, stream) in &saved {
        let tenant = tenants.get(id).await.unwrap();
        let log = tenant.store().read_log(Position::START, 10).await.unwrap();
        assert_eq!(
            log.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
            [*stream]
        );
    }
    let most = most.load(Ordering::Relaxed);
    assert!(
        most > 0 && most <= CAP,
        "the open tenants held {most} connections"
    );
    assert_eq!(tenants.stores().list().await.unwrap().len(), 200);
    tenants.close_idle().await;
    assert_eq!(tenants.stats().open, 0);
}

#[tokio::test]
async fn bad_tenant_ids_are_refused_and_create_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Tenants::new(stores(&dir, true), limits(4, 2)).unwrap();
    let long = "a".repeat(200);
    for id in [
        "/",
        "..",
        ".",
        "../x",
        "a/b",
        "it's",
        "\"q\"",
        "a b",
        &long,
        "postgres",
        "template0",
        "public",
        "information_schema",
        "pg_x",
    ] {
        match tenants.get(id).await {
            Err(eventsourcing::Error::Tenant(TenantError::InvalidId { id: shown, reason })) => {
                assert!(shown.starts_with('"') && !reason.is_empty())
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    assert!(std::fs::read_dir(dir.path().parent().unwrap())
        .unwrap()
        .all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("tenant_")));
}

#[tokio::test]
async fn admin_creates_migrates_lists_and_a_registry_without_create_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let admin = stores(&dir, true);
    for id in ["beta", "alpha"] {
        admin.create(&id.parse().unwrap()).await.unwrap();
    }
    let mut progress = Vec::new();
    let report = migrate_tenants(&admin, |p| {
        progress.push((p.tenant.to_string(), p.done, p.total))
    })
    .await
    .unwrap();
    assert_eq!(report.migrated.len(), 2);
    assert_eq!(
        progress,
        [("alpha".to_owned(), 1, 2), ("beta".to_owned(), 2, 2)]
    );

    let tenants = Tenants::new(stores(&dir, false), limits(4, 2)).unwrap();
    let alpha = tenants.get("alpha").await.unwrap();
    let mut w = WidgetRegistryEndpoint::create("u".into(), "n".into(), "alpha".into());
    alpha.save(&mut w).await.unwrap();
    assert!(matches!(
        tenants.get("gamma").await,
        Err(eventsourcing::Error::Tenant(TenantError::NotFound { .. }))
    ));
    assert_eq!(admin.list().await.unwrap().len(), 2, "gamma was created");
}

#[tokio::test]
async fn tenants_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("t_{id}.db").to_string_lossy().into_owned();
    let env = Env::from_map([
        ("TENANT_LAYOUT", "file"),
        ("SQLITE_DBNAME", pattern.as_str()),
        ("TENANT_MAX_CONNECTIONS", "6"),
        ("TENANT_MAX_OPEN", "2"),
    ]);
    let tenants = tenants_from_env(&env).unwrap();
    let stats = tenants.stats();
    assert_eq!((stats.max_open, stats.per_tenant), (2, 3));
    let acme = tenants.get("acme").await.unwrap();
    assert!(matches!(acme.store(), AnyStore::Sqlite(_)));
    assert!(dir.path().join("t_acme.db").exists());

    for (vars, var) in [
        (vec![("TENANT_LAYOUT", "cloud")], "TENANT_LAYOUT"),
        (vec![], "TENANT_LAYOUT"),
        (
            vec![
                ("TENANT_LAYOUT", "file"),
                ("SQLITE_DBNAME", "no_placeholder.db"),
            ],
            "SQLITE_DBNAME",
        ),
        (
            vec![
                ("TENANT_LAYOUT", "database"),
                ("POSTGRES_HOST", "h"),
                ("POSTGRES_USER", "u"),
                ("POSTGRES_DBNAME", "tenant_{id}{id}"),
            ],
            "POSTGRES_DBNAME",
        ),
        (
            vec![
                ("TENANT_LAYOUT", "file"),
                ("SQLITE_DBNAME", pattern.as_str()),
                ("TENANT_MAX_CONNECTIONS", "1"),
            ],
            "TENANT_MAX_CONNECTIONS",
        ),
    ] {
        let err = tenants_from_env(&Env::from_map(vars)).unwrap_err();
        assert!(err.to_string().contains(var), "{var}: {err}");
    }
    for (var, bad) in [
        ("TENANT_MAX_CONNECTIONS", "0"),
        ("TENANT_MAX_CONNECTIONS", "-1"),
        ("TENANT_MAX_CONNECTIONS", "many"),
        ("TENANT_MAX_CONNECTIONS", "1e20"),
        ("TENANT_MAX_OPEN", "0"),
        ("TENANT_MAX_OPEN", "2.5"),
        ("TENANT_TIMEOUT", "NaN"),
        ("TENANT_TIMEOUT", "-3"),
        ("TENANT_TIMEOUT", "1e20"),
    ] {
        let env = Env::from_map([
            ("TENANT_LAYOUT", "file"),
            ("SQLITE_DBNAME", pattern.as_str()),
            (var, bad),
        ]);
        match tenants_from_env(&env) {
            Err(eventsourcing::Error::Config(e)) => assert_eq!(e.var, var, "{bad}: {e}"),
            other => panic!("{var}={bad}: {other:?}"),
        }
    }
}
