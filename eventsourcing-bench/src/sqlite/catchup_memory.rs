//! `-- sqlite-catchup-memory`: the peak memory of a `Subscription` catching up through a long
//! SQLite log, to show that it does not grow with the log. Not a comparison with raw.
//!
//! Variables: `EVENTSOURCING_BENCH_CATCHUP_EVENTS` (the log's length, default 1,000,000),
//! `EVENTSOURCING_BENCH_SQLITE_DIR` (where the database file goes, deleted at the end).
//!
//! Fills a new file with counters of 1,000 events each (one save each), then resets the
//! process's resident-memory high-water mark (`5` to `/proc/self/clear_refs`, Linux), reads the
//! whole log through a `Subscription` (pages of 500) and prints the resident memory before and
//! the high-water mark during the catch-up (`VmRSS`, `VmHWM` of `/proc/self/status`).

use std::time::Instant;

use eventsourcing::{
    prelude::*,
    sqlite::{SqliteConfig, SqliteStore},
    Position, Subscription,
};

use super::Cleanup;
use crate::common::{counter::counter_with, timing::PAGE, BoxError};

/// Events per counter (and per save) while filling the log.
const PER_SAVE: usize = 1000;

/// A field of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status").into())
}

pub(crate) async fn run() -> Result<(), BoxError> {
    let events: usize = match std::env::var("EVENTSOURCING_BENCH_CATCHUP_EVENTS") {
        Ok(value) => value.parse()?,
        Err(_) => 1_000_000,
    };
    let dir = std::env::var_os("EVENTSOURCING_BENCH_SQLITE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("eventsourcing-catchup-{}.db", std::process::id()));
    let cleanup = Cleanup(path.clone());
    let dbname = path.to_str().ok_or("the temporary path is not UTF-8")?;
    let store = SqliteStore::open(SqliteConfig::builder().dbname(dbname).build()).await?;
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
        "sqlite_catchup_memory events={events} rss_before_kb={before} peak_during_kb={peak} \
         seconds={:.2}",
        elapsed.as_secs_f64()
    );
    drop(subscription);
    drop(store);
    drop(cleanup);
    Ok(())
}
