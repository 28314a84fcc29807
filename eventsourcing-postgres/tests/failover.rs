//! Failover under load: one store configured with both servers (`POSTGRES_HOST=a,b`, a port
//! each, `target_session_attrs=read-write`), eight writers saving through it (the load of
//! `faults.rs`, retrying what fails transiently), the primary crashed (`pg_ctl stop -m
//! immediate`) and its synchronous standby promoted. The writers go on through the same store,
//! now on the new primary, without restarting anything; afterwards every acknowledged save is
//! there exactly once (read back through the store, whose only reachable server is the new
//! primary), none in part. On throwaway clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/workload.rs"]
mod workload;

use std::time::Duration;

use eventsourcing_core::Env;
use eventsourcing_postgres::{
    cluster::{StopMode, TestCluster},
    tokio_postgres::config::TargetSessionAttrs,
    PostgresConfig, PostgresStore,
};
use tokio::time::Instant;
use workload::Load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_continue_on_the_promoted_synchronous_standby_losing_no_acknowledged_save() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(true).await;
    let config = primary
        .config("failover")
        .to_builder()
        .host("127.0.0.1,127.0.0.1")
        .ports(&[primary.port(), standby.port()])
        .target_session_attrs(TargetSessionAttrs::ReadWrite)
        .build()
        .unwrap();
    let store = PostgresStore::connect(config).await.unwrap();
    let load = Load::start(&store);
    load.wait_for_acks().await;

    let began = Instant::now();
    primary.stop(StopMode::Immediate).await;
    // Saves fail while no server takes writes (not only those in flight).
    tokio::time::sleep(Duration::from_millis(300)).await;
    standby.promote().await;
    load.fault_over(&store, began).await;
    let figures = load.finish(&store).await;
    figures.print("primary crashed (stop -m immediate), synchronous standby promoted");
    figures.assert_sound();
    eprintln!(
        "saves whose acknowledgement the crash lost, found stored once by their retry: {}",
        figures.ack_lost()
    );

    let client = store.dedicated_client().await.unwrap();
    let row = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        i32::from(standby.port()),
        "on the new primary"
    );
    assert!(!row.get::<_, bool>(1), "which takes writes");
}

#[test]
fn several_hosts_with_a_port_each_and_target_session_attrs_from_the_environment() {
    let read = |extra: &[(&str, &str)]| {
        let base = [("POSTGRES_USER", "u"), ("POSTGRES_DBNAME", "d")];
        let vars: Vec<(String, String)> = base
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PostgresConfig::from_env(&Env::from_map(vars))
    };
    let config = read(&[
        ("POSTGRES_HOST", "a,b"),
        ("POSTGRES_PORT", "5433,5434"),
        ("POSTGRES_TARGET_SESSION_ATTRS", "read-write"),
    ])
    .unwrap();
    assert_eq!(config.host(), "a,b");
    assert_eq!(config.ports(), [5433, 5434]);
    assert_eq!(config.target_session_attrs(), TargetSessionAttrs::ReadWrite);
    let config = read(&[("POSTGRES_HOST", "a,b"), ("POSTGRES_PORT", "5433")]).unwrap();
    assert_eq!(config.ports(), [5433], "one port for every host");
    assert_eq!(config.target_session_attrs(), TargetSessionAttrs::Any);
    for (extra, var) in [
        (
            &[("POSTGRES_HOST", "a,b,c"), ("POSTGRES_PORT", "1,2")][..],
            "POSTGRES_PORT",
        ),
        (
            &[("POSTGRES_HOST", "a"), ("POSTGRES_PORT", "0")][..],
            "POSTGRES_PORT",
        ),
        (
            &[
                ("POSTGRES_HOST", "a"),
                ("POSTGRES_TARGET_SESSION_ATTRS", "primary"),
            ][..],
            "POSTGRES_TARGET_SESSION_ATTRS",
        ),
    ] {
        let err = read(extra).unwrap_err();
        assert_eq!(err.var, var, "{extra:?}: {err}");
    }
}
