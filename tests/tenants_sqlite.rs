//! Tenants on SQLite, a file each: the tenant suite (`tests/tenants/`: isolation of events, log,
//! snapshots and projections; 200 tenants served at once under a bound of 20 connections; bad
//! tenant ids create no file; the admin functions), plus the files themselves and tenants from
//! the environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenants;

use std::collections::BTreeSet;

use eventsourcing::{
    prelude::*,
    sqlite::{
        rusqlite::Transaction, spawn_projection, ProjectionOptions, SqliteConfig, SqliteProjection,
        SqliteStore, SqliteTenants,
    },
    tenants_from_env, AnyStore, BoxError, Env, RunnerHandle, StoredEvent, Tenants,
};
use tenants::{limits, Counted};

fn stores(dir: &tempfile::TempDir, create: bool) -> SqliteTenants {
    let pattern = dir.path().join("tenant_{id}.sqlite");
    let config = SqliteConfig::builder()
        .dbname(pattern.to_string_lossy())
        .create_table(create)
        .build();
    SqliteTenants::new(config).unwrap()
}

fn files(dir: &tempfile::TempDir) -> BTreeSet<String> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Counts each event into the table `counted` of the tenant's file.
struct Count;

impl SqliteProjection for Count {
    fn name(&self) -> &str {
        SqliteStore::COUNT
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

impl Counted for SqliteStore {
    const COUNT: &'static str = "count";

    fn spawn_count(&self) -> RunnerHandle {
        spawn_projection(self.clone(), Count, ProjectionOptions::default())
    }

    async fn counted(&self) -> BTreeSet<Uuid> {
        self.query(|tx| {
            let mut stmt = tx.prepare("SELECT DISTINCT stream_id FROM counted")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            rows.map(|r| r.map(|b| Uuid::from_slice(&b).unwrap()))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_per_tenant_isolates_events_log_snapshots_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    tenants::isolation(stores(&dir, true)).await;
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
    let (most, _) = tenants::many_tenants(&tenants, 200, || async { 0 }).await;
    assert!(
        most > 0 && most <= CAP,
        "the open tenants held {most} connections"
    );
}

#[tokio::test]
async fn bad_tenant_ids_are_refused_and_create_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Tenants::new(stores(&dir, true), limits(4, 2)).unwrap();
    tenants::bad_ids_are_refused_and_create_nothing(&tenants).await;
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
    tenants::admin_creates_and_migrates_and_no_create_creates_nothing(
        &stores(&dir, true),
        stores(&dir, false),
    )
    .await;
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
