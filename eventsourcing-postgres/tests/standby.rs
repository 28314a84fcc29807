//! The standby fixture itself (`eventsourcing_postgres::cluster::TestCluster::standby`), on
//! throwaway clusters: what the replica tests rely on. A standby streams what the primary
//! commits, a paused one shows the past until resumed, a synchronous one holds every
//! acknowledged commit when the primary crashes and takes writes once promoted, and every
//! cluster's directory is gone after its guard is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventsourcing_postgres::cluster::{StopMode, TestCluster};

async fn count(cluster: &TestCluster) -> i64 {
    let client = cluster.admin_client().await;
    client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("counting on the cluster")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_streams_pauses_resumes_and_takes_over_when_promoted() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(true).await;
    let spare = primary.standby(false).await;
    let dirs = [primary.dir(), standby.dir(), spare.dir()].map(|d| d.to_path_buf());
    assert!(primary.standby_name().is_none());
    assert_ne!(standby.standby_name(), spare.standby_name());
    assert_ne!(standby.port(), spare.port());

    let writer = primary.admin_client().await;
    writer
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    standby.catch_up_with(&primary).await;
    spare.catch_up_with(&primary).await;
    assert_eq!(
        count(&standby).await,
        1,
        "the standby has the primary's row"
    );
    assert_eq!(count(&spare).await, 1, "so has the asynchronous one");
    let read_only = standby
        .admin_client()
        .await
        .batch_execute("INSERT INTO t VALUES (0)")
        .await;
    assert!(read_only.is_err(), "a standby refuses writes");

    standby.pause_replay().await;
    writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    spare.catch_up_with(&primary).await;
    assert_eq!(count(&spare).await, 2);
    assert_eq!(count(&standby).await, 1, "a paused standby shows the past");
    standby.resume_replay().await;
    standby.catch_up_with(&primary).await;
    assert_eq!(count(&standby).await, 2, "resumed, it catches up");

    // Acknowledged by the synchronous standby, then the primary crashes.
    writer
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    primary.stop(StopMode::Immediate).await;
    standby.promote().await;
    assert_eq!(
        count(&standby).await,
        3,
        "every acknowledged commit survived"
    );
    let promoted = standby.admin_client().await;
    promoted
        .batch_execute("INSERT INTO t VALUES (4)")
        .await
        .unwrap();
    assert_eq!(
        count(&standby).await,
        4,
        "the promoted standby takes writes"
    );

    drop((primary, standby, spare));
    for dir in dirs {
        assert!(!dir.exists(), "{} is removed on drop", dir.display());
    }
}
