//! The conformance suite: written once against the `EventStore` trait, run against every store.
//!
//! A store's test file says `mod conformance;` and `conformance::conformance_tests!(fixture);`
//! where `async fn fixture() -> (S, G)` makes a fresh, empty store and a guard that cleans it
//! up when dropped.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::future::Future;
use std::sync::{Arc, Mutex};

use eventsourcing::prelude::*;
use eventsourcing::{
    read_log_stream, spawn_process, BoxError, Codec, NewEvent, Outbox, Position, Process,
    RunOptions, Snapshot, Snapshotting, StoredEvent, Subscription, Tracking,
};
use futures_util::StreamExt;
use proptest::prelude::*;

/// The seed's aggregate.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetRegistryEndpoint {
    meta: Meta<Self>,
    pub url: String,
    pub name: String,
    pub tenant_id: String,
}

#[events]
impl WidgetRegistryEndpoint {
    #[event("Registered")]
    pub fn create(url: String, name: String, tenant_id: String) -> Self {
        Self {
            meta: Meta::default(),
            url,
            name,
            tenant_id,
        }
    }

    #[event("NameUpdated")]
    pub fn update_name(&mut self, name: String) {
        self.name = name;
    }

    /// A command: validates, then records.
    pub fn rename(&mut self, name: &str) -> Result<(), String> {
        if name.trim().is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        self.update_name(name.to_owned());
        Ok(())
    }
}

/// A second aggregate type, for saves that span types.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    meta: Meta<Self>,
    pub total: i64,
}

#[events]
impl Counter {
    #[event]
    pub fn open() -> Self {
        Self {
            meta: Meta::default(),
            total: 0,
        }
    }

    #[event]
    pub fn add(&mut self, amount: i64) {
        self.total += amount;
    }
}

fn new_endpoint() -> WidgetRegistryEndpoint {
    WidgetRegistryEndpoint::create(
        "https://example.com".into(),
        "Test Endpoint".into(),
        "tenant-123".into(),
    )
}

pub async fn save_and_load<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    assert!(
        endpoint.pending_events().is_empty(),
        "save clears the pending events"
    );

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.id(), endpoint.id());
    assert_eq!(loaded.url, endpoint.url);
    assert_eq!(loaded.name, endpoint.name);
    assert_eq!(loaded.tenant_id, endpoint.tenant_id);
    assert_eq!(loaded.version(), 1);
    assert_eq!(
        loaded.created_on(),
        endpoint.created_on(),
        "timestamps survive the store"
    );
    assert_eq!(loaded, endpoint);
}

pub async fn update_persists_after_reload<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();

    let mut loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    loaded.update_name("Updated Name".into());
    app.save(&mut loaded).await.unwrap();

    let reloaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(reloaded.name, "Updated Name");
    assert_eq!(reloaded.version(), 2);
    assert_eq!(reloaded.modified_on(), loaded.modified_on());
    assert!(reloaded.modified_on() >= reloaded.created_on());
}

pub async fn fifteen_updates_then_reload<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    for i in 0..15 {
        endpoint.update_name(format!("Name {i}"));
    }
    assert_eq!(endpoint.pending_events().len(), 16);
    app.save(&mut endpoint).await.unwrap();

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.name, "Name 14");
    assert_eq!(loaded.version(), 16);
    assert_eq!(loaded, endpoint);
}

pub async fn two_copies_conflict<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();

    let mut first: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    let mut second: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    first.update_name("first".into());
    second.update_name("second".into());
    app.save(&mut first).await.unwrap();
    let err = app.save(&mut second).await.unwrap_err();
    match &err {
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => {
            assert_eq!(*stream_id, id);
            assert_eq!(*expected, 1);
            assert_eq!(*actual, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.is_conflict());
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    assert_eq!(
        second.pending_events().len(),
        1,
        "a failed save keeps the pending events"
    );

    let loaded: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.name, "first");
    assert_eq!(loaded.version(), 2);
}

pub async fn multi_aggregate_save_is_all_or_nothing<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    let mut counter = Counter::open();
    app.save((&mut endpoint, &mut counter)).await.unwrap();
    assert_eq!(app.store().stream_version(endpoint.id()).await.unwrap(), 1);
    assert_eq!(app.store().stream_version(counter.id()).await.unwrap(), 1);

    // Someone else moves the counter on.
    let mut other: Counter = app.repository().get(counter.id()).await.unwrap();
    other.add(5);
    app.save(&mut other).await.unwrap();

    // A save of both, where the counter copy is stale: nothing of it may be written.
    endpoint.update_name("never stored".into());
    counter.add(1);
    let fresh = Counter::open();
    let mut fresh_vec = vec![fresh];
    let err = app
        .save((&mut endpoint, &mut fresh_vec, &mut counter))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.name, "Test Endpoint");
    assert_eq!(loaded.version(), 1);
    assert!(!app.repository().exists(fresh_vec[0].id()).await.unwrap());
    let counter_now: Counter = app.repository().get(counter.id()).await.unwrap();
    assert_eq!(counter_now.total, 5);
    assert_eq!(endpoint.pending_events().len(), 1);
    assert_eq!(fresh_vec[0].pending_events().len(), 1);
}

pub async fn get_at_returns_past_versions<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    for i in 1..=4 {
        endpoint.update_name(format!("Name {i}"));
    }
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    let first: WidgetRegistryEndpoint = app.repository().get_at(id, 1).await.unwrap();
    assert_eq!(first.name, "Test Endpoint");
    assert_eq!(first.version(), 1);
    for v in 2..=5u64 {
        let at: WidgetRegistryEndpoint = app.repository().get_at(id, v).await.unwrap();
        assert_eq!(at.name, format!("Name {}", v - 1));
        assert_eq!(at.version(), v);
    }
    let err = app
        .repository()
        .get_at::<WidgetRegistryEndpoint>(id, 6)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { id: i, version: Some(6) } if i == id),
        "{err:?}"
    );
}

pub async fn exists_and_not_found<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    assert!(!app.repository().exists(endpoint.id()).await.unwrap());
    app.save(&mut endpoint).await.unwrap();
    assert!(app.repository().exists(endpoint.id()).await.unwrap());

    let missing = eventsourcing::new_id();
    assert!(!app.repository().exists(missing).await.unwrap());
    let err = app
        .repository()
        .get::<WidgetRegistryEndpoint>(missing)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("aggregate {missing} not found"));
}

pub async fn decode_failure_names_stream_version_and_type<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    // An event whose payload lacks a field, written straight to the store.
    app.store()
        .append(vec![NewEvent {
            stream_id: id,
            version: 2,
            event_type: "NameUpdated".into(),
            schema_version: 1,
            timestamp: eventsourcing::now(),
            payload: br#"{"nom":"x"}"#.to_vec(),
            metadata: Metadata::default(),
        }])
        .await
        .unwrap();
    let err = app
        .repository()
        .get::<WidgetRegistryEndpoint>(id)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Decode { version: 2, .. }), "{err:?}");
    assert!(msg.contains(&id.to_string()), "{msg}");
    assert!(msg.contains("`NameUpdated`"), "{msg}");
    assert!(msg.contains("version 2"), "{msg}");
    assert!(msg.contains("missing field `name`"), "{msg}");

    // An event type the aggregate does not know, on a stream of its own.
    let mut other = new_endpoint();
    app.save(&mut other).await.unwrap();
    app.store()
        .append(vec![NewEvent {
            stream_id: other.id(),
            version: 2,
            event_type: "Exploded".into(),
            schema_version: 1,
            timestamp: eventsourcing::now(),
            payload: b"{}".to_vec(),
            metadata: Metadata::default(),
        }])
        .await
        .unwrap();
    let msg = app
        .repository()
        .get::<WidgetRegistryEndpoint>(other.id())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`Exploded` is not an event of `WidgetRegistryEndpoint` (known: Registered, NameUpdated)"),
        "{msg}"
    );
    let at_1: WidgetRegistryEndpoint = app.repository().get_at(other.id(), 1).await.unwrap();
    assert_eq!(at_1.version(), 1, "earlier versions stay readable");
}

pub async fn update_helper_runs_commands<S: EventStore>(store: S) {
    let app = Application::new(store);
    let endpoint = app.create(new_endpoint()).await.unwrap();
    let id = endpoint.id();

    let updated: WidgetRegistryEndpoint = app
        .update(id, |e: &mut WidgetRegistryEndpoint| e.rename("Renamed"))
        .await
        .unwrap();
    assert_eq!(updated.name, "Renamed");

    let err = app
        .update(id, |e: &mut WidgetRegistryEndpoint| e.rename("  "))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    assert!(err.to_string().contains("a name cannot be empty"), "{err}");
    let loaded: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.version(), 2, "a rejected command saves nothing");
}

/// 8 tasks add to one counter concurrently with retries: every increment lands exactly once.
pub async fn concurrent_updates_with_retry<S: EventStore>(store: S) {
    let app = Application::new(store);
    let counter = app.create(Counter::open()).await.unwrap();
    let id = counter.id();
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                app.update_with_retry(id, Retry::attempts(1000), |c: &mut Counter| {
                    c.add(t + 1);
                    Ok::<_, std::convert::Infallible>(())
                })
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.total, (1..=8).sum::<i64>() * 10);
    assert_eq!(loaded.version(), 81);
}

pub async fn read_log_pages_in_order<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut expected = Vec::new();
    for i in 0..7 {
        let mut e = new_endpoint();
        e.update_name(format!("n{i}"));
        expected.push((e.id(), 1u64));
        expected.push((e.id(), 2u64));
        app.save(&mut e).await.unwrap();
    }
    let mut seen: Vec<StoredEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let page = app.store().read_log(after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().position;
        seen.extend(page);
    }
    let got: Vec<(Uuid, u64)> = seen.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(got, expected);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    let all = app.store().read_log(Position::START, 1000).await.unwrap();
    assert_eq!(all, seen, "paging and one read see the same log");
}

pub async fn metadata_round_trips<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut e = new_endpoint();
    let correlation = eventsourcing::new_id();
    let metadata = Metadata::default()
        .with_correlation_id(correlation)
        .with("user", "alice");
    app.save_with_metadata(&mut e, &metadata).await.unwrap();
    let events = app.store().load(e.id(), 0, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata, metadata);
    assert_eq!(events[0].event_type, "Registered");
    assert_eq!(events[0].schema_version, 1);
    let payload: serde_json::Value = serde_json::from_slice(&events[0].payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"url": "https://example.com", "name": "Test Endpoint", "tenant_id": "tenant-123"})
    );
}

/// What a store returns for replay matches `load` in everything replay reads.
pub async fn load_for_replay_matches_load<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut e = new_endpoint();
    for i in 0..6 {
        e.update_name(format!("n{i}"));
    }
    app.save_with_metadata(&mut e, &Metadata::default().with("k", "v"))
        .await
        .unwrap();
    for (after, up_to) in [(0, None), (2, Some(5)), (7, None), (3, Some(3))] {
        let full = app.store().load(e.id(), after, up_to).await.unwrap();
        let lean = app
            .store()
            .load_for_replay(e.id(), after, up_to)
            .await
            .unwrap();
        let key = |v: &[StoredEvent]| {
            v.iter()
                .map(|x| {
                    (
                        x.stream_id,
                        x.version,
                        x.event_type.clone(),
                        x.schema_version,
                        x.timestamp,
                        x.payload.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&lean), key(&full), "after {after}, up to {up_to:?}");
    }
}

pub async fn non_contiguous_first_version_is_a_conflict<S: EventStore>(store: S) {
    let id = eventsourcing::new_id();
    let event = |version| NewEvent {
        stream_id: id,
        version,
        event_type: "add".into(),
        schema_version: 1,
        timestamp: eventsourcing::now(),
        payload: b"{}".to_vec(),
        metadata: Metadata::default(),
    };
    let err = store.append(vec![event(3)]).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.stream_version(id).await.unwrap(), 0);
    store.append(vec![event(1), event(2)]).await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// Snapshots and schema evolution

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

/// A store wrapper that records the `after_version` of every `load`, to see whether a load
/// started from a snapshot.
pub struct Counting<S> {
    inner: Arc<S>,
    loads: Arc<Mutex<Vec<(u64, usize)>>>,
    snapshot_lookups: Arc<Mutex<usize>>,
}

impl<S> Clone for Counting<S> {
    fn clone(&self) -> Self {
        Counting {
            inner: Arc::clone(&self.inner),
            loads: Arc::clone(&self.loads),
            snapshot_lookups: Arc::clone(&self.snapshot_lookups),
        }
    }
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            inner: Arc::new(inner),
            loads: Arc::default(),
            snapshot_lookups: Arc::default(),
        }
    }
    /// How many snapshot lookups were made so far, then forgets them.
    pub fn take_snapshot_lookups(&self) -> usize {
        std::mem::take(&mut *self.snapshot_lookups.lock().unwrap())
    }
    /// `(after_version, events returned)` of each load so far, then forgets them.
    pub fn take_loads(&self) -> Vec<(u64, usize)> {
        std::mem::take(&mut *self.loads.lock().unwrap())
    }
}

impl<S: EventStore> EventStore for Counting<S> {
    fn append(&self, events: Vec<NewEvent>) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.append(events)
    }
    async fn load(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let events = self.inner.load(stream_id, after_version, up_to).await?;
        self.loads
            .lock()
            .unwrap()
            .push((after_version, events.len()));
        Ok(events)
    }
    fn stream_version(&self, stream_id: Uuid) -> impl Future<Output = Result<u64, Error>> + Send {
        self.inner.stream_version(stream_id)
    }
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        self.inner.read_log(after, limit)
    }
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        keep: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.save_snapshot(snapshot, keep)
    }
    fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send {
        *self.snapshot_lookups.lock().unwrap() += 1;
        self.inner.load_snapshot(stream_id, at_or_below)
    }
    fn append_tracked(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.append_tracked(events, tracking)
    }
    fn tracking_position(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        self.inner.tracking_position(name)
    }
    fn changes(&self) -> eventsourcing::plumbing::Changes {
        self.inner.changes()
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
    assert_eq!(
        store
            .load_snapshot(id, None)
            .await
            .unwrap()
            .map(|s| s.version),
        Some(10)
    );
    assert_eq!(
        store
            .load_snapshot(id, Some(9))
            .await
            .unwrap()
            .map(|s| s.version),
        Some(8)
    );
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
    assert_eq!(
        store
            .load_snapshot(id, None)
            .await
            .unwrap()
            .map(|s| s.version),
        Some(7)
    );
    store.take_loads();
    let _: Endpoint = off.repository().get(id).await.unwrap();
    let _: Endpoint = on.repository().get(id).await.unwrap();
    assert_eq!(
        store.take_loads(),
        vec![(0, 13), (7, 6)],
        "disabled reads none either"
    );
}

pub mod v1 {
    use eventsourcing::prelude::*;

    /// The first shape of an aggregate stored as `Gadget`.
    #[derive(Aggregate, Debug, Clone, Serialize, Deserialize)]
    #[aggregate(name = "Gadget", snapshot_every = 2)]
    pub struct Gadget {
        meta: Meta<Self>,
        pub label: String,
        pub count: u32,
    }

    #[events]
    impl Gadget {
        #[event("Made")]
        pub fn make(label: String) -> Self {
            Self {
                meta: Meta::default(),
                label,
                count: 0,
            }
        }
        #[event("Bumped")]
        pub fn bump(&mut self) {
            self.count += 1;
        }
    }
}

pub mod v2 {
    use eventsourcing::prelude::*;

    /// The same stored type after a code change: `count` became `bumps` and a field was added.
    #[derive(Aggregate, Debug, Clone, Serialize, Deserialize)]
    #[aggregate(name = "Gadget", snapshot_every = 2)]
    pub struct Gadget {
        meta: Meta<Self>,
        pub label: String,
        pub bumps: u64,
        pub history: Vec<u64>,
    }

    #[events]
    impl Gadget {
        #[event("Made")]
        pub fn make(label: String) -> Self {
            Self {
                meta: Meta::default(),
                label,
                bumps: 0,
                history: vec![],
            }
        }
        #[event("Bumped")]
        pub fn bump(&mut self) {
            self.bumps += 1;
            self.history.push(self.bumps);
        }
    }
}

/// A snapshot written by a differently shaped struct is ignored (the load replays the events)
/// and replaced by one in the current shape.
pub async fn snapshot_of_another_shape_is_ignored_and_replaced<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let app = Application::new(store.clone());
    let mut old = v1::Gadget::make("g".into());
    old.bump();
    old.bump();
    old.bump();
    app.save(&mut old).await.unwrap();
    let id = old.id();
    let written = store.load_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(
        written.fingerprint,
        <v1::Gadget as Aggregate>::STATE_FINGERPRINT
    );
    assert_ne!(
        <v1::Gadget as Aggregate>::STATE_FINGERPRINT,
        <v2::Gadget as Aggregate>::STATE_FINGERPRINT
    );

    store.take_loads();
    let new: v2::Gadget = app.repository().get(id).await.unwrap();
    assert_eq!(
        (new.bumps, new.history.clone(), new.version()),
        (3, vec![1, 2, 3], 4)
    );
    assert_eq!(
        store.take_loads(),
        vec![(0, 4)],
        "the old snapshot was not used"
    );

    let replaced = store.load_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(replaced.version, 4);
    assert_eq!(
        replaced.fingerprint,
        <v2::Gadget as Aggregate>::STATE_FINGERPRINT
    );
    let again: v2::Gadget = app.repository().get(id).await.unwrap();
    assert_eq!(again.history, vec![1, 2, 3]);
    assert_eq!(
        store.take_loads(),
        vec![(4, 0)],
        "the fresh snapshot is used"
    );
}

/// An event whose payload changed shape: version 2 splits `name` into `first` and `last`.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    meta: Meta<Self>,
    pub first: String,
    pub last: String,
}

#[events]
impl Person {
    #[event("Registered", version = 2, upcast = Self::upcast_registered)]
    pub fn register(first: String, last: String) -> Self {
        Self {
            meta: Meta::default(),
            first,
            last,
        }
    }

    #[event("Renamed", version = 3)]
    pub fn rename(&mut self, first: String, last: String) {
        self.first = first;
        self.last = last;
    }

    fn upcast_registered(
        from: u32,
        mut value: eventsourcing::serde_json::Value,
    ) -> Option<eventsourcing::serde_json::Value> {
        if from != 1 {
            return None;
        }
        let name = value.get("name")?.as_str()?.to_owned();
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        value["first"] = first.into();
        value["last"] = last.into();
        Some(value)
    }
}

pub async fn old_event_payload_loads_through_its_upcast<S: EventStore>(store: S) {
    let app = Application::new(store);
    let id = eventsourcing::new_id();
    let stored = |version, event_type: &'static str, schema_version, payload: &str| NewEvent {
        stream_id: id,
        version,
        event_type: event_type.into(),
        schema_version,
        timestamp: eventsourcing::now(),
        payload: payload.as_bytes().to_vec(),
        metadata: Metadata::default(),
    };
    // Written by the code of version 1, never rewritten.
    app.store()
        .append(vec![stored(
            1,
            "Registered",
            1,
            r#"{"name":"Ada Lovelace"}"#,
        )])
        .await
        .unwrap();
    let person: Person = app.repository().get(id).await.unwrap();
    assert_eq!(
        (person.first.as_str(), person.last.as_str()),
        ("Ada", "Lovelace")
    );
    let raw = app.store().load(id, 0, None).await.unwrap();
    assert_eq!(
        raw[0].payload,
        br#"{"name":"Ada Lovelace"}"#.to_vec(),
        "stored events are never rewritten"
    );

    // New events are written at the current schema version.
    let mut person = person;
    person.rename("Augusta".into(), "King".into());
    app.save(&mut person).await.unwrap();
    let raw = app.store().load(id, 1, None).await.unwrap();
    assert_eq!(raw[0].schema_version, 3);

    // `Renamed` has no upcast: a version-2 payload is a clear error.
    app.store()
        .append(vec![stored(3, "Renamed", 2, r#"{"first":"A","last":"B"}"#)])
        .await
        .unwrap();
    let msg = app
        .repository()
        .get::<Person>(id)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        id.to_string().as_str(),
        "`Renamed`",
        "schema version 2",
        "at version 3",
        "no upcast handles schema version 2",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
}

pub async fn payload_newer_than_the_code_is_a_clear_error<S: EventStore>(store: S) {
    let app = Application::new(store);
    let id = eventsourcing::new_id();
    app.store()
        .append(vec![NewEvent {
            stream_id: id,
            version: 1,
            event_type: "Registered".into(),
            schema_version: 9,
            timestamp: eventsourcing::now(),
            payload: br#"{"first":"a","last":"b","middle":"c"}"#.to_vec(),
            metadata: Metadata::default(),
        }])
        .await
        .unwrap();
    let msg = app
        .repository()
        .get::<Person>(id)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("schema version 9 is not supported (this code reads up to version 2)"),
        "{msg}"
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
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
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
                        assert_eq!(a, b, "at version {v} with interval {interval}");
                    }
                    let a: Counter = snap.repository().get(id).await.unwrap();
                    assert_eq!(a, counter);
                });
                Ok(())
            })
            .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// The notification log, subscriptions and process applications

fn raw_event(stream_id: Uuid, version: u64) -> NewEvent {
    NewEvent {
        stream_id,
        version,
        event_type: "Add".into(),
        schema_version: 1,
        timestamp: eventsourcing::now(),
        payload: br#"{"amount":1}"#.to_vec(),
        metadata: Metadata::default(),
    }
}

/// Events and a tracking position are written together or not at all, and a position already
/// recorded is refused.
pub async fn tracking_is_atomic_with_events<S: EventStore>(store: S) {
    assert_eq!(store.tracking_position("audit").await.unwrap(), None);
    let a = eventsourcing::new_id();
    let at = |seq| Position { commit: seq, seq };
    let track = |name: &str, seq| Tracking {
        name: name.into(),
        position: at(seq),
    };
    store
        .append_tracked(vec![raw_event(a, 1)], track("audit", 5))
        .await
        .unwrap();
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(5)));
    assert_eq!(store.stream_version(a).await.unwrap(), 1);

    // A conflicting event: neither the event nor the new position is written.
    let err = store
        .append_tracked(vec![raw_event(a, 1)], track("audit", 6))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(5)));

    // Already processed: nothing is written.
    let b = eventsourcing::new_id();
    let err = store
        .append_tracked(vec![raw_event(b, 1)], track("audit", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyProcessed { .. }), "{err:?}");
    assert_eq!(store.stream_version(b).await.unwrap(), 0);

    // Only a position (no events) moves the tracking on; other names are independent.
    store
        .append_tracked(vec![], track("audit", 9))
        .await
        .unwrap();
    store
        .append_tracked(vec![], track("other", 1))
        .await
        .unwrap();
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(9)));
    assert_eq!(store.tracking_position("other").await.unwrap(), Some(at(1)));
}

/// The log read as a stream, in small pages, sees every event once, in order.
pub async fn log_stream_reads_everything_in_pages<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut counters: Vec<Counter> = (0..40).map(|_| Counter::open()).collect();
    for c in counters.iter_mut() {
        c.add(1);
    }
    app.save(&mut counters).await.unwrap();
    let events: Vec<StoredEvent> = read_log_stream(app.store(), Position::START, 7)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.len(), 80);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let from_middle: Vec<_> = read_log_stream(app.store(), events[49].position, 3)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(from_middle, events[50..].to_vec());
}

/// A subscription catches up, then receives a new event live: woken by the store, not by its
/// poll interval (an hour here).
pub async fn subscription_catches_up_then_follows_live<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut before = new_endpoint();
    app.save(&mut before).await.unwrap();

    let mut subscription = Subscription::new(store.clone(), Position::START)
        .poll_interval(std::time::Duration::from_secs(3600))
        .event_types(["NameUpdated"]);
    let waiter = tokio::spawn(async move {
        let event = subscription.next().await.unwrap();
        (event, subscription.position())
    });
    // Catch-up found only `Registered`, which the filter skips; now a live rename.
    tokio::task::yield_now().await;
    before.update_name("live".into());
    app.save(&mut before).await.unwrap();
    let (event, position) = tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
        .await
        .expect("the subscription was not woken by the save")
        .unwrap();
    assert_eq!((event.stream_id, event.version), (before.id(), 2));
    assert_eq!(event.event_type, "NameUpdated");
    assert_eq!(position, event.position);
}

/// The seed's notifier, done right: a failing hook never fails the save or loses the event.
pub async fn failing_hook_never_fails_the_save<S: EventStore>(store: S) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Application::new(store).on_saved(move |events| {
        log.lock().unwrap().extend(events.iter().map(|e| e.version));
        Err("the notification service is down".into())
    });
    let mut endpoint = new_endpoint();
    endpoint.update_name("x".into());
    app.save(&mut endpoint).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.version(), 2);

    let panicking = app.clone().on_saved(|_| panic!("a bug in the hook"));
    endpoint.update_name("y".into());
    panicking.save(&mut endpoint).await.unwrap();
    assert_eq!(app.store().stream_version(endpoint.id()).await.unwrap(), 3);
}

/// An audit log kept by a process application: one entry per rename of an endpoint.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    meta: Meta<Self>,
    pub endpoint: Uuid,
    pub entries: Vec<String>,
}

#[events]
impl AuditLog {
    #[event]
    pub fn start(endpoint: Uuid) -> Self {
        Self {
            meta: Meta::default(),
            endpoint,
            entries: vec![],
        }
    }

    #[event]
    pub fn record(&mut self, entry: String) {
        self.entries.push(entry);
    }
}

pub struct Auditor {
    pub fail_on: Option<String>,
}

impl Process for Auditor {
    fn name(&self) -> &str {
        "auditor"
    }

    fn event_types(&self) -> Option<Vec<String>> {
        Some(vec!["NameUpdated".into()])
    }

    async fn handle<S: EventStore, C: Codec>(
        &mut self,
        event: &StoredEvent,
        out: &mut Outbox<'_, S, C>,
    ) -> Result<(), BoxError> {
        let WidgetRegistryEndpointEvent::NameUpdated { name } =
            event.decode::<WidgetRegistryEndpointEvent, _>(out.app().codec())?
        else {
            return Ok(());
        };
        if self.fail_on.as_deref() == Some(name.as_str()) {
            return Err(format!("cannot audit the name {name:?}").into());
        }
        let log_id = eventsourcing::id_from_name(&format!("audit/{}", event.stream_id));
        let mut log = match out.app().repository().get::<AuditLog>(log_id).await {
            Ok(log) => log,
            Err(e) if e.is_not_found() => AuditLog::start_with_id(log_id, event.stream_id),
            Err(e) => return Err(e.into()),
        };
        log.record(name);
        out.save(&mut log)?;
        Ok(())
    }
}

/// The position of the last `NameUpdated` in the log: the last event the auditor handles.
async fn last_rename<S: EventStore>(store: &S) -> Position {
    read_log_stream(store, Position::START, 1000)
        .map(|e| e.unwrap())
        .filter(|e| std::future::ready(e.event_type == "NameUpdated"))
        .fold(Position::START, |a, e| async move { a.max(e.position) })
        .await
}

async fn wait_until_processed(handle: &eventsourcing::ProcessHandle, end: Position) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while handle.position() < end {
        assert!(!handle.is_finished(), "the process stopped early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the process did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// 4 concurrent writers rename endpoints while the process runs; it is aborted in the middle and
/// restarted. Every rename ends up in its audit log exactly once, in order.
pub async fn process_application_is_exactly_once<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let options = RunOptions {
        poll_interval: std::time::Duration::from_millis(20),
        page_size: 16,
        ..RunOptions::default()
    };
    let first = spawn_process(
        Auditor { fail_on: None },
        store.clone(),
        app.clone(),
        options,
    );

    let mut writers = Vec::new();
    for w in 0..4 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            let mut endpoint = new_endpoint();
            app.save(&mut endpoint).await.unwrap();
            for i in 0..30 {
                endpoint.update_name(format!("w{w}-{i}"));
                app.save(&mut endpoint).await.unwrap();
            }
            endpoint.id()
        }));
    }
    // Abort somewhere in the middle of the work.
    while first.position() == Position::START {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    first.abort();
    let _ = first.join().await;
    let mut ids = Vec::new();
    for w in writers {
        ids.push(w.await.unwrap());
    }

    let second = spawn_process(
        Auditor { fail_on: None },
        store.clone(),
        app.clone(),
        options,
    );
    let end = last_rename(&store).await;
    wait_until_processed(&second, end).await;
    second.stop().await.unwrap();

    for (w, id) in ids.iter().enumerate() {
        let log: AuditLog = app
            .repository()
            .get(eventsourcing::id_from_name(&format!("audit/{id}")))
            .await
            .unwrap();
        let expected: Vec<String> = (0..30).map(|i| format!("w{w}-{i}")).collect();
        assert_eq!(log.entries, expected, "audit log of writer {w}");
    }
}

/// A handler that keeps failing stops the process with an error naming the event; a restart
/// (with the handler fixed) resumes from that event, not after it.
pub async fn failing_handler_stops_and_restart_resumes<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut endpoint = new_endpoint();
    for name in ["a", "poison", "b"] {
        endpoint.update_name(name.into());
    }
    app.save(&mut endpoint).await.unwrap();
    let options = RunOptions {
        poll_interval: std::time::Duration::from_millis(20),
        ..RunOptions::default()
    };

    let failing = spawn_process(
        Auditor {
            fail_on: Some("poison".into()),
        },
        store.clone(),
        app.clone(),
        options,
    );
    let err = failing.join().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Handler { version: 3, .. }), "{err:?}");
    for part in [
        "`auditor`",
        "`NameUpdated`",
        &endpoint.id().to_string(),
        "version 3",
        "cannot audit the name \"poison\"",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    let log_id = eventsourcing::id_from_name(&format!("audit/{}", endpoint.id()));
    let log: AuditLog = app.repository().get(log_id).await.unwrap();
    assert_eq!(
        log.entries,
        vec!["a"],
        "nothing after the failing event was processed"
    );

    let fixed = spawn_process(
        Auditor { fail_on: None },
        store.clone(),
        app.clone(),
        options,
    );
    let end = last_rename(&store).await;
    wait_until_processed(&fixed, end).await;
    fixed.stop().await.unwrap();
    let log: AuditLog = app.repository().get(log_id).await.unwrap();
    assert_eq!(log.entries, vec!["a", "poison", "b"]);
}

/// Runs every conformance test against a store made by `$fixture`.
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance::conformance_tests!(@tests $fixture;
            save_and_load,
            update_persists_after_reload,
            fifteen_updates_then_reload,
            two_copies_conflict,
            multi_aggregate_save_is_all_or_nothing,
            get_at_returns_past_versions,
            exists_and_not_found,
            decode_failure_names_stream_version_and_type,
            update_helper_runs_commands,
            concurrent_updates_with_retry,
            read_log_pages_in_order,
            metadata_round_trips,
            non_contiguous_first_version_is_a_conflict,
            load_for_replay_matches_load,
            seed_snapshot_test,
            snapshots_at_interval_and_get_at_uses_older_ones,
            max_snapshots_prunes_old_ones,
            take_snapshot_and_disabled,
            snapshot_of_another_shape_is_ignored_and_replaced,
            old_event_payload_loads_through_its_upcast,
            payload_newer_than_the_code_is_a_clear_error,
            snapshots_equal_full_replay,
            snapshot_lookup_only_where_it_can_help,
            tracking_is_atomic_with_events,
            log_stream_reads_everything_in_pages,
            subscription_catches_up_then_follows_live,
            failing_hook_never_fails_the_save,
            process_application_is_exactly_once,
            failing_handler_stops_and_restart_resumes,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;
