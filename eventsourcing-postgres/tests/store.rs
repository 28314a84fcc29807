//! Appends, loads, conflicts and the log on a real server, each test in its own schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventsourcing_core::{
    chrono::{Duration, Utc},
    now, Error, EventStore, Metadata, NewEvent, Position,
};
use eventsourcing_postgres::testing::{fresh, join_all};
use uuid::Uuid;

fn event(stream_id: Uuid, version: u64) -> NewEvent {
    let payload = format!(r#"{{"n":{version}}}"#).into_bytes();
    NewEvent::new(stream_id, version, "Renamed", payload)
}

#[tokio::test]
async fn append_then_load_round_trips_every_field() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::new_v4())
        .with("user", "ada");
    let mut first = event(id, 1);
    first.metadata = metadata.clone();
    first.schema_version = 3;
    let second = event(id, 2);
    store
        .append(vec![first.clone(), second.clone()])
        .await
        .unwrap();

    let loaded = store.load(id, 0, None).await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].stream_id, id);
    assert_eq!(loaded[0].version, 1);
    assert_eq!(loaded[0].event_type, "Renamed");
    assert_eq!(loaded[0].schema_version, 3);
    assert_eq!(loaded[0].timestamp, first.timestamp);
    assert_eq!(loaded[0].payload, first.payload);
    assert_eq!(loaded[0].metadata, metadata);
    assert_eq!(loaded[1].metadata, Metadata::default());
    assert!(loaded[0].position < loaded[1].position);
    assert_eq!(
        loaded[0].position.commit, loaded[1].position.commit,
        "one save, one transaction"
    );

    assert_eq!(store.load(id, 1, None).await.unwrap().len(), 1);
    assert_eq!(store.load(id, 0, Some(1)).await.unwrap().len(), 1);
    assert!(store.load(id, 2, None).await.unwrap().is_empty());
    assert!(store
        .load(Uuid::new_v4(), 0, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version(id).await.unwrap(), 2);
    assert_eq!(store.stream_version(Uuid::new_v4()).await.unwrap(), 0);
}

#[tokio::test]
async fn empty_metadata_is_stored_as_null() {
    let (store, schema) = fresh().await;
    let id = Uuid::new_v4();
    let mut with = event(id, 2);
    with.metadata = Metadata::default().with("k", "v");
    store.append(vec![event(id, 1), with]).await.unwrap();
    let client = schema.client().await.unwrap();
    let rows = client
        .query(
            &format!(
                "SELECT version, metadata IS NULL FROM \"{}\".events ORDER BY version",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap();
    let nulls: Vec<(i64, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(nulls, vec![(1, true), (2, false)]);
}

#[tokio::test]
async fn a_stale_version_is_a_typed_conflict_naming_the_actual_version() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    store
        .append(vec![event(id, 1), event(id, 2), event(id, 3)])
        .await
        .unwrap();
    let err = store.append(vec![event(id, 2)]).await.unwrap_err();
    match err {
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => {
            assert_eq!(stream_id, id);
            assert_eq!(expected, 1);
            assert_eq!(actual, 3);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version(id).await.unwrap(), 3);
}

#[tokio::test]
async fn a_first_version_past_the_end_is_a_conflict_and_writes_nothing() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    store.append(vec![event(id, 1)]).await.unwrap();
    for version in [3, 7] {
        let err = store.append(vec![event(id, version)]).await.unwrap_err();
        assert!(
            matches!(err, Error::Conflict { stream_id, expected, actual: 1 }
                if stream_id == id && expected == version - 1),
            "version {version}: {err:?}"
        );
    }
    // Version 0 exists nowhere: refused as invalid on every store (check_save).
    let err = store.append(vec![event(id, 0)]).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidEvent { version: 0, .. }),
        "{err:?}"
    );
    // A brand-new stream cannot start above 1 either.
    let fresh_id = Uuid::new_v4();
    let err = store.append(vec![event(fresh_id, 2)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                actual: 0,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.stream_version(id).await.unwrap(), 1);
    assert_eq!(store.stream_version(fresh_id).await.unwrap(), 0);
}

#[tokio::test]
async fn versions_not_contiguous_within_a_save_are_rejected_before_sending() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    let err = store
        .append(vec![event(id, 1), event(id, 3)])
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.stream_version(id).await.unwrap(), 0);
}

#[tokio::test]
async fn a_multi_stream_save_is_all_or_nothing() {
    let (store, _schema) = fresh().await;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    store.append(vec![event(b, 1), event(b, 2)]).await.unwrap();

    // b is stale (the primary key catches it): a and c must not be written.
    let err = store
        .append(vec![event(a, 1), event(b, 2), event(b, 3), event(c, 1)])
        .await
        .unwrap_err();
    assert_conflict(err, (b, 1, 2));
    // b would leave a hole (the guard catches it): a and c must not be written.
    let err = store
        .append(vec![event(a, 1), event(b, 4), event(c, 1)])
        .await
        .unwrap_err();
    assert_conflict(err, (b, 3, 2));
    assert_eq!(store.stream_version(a).await.unwrap(), 0);
    assert_eq!(store.stream_version(c).await.unwrap(), 0);
    assert_eq!(store.read_log(Position::START, 100).await.unwrap().len(), 2);

    // And the correct save of all three goes through in one transaction.
    store
        .append(vec![event(a, 1), event(b, 3), event(c, 1), event(c, 2)])
        .await
        .unwrap();
    let log = store.read_log(Position::START, 100).await.unwrap();
    assert_eq!(log.len(), 6);
    let last_save: Vec<_> = log[2..].iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(
        last_save,
        vec![(a, 1), (b, 3), (c, 1), (c, 2)],
        "log keeps save order"
    );
    assert!(log[2..]
        .iter()
        .all(|e| e.position.commit == log[2].position.commit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_one_version_let_exactly_one_win() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    store.append(vec![event(id, 1)]).await.unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8u8)
        .map(|task| {
            let store = store.clone();
            let start = start.clone();
            // Each task's event says who wrote it, so the stored row names the winner.
            let mut mine = event(id, 2);
            mine.payload = format!(r#"{{"task":{task}}}"#).into_bytes();
            tokio::spawn(async move {
                start.wait().await;
                (mine.payload.clone(), store.append(vec![mine]).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for joined in join_all(
        tasks,
        std::time::Duration::from_secs(60),
        "the concurrent saves",
    )
    .await
    {
        match joined {
            (payload, Ok(())) => winners.push(payload),
            (_, Err(Error::Conflict { actual, .. })) => assert_eq!(actual, 2),
            (_, Err(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one save wins");
    let stored = store.load(id, 0, None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].payload, winners[0],
        "the stored event is the winner's"
    );
}

#[tokio::test]
async fn read_log_pages_in_order() {
    let (store, _schema) = fresh().await;
    let mut expected = Vec::new();
    for _ in 0..5 {
        let id = Uuid::new_v4();
        store
            .append(vec![event(id, 1), event(id, 2)])
            .await
            .unwrap();
        expected.push((id, 1));
        expected.push((id, 2));
    }
    let mut seen = Vec::new();
    let mut after = Position::START;
    // A page comes back short (even empty) while an older transaction anywhere on the server
    // (another test's) is still open: the log never skips, it waits. So read until everything
    // written is seen, with a deadline.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while seen.len() < expected.len() {
        assert!(tokio::time::Instant::now() < deadline, "saw only {seen:?}");
        let page = store.read_log(after, 3).await.unwrap();
        if page.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        assert!(page.len() <= 3);
        for e in &page {
            assert!(e.position > after);
            after = e.position;
            seen.push((e.stream_id, e.version));
        }
    }
    assert_eq!(seen, expected);
    assert!(store.read_log(after, 3).await.unwrap().is_empty());
    assert!(store.read_log(Position::START, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn read_by_time_returns_the_window_in_log_order() {
    let (store, _schema) = fresh().await;
    let base = now();
    let id = Uuid::new_v4();
    let events: Vec<NewEvent> = (1..=4)
        .map(|v| {
            let mut e = event(id, v);
            e.timestamp = base + Duration::minutes(v as i64);
            e
        })
        .collect();
    store.append(events).await.unwrap();
    // Short (even empty) while an older transaction of another test is open: read again.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let window = loop {
        let window = store
            .read_by_time(
                base + Duration::minutes(2),
                base + Duration::minutes(4),
                Position::START,
                100,
            )
            .await
            .unwrap();
        if window.len() >= 2 || tokio::time::Instant::now() > deadline {
            break window;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let versions: Vec<u64> = window.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![2, 3]);
    let after_first = store
        .read_by_time(
            base,
            Utc::now() + Duration::hours(1),
            window[0].position,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4]
    );
}

#[tokio::test]
async fn append_in_a_callers_transaction_commits_with_it() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    let mut client = store.dedicated_client().await.unwrap();

    let tx = client.transaction().await.unwrap();
    store.append_in(&tx, vec![event(id, 1)]).await.unwrap();
    assert_eq!(
        store.stream_version(id).await.unwrap(),
        0,
        "not visible before commit"
    );
    tx.rollback().await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 0);

    let tx = client.transaction().await.unwrap();
    store
        .append_in(&tx, vec![event(id, 1), event(id, 2)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 2);

    let tx = client.transaction().await.unwrap();
    let err = store.append_in(&tx, vec![event(id, 2)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn the_store_is_cheap_to_clone_and_shares_the_pool() {
    let (store, _schema) = fresh().await;
    let clone = store.clone();
    let id = Uuid::new_v4();
    clone.append(vec![event(id, 1)]).await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 1);
    assert!(store.pool_state().connections >= 1);
}

fn snapshot(stream_id: Uuid, version: u64) -> eventsourcing_core::Snapshot {
    eventsourcing_core::Snapshot {
        stream_id,
        version,
        state_type: "Counter".to_owned(),
        fingerprint: u64::MAX - version,
        timestamp: now(),
        payload: format!(r#"{{"total":{version}}}"#).into_bytes(),
    }
}

#[tokio::test]
async fn snapshots_round_trip_replace_and_prune() {
    let (store, _schema) = fresh().await;
    let id = Uuid::new_v4();
    assert_eq!(store.load_snapshot(id, None).await.unwrap(), None);
    for version in [2, 4, 6] {
        store
            .save_snapshot(snapshot(id, version), None)
            .await
            .unwrap();
    }
    let newest = store.load_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(
        newest,
        snapshot_with_time(snapshot(id, 6), newest.timestamp)
    );
    assert_eq!(newest.fingerprint, u64::MAX - 6, "all 64 bits survive");
    assert_eq!(
        store
            .load_snapshot(id, Some(5))
            .await
            .unwrap()
            .map(|s| s.version),
        Some(4)
    );
    assert_eq!(store.load_snapshot(id, Some(1)).await.unwrap(), None);

    // The same version again replaces it.
    let mut again = snapshot(id, 6);
    again.payload = b"{}".to_vec();
    store.save_snapshot(again, None).await.unwrap();
    assert_eq!(
        store
            .load_snapshot(id, None)
            .await
            .unwrap()
            .unwrap()
            .payload,
        b"{}".to_vec()
    );

    // keep = 2: writing 8 leaves 6 and 8.
    store.save_snapshot(snapshot(id, 8), Some(2)).await.unwrap();
    let at = |v| store.load_snapshot(id, Some(v));
    assert_eq!(at(8).await.unwrap().map(|s| s.version), Some(8));
    assert_eq!(at(7).await.unwrap().map(|s| s.version), Some(6));
    assert_eq!(at(5).await.unwrap(), None);
    // Another stream is untouched by pruning.
    let other = Uuid::new_v4();
    store
        .save_snapshot(snapshot(other, 1), Some(1))
        .await
        .unwrap();
    assert_eq!(at(7).await.unwrap().map(|s| s.version), Some(6));
}

fn snapshot_with_time(
    mut s: eventsourcing_core::Snapshot,
    timestamp: eventsourcing_core::chrono::DateTime<Utc>,
) -> eventsourcing_core::Snapshot {
    s.timestamp = timestamp;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tracked_appends_are_exactly_once_under_concurrency() {
    use eventsourcing_core::Tracking;
    const RUNNERS: usize = 4;
    const POSITIONS: u64 = 30;
    let (store, _schema) = fresh().await;
    let at = |n: u64| Position { commit: n, seq: n };
    // Runners race to record the same positions, each with events of its own (a stream per
    // runner and position): only the tracking check, not the primary key, can keep a position
    // from being processed twice.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(RUNNERS));
    let runners: Vec<_> = (0..RUNNERS)
        .map(|_| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut outcomes = Vec::new();
                for n in 1..=POSITIONS {
                    let id = Uuid::new_v4();
                    let tracking = Tracking {
                        name: "p".into(),
                        position: at(n),
                    };
                    let result = store.append_tracked(vec![event(id, 1)], tracking).await;
                    outcomes.push((n, id, result));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = join_all(
        runners,
        std::time::Duration::from_secs(120),
        "the runners' tracked appends",
    )
    .await
    .into_iter()
    .flatten()
    .collect();

    let mut winners = Vec::new();
    for n in 1..=POSITIONS {
        let mine: Vec<_> = outcomes.iter().filter(|(m, ..)| *m == n).collect();
        assert_eq!(mine.len(), RUNNERS);
        let won: Vec<Uuid> = mine
            .iter()
            .filter(|(.., r)| r.is_ok())
            .map(|(_, id, _)| *id)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "position {n}: exactly one winner, got {won:?}"
        );
        winners.push(won[0]);
        for (_, id, result) in mine.iter().filter(|(.., r)| r.is_err()) {
            match result {
                Err(Error::AlreadyProcessed {
                    name,
                    recorded,
                    attempted,
                }) => {
                    assert_eq!(name, "p");
                    assert_eq!(*attempted, at(n));
                    assert!(*recorded >= at(n), "position {n}: recorded {recorded:?}");
                }
                other => panic!("position {n}: a loser got {other:?}, not AlreadyProcessed"),
            }
            assert_eq!(
                store.stream_version(*id).await.unwrap(),
                0,
                "position {n}: a loser wrote its event"
            );
        }
    }
    let mut logged: Vec<Uuid> = store
        .read_log(Position::START, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_id)
        .collect();
    logged.sort_unstable();
    winners.sort_unstable();
    assert_eq!(
        logged, winners,
        "the log holds the winners' events, once each"
    );
    assert_eq!(
        store.tracking_position("p").await.unwrap(),
        Some(at(POSITIONS))
    );
}

#[tokio::test]
async fn saves_wake_this_processs_subscribers() {
    let (store, _schema) = fresh().await;
    let mut changes = store.changes();
    assert!(changes.is_live());
    changes.mark_seen();
    assert!(!changes.has_changed());
    store.append(vec![event(Uuid::new_v4(), 1)]).await.unwrap();
    assert!(changes.has_changed());
}

/// `err` is a conflict on `(stream, expected, actual)`.
fn assert_conflict(err: Error, want: (Uuid, u64, u64)) {
    match err {
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => assert_eq!((stream_id, expected, actual), want),
        other => panic!("expected a conflict, got {other:?}"),
    }
}
