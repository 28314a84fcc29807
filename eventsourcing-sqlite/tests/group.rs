//! Group commit: saves that reach the writer together commit together, yet each keeps its own
//! atomicity and its own outcome. A save that conflicts, or records a position already recorded,
//! fails alone; the saves beside it commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::events;
use eventsourcing_core::{Error, EventStore, Position, Tracking, Uuid};
use eventsourcing_sqlite::{testing::temp_file_store, SqliteStore};
use tokio::sync::Barrier;

const SAVES: usize = 48;
const ROUNDS: usize = 10;

/// Each round: `SAVES` saves start at once, each creating a stream of its own; two of them also
/// create one contested stream. Exactly one of those two commits; the other fails with a
/// conflict and writes nothing (not even its own stream); every other save commits whole.
async fn one_conflict_among_many(store: SqliteStore) {
    for round in 0..ROUNDS {
        let contested = Uuid::new_v4();
        let own: Vec<Uuid> = (0..SAVES).map(|_| Uuid::new_v4()).collect();
        let start = Arc::new(Barrier::new(SAVES));
        let tasks: Vec<_> = own
            .iter()
            .enumerate()
            .map(|(i, &stream)| {
                let (store, start) = (store.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    let mut save = events(stream, 1, 1 + (i as u64 % 3));
                    if i % (SAVES / 2) == 7 {
                        save.extend(events(contested, 1, 2));
                    }
                    start.wait().await;
                    store.append(save).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let mut conflicts = 0;
        for (i, (outcome, stream)) in outcomes.iter().zip(&own).enumerate() {
            let stored = store.stream_version(*stream).await.unwrap();
            match outcome {
                Ok(()) => assert_eq!(stored, 1 + (i as u64 % 3), "round {round}, save {i}"),
                Err(Error::Conflict { stream_id, .. }) => {
                    conflicts += 1;
                    assert_eq!(*stream_id, contested, "round {round}, save {i}");
                    assert_eq!(stored, 0, "the conflicting save wrote its own stream");
                }
                Err(e) => panic!("round {round}, save {i}: {e:?}"),
            }
        }
        assert_eq!(
            conflicts, 1,
            "round {round}: one of the two contested saves fails"
        );
        assert_eq!(store.stream_version(contested).await.unwrap(), 2);
    }
}

/// Saves that record the same consumer position at once: one commits its events and the
/// position; the others fail with `AlreadyProcessed` and write none of their events.
async fn one_tracking_position_among_many(store: SqliteStore) {
    let position = Position { commit: 9, seq: 9 };
    let own: Vec<Uuid> = (0..SAVES).map(|_| Uuid::new_v4()).collect();
    let start = Arc::new(Barrier::new(SAVES));
    let tasks: Vec<_> = own
        .iter()
        .map(|&stream| {
            let (store, start) = (store.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let tracking = Tracking {
                    name: "copier".into(),
                    position,
                };
                store.append_tracked(events(stream, 1, 2), tracking).await
            })
        })
        .collect();
    let mut committed = 0;
    for (task, stream) in tasks.into_iter().zip(&own) {
        let stored = store.stream_version(*stream).await.unwrap();
        match task.await.unwrap() {
            Ok(()) => {
                committed += 1;
                assert_eq!(store.stream_version(*stream).await.unwrap(), 2);
            }
            Err(Error::AlreadyProcessed { .. }) => {
                assert_eq!(store.stream_version(*stream).await.unwrap(), 0);
            }
            Err(e) => panic!("{e:?} (stream at {stored})"),
        }
    }
    assert_eq!(committed, 1);
    assert_eq!(
        store.tracking_position("copier").await.unwrap(),
        Some(position)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_one_conflict_among_many_concurrent_saves() {
    let (store, _guard) = temp_file_store();
    one_conflict_among_many(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_one_conflict_among_many_concurrent_saves() {
    one_conflict_among_many(SqliteStore::open_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_one_tracking_position_among_many_concurrent_saves() {
    let (store, _guard) = temp_file_store();
    one_tracking_position_among_many(store).await;
}
