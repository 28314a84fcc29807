//! Least privilege: a store run by an application role with exactly the granted rights does
//! everything the runtime does, and cannot update, delete or truncate events; the append-only
//! trigger refuses even the owner, except in a transaction that sets the archiving escape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{
    BoxError, Error, EventStore, NewEvent, ParkedEvent, Position, ProjectionOptions, Snapshot,
    StoredEvent, Tracking,
};
use eventsourcing_postgres::{
    roles, spawn_projection,
    testing::TestSchema,
    tokio_postgres::{error::SqlState, Client, Transaction},
    PostgresProjection, PostgresStore,
};
use uuid::Uuid;

/// A LOGIN role of the test's own (the test server trusts 127.0.0.1), dropped with everything
/// granted to or owned by it when this guard is dropped.
struct TestRole {
    name: String,
    schema_config: eventsourcing_postgres::PostgresConfig,
}

impl TestRole {
    async fn new(owner: &Client, schema: &TestSchema) -> Self {
        let name = format!("es_app_{}", &Uuid::new_v4().simple().to_string()[..12]);
        owner
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        TestRole {
            name,
            schema_config: schema.config(),
        }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let (name, config) = (self.name.clone(), self.schema_config.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let store =
                    PostgresStore::connect(config.to_builder().create_table(false).build()?)
                        .await?;
                let client = store.dedicated_client().await?;
                client
                    .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
                    .await
                    .map_err(Error::store)
            })
        })
        .join()
        .map(|r| r.map_err(|e| eprintln!("warning: could not drop the test role: {e}")));
    }
}

fn sqlstate(err: &eventsourcing_postgres::tokio_postgres::Error) -> Option<&SqlState> {
    err.code()
}

/// Counts events into a table in the application role's own schema.
struct Count {
    table: String,
}

impl PostgresProjection for Count {
    fn name(&self) -> &str {
        "count"
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
    let role = TestRole::new(&owner, &schema).await;

    // What an operator prints, then applies as the owner.
    let printed = owner_store.grant_statements(&role.name);
    assert!(printed.iter().all(|s| s.starts_with("GRANT ")));
    assert!(!printed
        .iter()
        .any(|s| s.contains("\".events TO") && s.contains("UPDATE")));
    owner_store.apply_grants(&role.name).await.unwrap();
    owner_store.apply_grants(&role.name).await.unwrap(); // again: no change, no error
    let views = format!("{}_views", role.name);
    owner
        .batch_execute(&format!(
            "CREATE SCHEMA {views} AUTHORIZATION {}",
            role.name
        ))
        .await
        .unwrap();

    // The application: the role, CREATE_TABLE=n.
    let app_config = schema
        .config()
        .to_builder()
        .user(role.name.clone())
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
    let handle = spawn_projection(
        app.clone(),
        Count {
            table: format!("{views}.counted"),
        },
        ProjectionOptions::default(),
    );
    caught_up(&app, "count").await;
    handle.stop().await.unwrap();
    let client = app.dedicated_client().await.unwrap();
    let counted: i64 = client
        .query_one(&format!("SELECT count(*) FROM {views}.counted"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, 4);

    // Changing events: refused, by the grants.
    let events = format!("\"{}\".events", schema.name());
    for sql in [
        format!("UPDATE {events} SET payload = '\\x00'"),
        format!("DELETE FROM {events}"),
        format!("TRUNCATE {events}"),
    ] {
        let err = client.batch_execute(&sql).await.unwrap_err();
        assert_eq!(
            sqlstate(&err),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // Nor may it migrate or create anything in the event schema.
    let err = client
        .batch_execute(&format!("CREATE TABLE \"{}\".x (a int)", schema.name()))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Migrating a schema that is up to date issues no DDL: the role finds nothing to do, and
    // so may even start with CREATE_TABLE=y.
    assert!(app.migrate().await.unwrap().applied.is_empty());
    let with_create = schema
        .config()
        .to_builder()
        .user(role.name.clone())
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
        let err = owner.batch_execute(&sql).await.unwrap_err();
        assert_eq!(
            sqlstate(&err),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
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
    let err = owner
        .batch_execute(&format!("DELETE FROM {events} WHERE version = 2"))
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "after the escape's transaction"
    );

    store.set_append_only(false).await.unwrap();
    store.set_append_only(false).await.unwrap();
    assert!(!store.is_append_only().await.unwrap());
    owner
        .batch_execute(&format!("DELETE FROM {events} WHERE version = 2"))
        .await
        .unwrap();
    assert_eq!(store.stream_version(stream).await.unwrap(), 1);
}
