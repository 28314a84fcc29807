//! What several groups of tests use: a second aggregate type, a fresh endpoint, a raw event,
//! and a store wrapper that counts loads.

use std::future::Future;
use std::sync::{Arc, Mutex};

use eventsourcing::prelude::*;
use eventsourcing::{NewEvent, Position, Snapshot, StoredEvent, Tracking};

use super::widget::WidgetRegistryEndpoint;

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

/// A third type whose creation event has the same stored name as `Counter`'s (`Open`) and the
/// same (empty) payload: before streams recorded their type, a `Counter` stream loaded as a
/// `Gauge` without any error.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    meta: Meta<Self>,
    pub reading: i64,
}

#[events]
impl Gauge {
    #[event]
    pub fn open() -> Self {
        Self {
            meta: Meta::default(),
            reading: 0,
        }
    }
}

/// A new, unsaved endpoint with the seed's values.
pub(crate) fn new_endpoint() -> WidgetRegistryEndpoint {
    WidgetRegistryEndpoint::create(
        "https://example.com".into(),
        "Test Endpoint".into(),
        "tenant-123".into(),
    )
}

/// A `Counter` event to write straight to a store, bypassing the application.
pub(crate) fn raw_event(stream_id: Uuid, version: u64) -> NewEvent {
    NewEvent::new(stream_id, version, "Add", br#"{"amount":1}"#.to_vec())
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
    fn park(
        &self,
        parked: eventsourcing::ParkedEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.park(parked)
    }
    fn parked(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<eventsourcing::ParkedEvent>, Error>> + Send {
        self.inner.parked(name)
    }
    fn changes(&self) -> eventsourcing::plumbing::Changes {
        self.inner.changes()
    }
}

/// The version of the newest snapshot of `id` at or below `at`, if any.
pub async fn snapshot_version<S: EventStore>(store: &S, id: Uuid, at: Option<u64>) -> Option<u64> {
    let snapshot = store.load_snapshot(id, at).await.unwrap();
    snapshot.map(|s| s.version)
}

/// The message of the error loading `id` as an `A` gives.
pub async fn load_error<A: Aggregate, S: EventStore>(app: &Application<S>, id: Uuid) -> String {
    match app.repository().get::<A>(id).await {
        Ok(_) => panic!("loading {id} as `{}` succeeded", A::TYPE_NAME),
        Err(err) => err.to_string(),
    }
}
