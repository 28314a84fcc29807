//! The raw baselines' hand-written load of a `Counter`: a snapshot row's state decoded with
//! serde_json, then each event's payload decoded and folded, as `Application` does. The same on
//! every store: each store's raw side only fetches the columns.

use eventsourcing::{
    chrono::{DateTime, Utc},
    prelude::*,
};
use serde::Deserialize;

use super::{
    counter::{AddedPayload, Counter, OpenedPayload},
    BoxError,
};

/// What the raw load folds an aggregate into: what is checked against ours.
#[derive(Debug)]
pub(crate) struct Folded {
    pub(crate) version: u64,
    pub(crate) total: i64,
}

/// The state in a snapshot row of a `Counter`, as `Application` writes it.
#[derive(Deserialize)]
struct RawSnapshot {
    created_on: DateTime<Utc>,
    state: RawCounterState,
}

#[derive(Deserialize)]
struct RawCounterState {
    label: String,
    total: i64,
    notes: usize,
}

/// A `Counter` being folded from raw rows: all its fields are built, as ours builds them.
pub(crate) struct Fold {
    folded: Folded,
    label: String,
    notes: usize,
}

impl Fold {
    /// Nothing folded yet (version 0).
    pub(crate) fn new() -> Self {
        Fold {
            folded: Folded {
                version: 0,
                total: 0,
            },
            label: String::new(),
            notes: 0,
        }
    }

    /// The version folded so far: the events to read are those after it.
    pub(crate) fn version(&self) -> u64 {
        self.folded.version
    }

    /// Starts from a snapshot row if it is of this shape (the type name and state fingerprint
    /// `Application` writes); another shape's row is passed over, as ours passes it over.
    pub(crate) fn snapshot(
        &mut self,
        version: i64,
        state_type: &str,
        fingerprint: i64,
        payload: &[u8],
    ) -> Result<(), BoxError> {
        let usable = state_type == Counter::TYPE_NAME
            && u64::from_ne_bytes(fingerprint.to_ne_bytes()) == Counter::STATE_FINGERPRINT;
        if usable {
            let snapshot: RawSnapshot = serde_json::from_slice(payload)?;
            self.folded.version = u64::try_from(version)?;
            self.folded.total = snapshot.state.total;
            std::hint::black_box(snapshot.created_on);
            self.label = snapshot.state.label;
            self.notes = snapshot.state.notes;
        }
        Ok(())
    }

    /// Decodes one event's payload and folds it.
    pub(crate) fn event(
        &mut self,
        version: i64,
        event_type: &str,
        payload: &[u8],
    ) -> Result<(), BoxError> {
        match event_type {
            "Opened" => self.label = serde_json::from_slice::<OpenedPayload>(payload)?.label,
            "Added" => {
                let added: AddedPayload = serde_json::from_slice(payload)?;
                self.folded.total += added.amount;
                self.notes += usize::from(!added.note.is_empty());
            }
            other => return Err(format!("unknown event type {other}").into()),
        }
        self.folded.version = u64::try_from(version)?;
        Ok(())
    }

    /// The result. What is not checked (label, notes, the newest event's time `modified`) is
    /// still built, so the optimiser may not skip building it.
    pub(crate) fn finish<T>(self, modified: T) -> Folded {
        std::hint::black_box((self.label, self.notes, modified));
        self.folded
    }
}
