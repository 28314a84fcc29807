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

/// The workload on a cluster of its own, `rounds` times: once saves flow, `fault` (which
/// returns what it did), then wait until saves go through again. Then every save is read
/// back; the figures are printed under what the last fault did, checked sound, and returned.
async fn under_load(
    rounds: usize,
    mut fault: impl AsyncFnMut(&TestCluster) -> String,
) -> workload::Figures {
    let cluster = TestCluster::new().await;
    let store = store_on(&cluster).await;
    let load = Load::start(&store);
    let mut what = String::new();
    for _ in 0..rounds {
        load.wait_for_acks().await;
        let began = Instant::now();
        what = fault(&cluster).await;
        load.fault_over(&store, began).await;
    }
    let figures = load.finish(&store).await;
    figures.print(&what);
    figures.assert_sound();
    figures
}

/// `rounds` times under load: the cluster stopped (`mode`), kept down long enough for saves to
/// fail (not only the ones in flight), started again.
async fn restarts_under_load(rounds: usize, mode: StopMode, what: &str) {
    under_load(rounds, async |cluster| {
        cluster.stop(mode).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.start().await;
        what.to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_again_and_again_under_load() {
    under_load(1, async |cluster| {
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
        format!("pg_terminate_backend x10, 100 ms apart ({killed} sessions killed)")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_under_load() {
    let what = "pg_ctl stop -m fast, 300 ms down, start; twice";
    restarts_under_load(2, StopMode::Fast, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_restart_under_load() {
    let what = "pg_ctl stop -m immediate (a crash), 300 ms down, start (WAL recovery)";
    restarts_under_load(1, StopMode::Immediate, what).await;
}

/// Lost acknowledgements on purpose: with a synchronous standby named that never connects,
/// each commit is written and flushed locally, then waits for the standby; killing the session
/// then ends it with an error although the save is stored (PostgreSQL warns "the transaction
/// has already committed locally"). The writers' retries must find this out through the
/// conflict, and nothing may be stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_whose_acknowledgement_is_lost() {
    let mut waiting = 0;
    let figures = under_load(1, async |cluster| {
        let admin = cluster.admin_client().await;
        set_standby(&admin, Some("absent_standby")).await;
        waiting = wait_for_commits_waiting(&admin).await;
        let killed = cluster
            .terminate_backends(TestCluster::APPLICATION_NAME)
            .await;
        set_standby(&admin, None).await;
        format!(
            "commits held waiting for an absent synchronous standby ({waiting} waiting), their \
             sessions killed ({killed} sessions)"
        )
    })
    .await;
    assert!(
        figures.ack_lost() > 0,
        "no retry found its save already stored, although {waiting} commits were waiting"
    );
}

/// Names a synchronous standby for every commit to wait for, or none.
async fn set_standby(admin: &eventsourcing_postgres::tokio_postgres::Client, name: Option<&str>) {
    // ALTER SYSTEM refuses to run in the implicit transaction of a multi-statement query.
    let alter = match name {
        Some(name) => format!("ALTER SYSTEM SET synchronous_standby_names = '{name}'"),
        None => "ALTER SYSTEM RESET synchronous_standby_names".to_owned(),
    };
    admin.batch_execute(&alter).await.unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

/// Waits (at most 10 s) until every writer's commit waits for the standby, or at least one
/// does once the time is up; returns how many do.
async fn wait_for_commits_waiting(admin: &eventsourcing_postgres::tokio_postgres::Client) -> i64 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event = 'SyncRep'",
                &[&TestCluster::APPLICATION_NAME],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= 8 || (waiting > 0 && Instant::now() >= until) {
            return waiting;
        }
        assert!(
            Instant::now() < until,
            "no commit waited for the synchronous standby within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
