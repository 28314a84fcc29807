//! Snapshots: when they are written, pruned and used, and that they never change a load's
//! result.

use eventsourcing::prelude::*;
use eventsourcing::{Snapshotting, StoredEvent};
use proptest::prelude::*;

use super::fixtures::{snapshot_version, Counter, Counting};

/// The seed's snapshotting aggregate: a snapshot every 10 events.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(snapshot_every = 10)]
pub struct Endpoint {
    meta: Meta<Self>,
    pub url: String,
    pub name: String,
    pub renames: u32,
}

#[events]
impl Endpoint {
    #[event("Registered")]
    pub fn create(url: String, name: String) -> Self {
        Self {
            meta: Meta::default(),
            url,
            name,
            renames: 0,
        }
    }

    #[event("NameUpdated")]
    pub fn update_name(&mut self, name: String) {
        self.name = name;
        self.renames += 1;
    }
}

/// Loads of a type that never snapshots skip the snapshot lookup; `IS_SNAPSHOTTING_ENABLED=y`
/// makes every load look, so a manual `take_snapshot` helps any type.
pub async fn snapshot_lookup_only_where_it_can_help<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let app = Application::new(store.clone());
    let mut counter = Counter::open();
    for _ in 0..5 {
        counter.add(2);
    }
    app.save(&mut counter).await.unwrap();
    let _: Counter = app.repository().get(counter.id()).await.unwrap();
    assert_eq!(store.take_snapshot_lookups(), 0, "Counter never snapshots");

    let env = eventsourcing::Env::from_map([("IS_SNAPSHOTTING_ENABLED", "y")]);
    let on =
        Application::new(store.clone()).with_snapshotting(Snapshotting::from_env(&env).unwrap());
    assert_eq!(
        on.take_snapshot::<Counter>(counter.id(), None)
            .await
            .unwrap(),
        6
    );
    store.take_snapshot_lookups();
    store.take_loads();
    let loaded: Counter = on.repository().get(counter.id()).await.unwrap();
    assert_eq!(loaded.total, 10);
    assert_eq!(store.take_snapshot_lookups(), 1);
    assert_eq!(store.take_loads(), vec![(6, 0)]);
}

/// The seed's snapshot test, asserting what it only implies: the snapshot exists and the load
/// used it.
pub async fn seed_snapshot_test<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let app = Application::new(store.clone());
    let mut endpoint = Endpoint::create("https://example.com".into(), "Test".into());
    for i in 0..15 {
        endpoint.update_name(format!("Name {i}"));
    }
    app.save(&mut endpoint).await.unwrap();

    let snap = store
        .load_snapshot(endpoint.id(), None)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(
        snap.version, 16,
        "the save crossed version 10, so it snapshots its end state"
    );
    assert_eq!(snap.state_type, "Endpoint");

    store.take_loads();
    let loaded: Endpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.name, "Name 14");
    assert_eq!(loaded, endpoint);
    assert_eq!(
        store.take_loads(),
        vec![(16, 0)],
        "the load started from the snapshot"
    );
}

/// Saving one event at a time snapshots at 10, 20, ...; `get_at` starts from the newest
/// snapshot at or below the version it wants.
pub async fn snapshots_at_interval_and_get_at_uses_older_ones<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let app = Application::new(store.clone());
    let mut endpoint = Endpoint::create("u".into(), "n0".into());
    app.save(&mut endpoint).await.unwrap();
    for i in 1..25 {
        endpoint.update_name(format!("n{i}"));
        app.save(&mut endpoint).await.unwrap();
    }
    let id = endpoint.id();
    for (at, expected) in [(Some(9), None), (Some(15), Some(10)), (None, Some(20))] {
        let found = store
            .load_snapshot(id, at)
            .await
            .unwrap()
            .map(|s| s.version);
        assert_eq!(found, expected, "newest snapshot at or below {at:?}");
    }
    store.take_loads();
    let at_15: Endpoint = app.repository().get_at(id, 15).await.unwrap();
    assert_eq!(
        (at_15.version(), at_15.name.as_str(), at_15.renames),
        (15, "n14", 14)
    );
    let at_5: Endpoint = app.repository().get_at(id, 5).await.unwrap();
    assert_eq!((at_5.version(), at_5.name.as_str()), (5, "n4"));
    let now: Endpoint = app.repository().get(id).await.unwrap();
    assert_eq!(now, endpoint);
    assert_eq!(store.take_loads(), vec![(10, 5), (0, 5), (20, 5)]);
}

/// `MAX_SNAPSHOTS`: only the newest N are kept, pruned as part of writing a new one.
pub async fn max_snapshots_prunes_old_ones<S: EventStore>(store: S) {
    let app = Application::new(store).with_snapshotting(Snapshotting::every(2).keep(2));
    let mut counter = Counter::open();
    app.save(&mut counter).await.unwrap();
    for _ in 0..9 {
        counter.add(1);
        app.save(&mut counter).await.unwrap();
    }
    // Snapshots were written at versions 2, 4, 6, 8 and 10; only 8 and 10 remain.
    let id = counter.id();
    let store = app.store();
    assert_eq!(snapshot_version(store, id, None).await, Some(10));
    assert_eq!(snapshot_version(store, id, Some(9)).await, Some(8));
    assert_eq!(store.load_snapshot(id, Some(7)).await.unwrap(), None);
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.total, 9);
}

/// `take_snapshot` on demand, and `Snapshotting::disabled()` writes and reads none.
pub async fn take_snapshot_and_disabled<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let off = Application::new(store.clone()).with_snapshotting(Snapshotting::disabled());
    let mut endpoint = Endpoint::create("u".into(), "n".into());
    for i in 0..12 {
        endpoint.update_name(format!("n{i}"));
    }
    off.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    assert_eq!(
        store.load_snapshot(id, None).await.unwrap(),
        None,
        "disabled writes none"
    );

    let on = Application::new(store.clone());
    assert_eq!(on.take_snapshot::<Endpoint>(id, Some(7)).await.unwrap(), 7);
    assert_eq!(snapshot_version(&store, id, None).await, Some(7));
    store.take_loads();
    let _: Endpoint = off.repository().get(id).await.unwrap();
    let _: Endpoint = on.repository().get(id).await.unwrap();
    assert_eq!(
        store.take_loads(),
        vec![(0, 13), (7, 6)],
        "disabled reads none either"
    );
}

#[derive(Debug, Clone)]
enum Step {
    Add(i64),
    Save,
}

/// For random histories and random intervals, a load that starts from snapshots equals a load
/// that replays every event, at every version.
pub async fn snapshots_equal_full_replay<S: EventStore + Clone>(store: S) {
    let handle = tokio::runtime::Handle::current();
    let seed = super::seed::seed();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    });
    let strategy = (
        1u64..8,
        proptest::collection::vec(
            prop_oneof![3 => any::<i8>().prop_map(|n| Step::Add(n.into())), 1 => Just(Step::Save)],
            0..40,
        ),
    );
    tokio::task::block_in_place(|| {
        runner
            .run(&strategy, |(interval, steps)| {
                handle.block_on(async {
                    let snap = Application::new(store.clone())
                        .with_snapshotting(Snapshotting::every(interval));
                    let plain =
                        Application::new(store.clone()).with_snapshotting(Snapshotting::disabled());
                    let mut counter = Counter::open();
                    for step in &steps {
                        match step {
                            Step::Add(n) => counter.add(*n),
                            Step::Save => snap.save(&mut counter).await.unwrap(),
                        }
                    }
                    snap.save(&mut counter).await.unwrap();
                    let id = counter.id();
                    for v in 1..=counter.version() {
                        let a: Counter = snap.repository().get_at(id, v).await.unwrap();
                        let b: Counter = plain.repository().get_at(id, v).await.unwrap();
                        assert_eq!(
                            a,
                            b,
                            "at version {v} with interval {interval}; {}",
                            super::seed::replay_hint(seed)
                        );
                    }
                    let a: Counter = snap.repository().get(id).await.unwrap();
                    assert_eq!(a, counter, "{}", super::seed::replay_hint(seed));
                });
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}; {}", super::seed::replay_hint(seed)));
    });
}

/// `load_from_snapshot` (one round trip where the store can) reads what `load_snapshot` then
/// `load_for_replay` read, at every bound: below the first snapshot, at one, between, past the
/// end, and for a stream that does not exist.
pub async fn load_from_snapshot_reads_what_two_calls_read<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut endpoint = Endpoint::create("u".into(), "n0".into());
    app.save(&mut endpoint).await.unwrap();
    for i in 1..25 {
        endpoint.update_name(format!("n{i}"));
        app.save(&mut endpoint).await.unwrap();
    }
    let id = endpoint.id();
    let bounds = [
        None,
        Some(0),
        Some(1),
        Some(9),
        Some(10),
        Some(15),
        Some(20),
        Some(25),
    ];
    for up_to in bounds.into_iter().chain([Some(1000), Some(u64::MAX)]) {
        let (snapshot, events) = store.load_from_snapshot(id, up_to).await.unwrap();
        let expected = store.load_snapshot(id, up_to).await.unwrap();
        let after = expected.as_ref().map_or(0, |s| s.version);
        let expected_events = store.load_for_replay(id, after, up_to).await.unwrap();
        assert_eq!(snapshot, expected, "snapshot at or below {up_to:?}");
        let versions = |e: &[StoredEvent]| e.iter().map(|e| e.version).collect::<Vec<_>>();
        assert_eq!(
            versions(&events),
            versions(&expected_events),
            "up to {up_to:?}"
        );
        for (got, want) in events.iter().zip(&expected_events) {
            assert_eq!(
                (
                    &got.event_type,
                    &got.payload,
                    got.schema_version,
                    got.timestamp
                ),
                (
                    &want.event_type,
                    &want.payload,
                    want.schema_version,
                    want.timestamp
                ),
                "event {} up to {up_to:?}",
                want.version
            );
            assert_eq!(got.stream_type, want.stream_type);
        }
    }
    let none = store
        .load_from_snapshot(Uuid::new_v4(), None)
        .await
        .unwrap();
    assert_eq!((none.0, none.1.len()), (None, 0));
}
