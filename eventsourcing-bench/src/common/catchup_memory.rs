//! The peak memory of a `Subscription` catching up through a long log, to show that it does
//! not grow with the log (`-- sqlite-catchup-memory`, `-- postgres-catchup-memory`). Not a
//! comparison with raw.
//!
//! `EVENTSOURCING_BENCH_CATCHUP_EVENTS` sets the log's length (default 1,000,000). The store
//! is filled with counters of 1,000 events each (one save each); then the process's
//! resident-memory high-water mark is reset (`5` to `/proc/self/clear_refs`, Linux), the whole
//! log is read through a `Subscription` (pages of 500), and the resident memory before and the
//! high-water mark during the catch-up are printed (`VmRSS`, `VmHWM` of `/proc/self/status`).

use std::time::Instant;

use eventsourcing::{prelude::*, Position, Subscription};

use crate::common::{counter::counter_with, timing::PAGE, BoxError};

/// Events per counter (and per save) while filling the log.
const PER_SAVE: usize = 1000;

/// The log's length: `EVENTSOURCING_BENCH_CATCHUP_EVENTS`, default a million.
pub(crate) fn events() -> Result<usize, BoxError> {
    const VAR: &str = "EVENTSOURCING_BENCH_CATCHUP_EVENTS";
    match std::env::var(VAR) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|e| format!("{VAR}={value:?} is not a number of events: {e}").into()),
        Err(_) => Ok(1_000_000),
    }
}

/// A field of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status").into())
}

/// Fills the empty `store` with `events` events, then measures a catch-up through them and
/// prints the line `<name> events=… rss_before_kb=… peak_during_kb=… seconds=…`.
pub(crate) async fn measure<S: EventStore + Clone>(
    name: &str,
    store: &S,
    events: usize,
) -> Result<(), BoxError> {
    let app = Application::new(store.clone());
    for _ in 0..events.div_ceil(PER_SAVE) {
        app.save(&mut counter_with(PER_SAVE)).await?;
    }
    drop(app);

    std::fs::write("/proc/self/clear_refs", "5")?;
    let before = status_kb("VmRSS")?;
    let start = Instant::now();
    let mut subscription = Subscription::new(store.clone(), Position::START).page_size(PAGE);
    for _ in 0..events {
        std::hint::black_box(subscription.next().await?);
    }
    let elapsed = start.elapsed();
    let peak = status_kb("VmHWM")?;
    println!(
        "{name} events={events} rss_before_kb={before} peak_during_kb={peak} seconds={:.2}",
        elapsed.as_secs_f64()
    );
    Ok(())
}
