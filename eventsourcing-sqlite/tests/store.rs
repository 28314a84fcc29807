//! The `EventStore` contract on SQLite, each test run on a file and on `:memory:`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{at_micros, event, events};
use eventsourcing_core::{Error, EventStore, Metadata, Position, Snapshot, Tracking, Uuid};
use eventsourcing_sqlite::SqliteStore;

/// Runs `async fn $name(store: SqliteStore)` on a fresh in-memory store and on a fresh file.
macro_rules! on_memory_and_file {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(eventsourcing_sqlite::testing::memory_store()).await;
            }

            #[tokio::test]
            async fn file() {
                let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
                super::$name(store).await;
            }
        }
    )*};
}

on_memory_and_file!(
    append_then_load_round_trips_every_field,
    load_honours_after_version_and_up_to,
    stale_first_version_is_a_conflict_naming_the_actual_version,
    a_gap_before_the_first_version_is_a_conflict,
    a_conflict_in_one_stream_writes_no_stream,
    non_contiguous_versions_within_a_save_are_rejected,
    read_log_pages_in_position_order_without_gaps_or_repeats,
    read_log_sees_what_was_saved_after_the_page_was_read_ahead,
    read_log_accepts_any_position_ordering_lexicographically,
    empty_save_is_a_no_op,
    snapshots_newest_at_or_below_a_version,
    load_from_snapshot_reads_the_snapshot_and_the_events_after_it,
    load_for_replay_reads_the_events_without_their_metadata,
    saving_a_snapshot_keeps_only_the_newest,
    tracking_is_written_with_the_events_or_not_at_all,
    saves_wake_subscribers,
);

async fn append_then_load_round_trips_every_field(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let mut first = event(stream, 1);
    first.metadata = Metadata::default()
        .with_correlation_id(Uuid::new_v4())
        .with_causation_id(Uuid::new_v4())
        .with("user", "ada")
        .with("path", "/widgets");
    first.event_type = "WidgetCreated".into();
    first.schema_version = 3;
    first.payload = vec![0, 159, 146, 150, 255];
    let mut second = event(stream, 2);
    // Before 1970 and at microsecond precision.
    second.timestamp = at_micros(-1_234_567_890_123);
    store
        .append(vec![first.clone(), second.clone()])
        .await
        .unwrap();

    let loaded = store.load(stream, 0, None).await.unwrap();
    assert_eq!(loaded.len(), 2);
    for (stored, new) in loaded.iter().zip([&first, &second]) {
        assert_eq!(stored.stream_id, new.stream_id);
        assert_eq!(stored.version, new.version);
        assert_eq!(stored.event_type, new.event_type);
        assert_eq!(stored.schema_version, new.schema_version);
        assert_eq!(stored.timestamp, new.timestamp);
        assert_eq!(stored.payload, new.payload);
        assert_eq!(stored.metadata, new.metadata);
        assert_eq!(stored.position.commit, stored.position.seq);
    }
    assert!(loaded[0].position < loaded[1].position);
    assert_eq!(store.stream_version(stream).await.unwrap(), 2);
    assert_eq!(store.stream_version(Uuid::new_v4()).await.unwrap(), 0);
    assert!(store
        .load(Uuid::new_v4(), 0, None)
        .await
        .unwrap()
        .is_empty());
}

async fn load_honours_after_version_and_up_to(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 6)).await.unwrap();
    let versions = |events: Vec<eventsourcing_core::StoredEvent>| {
        events.iter().map(|e| e.version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(store.load(stream, 2, None).await.unwrap()),
        [3, 4, 5, 6]
    );
    assert_eq!(
        versions(store.load(stream, 2, Some(4)).await.unwrap()),
        [3, 4]
    );
    assert_eq!(versions(store.load(stream, 0, Some(1)).await.unwrap()), [1]);
    assert!(store.load(stream, 4, Some(4)).await.unwrap().is_empty());
    assert!(store.load(stream, 6, None).await.unwrap().is_empty());
    assert!(store.load(stream, u64::MAX, None).await.unwrap().is_empty());
    assert_eq!(
        versions(store.load(stream, 5, Some(u64::MAX)).await.unwrap()),
        [6]
    );
}

async fn stale_first_version_is_a_conflict_naming_the_actual_version(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 3)).await.unwrap();
    let err = store.append(events(stream, 2, 4)).await.unwrap_err();
    match err {
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => assert_eq!((stream_id, expected, actual), (stream, 1, 3)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version(stream).await.unwrap(), 3);
}

async fn a_gap_before_the_first_version_is_a_conflict(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let err = store.append(events(stream, 2, 3)).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { stream_id, expected: 1, actual: 0 } if stream_id == stream),
        "{err:?}"
    );
    store.append(events(stream, 1, 2)).await.unwrap();
    let err = store.append(events(stream, 4, 4)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 3,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.read_log(Position::START, 10).await.unwrap().len() == 2);
}

async fn a_conflict_in_one_stream_writes_no_stream(store: SqliteStore) {
    let (fresh, busy, also_fresh) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    store.append(events(busy, 1, 1)).await.unwrap();
    let mut save = events(fresh, 1, 3);
    save.extend(events(busy, 1, 2)); // stale: busy is at 1
    save.extend(events(also_fresh, 1, 1));
    let err = store.append(save).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { stream_id, expected: 0, actual: 1 } if stream_id == busy),
        "{err:?}"
    );
    assert_eq!(store.stream_version(fresh).await.unwrap(), 0);
    assert_eq!(store.stream_version(also_fresh).await.unwrap(), 0);
    assert_eq!(store.stream_version(busy).await.unwrap(), 1);
    assert_eq!(store.read_log(Position::START, 100).await.unwrap().len(), 1);

    // The same save, corrected, writes all three streams.
    let mut save = events(fresh, 1, 3);
    save.extend(events(busy, 2, 3));
    save.extend(events(also_fresh, 1, 1));
    store.append(save).await.unwrap();
    assert_eq!(store.read_log(Position::START, 100).await.unwrap().len(), 7);
}

async fn non_contiguous_versions_within_a_save_are_rejected(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let save = vec![event(stream, 1), event(stream, 3)];
    assert!(store.append(save).await.unwrap_err().is_conflict());
    let save = vec![event(stream, 1), event(stream, 1)];
    assert!(store.append(save).await.unwrap_err().is_conflict());
    assert_eq!(store.stream_version(stream).await.unwrap(), 0);
    // Interleaved streams are fine as long as each one is contiguous.
    let other = Uuid::new_v4();
    let save = vec![
        event(stream, 1),
        event(other, 1),
        event(stream, 2),
        event(other, 2),
    ];
    store.append(save).await.unwrap();
    assert_eq!(store.stream_version(stream).await.unwrap(), 2);
    assert_eq!(store.stream_version(other).await.unwrap(), 2);
}

async fn read_log_pages_in_position_order_without_gaps_or_repeats(store: SqliteStore) {
    let streams: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let mut expected = Vec::new();
    for round in 0..5u64 {
        let mut save = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            if (i as u64 + round) % 2 == 0 {
                let from = store.stream_version(*stream).await.unwrap() + 1;
                save.extend(events(*stream, from, from + round));
            }
        }
        expected.extend(save.iter().map(|e| e.payload.clone()));
        store.append(save).await.unwrap();
    }
    let all = store.read_log(Position::START, usize::MAX).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        expected,
        "the log is in save order"
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    let mut paged = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_log(after, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(store.read_log(after, 7).await.unwrap().is_empty());
    assert!(store.read_log(Position::START, 0).await.unwrap().is_empty());
}

/// A full page has the next one read ahead; a page read ahead before a save must not hide the
/// events of that save.
async fn read_log_sees_what_was_saved_after_the_page_was_read_ahead(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 10)).await.unwrap();
    let (mut after, mut version) = (Position::START, 10);
    for round in 0..20 {
        // Two full pages: the page after them is read ahead, perhaps before the save below.
        for _ in 0..2 {
            let page = store.read_log(after, 5).await.unwrap();
            assert_eq!(page.len(), 5, "round {round}");
            after = page[4].position;
        }
        store
            .append(events(stream, version + 1, version + 3))
            .await
            .unwrap();
        let page = store.read_log(after, 5).await.unwrap();
        let versions: Vec<u64> = page.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            [version + 1, version + 2, version + 3],
            "round {round}"
        );
        after = page[2].position;
        store
            .append(events(stream, version + 4, version + 13))
            .await
            .unwrap();
        version += 13;
    }
}

async fn read_log_accepts_any_position_ordering_lexicographically(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 5)).await.unwrap();
    let all = store.read_log(Position::START, 100).await.unwrap();
    let p = all[2].position;
    // Exactly the events whose position is greater than the one given.
    for after in [
        p,
        Position {
            commit: p.commit,
            seq: 0,
        },
        Position {
            commit: p.commit,
            seq: u64::MAX,
        },
        Position {
            commit: 0,
            seq: u64::MAX,
        },
        Position {
            commit: u64::MAX,
            seq: 0,
        },
    ] {
        let got = store.read_log(after, 100).await.unwrap();
        let want: Vec<_> = all.iter().filter(|e| e.position > after).cloned().collect();
        assert_eq!(got, want, "after {after:?}");
    }
}

async fn empty_save_is_a_no_op(store: SqliteStore) {
    store.append(Vec::new()).await.unwrap();
    assert!(store
        .read_log(Position::START, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A snapshot of `stream` at `version`, its fields telling the version.
fn snapshot_at(stream: Uuid, version: u64) -> Snapshot {
    Snapshot {
        stream_id: stream,
        version,
        timestamp: at_micros(1_700_000_000_000_001 + version as i64),
        state_type: "Widget".into(),
        fingerprint: u64::MAX - version,
        payload: format!("state at {version}").into_bytes(),
    }
}

async fn snapshots_newest_at_or_below_a_version(store: SqliteStore) {
    let stream = Uuid::new_v4();
    assert_eq!(store.load_snapshot(stream, None).await.unwrap(), None);
    let snapshot = |version: u64| snapshot_at(stream, version);
    for version in [10, 20, 30] {
        store.save_snapshot(snapshot(version), None).await.unwrap();
    }
    assert_eq!(
        store.load_snapshot(stream, None).await.unwrap(),
        Some(snapshot(30))
    );
    assert_eq!(
        store.load_snapshot(stream, Some(29)).await.unwrap(),
        Some(snapshot(20))
    );
    assert_eq!(
        store.load_snapshot(stream, Some(10)).await.unwrap(),
        Some(snapshot(10))
    );
    assert_eq!(store.load_snapshot(stream, Some(9)).await.unwrap(), None);
    assert_eq!(
        store.load_snapshot(Uuid::new_v4(), None).await.unwrap(),
        None
    );

    // The same version again replaces it.
    let mut again = snapshot(30);
    again.payload = b"rewritten".to_vec();
    store.save_snapshot(again.clone(), None).await.unwrap();
    assert_eq!(
        store.load_snapshot(stream, None).await.unwrap(),
        Some(again)
    );
}

async fn load_from_snapshot_reads_the_snapshot_and_the_events_after_it(store: SqliteStore) {
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 35)).await.unwrap();
    store.append(events(Uuid::new_v4(), 1, 3)).await.unwrap();
    let snapshot = |version: u64| snapshot_at(stream, version);
    for version in [10, 20, 30] {
        store.save_snapshot(snapshot(version), None).await.unwrap();
    }
    // What replay reads: everything but the metadata, which none of these events has.
    let replayed = |after: u64, up_to: Option<u64>| {
        let store = store.clone();
        async move { store.load(stream, after, up_to).await.unwrap() }
    };
    for (up_to, newest) in [(None, Some(30)), (Some(29), Some(20)), (Some(20), Some(20))] {
        let (snap, loaded) = store.load_from_snapshot(stream, up_to).await.unwrap();
        assert_eq!(snap, newest.map(snapshot), "up to {up_to:?}");
        assert_eq!(
            loaded,
            replayed(newest.unwrap_or(0), up_to).await,
            "up to {up_to:?}"
        );
    }
    // Below every snapshot: the events from the start.
    let (snap, loaded) = store.load_from_snapshot(stream, Some(9)).await.unwrap();
    assert_eq!(snap, None);
    assert_eq!(loaded, replayed(0, Some(9)).await);
    assert_eq!(loaded.len(), 9);
    // A stream without snapshots, and one without anything.
    let other = Uuid::new_v4();
    store.append(events(other, 1, 4)).await.unwrap();
    let (snap, loaded) = store.load_from_snapshot(other, None).await.unwrap();
    assert_eq!((snap, loaded.len()), (None, 4));
    let (snap, loaded) = store
        .load_from_snapshot(Uuid::new_v4(), None)
        .await
        .unwrap();
    assert_eq!((snap, loaded.len()), (None, 0));
}

async fn load_for_replay_reads_the_events_without_their_metadata(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let mut saved = events(stream, 1, 3);
    saved[1].metadata = Metadata::default().with_correlation_id(Uuid::new_v4());
    store.append(saved).await.unwrap();
    let mut loaded = store.load(stream, 1, Some(3)).await.unwrap();
    assert!(!loaded[0].metadata.is_empty());
    for event in &mut loaded {
        event.metadata = Metadata::default();
    }
    assert_eq!(
        store.load_for_replay(stream, 1, Some(3)).await.unwrap(),
        loaded
    );
    assert!(store
        .load_for_replay(stream, 3, None)
        .await
        .unwrap()
        .is_empty());
}

async fn saving_a_snapshot_keeps_only_the_newest(store: SqliteStore) {
    let (stream, other) = (Uuid::new_v4(), Uuid::new_v4());
    let snapshot = |stream_id: Uuid, version: u64| Snapshot {
        stream_id,
        version,
        timestamp: at_micros(0),
        state_type: "Widget".into(),
        fingerprint: 7,
        payload: Vec::new(),
    };
    store.save_snapshot(snapshot(other, 1), None).await.unwrap();
    for version in 1..=5 {
        store
            .save_snapshot(snapshot(stream, version), Some(2))
            .await
            .unwrap();
    }
    let kept = |at: u64| {
        let store = store.clone();
        async move {
            store
                .load_snapshot(stream, Some(at))
                .await
                .unwrap()
                .map(|s| s.version)
        }
    };
    assert_eq!(kept(5).await, Some(5));
    assert_eq!(kept(4).await, Some(4));
    assert_eq!(kept(3).await, None, "older ones are pruned");
    // Other streams are untouched; keep = 1 leaves only the newest.
    assert!(store.load_snapshot(other, None).await.unwrap().is_some());
    store
        .save_snapshot(snapshot(stream, 6), Some(1))
        .await
        .unwrap();
    assert_eq!(kept(5).await, None);
    assert_eq!(kept(6).await, Some(6));
}

async fn tracking_is_written_with_the_events_or_not_at_all(store: SqliteStore) {
    let stream = Uuid::new_v4();
    let upstream = |commit: u64, seq: u64| Position { commit, seq };
    let tracking = |position| Tracking {
        name: "projection".into(),
        position,
    };
    assert_eq!(store.tracking_position("projection").await.unwrap(), None);
    store
        .append_tracked(events(stream, 1, 2), tracking(upstream(5, 50)))
        .await
        .unwrap();
    assert_eq!(
        store.tracking_position("projection").await.unwrap(),
        Some(upstream(5, 50)),
        "both parts of the position are kept"
    );

    // Processing the same upstream position again is refused, and its events are not written.
    let err = store
        .append_tracked(events(stream, 3, 3), tracking(upstream(5, 50)))
        .await
        .unwrap_err();
    match err {
        Error::AlreadyProcessed {
            name,
            recorded,
            attempted,
        } => {
            assert_eq!(name, "projection");
            assert_eq!((recorded, attempted), (upstream(5, 50), upstream(5, 50)));
        }
        other => panic!("expected AlreadyProcessed, got {other:?}"),
    }
    assert_eq!(store.stream_version(stream).await.unwrap(), 2);

    // A conflict leaves the tracking position where it was.
    let err = store
        .append_tracked(events(stream, 2, 2), tracking(upstream(6, 1)))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(
        store.tracking_position("projection").await.unwrap(),
        Some(upstream(5, 50))
    );

    // No events, only progress; other names are independent.
    store
        .append_tracked(Vec::new(), tracking(upstream(9, 0)))
        .await
        .unwrap();
    assert_eq!(
        store.tracking_position("projection").await.unwrap(),
        Some(upstream(9, 0))
    );
    assert_eq!(store.tracking_position("other").await.unwrap(), None);
}

async fn saves_wake_subscribers(store: SqliteStore) {
    let mut changes = store.changes();
    assert!(changes.is_live());
    changes.mark_seen();
    let woken = tokio::spawn(async move {
        // Long enough that only a notification ends the wait in time.
        changes.wait(Duration::from_secs(30)).await;
    });
    store.append(events(Uuid::new_v4(), 1, 1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("no wake-up after a save")
        .unwrap();
}

#[tokio::test]
async fn nanoseconds_are_truncated_to_microseconds() {
    let store = SqliteStore::open_memory().unwrap();
    let stream = Uuid::new_v4();
    let mut e = event(stream, 1);
    e.timestamp =
        eventsourcing_core::chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    store.append(vec![e]).await.unwrap();
    let loaded = store.load(stream, 0, None).await.unwrap();
    assert_eq!(loaded[0].timestamp.timestamp_subsec_nanos(), 123_456_000);
}
