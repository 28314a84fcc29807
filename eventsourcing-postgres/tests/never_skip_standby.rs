//! Never skip, on a hot standby: the never-skip test of `never_skip.rs` (eight writers on the
//! primary, some holding their transactions open, some rolling back, three held on purpose
//! until a later position has committed) with its five readers (two subscriptions, two
//! projection runners, a process application) reading the log from a streaming standby, through
//! a store configured with that standby as its read replica. Each must see every committed
//! event exactly once, in log order, and the standby's log must be exactly the primary's.
//!
//! On throwaway clusters (`cluster::TestCluster`: a primary and a standby of its own); the
//! projections and the process write on the primary. The random choices come from
//! `EVENTSOURCING_TEST_SEED`, as in `never_skip.rs`.
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
use eventsourcing_postgres::{cluster::TestCluster, PostgresStore};
use seed::Seed;
use workload::Plan;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_on_a_standby_see_every_committed_event_once_in_log_order() {
    let seed = Seed::from_env(
        "never_skip_standby",
        "readers_on_a_standby_see_every_committed_event_once_in_log_order",
    );
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    let schema = "upstream";
    let store = PostgresStore::connect(primary.config(schema))
        .await
        .unwrap();
    standby.catch_up_with(&primary).await;
    let on_standby = primary
        .config(schema)
        .to_builder()
        .replica("127.0.0.1", standby.port())
        .build()
        .unwrap();
    let readers = Readers {
        store: PostgresStore::connect(on_standby).await.unwrap(),
        downstream: PostgresStore::connect(primary.config("downstream"))
            .await
            .unwrap(),
    };
    let plan = Plan {
        writers: 8,
        saves_per_writer: 60,
        max_hold: Duration::from_millis(20),
        rollback_per_mille: 100,
        holders: 3,
    };
    let routed = readers.store.clone();
    check::never_skip(
        &store,
        schema,
        readers,
        plan,
        seed,
        Duration::from_secs(180),
    )
    .await;
    let routing = routed.read_routing();
    assert_eq!(
        routing.primary_reads, 0,
        "every log read was served by the standby: {routing:?}"
    );
    assert!(routing.standby_reads > 0, "{routing:?}");
}
