//! Reading the log ahead of a reader catching up (`src/read_ahead.rs`): what a subscription
//! gets with it is exactly what the log holds, once each and in order, when transactions are
//! held open across the pages being read ahead and when the connections reading ahead are
//! killed under it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{EventStore, NewEvent, Position, StoredEvent, Subscription};
use eventsourcing_postgres::{cluster::TestCluster, testing::fresh, PostgresStore};
use uuid::Uuid;

/// A generous bound on each wait: the shared server may be busy with other tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// Saves `streams` streams of `per_stream` events, `per_save` events per save.
async fn seed(store: &PostgresStore, streams: usize, per_stream: u64, per_save: u64) {
    for _ in 0..streams {
        let stream = Uuid::new_v4();
        for first in (1..=per_stream).step_by(per_save as usize) {
            let events = (first..first + per_save)
                .map(|v| NewEvent::new(stream, v, "Seeded", b"{}".to_vec()))
                .collect();
            store.append(events).await.unwrap();
        }
    }
}

fn keys(events: &[StoredEvent]) -> Vec<(Uuid, u64)> {
    events.iter().map(|e| (e.stream_id, e.version)).collect()
}

/// The next `n` events of `subscription`, retrying what fails transiently; each must come
/// after the one before it.
async fn next_events(subscription: &mut Subscription<PostgresStore>, n: usize) -> Vec<StoredEvent> {
    let read = async {
        let mut seen: Vec<StoredEvent> = Vec::with_capacity(n);
        let mut transient = 0;
        while seen.len() < n {
            match subscription.next().await {
                Ok(event) => {
                    if let Some(last) = seen.last() {
                        assert!(event.position > last.position, "positions only move on");
                    }
                    seen.push(event);
                }
                Err(e) if e.is_transient() => {
                    transient += 1;
                    assert!(transient < 1000, "transient errors without end: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("the subscription failed: {e}"),
            }
        }
        seen
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} events delivered within {PATIENCE:?}"))
}

/// The whole log, in one read (the log holds fewer than `limit` events: no read ahead).
async fn whole_log(store: &PostgresStore, limit: usize) -> Vec<StoredEvent> {
    let log = store.read_log(Position::START, limit).await.unwrap();
    assert!(log.len() < limit, "one read returned the whole log");
    log
}

/// A subscription catches up through full pages (read ahead) up to a transaction held open,
/// stops there though later saves committed, and after the commit delivers the held
/// transaction's events and the later ones: every event once, in the log's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ahead_stops_at_an_open_transaction_and_delivers_every_event_once() {
    let (store, _schema) = fresh().await;
    seed(&store, 20, 100, 20).await;
    let slow = Uuid::new_v4();
    let mut client = store.dedicated_client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let held = (1..=3)
        .map(|v| NewEvent::new(slow, v, "Held", b"{}".to_vec()))
        .collect();
    store.append_in(&tx, held).await.unwrap();
    // Committed after the held transaction took its positions: not readable before it.
    seed(&store, 5, 50, 10).await;

    let mut subscription = Subscription::new(store.clone(), Position::START).page_size(100);
    let before = next_events(&mut subscription, 2000).await;
    assert!(before.iter().all(|e| e.event_type == "Seeded"));
    let nothing = subscription.try_next().await.unwrap();
    assert!(
        nothing.is_none(),
        "nothing past the open transaction: {nothing:?}"
    );

    tx.commit().await.unwrap();
    let after = next_events(&mut subscription, 253).await;
    assert_eq!(
        keys(&after[..3]),
        vec![(slow, 1), (slow, 2), (slow, 3)],
        "the held transaction's events come first: it took its positions first"
    );
    let delivered: Vec<_> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        keys(&delivered),
        keys(&whole_log(&store, 10_000).await),
        "every event of the log, once each, in its order"
    );
    assert!(subscription.try_next().await.unwrap().is_none());
}

/// Several subscriptions catch up at once through one store, with pages of different sizes
/// (each reading ahead for itself), and one stops half way: each of the others gets the
/// whole log, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_catching_up_together_each_get_the_whole_log() {
    let (store, _schema) = fresh().await;
    seed(&store, 30, 100, 25).await;
    let expected = keys(&whole_log(&store, 10_000).await);
    let quitter = {
        let mut s = Subscription::new(store.clone(), Position::START).page_size(50);
        tokio::spawn(async move { next_events(&mut s, 700).await.len() })
    };
    let readers: Vec<_> = [37, 100, 100, 500]
        .into_iter()
        .map(|page| {
            let mut s = Subscription::new(store.clone(), Position::START).page_size(page);
            tokio::spawn(async move { keys(&next_events(&mut s, 3000).await) })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    assert_eq!(quitter.await.unwrap(), 700);
}

/// On a throwaway cluster: while a subscription catches up through 20,000 events, every
/// session of the store is killed again and again, the ones reading ahead among them. The
/// subscription may report transient errors; retried, it delivers the whole log, once each
/// and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_under_a_read_ahead_lose_and_repeat_nothing() {
    let cluster = TestCluster::new().await;
    let store = PostgresStore::connect(cluster.config("read_ahead"))
        .await
        .expect("connecting to the test cluster");
    seed(&store, 40, 500, 50).await;
    let expected = keys(&whole_log(&store, 100_000).await);
    assert_eq!(expected.len(), 20_000);

    let killer = tokio::spawn({
        let admin = cluster.admin_client().await;
        async move {
            let mut killed = 0;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                let rows = admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1",
                        &[&TestCluster::APPLICATION_NAME],
                    )
                    .await
                    .unwrap();
                killed += rows.len();
            }
            killed
        }
    });
    let mut subscription = Subscription::new(store.clone(), Position::START).page_size(100);
    let mut delivered = Vec::with_capacity(expected.len());
    while delivered.len() < expected.len() {
        // Slow enough that the killing goes on through most of the catch-up.
        let chunk = next_events(&mut subscription, 500).await;
        delivered.extend(keys(&chunk));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = killer.await.unwrap();
    assert!(
        killed > 0,
        "pg_terminate_backend found none of the store's sessions"
    );
    assert_eq!(delivered, expected, "the whole log, once each, in order");
}

/// The page of at most `limit` events after `after` once it holds at least `n`: a transaction
/// open elsewhere on the shared server may hold committed events back for a while.
async fn page_holding(
    store: &PostgresStore,
    after: Position,
    limit: usize,
    n: usize,
) -> Vec<StoredEvent> {
    let read = async {
        loop {
            let page = store.read_log(after, limit).await.unwrap();
            if page.len() >= n {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("no {n} events readable after {after:?} within {PATIENCE:?}"))
}

/// Full pages start a read ahead that may run before a save: the page after them, read by the
/// caller after the save, holds that save's events (a page read ahead short of them is never
/// handed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_pages_were_read_ahead_is_in_the_next_page() {
    let (store, _schema) = fresh().await;
    let stream = Uuid::new_v4();
    let save = |from: u64, to: u64| {
        (from..=to)
            .map(|v| NewEvent::new(stream, v, "Saved", b"{}".to_vec()))
            .collect::<Vec<_>>()
    };
    store.append(save(1, 10)).await.unwrap();
    let (mut after, mut saved) = (Position::START, 10);
    for round in 0..20 {
        // Two full pages: the pages after them are read ahead, perhaps before the save below.
        for _ in 0..2 {
            after = page_holding(&store, after, 5, 5).await[4].position;
        }
        store.append(save(saved + 1, saved + 3)).await.unwrap();
        let page = page_holding(&store, after, 5, 3).await;
        let got: Vec<u64> = page.iter().map(|e| e.version).collect();
        assert_eq!(got, [saved + 1, saved + 2, saved + 3], "round {round}");
        after = page[2].position;
        store.append(save(saved + 4, saved + 13)).await.unwrap();
        saved += 13;
    }
}
