//! Server faults under load, each test on a throwaway cluster of its own
//! (`eventsourcing_postgres::cluster::TestCluster`; never the shared server): the pool's
//! connections killed again and again, a clean restart, a crash. Eight writers save through
//! one `PostgresStore` all along (single-event saves, three-event saves, saves across two of
//! their own aggregates), retrying what fails transiently as an application would, and each
//! save carries a marker of its own. Afterwards every stream and the whole log are read back:
//! every acknowledged save must be there exactly once, no save half, the log complete, the
//! same store serving again, and every failure transient. The figures are printed (run with
//! `--nocapture`) and recorded in RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/workload.rs"]
mod workload;

use std::{net::TcpStream, time::Duration};

use eventsourcing_postgres::{
    cluster::{StopMode, TestCluster},
    PostgresStore,
};
use tokio::time::Instant;
use workload::Load;

async fn store_on(cluster: &TestCluster) -> PostgresStore {
    // The defaults but a 5 s pool timeout (the cluster's `config`): pool of 5, up to 15
    // connections, no pre-ping.
    PostgresStore::connect(cluster.config("faults"))
        .await
        .expect("connecting to the test cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_again_and_again_under_load() {
    let cluster = TestCluster::new().await;
    let store = store_on(&cluster).await;
    let load = Load::start(&store);
    load.wait_for_acks().await;

    let began = Instant::now();
    let mut killed = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        killed += cluster
            .terminate_backends(TestCluster::APPLICATION_NAME)
            .await;
    }
    assert!(
        killed > 0,
        "pg_terminate_backend found none of the store's sessions"
    );
    load.fault_over(&store, began).await;

    let figures = load.finish(&store).await;
    figures.print(&format!(
        "pg_terminate_backend x10, 100 ms apart ({killed} sessions killed)"
    ));
    figures.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_under_load() {
    let cluster = TestCluster::new().await;
    let store = store_on(&cluster).await;
    let load = Load::start(&store);
    for _ in 0..2 {
        load.wait_for_acks().await;
        let began = Instant::now();
        cluster.stop(StopMode::Fast).await;
        // Down long enough for saves to fail, not only the ones in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.start().await;
        load.fault_over(&store, began).await;
    }

    let figures = load.finish(&store).await;
    figures.print("pg_ctl stop -m fast, 300 ms down, start; twice");
    figures.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_restart_under_load() {
    let cluster = TestCluster::new().await;
    let store = store_on(&cluster).await;
    let load = Load::start(&store);
    load.wait_for_acks().await;
    let began = Instant::now();
    cluster.stop(StopMode::Immediate).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start().await;
    load.fault_over(&store, began).await;

    let figures = load.finish(&store).await;
    figures.print("pg_ctl stop -m immediate (a crash), 300 ms down, start (WAL recovery)");
    figures.assert_sound();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_stopped_and_deleted_when_its_test_panics() {
    let (sent, received) = std::sync::mpsc::channel();
    let failed = tokio::spawn(async move {
        let cluster = TestCluster::new().await;
        sent.send((cluster.dir().to_owned(), cluster.port()))
            .unwrap();
        panic!("a fault test failing with its cluster running (this panic is expected)");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let (dir, port) = received.recv().unwrap();
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the cluster still listens on port {port}"
    );
}
