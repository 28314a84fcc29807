//! What every store's benchmark shares: the aggregate, its raw payload type, and reporting.

use std::time::Duration;

use eventsourcing::prelude::*;

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

/// `writers` tasks, each appending `saves` single events to its own counter; the time until all
/// are done.
pub(crate) async fn ours_writers<S: EventStore>(
    writers: usize,
    app: &Application<S>,
    saves: usize,
) -> Result<std::time::Duration, Box<dyn std::error::Error>> {
    let mut counters = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        counters.push(counter);
    }
    let start = std::time::Instant::now();
    let tasks: Vec<_> = counters
        .into_iter()
        .map(|mut counter| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..saves {
                    counter.add(i as i64, NOTE.to_owned());
                    app.save(&mut counter).await?;
                }
                Ok::<_, eventsourcing::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// Prints one figure: `<figure> ours=<v> raw=<v> ratio=<ours/raw> unit=<unit>`.
pub(crate) fn report(figure: &str, ours: f64, raw: f64, unit: &str) {
    let ratio = if raw == 0.0 { f64::NAN } else { ours / raw };
    println!("{figure} ours={ours:.3} raw={raw:.3} ratio={ratio:.3} unit={unit}");
}

/// The median of some durations, in milliseconds.
pub(crate) fn median_ms(mut samples: Vec<Duration>) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// Events per second from a count and an elapsed time.
pub(crate) fn per_second(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}
