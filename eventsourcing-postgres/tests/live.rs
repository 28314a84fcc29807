//! Live notifications: appends are announced with `NOTIFY` on the schema's channel (outside the
//! writing transaction); another store instance's subscribers are woken through `LISTEN`; the
//! listener reconnects by itself after its connection is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{EventStore, NewEvent, Position, Subscription};
use eventsourcing_postgres::{
    testing::{fresh, TestSchema},
    tokio_postgres::{AsyncMessage, NoTls},
    PostgresStore,
};
use uuid::Uuid;

fn event(stream_id: Uuid, version: u64) -> NewEvent {
    NewEvent::new(stream_id, version, "Happened", b"{}".to_vec())
}

/// A deadline to fail at instead of hanging.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

/// A subscription that only a wake-up can move before the hour is up.
fn hourly<S: EventStore>(store: S, after: Position) -> Subscription<S> {
    Subscription::new(store, after).poll_interval(Duration::from_secs(3600))
}

/// The next event of a subscription, or a failure after a minute.
async fn next<S: EventStore>(
    subscription: &mut Subscription<S>,
) -> eventsourcing_core::StoredEvent {
    tokio::time::timeout_at(deadline(), subscription.next())
        .await
        .expect("the subscription was not woken")
        .unwrap()
}

/// Two store instances on one fresh schema (two processes, in effect): the first to
/// subscribe on, the second to write through; and the schema's guard.
async fn two_instances() -> (PostgresStore, PostgresStore, TestSchema) {
    let (store, schema) = fresh().await;
    let writer = schema.store().await;
    (store, writer, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_hears_each_append_on_the_schemas_channel() {
    let (store, schema) = fresh().await;
    assert_eq!(
        store.notify_channel(),
        format!("eventsourcing:{}", schema.name())
    );
    let (client, mut connection) = schema
        .config()
        .tokio_postgres_config()
        .connect(NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN \"{}\"", store.notify_channel()))
        .await
        .unwrap();

    // The payload names the sending store: the same for every append of one instance,
    // another for another instance (which is how a listener ignores its own store's).
    let other = schema.store().await;
    let stream = Uuid::new_v4();
    let mut payloads = Vec::new();
    for (version, sender) in [(1, &store), (2, &store), (3, &other), (4, &store)] {
        sender.append(vec![event(stream, version)]).await.unwrap();
        let (channel, payload) = tokio::time::timeout_at(deadline(), rx.recv())
            .await
            .expect("no notification within 60 s of an append")
            .unwrap();
        assert_eq!(channel, store.notify_channel());
        payloads.push(payload);
        // Coalesced: at most one notification is in flight, so drain what came meanwhile.
        while rx.try_recv().is_ok() {}
    }
    assert!(!payloads[0].is_empty());
    assert_eq!(payloads[1], payloads[0], "one instance, one payload");
    assert_eq!(payloads[3], payloads[0], "one instance, one payload");
    assert_ne!(
        payloads[2], payloads[0],
        "another instance, another payload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schema_has_its_own_channel() {
    let (a, _a) = fresh().await;
    let (b, _b) = fresh().await;
    assert_ne!(a.notify_channel(), b.notify_channel());
}

/// Two store instances on one schema (two processes, in effect): a save through one wakes a
/// subscription on the other, whose poll interval is an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_by_another_instance_wakes_a_subscription() {
    let (store, writer, _schema) = two_instances().await;
    let mut subscription = hourly(store.clone(), Position::START);
    let stream = Uuid::new_v4();
    for version in 1..=3 {
        writer.append(vec![event(stream, version)]).await.unwrap();
        let seen = next(&mut subscription).await;
        assert_eq!((seen.stream_id, seen.version), (stream, version));
    }
}

/// Events written in a caller's transaction with `append_in` are announced once the caller
/// says they have committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_events_wakes_subscribers_after_append_in() {
    let (store, writer, _schema) = two_instances().await;
    let mut local = hourly(writer.clone(), Position::START);
    let mut remote = hourly(store.clone(), Position::START);
    let stream = Uuid::new_v4();
    let mut client = writer.dedicated_client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    writer.append_in(&tx, vec![event(stream, 1)]).await.unwrap();
    tx.commit().await.unwrap();
    writer.announce_events();
    assert_eq!(next(&mut local).await.stream_id, stream);
    assert_eq!(next(&mut remote).await.stream_id, stream);
}

/// The listening backend, found by its `LISTEN` on the schema's channel.
async fn listener_pids(schema: &TestSchema, channel: &str) -> Vec<i32> {
    schema
        .client()
        .await
        .unwrap()
        .query(
            "SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'idle'",
            &[&format!("LISTEN \"{channel}\"")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let (store, writer, schema) = two_instances().await;
    let mut subscription = hourly(store.clone(), Position::START);
    let stream = Uuid::new_v4();
    writer.append(vec![event(stream, 1)]).await.unwrap();
    assert_eq!(next(&mut subscription).await.version, 1);

    let channel = store.notify_channel().to_owned();
    let killed = loop {
        let pids = listener_pids(&schema, &channel).await;
        if let [pid] = pids[..] {
            break pid;
        }
        assert!(tokio::time::Instant::now() < deadline(), "{pids:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let terminated: bool = schema
        .client()
        .await
        .unwrap()
        .query_one("SELECT pg_terminate_backend($1)", &[&killed])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    // A new backend listens again, by itself.
    let limit = deadline();
    loop {
        let pids = listener_pids(&schema, &channel).await;
        if !pids.is_empty() && !pids.contains(&killed) {
            break;
        }
        assert!(tokio::time::Instant::now() < limit, "no new listener");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its reconnection woke the subscription once (events may have come meanwhile); a save
    // after that is still heard.
    for version in 2..=3 {
        writer.append(vec![event(stream, version)]).await.unwrap();
        assert_eq!(next(&mut subscription).await.version, version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_ends_with_the_last_clone_of_the_store() {
    let (store, schema) = fresh().await;
    let channel = store.notify_channel().to_owned();
    let clone = store.clone();
    let changes = store.changes();
    let limit = deadline();
    let listener = loop {
        let pids = listener_pids(&schema, &channel).await;
        if let [pid] = pids[..] {
            break pid;
        }
        assert!(
            tokio::time::Instant::now() < limit,
            "nobody listens: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(store);
    drop(changes);
    // The clone's listener still works: a save by another instance wakes its subscription.
    let writer = schema.store().await;
    let mut subscription = hourly(clone.clone(), Position::START);
    let stream = Uuid::new_v4();
    writer.append(vec![event(stream, 1)]).await.unwrap();
    assert_eq!(next(&mut subscription).await.stream_id, stream);
    drop(subscription);
    drop(writer);
    assert!(
        listener_pids(&schema, &channel).await.contains(&listener),
        "a clone still holds the store: its listener still listens"
    );
    drop(clone);
    let limit = deadline();
    while !listener_pids(&schema, &channel).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < limit,
            "the listener outlived the store"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
