//! Read replicas: a store configured with a standby reads from it, saves on the primary, and
//! a load after a save through the same store never returns what the save replaced, even
//! through a standby whose replay is paused (it waits for the standby, or reads from the
//! primary). A projection reading its log from a standby handles every event once, and goes
//! on through the primary while the standby is down; a standby down when the store connects is
//! read from once it answers. On throwaway clusters
//! (`cluster::TestCluster::standby`); the settings from the environment name the bad variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{Env, EventStore, NewEvent, Position, ProjectionOptions, RunnerHandle};
use eventsourcing_postgres::{
    cluster::{StopMode, TestCluster},
    spawn_projection,
    testing::CountEvents,
    PostgresConfig, PostgresStore,
};
use uuid::Uuid;

/// A store on `primary` reading from `standby`, waiting up to `wait` for read-your-writes.
async fn replicated(primary: &TestCluster, standby: &TestCluster, wait: Duration) -> PostgresStore {
    let config = primary
        .config("replicas")
        .to_builder()
        .replica("127.0.0.1", standby.port())
        .read_your_writes_timeout(wait)
        .build()
        .unwrap();
    PostgresStore::connect(config).await.unwrap()
}

fn event(stream: Uuid, version: u64) -> NewEvent {
    NewEvent::new(
        stream,
        version,
        "Happened",
        version.to_string().into_bytes(),
    )
}

async fn newest_version(store: &PostgresStore, stream: Uuid) -> u64 {
    let events = store.load(stream, 0, None).await.unwrap();
    events.last().map_or(0, |e| e.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_after_saves_never_return_the_old_version_through_a_lagging_standby() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    // Falls back quickly; the other waits for the standby as long as it takes here.
    let impatient = replicated(&primary, &standby, Duration::from_millis(200)).await;
    let patient = replicated(&primary, &standby, Duration::from_secs(120)).await;
    // What the standby alone shows (no saves of its own to wait for).
    let on_standby = PostgresStore::connect_pool_only(
        standby
            .config("replicas")
            .to_builder()
            .create_table(false)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();

    let stream = Uuid::new_v4();
    impatient.append(vec![event(stream, 1)]).await.unwrap();
    assert_eq!(
        newest_version(&impatient, stream).await,
        1,
        "read your writes"
    );
    let log = impatient.read_log(Position::START, 100).await.unwrap();
    assert_eq!(log.len(), 1, "the log from the standby");
    assert!(
        impatient.read_routing().standby_reads >= 2,
        "{:?}",
        impatient.read_routing()
    );
    standby.catch_up_with(&primary).await;

    standby.pause_replay().await;
    impatient.append(vec![event(stream, 2)]).await.unwrap();
    let before = impatient.read_routing().primary_reads;
    assert_eq!(
        newest_version(&impatient, stream).await,
        2,
        "a load after a save returns the saved version though the standby lags"
    );
    assert_eq!(
        impatient.read_routing().primary_reads,
        before + 1,
        "it was read from the primary"
    );
    assert_eq!(
        newest_version(&on_standby, stream).await,
        1,
        "the standby really lags"
    );
    let version = impatient.stream_version(stream).await.unwrap();
    assert_eq!(version, 2, "stream_version reads its writes too");

    // The patient store waits for the standby instead.
    patient.append(vec![event(stream, 3)]).await.unwrap();
    let load = tokio::spawn({
        let patient = patient.clone();
        async move { newest_version(&patient, stream).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!load.is_finished(), "the load waits while replay is paused");
    standby.resume_replay().await;
    let loaded = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load to return once replay resumed")
        .unwrap();
    assert_eq!(loaded, 3, "it returns the saved version");
    assert_eq!(
        patient.read_routing().primary_reads,
        0,
        "served by the standby once replayed"
    );
}

/// Waits until `count` has counted `expected` events in all, each once; fails after two
/// minutes saying how far it got, whether the runner still runs, and where reads went.
async fn counted_all(
    count: &CountEvents,
    store: &PostgresStore,
    runner: &RunnerHandle,
    expected: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counted: u64 = count.counted(store).await.values().sum();
        assert!(counted <= expected, "{counted} counted of {expected}");
        if counted == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {counted} of {expected} counted; the runner has {} at {:?}; reads: {:?}",
            if runner.is_finished() {
                "ended"
            } else {
                "not ended"
            },
            runner.position(),
            store.read_routing()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_reads_from_the_standby_and_goes_on_through_the_primary_when_it_is_down() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    let store = replicated(&primary, &standby, Duration::from_millis(200)).await;
    let count = CountEvents {
        table: "\"replicas\".counted".into(),
    };
    let runner = spawn_projection(store.clone(), count.clone(), ProjectionOptions::default());

    // Four writers, 25 two-event saves each.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let stream = Uuid::new_v4();
                    store
                        .append(vec![event(stream, 1), event(stream, 2)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    counted_all(&count, &store, &runner, 200).await;
    assert!(
        store.read_routing().standby_reads > 0,
        "the projection read from the standby: {:?}",
        store.read_routing()
    );

    standby.stop(StopMode::Immediate).await;
    for _ in 0..10 {
        let stream = Uuid::new_v4();
        store.append(vec![event(stream, 1)]).await.unwrap();
    }
    counted_all(&count, &store, &runner, 210).await;
    assert!(store.read_routing().primary_reads > 0);
    let per_stream = count.counted(&store).await;
    assert_eq!(per_stream.len(), 110, "every stream once");
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_down_at_connect_is_read_from_once_it_answers() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    standby.stop(StopMode::Fast).await;
    let store = replicated(&primary, &standby, Duration::from_millis(200)).await;

    let stream = Uuid::new_v4();
    store.append(vec![event(stream, 1)]).await.unwrap();
    assert_eq!(newest_version(&store, stream).await, 1);
    assert_eq!(store.read_log(Position::START, 10).await.unwrap().len(), 1);
    let routing = store.read_routing();
    assert_eq!(routing.standby_reads, 0, "{routing:?}");
    assert!(routing.primary_reads >= 2, "{routing:?}");

    standby.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.read_routing().standby_reads == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby was never read from after it started"
        );
        let log = store.read_log(Position::START, 10).await.unwrap();
        assert_eq!(
            log.len(),
            1,
            "every log read sees the event, wherever it reads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn replica_settings_from_the_environment_name_the_bad_variable() {
    let base = [
        ("POSTGRES_HOST", "primary"),
        ("POSTGRES_PORT", "5433"),
        ("POSTGRES_USER", "u"),
        ("POSTGRES_DBNAME", "d"),
    ];
    let read = |extra: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = base
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PostgresConfig::from_env(&Env::from_map(vars))
    };
    let config = read(&[("POSTGRES_REPLICA_HOSTS", "a, b")]).unwrap();
    let on_primary_port = [("a".to_owned(), 5433), ("b".to_owned(), 5433)];
    assert_eq!(config.replicas(), on_primary_port);
    let config = read(&[
        ("POSTGRES_REPLICA_HOSTS", "a,b"),
        ("POSTGRES_REPLICA_PORTS", "1,2"),
        ("POSTGRES_READ_YOUR_WRITES_TIMEOUT", "0.5"),
    ])
    .unwrap();
    assert_eq!(
        config.replicas(),
        [("a".to_owned(), 1), ("b".to_owned(), 2)]
    );
    assert_eq!(
        config.read_your_writes_timeout(),
        Duration::from_millis(500)
    );
    assert!(read(&[]).unwrap().replicas().is_empty());
    for (extra, var) in [
        (
            &[("POSTGRES_REPLICA_HOSTS", "a,,b")][..],
            "POSTGRES_REPLICA_HOSTS",
        ),
        (
            &[("POSTGRES_REPLICA_PORTS", "1")][..],
            "POSTGRES_REPLICA_PORTS",
        ),
        (
            &[
                ("POSTGRES_REPLICA_HOSTS", "a,b,c"),
                ("POSTGRES_REPLICA_PORTS", "1,2"),
            ][..],
            "POSTGRES_REPLICA_PORTS",
        ),
        (
            &[
                ("POSTGRES_REPLICA_HOSTS", "a"),
                ("POSTGRES_REPLICA_PORTS", "0"),
            ][..],
            "POSTGRES_REPLICA_PORTS",
        ),
        (
            &[("POSTGRES_READ_YOUR_WRITES_TIMEOUT", "soon")][..],
            "POSTGRES_READ_YOUR_WRITES_TIMEOUT",
        ),
    ] {
        let err = read(extra).unwrap_err();
        assert_eq!(err.var, var, "{extra:?}: {err}");
    }
}

/// A standby that has not yet replayed the store's migrations (replay paused before the store
/// first connected) has no tables: log reads and loads go to the primary meanwhile, and a
/// projection started at once counts every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_without_the_tables_yet_sends_reads_to_the_primary() {
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    standby.pause_replay().await;
    let store = replicated(&primary, &standby, Duration::from_millis(200)).await;
    let count = CountEvents {
        table: "\"replicas\".counted".into(),
    };
    let runner = spawn_projection(store.clone(), count.clone(), ProjectionOptions::default());
    let stream = Uuid::new_v4();
    store
        .append(vec![event(stream, 1), event(stream, 2)])
        .await
        .unwrap();
    let log = store.read_log(Position::START, 10).await.unwrap();
    assert_eq!(log.len(), 2, "the log, from the primary");
    assert_eq!(
        newest_version(&store, stream).await,
        2,
        "a load, from the primary"
    );
    counted_all(&count, &store, &runner, 2).await;
    standby.resume_replay().await;
    runner.stop().await.unwrap();
}
