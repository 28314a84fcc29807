//! Never skip, end to end: every consumer of the log sees every committed event exactly once,
//! in log order, and nothing rolled back, while many writers commit out of order.
//!
//! Eight writers save through `PostgresStore::append_in` in transactions they hold open for
//! random times (some rolled back after inserting; three held open on purpose until a later
//! position has committed and a naive reader has passed it). Meanwhile five consumers read the
//! log: two [`Subscription`](eventsourcing_core::Subscription)s (pages of 7 and 500 events),
//! two projection runners of different names (pages of 10 and 500), each recording every event
//! once in a table keyed by its position, and a process application copying every event into
//! an application on another schema. At the end, what each saw, in its order, must be exactly
//! the log as `read_log` returns it from the start, and that log exactly the committed saves.
//!
//! The random choices come from `EVENTSOURCING_TEST_SEED` (else a random seed), printed at the
//! start and named in every failure with how to replay it. No assertion measures time; every
//! wait is bounded and says what it waited for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "never_skip/check.rs"]
mod check;
#[path = "never_skip/copy.rs"]
mod copy;
#[path = "never_skip/readers.rs"]
mod readers;
#[path = "never_skip/seed.rs"]
mod seed;
#[path = "never_skip/workload.rs"]
mod workload;

use std::time::Duration;

use check::Readers;
use eventsourcing_postgres::testing::TestSchema;
use seed::Seed;
use workload::Plan;

/// The saves of [`soak`] when `EVENTSOURCING_SOAK_SAVES` is not set.
const SOAK_DEFAULT_SAVES: usize = 2400;

/// The end-to-end test at its everyday size: 8 writers × 60 saves, transactions held open up
/// to 20 ms, one save in ten rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reader_sees_every_committed_event_once_in_log_order() {
    let seed = Seed::from_env(
        "never_skip",
        "every_reader_sees_every_committed_event_once_in_log_order",
    );
    let plan = Plan {
        writers: 8,
        saves_per_writer: 60,
        max_hold: Duration::from_millis(20),
        rollback_per_mille: 100,
        holders: 3,
    };
    never_skip(plan, seed, Duration::from_secs(180)).await;
}

/// The soak: the same test with many more, shorter transactions. Its size is
/// `EVENTSOURCING_SOAK_SAVES` saves in all, committed or rolled back (e.g. 30000), else 2400,
/// which CI runs on every run: 8–16 s on a 2-core machine, beside the other test of this file.
/// 8 writers, transactions held open up to 3 ms, one save in twenty rolled back. Measured with
/// 20000 saves: 68 s (writers 27 s, all five readers caught up 40 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let seed = Seed::from_env("never_skip", "soak");
    let saves = match std::env::var("EVENTSOURCING_SOAK_SAVES") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("EVENTSOURCING_SOAK_SAVES={v:?} is not a number: {e}")),
        _ => SOAK_DEFAULT_SAVES,
    };
    let plan = Plan {
        writers: 8,
        saves_per_writer: saves.div_ceil(8).max(8),
        max_hold: Duration::from_millis(3),
        rollback_per_mille: 50,
        holders: 3,
    };
    // Generous: at least ten minutes, and a millisecond more per save.
    let limit = Duration::from_secs(600) + Duration::from_millis(saves as u64);
    never_skip(plan, seed, limit).await;
}

async fn never_skip(plan: Plan, seed: Seed, limit: Duration) {
    let upstream = TestSchema::new().await;
    let downstream = TestSchema::new().await;
    let store = upstream.store().await;
    let readers = Readers {
        store: store.clone(),
        downstream: downstream.store().await,
    };
    check::never_skip(&store, upstream.name(), readers, plan, seed, limit).await;
}
