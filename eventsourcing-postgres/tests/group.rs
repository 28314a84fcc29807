//! Group commit (`src/group.rs`) under real concurrent writers: each save keeps its own
//! atomicity, its own conflict and its own contiguous positions, whatever it is written with.
//! On the shared server, each test in a schema of its own; the killed connections on a
//! throwaway cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/workload.rs"]
mod workload;

use std::{collections::HashMap, sync::Arc, time::Duration};

use eventsourcing_core::{Error, EventStore, NewEvent};
use eventsourcing_postgres::{
    cluster::TestCluster,
    testing::{fresh, join_all, log_holding},
    PostgresStore,
};
use tokio::sync::Barrier;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(120);

fn events(stream_id: Uuid, first: u64, n: u64, tag: &str) -> Vec<NewEvent> {
    (first..first + n)
        .map(|v| {
            NewEvent::new(
                stream_id,
                v,
                "Tagged",
                format!(r#"{{"tag":"{tag}"}}"#).into_bytes(),
            )
        })
        .collect()
}

/// `n` tasks, released together, each saving what `save(i)` returns: the outcomes in order.
async fn together(store: &PostgresStore, saves: Vec<Vec<NewEvent>>) -> Vec<Result<(), Error>> {
    let barrier = Arc::new(Barrier::new(saves.len()));
    let tasks = saves
        .into_iter()
        .map(|save| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(save).await
            })
        })
        .collect();
    join_all(tasks, WITHIN, "the concurrent saves").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_save_fails_alone_among_concurrent_ones() {
    let (store, _schema) = fresh().await;
    for round in 0..10 {
        // A stream at version 2, and a save that expects it at version 1.
        let stale = Uuid::new_v4();
        store.append(events(stale, 1, 2, "before")).await.unwrap();
        let mut saves: Vec<Vec<NewEvent>> = (0..23)
            .map(|i| events(Uuid::new_v4(), 1, 1 + i % 3, "ok"))
            .collect();
        let bad = round % saves.len();
        saves.insert(bad, events(stale, 2, 2, "stale"));
        let ids: Vec<Uuid> = saves.iter().map(|s| s[0].stream_id).collect();
        let lengths: Vec<usize> = saves.iter().map(Vec::len).collect();
        let outcomes = together(&store, saves).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if i == bad {
                match outcome {
                    Err(Error::Conflict {
                        stream_id,
                        expected,
                        actual,
                    }) => assert_eq!((stream_id, expected, actual), (stale, 1, 2)),
                    other => panic!("the stale save: {other:?}"),
                }
                let kept = store.load(stale, 0, None).await.unwrap();
                assert!(kept.iter().all(|e| e.payload == br#"{"tag":"before"}"#));
                assert_eq!(kept.len(), 2, "nothing of the stale save is written");
            } else {
                outcome.unwrap_or_else(|e| panic!("save {i} of round {round}: {e}"));
                let stored = store.load(ids[i], 0, None).await.unwrap();
                assert_eq!(stored.len(), lengths[i], "save {i} is whole");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_save_takes_consecutive_positions_in_version_order() {
    let (store, _schema) = fresh().await;
    let writers = 16;
    let tasks = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                let mut version = 1;
                let mut saves = Vec::new();
                for s in 0..20u64 {
                    let n = 1 + (s + w) % 4;
                    store.append(events(id, version, n, "x")).await.unwrap();
                    saves.push((version, n));
                    version += n;
                }
                (id, saves)
            })
        })
        .collect();
    let written = join_all(tasks, WITHIN, "the writers").await;
    let total: u64 = written
        .iter()
        .flat_map(|(_, saves)| saves.iter().map(|(_, n)| n))
        .sum();
    let log = log_holding(&store, total as usize).await;
    assert_eq!(log.len() as u64, total, "every event once in the log");
    let at: HashMap<(Uuid, u64), usize> = log
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.stream_id, e.version), i))
        .collect();
    for (id, saves) in &written {
        for (first, n) in saves {
            let start = at[&(*id, *first)];
            for k in 0..*n {
                let event = &log[start + k as usize];
                assert_eq!((event.stream_id, event.version), (*id, first + k));
                assert_eq!(
                    event.position.commit, log[start].position.commit,
                    "one save, one commit"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_to_one_stream_win_one_per_version() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    let target = 150u64;
    let tasks = (0..12)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                loop {
                    let current = store.stream_version(id).await.unwrap();
                    if current >= target {
                        return won;
                    }
                    let tag = format!("{w}-{current}");
                    match store.append(events(id, current + 1, 1, &tag)).await {
                        Ok(()) => won.push((current + 1, tag)),
                        Err(Error::Conflict {
                            stream_id,
                            expected,
                            actual,
                        }) => {
                            assert_eq!((stream_id, expected), (id, current));
                            assert!(actual >= current, "found {actual}, below {current}");
                        }
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
            })
        })
        .collect();
    let won: Vec<(u64, String)> = join_all(tasks, WITHIN, "the writers")
        .await
        .into_iter()
        .flatten()
        .collect();
    let stored = store.load(id, 0, None).await.unwrap();
    let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=stored.len() as u64).collect::<Vec<_>>());
    assert_eq!(won.len(), stored.len(), "one acknowledged save per version");
    for (version, tag) in won {
        let payload = format!(r#"{{"tag":"{tag}"}}"#);
        assert_eq!(stored[version as usize - 1].payload, payload.as_bytes());
    }
}

/// A save no store could keep (an empty event type) among concurrent ones gets its own
/// `InvalidEvent` and writes nothing; the others, queued in the same groups, commit whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_save_fails_alone_among_concurrent_ones() {
    let (store, _schema) = fresh().await;
    for round in 0..10 {
        let mut saves: Vec<Vec<NewEvent>> = (0..23)
            .map(|i| events(Uuid::new_v4(), 1, 1 + i % 3, "ok"))
            .collect();
        let bad = round % saves.len();
        let mut invalid = events(Uuid::new_v4(), 1, 2, "invalid");
        invalid[1].event_type = "".into();
        let invalid_id = invalid[0].stream_id;
        saves.insert(bad, invalid);
        let lengths: Vec<(Uuid, usize)> = saves.iter().map(|s| (s[0].stream_id, s.len())).collect();
        for (i, outcome) in together(&store, saves).await.into_iter().enumerate() {
            if i == bad {
                match outcome {
                    Err(Error::InvalidEvent { .. }) => {}
                    other => panic!("the invalid save: {other:?}"),
                }
            } else {
                outcome.unwrap_or_else(|e| panic!("save {i} of round {round}: {e}"));
            }
        }
        for (id, n) in lengths {
            let stored = store.load(id, 0, None).await.unwrap().len();
            assert_eq!(stored, if id == invalid_id { 0 } else { n });
        }
    }
}

/// A save waiting for a row lock (an open transaction of the caller's inserted the same
/// version) is the store's one running write; the saves of other streams queued behind it still
/// commit while that transaction stays open, and the waiting save gets its outcome once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_waiting_for_a_lock_holds_back_no_other_save() {
    let (store, schema) = fresh().await;
    let locked = Uuid::new_v4();
    store.append(events(locked, 1, 1, "first")).await.unwrap();
    let mut client = store.dedicated_client().await.unwrap();
    // Held open for as long as the test needs, whatever the store's session timeout.
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 0")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    store
        .append_in(&tx, events(locked, 2, 1, "in the transaction"))
        .await
        .unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.append(events(locked, 2, 1, "waiting")).await })
    };
    // Until the server shows the save waiting for the transaction's lock.
    let watcher = schema.client().await.unwrap();
    let waits = format!("%{}%", schema.name());
    tokio::time::timeout(WITHIN, async {
        loop {
            let row = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND query LIKE $1",
                    &[&waits],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second save of the locked version never waited for the lock");

    // Saves of other streams, alone and concurrent, while the transaction stays open.
    let others: Vec<Vec<NewEvent>> = (0..12)
        .map(|i| events(Uuid::new_v4(), 1, 1 + i % 2, "other"))
        .collect();
    let ids: Vec<(Uuid, usize)> = others.iter().map(|s| (s[0].stream_id, s.len())).collect();
    for outcome in together(&store, others).await {
        outcome.unwrap();
    }
    store
        .append(events(Uuid::new_v4(), 1, 1, "one more"))
        .await
        .unwrap();
    for (id, n) in ids {
        assert_eq!(store.load(id, 0, None).await.unwrap().len(), n);
    }
    assert!(!waiting.is_finished(), "the locked save waits still");

    // The transaction rolls back: the waiting save takes the version.
    tx.rollback().await.unwrap();
    let outcome = tokio::time::timeout(WITHIN, waiting)
        .await
        .unwrap()
        .unwrap();
    outcome.unwrap();
    let stream = store.load(locked, 0, None).await.unwrap();
    assert_eq!(stream.len(), 2);
    assert_eq!(stream[1].payload, br#"{"tag":"waiting"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_during_group_writes_lose_and_halve_nothing() {
    let cluster = TestCluster::new().await;
    // The default pool size, 5: of the eight writers, the saves beyond five go in groups.
    let store = PostgresStore::connect(cluster.config("group"))
        .await
        .expect("connecting to the test cluster");
    let load = workload::Load::start(&store);
    for _ in 0..3 {
        load.wait_for_acks().await;
        let began = tokio::time::Instant::now();
        let mut killed = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            killed += cluster
                .terminate_backends(TestCluster::APPLICATION_NAME)
                .await;
        }
        assert!(killed > 0, "no session of the store was terminated");
        load.fault_over(&store, began).await;
    }
    let figures = load.finish(&store).await;
    figures.print("sessions terminated during group writes");
    eprintln!(
        "acknowledgements lost, then found stored: {}",
        figures.ack_lost()
    );
    // Every acknowledged save present once, none half, the log complete, failures transient.
    figures.assert_sound();
}
