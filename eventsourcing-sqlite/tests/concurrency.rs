//! Writers and tailing readers at the same time: the tail sees every event exactly once, in
//! position order, and never part of a save.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashMap, time::Duration};

use common::events;
use eventsourcing_core::{EventStore, Position, StoredEvent, Uuid};
use eventsourcing_sqlite::{testing::Writers, SqliteStore};

const WRITERS: usize = 8;
const SAVES: u64 = 40;

async fn tail_while_writing(store: SqliteStore) {
    let writers = Writers::spawn(&store, WRITERS, SAVES);
    let total = Writers::per_writer(SAVES) * WRITERS as u64;

    let tail = tokio::spawn({
        let store = store.clone();
        async move {
            let mut seen: Vec<StoredEvent> = Vec::new();
            let mut after = Position::START;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while (seen.len() as u64) < total {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the tailing reader saw {} of {total} events",
                    seen.len()
                );
                let page = store.read_log(after, 16).await.unwrap();
                match page.last() {
                    Some(last) => after = last.position,
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
                seen.extend(page);
            }
            // Nothing more arrives once every writer is done.
            assert!(store.read_log(after, 16).await.unwrap().is_empty());
            seen
        }
    });

    // Another reader takes everything it can see at once: every stream then ends at the end of
    // a save, never in the middle of one (saves become visible whole).
    let boundaries = Writers::save_ends(SAVES);
    let whole = tokio::spawn({
        let store = store.clone();
        async move {
            let mut after = Position::START;
            let mut last: HashMap<Uuid, u64> = HashMap::new();
            let mut seen = 0;
            while seen < total {
                let batch = store.read_log(after, usize::MAX).await.unwrap();
                for event in &batch {
                    last.insert(event.stream_id, event.version);
                }
                for (stream, version) in &last {
                    assert!(
                        boundaries.contains(version),
                        "stream {stream} seen up to version {version}, inside a save"
                    );
                }
                seen += batch.len() as u64;
                match batch.last() {
                    Some(event) => after = event.position,
                    None => tokio::task::yield_now().await,
                }
            }
        }
    });

    writers.join().await;
    tokio::time::timeout(Duration::from_secs(60), whole)
        .await
        .expect("the second reader never saw every event")
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(60), tail)
        .await
        .expect("the tail never saw every event")
        .unwrap();

    assert_eq!(seen.len() as u64, total);
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase, so no event is seen twice"
    );
    let mut last_version: HashMap<Uuid, u64> = HashMap::new();
    for event in &seen {
        let last = last_version.entry(event.stream_id).or_default();
        assert_eq!(
            event.version,
            *last + 1,
            "each stream's events arrive in version order"
        );
        *last = event.version;
    }
    assert_eq!(last_version.len(), WRITERS);
    assert_eq!(
        store.read_log(Position::START, usize::MAX).await.unwrap(),
        seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_a_tail_on_a_file() {
    let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
    tail_while_writing(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_a_tail_in_memory() {
    tail_while_writing(eventsourcing_sqlite::testing::memory_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_saves_to_one_stream_one_wins_each_round() {
    let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
    let stream = Uuid::new_v4();
    for round in 0..20u64 {
        let attempts: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.append(events(stream, round + 1, round + 1)).await },
                )
            })
            .collect();
        let mut wins = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => wins += 1,
                Err(err) => assert!(err.is_conflict(), "{err:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    assert_eq!(store.stream_version(stream).await.unwrap(), 20);
}
