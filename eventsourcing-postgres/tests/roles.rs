//! Least privilege: a store run by an application role with exactly the granted rights does
//! everything the runtime does, and cannot update, delete or truncate events; the append-only
//! trigger refuses even the owner, except in a transaction that sets the archiving escape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{
    EventStore, NewEvent, ParkedEvent, Position, ProjectionOptions, Snapshot, Tracking,
};
use eventsourcing_postgres::{
    roles, spawn_projection,
    testing::{CountEvents, TestRole, TestSchema},
    tokio_postgres::{error::SqlState, Client},
    PostgresStore,
};
use uuid::Uuid;

/// Runs `sql` through `client`, which must be refused for want of privilege.
async fn refused(client: &Client, sql: &str) {
    let err = client.batch_execute(sql).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {err}"
    );
}

fn snapshot(stream_id: Uuid, version: u64) -> Snapshot {
    Snapshot {
        stream_id,
        version,
        state_type: "Widget".into(),
        fingerprint: 7,
        timestamp: chrono::Utc::now(),
        payload: b"{}".to_vec(),
    }
}

async fn caught_up(store: &PostgresStore, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.projection_lag(name).await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_runs_the_store_but_cannot_change_events() {
    let schema = TestSchema::new().await;
    let owner_store = schema.store().await; // the owner (the test's login) migrates
    let owner = owner_store.dedicated_client().await.unwrap();
    let role = TestRole::new("es_app").await;

    // What an operator prints, then applies as the owner.
    let printed = owner_store.grant_statements(role.name());
    assert!(printed.iter().all(|s| s.starts_with("GRANT ")));
    assert!(!printed
        .iter()
        .any(|s| s.contains("\".events TO") && s.contains("UPDATE")));
    owner_store.apply_grants(role.name()).await.unwrap();
    owner_store.apply_grants(role.name()).await.unwrap(); // again: no change, no error
    let views = format!("{}_views", role.name());
    owner
        .batch_execute(&format!(
            "CREATE SCHEMA {views} AUTHORIZATION {}",
            role.name()
        ))
        .await
        .unwrap();

    // The application: the role, CREATE_TABLE=n.
    let app_config = schema
        .config()
        .to_builder()
        .user(role.name())
        .create_table(false)
        .build()
        .unwrap();
    let app = PostgresStore::connect(app_config).await.unwrap();
    app.check_schema().await.unwrap();
    let status = app.status().await.unwrap();
    assert!(status.pending.is_empty());

    // Saves, loads, the log.
    let stream = Uuid::new_v4();
    app.append(vec![NewEvent::new(stream, 1, "Made", b"{}".to_vec())])
        .await
        .unwrap();
    app.append(vec![
        NewEvent::new(stream, 2, "Changed", b"{}".to_vec()),
        NewEvent::new(stream, 3, "Changed", b"{}".to_vec()),
    ])
    .await
    .unwrap();
    assert_eq!(app.load(stream, 0, None).await.unwrap().len(), 3);
    assert_eq!(app.stream_version(stream).await.unwrap(), 3);
    let log = app.read_log(Position::START, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    app.log_horizon().await.unwrap();

    // Snapshots, pruned to the newest one (DELETE on snapshots), replaced (ON CONFLICT UPDATE).
    for v in 1..=3 {
        app.save_snapshot(snapshot(stream, v), Some(1))
            .await
            .unwrap();
    }
    app.save_snapshot(snapshot(stream, 3), Some(1))
        .await
        .unwrap();
    assert_eq!(
        app.load_snapshot(stream, None)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(app.load_snapshot(stream, Some(2)).await.unwrap(), None);

    // Tracking, parking and a projection.
    let downstream = Uuid::new_v4();
    app.append_tracked(
        vec![NewEvent::new(downstream, 1, "Reacted", b"{}".to_vec())],
        Tracking {
            name: "process".into(),
            position: log[0].position,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app.tracking_position("process").await.unwrap(),
        Some(log[0].position)
    );
    app.park(ParkedEvent::new("parker", &log[0], "bad"))
        .await
        .unwrap();
    assert_eq!(app.parked("parker").await.unwrap().len(), 1);
    assert!(app.unpark("parker", log[0].position).await.unwrap());
    let count = CountEvents {
        table: format!("{views}.counted"),
    };
    let handle = spawn_projection(app.clone(), count.clone(), ProjectionOptions::default());
    caught_up(&app, CountEvents::NAME).await;
    handle.stop().await.unwrap();
    assert_eq!(count.counted(&app).await.values().sum::<u64>(), 4);

    // Changing events: refused, by the grants; nor may it migrate or create anything in the
    // event schema.
    let client = app.dedicated_client().await.unwrap();
    let events = format!("\"{}\".events", schema.name());
    for sql in [
        format!("UPDATE {events} SET payload = '\\x00'"),
        format!("DELETE FROM {events}"),
        format!("TRUNCATE {events}"),
        format!("CREATE TABLE \"{}\".x (a int)", schema.name()),
    ] {
        refused(&client, &sql).await;
    }
    // Migrating a schema that is up to date issues no DDL: the role finds nothing to do, and
    // so may even start with CREATE_TABLE=y.
    assert!(app.migrate().await.unwrap().applied.is_empty());
    let with_create = schema
        .config()
        .to_builder()
        .user(role.name())
        .build()
        .unwrap();
    assert!(with_create.create_table());
    let started = PostgresStore::connect(with_create).await.unwrap();
    assert_eq!(started.load(stream, 0, None).await.unwrap().len(), 3);
    assert_eq!(app.load(stream, 0, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_append_only_trigger_refuses_the_owner_except_when_archiving() {
    let (store, schema) = eventsourcing_postgres::testing::fresh().await;
    let stream = Uuid::new_v4();
    store
        .append(vec![
            NewEvent::new(stream, 1, "Made", b"{}".to_vec()),
            NewEvent::new(stream, 2, "Changed", b"{}".to_vec()),
        ])
        .await
        .unwrap();
    assert!(!store.is_append_only().await.unwrap());
    store.set_append_only(true).await.unwrap();
    store.set_append_only(true).await.unwrap(); // idempotent
    assert!(store.is_append_only().await.unwrap());
    println!("{}", roles::append_only_statements(schema.name()));

    let mut owner = store.dedicated_client().await.unwrap();
    let events = format!("\"{}\".events", schema.name());
    for sql in [
        format!("UPDATE {events} SET payload = '\\x00'"),
        format!("DELETE FROM {events} WHERE version = 2"),
        format!("TRUNCATE {events}"),
    ] {
        refused(&owner, &sql).await;
    }
    // Appends still work.
    store
        .append(vec![NewEvent::new(stream, 3, "Changed", b"{}".to_vec())])
        .await
        .unwrap();

    // The escape, for this transaction only.
    let tx = owner.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL {} = 'on'; DELETE FROM {events} WHERE version = 3",
        roles::ALLOW_ARCHIVE_SETTING
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.stream_version(stream).await.unwrap(), 2);
    // After the escape's transaction, refused again.
    refused(&owner, &format!("DELETE FROM {events} WHERE version = 2")).await;

    store.set_append_only(false).await.unwrap();
    store.set_append_only(false).await.unwrap();
    assert!(!store.is_append_only().await.unwrap());
    owner
        .batch_execute(&format!("DELETE FROM {events} WHERE version = 2"))
        .await
        .unwrap();
    assert_eq!(store.stream_version(stream).await.unwrap(), 1);
}
