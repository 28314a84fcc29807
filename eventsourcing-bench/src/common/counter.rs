//! The benchmark's aggregate, its payloads as the raw baselines encode them, and building and
//! saving counters.

use eventsourcing::prelude::*;

use super::BoxError;

/// The benchmark's aggregate: a counter with a label, whose `Added` event carries two fields.
#[derive(Aggregate, Debug, Serialize, Deserialize)]
pub(crate) struct Counter {
    meta: Meta<Self>,
    pub(crate) label: String,
    pub(crate) total: i64,
    pub(crate) notes: usize,
}

#[events]
impl Counter {
    #[event("Opened")]
    pub(crate) fn open(label: String) -> Self {
        Self {
            meta: Meta::default(),
            label,
            total: 0,
            notes: 0,
        }
    }

    #[event("Added")]
    pub(crate) fn add(&mut self, amount: i64, note: String) {
        self.total += amount;
        self.notes += usize::from(!note.is_empty());
    }
}

/// The payload of `Added` as the raw baselines decode it: the same fields, the same serde_json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AddedPayload {
    pub(crate) amount: i64,
    pub(crate) note: String,
}

/// The payload of `Opened`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OpenedPayload {
    pub(crate) label: String,
}

/// The note every benchmark event carries (a realistic small payload).
pub(crate) const NOTE: &str = "benchmark event with a short note";

/// A counter with `events` events in all (one `Opened`, then `Added`), not yet saved.
pub(crate) fn counter_with(events: usize) -> Counter {
    let mut c = Counter::open("bench".to_owned());
    for i in 1..events {
        c.add(i as i64, NOTE.to_owned());
    }
    c
}

/// An `Added` payload of `amount`, encoded as the raw baselines do.
pub(crate) fn added_payload(amount: i64) -> Result<Vec<u8>, BoxError> {
    Ok(serde_json::to_vec(&AddedPayload {
        amount,
        note: NOTE.to_owned(),
    })?)
}

/// The events of a new counter of `events` events, encoded as the raw baselines do: the same
/// events as [`counter_with`], type name and payload.
pub(crate) fn raw_payloads(events: usize) -> Result<Vec<(&'static str, Vec<u8>)>, BoxError> {
    let mut out = Vec::with_capacity(events);
    out.push((
        "Opened",
        serde_json::to_vec(&OpenedPayload {
            label: "bench".to_owned(),
        })?,
    ));
    for i in 1..events {
        out.push(("Added", added_payload(i as i64)?));
    }
    Ok(out)
}

/// Saves a counter of `events` events in all, `batch` events per save, so that an application
/// with snapshots every `batch` writes them as it goes. Returns its id.
pub(crate) async fn saved_in_batches<S: EventStore>(
    app: &Application<S>,
    events: usize,
    batch: u64,
) -> Result<Uuid, eventsourcing::Error> {
    let mut counter = counter_with(events.min(batch as usize));
    app.save(&mut counter).await?;
    while (counter.version() as usize) < events {
        for _ in 0..batch {
            let amount = counter.version() as i64;
            counter.add(amount, NOTE.to_owned());
        }
        app.save(&mut counter).await?;
    }
    Ok(counter.id())
}
