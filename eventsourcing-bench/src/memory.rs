//! `-- memory`: the in-memory store, where a figure is CPU work only: ours (through
//! `Application`) against the store called directly (raw: `MemoryStore::append` of events
//! encoded beforehand; `load_for_replay` and the same serde_json fold as the other stores' raw
//! loads). With no disk and no server in the way, it shows what the runtime's own work costs,
//! such as the metrics when `EVENTSOURCING_BENCH_RECORDER` installs a recorder.
//!
//! - `append_1`: events per second saving new one-event aggregates one after another; ours and
//!   raw alternate in blocks of 1,000 saves, 20 blocks each; the median block rate.
//! - `load_1000`: median milliseconds to load an aggregate of 1,000 events, ours and raw
//!   alternating load by load (as the other stores' `load_N`).

use std::time::Instant;

use eventsourcing::{prelude::*, MemoryStore, NewEvent};

use crate::common::{
    counter::{counter_with, raw_payloads},
    fold::Fold,
    recorder::wanted,
    stats::{median, per_second, report},
    timing::{compare_loads, ours_saved},
    BoxError,
};

const BLOCK: usize = 1000;
const BLOCKS: usize = 20;
const LOADS: usize = 200;

/// Runs the memory figures.
pub(crate) async fn run() -> Result<(), BoxError> {
    let store = MemoryStore::new();
    let app = Application::new(store.clone());
    if wanted("append") {
        let payload = raw_payloads(1)?.remove(0).1;
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..BLOCKS {
            let start = Instant::now();
            for _ in 0..BLOCK {
                app.save(&mut counter_with(1)).await?;
            }
            ours.push(per_second(BLOCK, start.elapsed()));
            let start = Instant::now();
            for _ in 0..BLOCK {
                let event = NewEvent::new(Uuid::new_v4(), 1, "Opened", payload.clone());
                store.append(vec![event]).await?;
            }
            raw.push(per_second(BLOCK, start.elapsed()));
        }
        report("append_1", median(ours), median(raw), "events/s");
    }
    if wanted("load") {
        let id = ours_saved(&app, 1000).await?;
        compare_loads(
            "load_1000",
            LOADS,
            Some(1000),
            async || Ok(app.repository().get(id).await?),
            async || {
                let events = store.load_for_replay(id, 0, None).await?;
                let mut fold = Fold::new();
                for event in &events {
                    fold.event(event.version as i64, &event.event_type, &event.payload)?;
                }
                Ok(fold.finish(events.last().map(|e| e.timestamp)))
            },
        )
        .await?;
    }
    Ok(())
}
