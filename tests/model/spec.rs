//! The model: what the `EventStore` contract says a store holds and returns, in plain maps and
//! vectors. Written from the trait's docs and `check_save`'s, not from any store.

use std::collections::{BTreeMap, HashMap};

use eventsourcing::{NewEvent, ParkedEvent, Position, Snapshot, StoredEvent, Tracking, Uuid};

/// The largest version and schema version a store keeps (`check_save`).
const MAX_VERSION: u64 = i64::MAX as u64;
const MAX_SCHEMA_VERSION: u32 = i32::MAX as u32;

/// A failure the contract names, with what the caller can rely on in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// `Error::Conflict` naming one of these streams, each with its current version.
    Conflict(Vec<(Uuid, u64)>),
    /// `Error::AlreadyProcessed`.
    AlreadyProcessed {
        recorded: Position,
        attempted: Position,
    },
    /// `Error::InvalidEvent` naming this event.
    InvalidEvent { stream_id: Uuid, version: u64 },
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Every event in log order; an event's `position.seq` is its index here (the runner
    /// compares a store's positions by this order only).
    pub(crate) log: Vec<StoredEvent>,
    versions: HashMap<Uuid, u64>,
    snapshots: HashMap<Uuid, BTreeMap<u64, Snapshot>>,
    tracking: HashMap<String, Position>,
    parked: Vec<ParkedEvent>,
}

impl Model {
    pub(crate) fn version(&self, stream_id: Uuid) -> u64 {
        self.versions.get(&stream_id).copied().unwrap_or(0)
    }

    /// `append` (no tracking) and `append_tracked`: all or nothing. A save can be refused for
    /// several reasons at once; `order` says which one the store names (refused: the
    /// refusals it may give).
    pub(crate) fn append(
        &mut self,
        events: &[NewEvent],
        tracking: Option<&Tracking>,
    ) -> Result<(), Vec<Refusal>> {
        let checked = check(events);
        let processed = tracking.and_then(|t| {
            let recorded = *self.tracking.get(&t.name)?;
            (recorded >= t.position).then_some(Refusal::AlreadyProcessed {
                recorded,
                attempted: t.position,
            })
        });
        let stale = checked.as_ref().ok().and_then(|firsts| {
            let stale: Vec<(Uuid, u64)> = firsts
                .iter()
                .filter(|(id, first)| *first != self.version(*id) + 1)
                .map(|(id, _)| (*id, self.version(*id)))
                .collect();
            (!stale.is_empty()).then_some(Refusal::Conflict(stale))
        });
        let checked = checked.err();
        // Every store refuses in this order: what the save itself breaks (`check_save`), then
        // the consumer's position, then the streams' versions.
        let allowed: Vec<Refusal> = checked.or(processed).or(stale).into_iter().collect();
        if !allowed.is_empty() {
            return Err(allowed);
        }
        if let Some(t) = tracking {
            self.tracking.insert(t.name.clone(), t.position);
        }
        for event in events {
            self.versions.insert(event.stream_id, event.version);
            let seq = self.log.len() as u64;
            self.log.push(StoredEvent {
                stream_id: event.stream_id,
                version: event.version,
                position: Position { commit: 0, seq },
                event_type: event.event_type.to_string(),
                stream_type: event.stream_type.to_string(),
                schema_version: event.schema_version,
                timestamp: event.timestamp,
                payload: event.payload.clone(),
                metadata: event.metadata.clone(),
                defect: None,
            });
        }
        Ok(())
    }

    /// `after_version < version <= up_to`, in version order.
    pub(crate) fn load(&self, stream_id: Uuid, after: u64, up_to: Option<u64>) -> Vec<StoredEvent> {
        let up_to = up_to.unwrap_or(u64::MAX);
        self.log
            .iter()
            .filter(|e| e.stream_id == stream_id && e.version > after && e.version <= up_to)
            .cloned()
            .collect()
    }

    /// The events after the first `skip` of the log, at most `limit`.
    pub(crate) fn read_log(&self, skip: usize, limit: usize) -> Vec<StoredEvent> {
        self.log.iter().skip(skip).take(limit).cloned().collect()
    }

    /// Replaces a snapshot at the same version, then keeps the newest `keep` (at least one).
    pub(crate) fn save_snapshot(&mut self, snapshot: Snapshot, keep: Option<u32>) {
        let stream = self.snapshots.entry(snapshot.stream_id).or_default();
        stream.insert(snapshot.version, snapshot);
        if let Some(keep) = keep {
            let keep = keep.max(1) as usize;
            let newest: Vec<u64> = stream.keys().rev().take(keep).copied().collect();
            stream.retain(|v, _| newest.contains(v));
        }
    }

    pub(crate) fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> Option<Snapshot> {
        self.snapshots.get(&stream_id).and_then(|s| {
            s.range(..=at_or_below.unwrap_or(u64::MAX))
                .next_back()
                .map(|(_, snapshot)| snapshot.clone())
        })
    }

    pub(crate) fn tracking_position(&self, name: &str) -> Option<Position> {
        self.tracking.get(name).copied()
    }

    /// Parks and moves the position, or refuses a position already recorded.
    pub(crate) fn park(&mut self, parked: ParkedEvent) -> Result<(), Refusal> {
        if let Some(&recorded) = self.tracking.get(&parked.name) {
            if recorded >= parked.position {
                return Err(Refusal::AlreadyProcessed {
                    recorded,
                    attempted: parked.position,
                });
            }
        }
        self.tracking.insert(parked.name.clone(), parked.position);
        self.parked.push(parked);
        Ok(())
    }

    /// In log order (positions only grow per consumer, so the order parked).
    pub(crate) fn parked(&self, name: &str) -> Vec<ParkedEvent> {
        self.parked
            .iter()
            .filter(|p| p.name == name)
            .cloned()
            .collect()
    }
}

/// What every store refuses before looking at its contents, event by event in save order:
/// an event no store keeps (`InvalidEvent`), or a version that does not follow the previous
/// event of its stream in the same save (`Conflict`). Returns each stream's first version.
fn check(events: &[NewEvent]) -> Result<Vec<(Uuid, u64)>, Refusal> {
    let mut streams: Vec<(Uuid, u64, u64)> = Vec::new();
    for event in events {
        let nul = |s: &str| s.contains('\0');
        let invalid = event.version == 0
            || event.version > MAX_VERSION
            || event.schema_version > MAX_SCHEMA_VERSION
            || event.event_type.is_empty()
            || nul(&event.event_type)
            || event.metadata.values.iter().any(|(k, v)| nul(k) || nul(v));
        if invalid {
            return Err(Refusal::InvalidEvent {
                stream_id: event.stream_id,
                version: event.version,
            });
        }
        match streams.iter_mut().find(|s| s.0 == event.stream_id) {
            None => streams.push((event.stream_id, event.version, event.version)),
            Some(stream) => {
                if event.version != stream.2 + 1 {
                    return Err(Refusal::Conflict(vec![(stream.0, stream.2)]));
                }
                stream.2 = event.version;
            }
        }
    }
    Ok(streams
        .into_iter()
        .map(|(id, first, _)| (id, first))
        .collect())
}
