//! A model-based test of every store: random sequences of `EventStore` calls (saves of several
//! streams, stale and too-new versions, invalid events, tracked appends, snapshots with and
//! without pruning, bounded loads, log pages from anywhere, parking) run on a fresh store and
//! on a plain model of the contract (`model/spec.rs`), compared after every call.
//!
//! Cases per store: `EVENTSOURCING_MODEL_CASES` (default 32), each up to 40 operations.
//! A failure is shrunk to a shortest sequence, printed, and its seed kept in
//! `tests/model.proptest-regressions` so that the next run tries it first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::future::Future;

use eventsourcing::{EventStore, MemoryStore};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[path = "common/cases.rs"]
mod common;
#[path = "model/ops.rs"]
mod ops;
#[path = "model/run.rs"]
mod run;
#[path = "model/spec.rs"]
mod spec;

/// The longest sequence of operations in a case.
const MAX_OPS: usize = 40;

fn config() -> ProptestConfig {
    common::cases("EVENTSOURCING_MODEL_CASES", 32, 1)
}

/// Runs `ops` on a fresh store from `fixture` and on the model; the first difference fails
/// the case, naming the operation.
fn check<S, G, F, Fut>(fixture: F, ops: &[ops::Op]) -> Result<(), TestCaseError>
where
    S: EventStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    let (outcome, guard) = common::runtime().block_on(async {
        let (store, guard) = fixture().await;
        let mut runner = run::Runner::new(&store);
        let mut outcome = Ok(());
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = runner.step(op).await {
                outcome = Err(TestCaseError::fail(format!("operation {i} ({op:?}): {e}")));
                break;
            }
        }
        drop(runner);
        drop(store);
        (outcome, guard)
    });
    drop(guard);
    outcome
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn memory_store_follows_the_model(ops in ops::ops(MAX_OPS)) {
        check(|| async { (MemoryStore::new(), ()) }, &ops)?;
    }

    #[test]
    fn sqlite_in_memory_follows_the_model(ops in ops::ops(MAX_OPS)) {
        check(|| async { (eventsourcing::sqlite::testing::memory_store(), ()) }, &ops)?;
    }

    #[test]
    fn sqlite_file_follows_the_model(ops in ops::ops(MAX_OPS)) {
        check(|| async { eventsourcing::sqlite::testing::temp_file_store() }, &ops)?;
    }

    #[test]
    fn postgres_follows_the_model(ops in ops::ops(MAX_OPS)) {
        check(eventsourcing::postgres::testing::fresh, &ops)?;
    }
}
