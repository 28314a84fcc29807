use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, PoisonError, RwLock},
};

use uuid::Uuid;

use crate::{
    changes::{ChangeNotifier, Changes},
    check::check_save,
    error::Error,
    event::{NewEvent, Position, Snapshot, StoredEvent, Tracking},
    projection::ParkedEvent,
    store::EventStore,
};

/// An event store in memory (the Python library's POPO store): for tests and prototypes.
///
/// Cheap to clone; clones share the same events. Safe to use from many tasks at once: a save
/// checks and writes all its streams under one lock.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
    notifier: ChangeNotifier,
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<StoredEvent>,
    streams: HashMap<Uuid, Vec<usize>>,
    commits: u64,
    snapshots: HashMap<Uuid, BTreeMap<u64, Snapshot>>,
    tracking: HashMap<String, Position>,
    parked: Vec<ParkedEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn append_sync(&self, events: Vec<NewEvent>, tracking: Option<Tracking>) -> Result<(), Error> {
        // The order every store refuses in: what no store keeps, then the tracking position,
        // then each stream's version; a refusal writes nothing.
        let starts = check_save(&events)?;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = &tracking {
            t.check_after(inner.tracking.get(&t.name).copied())?;
        }
        for (stream_id, first) in starts {
            let current = inner.streams.get(&stream_id).map_or(0, |s| s.len() as u64);
            if first != current + 1 {
                return Err(Error::Conflict {
                    stream_id,
                    expected: first.saturating_sub(1),
                    actual: current,
                });
            }
        }
        if let Some(t) = tracking {
            inner.tracking.insert(t.name, t.position);
        }
        if events.is_empty() {
            return Ok(());
        }
        inner.commits += 1;
        let commit = inner.commits;
        for event in events {
            let index = inner.log.len();
            let stored = StoredEvent {
                stream_id: event.stream_id,
                version: event.version,
                position: Position {
                    commit,
                    seq: index as u64 + 1,
                },
                event_type: event.event_type.into_owned(),
                stream_type: event.stream_type.into_owned(),
                schema_version: event.schema_version,
                timestamp: event.timestamp,
                payload: event.payload,
                metadata: event.metadata,
                defect: None,
            };
            inner.log.push(stored);
            inner
                .streams
                .entry(event.stream_id)
                .or_default()
                .push(index);
        }
        drop(inner);
        self.notifier.notify();
        Ok(())
    }
}

impl EventStore for MemoryStore {
    fn append(&self, events: Vec<NewEvent>) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.append_sync(events, None))
    }

    fn load(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let events = match inner.streams.get(&stream_id) {
            None => Vec::new(),
            Some(indexes) => {
                let end = up_to.map_or(indexes.len(), |v| (v as usize).min(indexes.len()));
                let start = (after_version as usize).min(end);
                indexes[start..end]
                    .iter()
                    .map(|&i| inner.log[i].clone())
                    .collect()
            }
        };
        std::future::ready(Ok(events))
    }

    fn stream_version(&self, stream_id: Uuid) -> impl Future<Output = Result<u64, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let version = inner.streams.get(&stream_id).map_or(0, |s| s.len() as u64);
        std::future::ready(Ok(version))
    }

    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        // Positions are assigned in log order, so the log is sorted by position.
        let start = inner.log.partition_point(|e| e.position <= after);
        let end = start.saturating_add(limit).min(inner.log.len());
        let page = inner.log[start..end].to_vec();
        crate::metrics::observe_log_read("memory", after, limit, std::future::ready(Ok(page)))
    }

    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        keep: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let stream = inner.snapshots.entry(snapshot.stream_id).or_default();
        stream.insert(snapshot.version, snapshot);
        if let Some(keep) = keep {
            // At least the newest one, as on every store.
            while stream.len() > keep.max(1) as usize {
                stream.pop_first();
            }
        }
        std::future::ready(Ok(()))
    }

    fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let found = inner.snapshots.get(&stream_id).and_then(|s| {
            s.range(..=at_or_below.unwrap_or(u64::MAX))
                .next_back()
                .map(|(_, snap)| snap.clone())
        });
        std::future::ready(Ok(found))
    }

    fn append_tracked(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.append_sync(events, Some(tracking)))
    }

    fn tracking_position(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        std::future::ready(Ok(inner.tracking.get(name).copied()))
    }

    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), Error>> + Send {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let tracking = Tracking {
            name: parked.name.clone(),
            position: parked.position,
        };
        let checked = tracking.check_after(inner.tracking.get(&tracking.name).copied());
        if checked.is_ok() {
            inner.tracking.insert(tracking.name, tracking.position);
            inner.parked.push(parked);
        }
        std::future::ready(checked)
    }

    fn parked(&self, name: &str) -> impl Future<Output = Result<Vec<ParkedEvent>, Error>> + Send {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut parked: Vec<ParkedEvent> = inner
            .parked
            .iter()
            .filter(|p| p.name == name)
            .cloned()
            .collect();
        parked.sort_by_key(|p| p.position);
        std::future::ready(Ok(parked))
    }

    fn changes(&self) -> Changes {
        self.notifier.subscribe()
    }

    fn store_kind(&self) -> &'static str {
        "memory"
    }
}
