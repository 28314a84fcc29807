//! Migrations: idempotent, recorded with checksums, guarded against edits; CREATE_TABLE=n (the
//! admin tool's tests are in eventsourcing-admin/tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{Error, EventStore, NewEvent, Position};
use eventsourcing_postgres::{
    testing::{join_all, TestSchema},
    tokio_postgres::Client,
    MigrationState, PostgresStore, MIGRATIONS,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const FILES: [&str; 6] = [
    include_str!("../migrations/0001_events.sql"),
    include_str!("../migrations/0002_snapshots.sql"),
    include_str!("../migrations/0003_tracking.sql"),
    include_str!("../migrations/0004_parked_events.sql"),
    include_str!("../migrations/0005_stream_type.sql"),
    include_str!("../migrations/0006_no_version_check.sql"),
];

fn event(stream_id: Uuid, version: u64) -> NewEvent {
    NewEvent::new(stream_id, version, "Created", b"{}".to_vec())
}

/// A store migrated on a fresh schema, with a plain client on the server for looking at (and
/// tampering with) its `eventsourcing_migrations` table; the schema is dropped with it.
struct Migrated {
    store: PostgresStore,
    client: Client,
    /// `eventsourcing_migrations`, qualified by the schema.
    table: String,
    schema: TestSchema,
}

impl Migrated {
    async fn on(schema: TestSchema) -> Self {
        Migrated {
            store: schema.store().await,
            client: schema.client().await.unwrap(),
            table: format!("\"{}\".eventsourcing_migrations", schema.name()),
            schema,
        }
    }
}

async fn migrated() -> Migrated {
    Migrated::on(TestSchema::new().await).await
}

async fn schema_exists(schema: &TestSchema) -> bool {
    schema
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema.name()],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connect_migrates_and_migrating_again_changes_nothing() {
    let schema = TestSchema::new().await;
    assert!(!schema_exists(&schema).await);
    let store = schema.store().await;
    assert!(schema_exists(&schema).await, "the schema is created");

    let report = store.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.already_applied, [1, 2, 3, 4, 5, 6]);
    // A second store on the same schema migrates nothing either and sees the same tables.
    let again = schema.store().await;
    let id = Uuid::new_v4();
    store.append(vec![event(id, 1)]).await.unwrap();
    assert_eq!(again.stream_version(id).await.unwrap(), 1);

    let status = store.status().await.unwrap();
    assert_eq!(status.schema, schema.name());
    assert_eq!(
        MIGRATIONS
            .status(&status.applied)
            .iter()
            .map(|m| (m.version, m.description.as_str(), m.state))
            .collect::<Vec<_>>(),
        vec![
            (1, "events", MigrationState::Applied),
            (2, "snapshots", MigrationState::Applied),
            (3, "tracking", MigrationState::Applied),
            (4, "parked_events", MigrationState::Applied),
            (5, "stream_type", MigrationState::Applied),
            (6, "no_version_check", MigrationState::Applied)
        ]
    );
    assert!(status.pending.is_empty());
    let states: Vec<_> = store
        .migration_status()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.version, m.state))
        .collect();
    assert_eq!(
        states,
        [1, 2, 3, 4, 5, 6].map(|v| (v, MigrationState::Applied)),
        "the same status as SQLite's migration_status"
    );
    assert_eq!(status.events, Some(1));
    assert!(!status.log_ahead_of_server);
    store.check_schema().await.unwrap();
}

#[tokio::test]
async fn checksums_are_recorded_and_a_changed_migration_is_refused() {
    let m = migrated().await;
    let (store, client, table, schema) = (&m.store, &m.client, &m.table, &m.schema);
    let rows = client
        .query(
            &format!("SELECT version, checksum FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), FILES.len());
    for (row, file) in rows.iter().zip(FILES) {
        let recorded: Vec<u8> = row.get(1);
        assert_eq!(recorded, Sha256::digest(file.as_bytes()).to_vec());
    }

    client
        .execute(
            &format!("UPDATE {table} SET checksum = '\\x00' WHERE version = 2"),
            &[],
        )
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    match &err {
        Error::Schema(message) => {
            assert!(message.contains("migration 2 (snapshots)"), "{message}");
            assert!(message.contains("checksum"), "{message}");
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    let status = store.status().await.unwrap();
    assert_eq!(
        MIGRATIONS.status(&status.applied)[1].state,
        MigrationState::ChecksumMismatch
    );
    // And connecting with CREATE_TABLE=y refuses too.
    let err = PostgresStore::connect(schema.config()).await.unwrap_err();
    assert!(matches!(err, Error::Schema(_)), "{err:?}");
}

#[tokio::test]
async fn checksums_recorded_from_a_crlf_checkout_still_verify() {
    // The first release hashed each file as checked out; from a checkout with Windows line
    // endings that is the hash of the CRLF text.
    let m = migrated().await;
    let (store, client, table) = (&m.store, &m.client, &m.table);
    for (version, file) in (1..).zip(FILES) {
        let crlf = Sha256::digest(file.replace('\n', "\r\n").as_bytes()).to_vec();
        client
            .execute(
                &format!("UPDATE {table} SET checksum = $1 WHERE version = $2"),
                &[&crlf, &version],
            )
            .await
            .unwrap();
    }
    let report = store.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    let status = store.status().await.unwrap();
    assert!(MIGRATIONS
        .status(&status.applied)
        .iter()
        .all(|m| m.state == MigrationState::Applied));
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_refused() {
    let m = migrated().await;
    let (store, client, table, schema) = (&m.store, &m.client, &m.table, &m.schema);
    client
        .execute(
            &format!(
                "INSERT INTO {table} (version, description, checksum) \
                 VALUES (999, 'future', '\\x00')"
            ),
            &[],
        )
        .await
        .unwrap();
    for err in [
        store.migrate().await.unwrap_err(),
        PostgresStore::connect(schema.config()).await.unwrap_err(),
    ] {
        match err {
            Error::Schema(message) => {
                assert!(message.contains("migration 999 (future)"), "{message}");
                assert!(message.contains("newer release"), "{message}");
                assert!(message.contains(schema.name()), "{message}");
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }
    let status = store.status().await.unwrap();
    assert_eq!(
        MIGRATIONS.status(&status.applied).last().map(|m| m.state),
        Some(MigrationState::Unknown)
    );
}

#[tokio::test]
async fn the_pooled_connection_that_migrated_holds_no_lock() {
    // `connect` migrates on its first connection, then hands it to the pool.
    let m = migrated().await;
    let (store, client, schema) = (&m.store, &m.client, &m.schema);
    let key = format!("eventsourcing-migrate:{}", schema.name());
    let free: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert!(free, "the migration lock is still held");
    client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .unwrap();
    store.stream_version(Uuid::new_v4()).await.unwrap();
}

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let schema = TestSchema::new().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let config = schema.config();
            tokio::spawn(async move { PostgresStore::connect(config).await })
        })
        .collect();
    for connected in join_all(connects, Duration::from_secs(60), "the concurrent connects").await {
        connected.unwrap();
    }
    let m = Migrated::on(schema).await;
    let (client, table) = (&m.client, &m.table);
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, FILES.len() as i64);
}

#[tokio::test]
async fn without_create_table_nothing_issues_ddl_and_missing_tables_say_what_to_run() {
    let schema = TestSchema::new().await;
    let store = schema.store_with(|b| b.create_table(false)).await;
    let id = Uuid::new_v4();

    let errors = vec![
        store.append(vec![event(id, 1)]).await.unwrap_err(),
        store.load(id, 0, None).await.unwrap_err(),
        store.stream_version(id).await.unwrap_err(),
        store.read_log(Position::START, 10).await.unwrap_err(),
        store.check_schema().await.unwrap_err(),
    ];
    for err in errors {
        match err {
            Error::Schema(message) => {
                assert!(message.contains("eventsourcing-admin migrate"), "{message}");
                assert!(message.contains(schema.name()), "{message}");
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }
    assert!(!schema_exists(&schema).await, "no DDL ran");
    let status = store.status().await.unwrap();
    assert_eq!(status.pending.len(), FILES.len());
    assert_eq!(status.events, None);

    // After the migration the same store (and its pooled connections) works.
    let report = store.migrate().await.unwrap();
    assert_eq!(report.applied_versions(), [1, 2, 3, 4, 5, 6]);
    assert!(report.already_applied.is_empty());
    store.append(vec![event(id, 1)]).await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 1);
}
