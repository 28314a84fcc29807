//! Migrations: idempotent, checksummed, and never run when CREATE_TABLE is off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::events;
use eventsourcing_core::{Error, EventStore, Position, Uuid};
use eventsourcing_sqlite::{
    rusqlite::Connection, testing::TempGuard, MigrationState, MigrationStatus, SqliteStore,
};

fn schema_message(err: Error) -> String {
    match err {
        Error::Schema(message) => message,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

fn tables(guard: &TempGuard) -> Vec<String> {
    let conn = Connection::open(guard.path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let guard = TempGuard::new();
    let store = guard.store().await;
    for _ in 0..2 {
        let report = store.migrate().await.unwrap();
        assert!(report.applied.is_empty(), "{report:?}");
        assert_eq!(report.already_applied, [1, 2, 3]);
    }
    store.check_schema().await.unwrap();
    drop(store);
    // Reopening migrates again: nothing to do, and the data is untouched.
    let store = guard.store().await;
    store.append(events(Uuid::new_v4(), 1, 2)).await.unwrap();
    drop(store);
    let store = guard.store().await;
    assert_eq!(store.read_log(Position::START, 10).await.unwrap().len(), 2);
    let conn = Connection::open(guard.path()).unwrap();
    let recorded: i64 = conn
        .query_row("SELECT count(*) FROM eventsourcing_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(recorded, 3);
}

#[tokio::test]
async fn a_database_of_the_first_release_gets_the_later_migrations() {
    let guard = TempGuard::created();
    // Back to what the first release left: migration 1 only.
    guard.execute(
        "DROP TABLE parked_events; ALTER TABLE events DROP COLUMN stream_type; \
         DELETE FROM eventsourcing_migrations WHERE version > 1",
    );

    let store = guard.store_with(|b| b.create_table(false)).await;
    let message = schema_message(store.check_schema().await.unwrap_err());
    assert!(message.contains("lacks migration 2"), "{message}");
    let report = store.migrate().await.unwrap();
    assert_eq!(report.applied_versions(), [2, 3]);
    assert_eq!(report.already_applied, [1]);
    store.check_schema().await.unwrap();
    assert!(tables(&guard).contains(&"parked_events".to_owned()));
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let guard = TempGuard::created();
    guard.execute("UPDATE eventsourcing_migrations SET checksum = x'00ff' WHERE version = 1");

    let message = schema_message(SqliteStore::open(guard.config()).await.unwrap_err());
    assert!(message.contains("migration 1"), "{message}");
    assert!(message.contains("checksum 00ff"), "{message}");

    // Without CREATE_TABLE the store opens, but checking or migrating reports the same problem.
    let store = guard.store_with(|b| b.create_table(false)).await;
    assert!(schema_message(store.migrate().await.unwrap_err()).contains("checksum"));
    assert!(schema_message(store.check_schema().await.unwrap_err()).contains("checksum"));
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused() {
    let guard = TempGuard::created();
    guard.execute("INSERT INTO eventsourcing_migrations VALUES (999, 'future', x'00', 0)");
    let message = schema_message(SqliteStore::open(guard.config()).await.unwrap_err());
    assert!(
        message.contains("migration 999") && message.contains("newer"),
        "{message}"
    );
}

#[tokio::test]
async fn without_create_table_nothing_is_created_and_the_error_says_how_to_migrate() {
    let guard = TempGuard::new();
    let store = guard.store_with(|b| b.create_table(false)).await;
    let stream = Uuid::new_v4();
    for err in [
        store.append(events(stream, 1, 1)).await.unwrap_err(),
        store.load(stream, 0, None).await.unwrap_err(),
        store.stream_version(stream).await.unwrap_err(),
        store.read_log(Position::START, 10).await.unwrap_err(),
        store.check_schema().await.unwrap_err(),
    ] {
        let message = schema_message(err);
        assert!(message.contains("SqliteStore::migrate()"), "{message}");
        assert!(message.contains(&guard.dbname()), "{message}");
    }
    assert_eq!(tables(&guard), Vec::<String>::new(), "no DDL was issued");

    // Migrating explicitly makes the same store usable.
    assert_eq!(store.migrate().await.unwrap().applied_versions(), [1, 2, 3]);
    store.check_schema().await.unwrap();
    store.append(events(stream, 1, 1)).await.unwrap();
    assert_eq!(store.stream_version(stream).await.unwrap(), 1);
    assert_eq!(
        tables(&guard),
        [
            "events",
            "eventsourcing_migrations",
            "parked_events",
            "snapshots",
            "sqlite_sequence",
            "tracking"
        ]
    );
}

#[tokio::test]
async fn without_create_table_in_memory_the_error_says_how_to_migrate() {
    let config = eventsourcing_sqlite::SqliteConfig::memory()
        .to_builder()
        .create_table(false)
        .build();
    let store = SqliteStore::open(config).await.unwrap();
    let message = schema_message(store.stream_version(Uuid::new_v4()).await.unwrap_err());
    assert!(message.contains("SqliteStore::migrate()"), "{message}");
    store.migrate().await.unwrap();
    assert_eq!(store.stream_version(Uuid::new_v4()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_migrating_the_same_file_at_once_apply_each_migration_once() {
    let guard = TempGuard::new();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let config = guard.config();
            tokio::spawn(async move { SqliteStore::open(config).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        let opened = tokio::time::timeout(std::time::Duration::from_secs(60), open)
            .await
            .expect("opening (and migrating) a store did not finish within 60 s");
        stores.push(opened.unwrap().unwrap());
    }

    // Each migration is recorded exactly once, whoever applied it.
    let conn = Connection::open(guard.path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, count(*) FROM eventsourcing_migrations GROUP BY version ORDER BY version")
        .unwrap();
    let recorded: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded, [(1, 1), (2, 1), (3, 1)]);

    // And the schema works for every one of them: what one writes, all read.
    let stream = Uuid::new_v4();
    stores[0].append(events(stream, 1, 2)).await.unwrap();
    for (i, store) in stores.iter().enumerate() {
        store.check_schema().await.unwrap();
        let report = store.migrate().await.unwrap();
        assert!(report.applied.is_empty(), "store {i}: {report:?}");
        assert_eq!(store.stream_version(stream).await.unwrap(), 2, "store {i}");
    }
    stores[3].append(events(stream, 3, 3)).await.unwrap();
    assert_eq!(stores[1].load(stream, 0, None).await.unwrap(), {
        let all = stores[3].load(stream, 0, None).await.unwrap();
        assert_eq!(all.len(), 3);
        all
    });
}

#[tokio::test]
async fn migration_status_tells_where_each_migration_stands() {
    let guard = TempGuard::new();
    let store = guard.store_with(|b| b.create_table(false)).await;
    let states = |status: Vec<MigrationStatus>| {
        status
            .into_iter()
            .map(|m| (m.version, m.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(store.migration_status().await.unwrap()),
        [1, 2, 3].map(|v| (v, MigrationState::Pending))
    );
    store.migrate().await.unwrap();
    let status = store.migration_status().await.unwrap();
    assert!(status.iter().all(|m| m.applied_at.is_some()));
    assert_eq!(
        states(status),
        [1, 2, 3].map(|v| (v, MigrationState::Applied))
    );

    guard.execute(
        "UPDATE eventsourcing_migrations SET checksum = x'00' WHERE version = 2;
         INSERT INTO eventsourcing_migrations VALUES (7, 'future', x'00', 0);",
    );
    let status = store.migration_status().await.unwrap();
    assert_eq!(status[3].description, "future");
    assert_eq!(
        states(status),
        [
            (1, MigrationState::Applied),
            (2, MigrationState::ChecksumMismatch),
            (3, MigrationState::Applied),
            (7, MigrationState::Unknown)
        ]
    );
    // The lowest misfit stops a run before it applies anything.
    let message = schema_message(store.migrate().await.unwrap_err());
    assert!(message.contains("migration 2 ("), "{message}");
}
