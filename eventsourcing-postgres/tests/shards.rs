//! Tenants on two PostgreSQL servers (the shared test server and a throwaway cluster), one
//! tenant moved from the first to the second while every tenant's writers keep saving: nothing
//! acknowledged is lost or doubled, the other tenants never pause, the directory file says
//! where the tenant went, and a move that cannot happen changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use eventsourcing_core::{
    move_tenant, EventStore, MoveError, NewEvent, Position, ShardDirectory, Shards, TenantId,
    TenantLimits, TenantStores, Tenants,
};
use eventsourcing_postgres::{
    cluster::TestCluster,
    testing::{self, DropTenants},
    PostgresTenants,
};
use tokio::sync::Barrier;
use uuid::Uuid;

const TENANTS: [&str; 4] = ["a", "b", "c", "d"];
const WRITERS_PER_TENANT: usize = 2;
/// Saves each writer makes before the move starts, and in all.
const BEFORE_MOVE: u64 = 10;
const SAVES: u64 = 40;

fn events(stream: Uuid, from: u64, count: u64) -> Vec<NewEvent> {
    (from..from + count)
        .map(|v| NewEvent::new(stream, v, "Saved", format!(r#"{{"v":{v}}}"#).into_bytes()))
        .collect()
}

fn shards(
    one: PostgresTenants,
    two: PostgresTenants,
    file: &std::path::Path,
) -> Shards<PostgresTenants> {
    let directory = ShardDirectory::load(file, vec!["one".into(), "two".into()]).unwrap();
    Shards::new(vec![("one".into(), one), ("two".into(), two)], directory).unwrap()
}

fn limits() -> TenantLimits {
    TenantLimits {
        max_connections: 40,
        max_open: 8,
        wait: Duration::from_secs(120),
    }
}

/// Every event of `store`'s log, checked to be each stream's versions from 1 without a gap, in
/// log order: the last version of each stream.
async fn streams_in(store: &impl EventStore) -> BTreeMap<Uuid, u64> {
    let log = store.read_log(Position::START, 1_000_000).await.unwrap();
    let mut last = BTreeMap::new();
    for pair in log.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "the log is out of order"
        );
    }
    for event in &log {
        let seen = last.entry(event.stream_id).or_insert(0);
        assert_eq!(
            event.version,
            *seen + 1,
            "stream {} has a gap or a double",
            event.stream_id
        );
        *seen = event.version;
    }
    last
}

/// One writer: `SAVES` saves of 1 to 3 events to a stream of its own through the registry,
/// waiting at the barrier after `BEFORE_MOVE` of them. Returns the stream and its last
/// acknowledged version.
async fn writer(
    tenants: Tenants<Shards<PostgresTenants>>,
    tenant: &'static str,
    barrier: Arc<Barrier>,
) -> (Uuid, u64) {
    let stream = Uuid::new_v4();
    let mut version = 0;
    for save in 0..SAVES {
        if save == BEFORE_MOVE {
            barrier.wait().await;
        }
        let count = save % 3 + 1;
        let handle = tenants.get(tenant).await.unwrap();
        handle
            .store()
            .append(events(stream, version + 1, count))
            .await
            .unwrap();
        version += count;
    }
    (stream, version)
}

/// A writer in another process (a registry of its own on the same directory file, which the
/// move does not pause): `SAVES` saves to tenant `a`. A save the fence refuses is retried after
/// reloading the directory and reopening the tenant, until it lands on the new shard.
async fn other_process_writer(
    tenants: Tenants<Shards<PostgresTenants>>,
    barrier: Arc<Barrier>,
) -> (Uuid, u64, u32) {
    let stream = Uuid::new_v4();
    let mut version = 0;
    let mut refused = 0;
    for save in 0..SAVES {
        if save == BEFORE_MOVE {
            barrier.wait().await;
        }
        let count = save % 3 + 1;
        loop {
            let handle = tenants.get("a").await.unwrap();
            match handle
                .store()
                .append(events(stream, version + 1, count))
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.to_string().contains("this tenant was moved"), "{e}");
                    refused += 1;
                    assert!(refused < 10_000, "the moved tenant never came back");
                    drop(handle);
                    tenants.stores().directory().reload().unwrap();
                    tenants.close_idle().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        version += count;
    }
    (stream, version, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_moves_to_another_server_while_every_tenant_keeps_writing() {
    let cluster = TestCluster::new().await;
    let pattern = format!("{}_{{id}}", testing::unique_name("es_shard"));
    let one = DropTenants(
        PostgresTenants::schema(
            testing::server_config()
                .to_builder()
                .schema(&pattern)
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    let two = PostgresTenants::schema(cluster.config(&pattern)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.directory");
    let tenants = Tenants::new(shards(one.0.clone(), two.clone(), &file), limits()).unwrap();

    let elsewhere = Tenants::new(shards(one.0.clone(), two.clone(), &file), limits()).unwrap();

    let barrier = Arc::new(Barrier::new(TENANTS.len() * WRITERS_PER_TENANT + 2));
    let other = tokio::spawn(other_process_writer(
        elsewhere.clone(),
        Arc::clone(&barrier),
    ));
    let mut writers = Vec::new();
    for tenant in TENANTS {
        for _ in 0..WRITERS_PER_TENANT {
            writers.push((
                tenant,
                tokio::spawn(writer(tenants.clone(), tenant, Arc::clone(&barrier))),
            ));
        }
    }
    barrier.wait().await;
    let a = TenantId::new("a").unwrap();
    let moved = move_tenant(&tenants, &a, "two", dir.path()).await.unwrap();
    assert_eq!((moved.from.as_str(), moved.to.as_str()), ("one", "two"));
    assert!(moved.fenced);
    assert!(moved.counts.events >= BEFORE_MOVE * WRITERS_PER_TENANT as u64);

    let mut acked: BTreeMap<&str, BTreeMap<Uuid, u64>> = BTreeMap::new();
    for (tenant, writer) in writers {
        let (stream, version) = writer.await.unwrap();
        acked.entry(tenant).or_default().insert(stream, version);
    }
    let (stream, version, refused) = other.await.unwrap();
    println!("the other process's writer was refused {refused} times");
    acked.entry("a").or_default().insert(stream, version);
    drop((tenants, elsewhere));

    // The moved tenant is whole on the second server; its old copy on the first is a part of it,
    // taken before any save the move let through afterwards.
    let on_two = two.open(&a, 2).await.unwrap();
    assert_eq!(streams_in(&on_two).await, acked["a"]);
    let old_copy = one.0.open(&a, 2).await.unwrap();
    let old = streams_in(&old_copy).await;
    assert_eq!(old.values().sum::<u64>(), moved.counts.events);
    // The old copy is fenced: no process writes there any more.
    let refused = old_copy
        .append(events(Uuid::new_v4(), 1, 1))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("this tenant was moved"),
        "{refused}"
    );
    for (stream, version) in &old {
        assert!(*version <= acked["a"][stream]);
    }
    // The others stayed on the first server, every acknowledged save there once.
    for tenant in ["b", "c", "d"] {
        let id = TenantId::new(tenant).unwrap();
        let store = one.0.open(&id, 2).await.unwrap();
        assert_eq!(streams_in(&store).await, acked[tenant], "tenant {tenant}");
        assert!(
            two.list().await.unwrap().iter().all(|t| t != &id),
            "{tenant} is on two"
        );
    }

    // The directory file says where `a` is; a registry started afresh finds it there, lists
    // each tenant once, and refuses the moves that cannot happen, changing nothing.
    assert_eq!(
        ShardDirectory::load(&file, vec!["one".into(), "two".into()])
            .unwrap()
            .shard_of(&a),
        "two"
    );
    let again = Tenants::new(shards(one.0.clone(), two.clone(), &file), limits()).unwrap();
    let ids: Vec<TenantId> = TENANTS.iter().map(|t| TenantId::new(t).unwrap()).collect();
    assert_eq!(again.stores().list().await.unwrap(), ids);
    let (stream, version) = acked["a"].iter().next().map(|(s, v)| (*s, *v)).unwrap();
    assert_eq!(
        again
            .get("a")
            .await
            .unwrap()
            .store()
            .stream_version(stream)
            .await
            .unwrap(),
        version
    );

    let err = move_tenant(&again, &a, "two", dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::AlreadyThere { .. }), "{err}");
    let err = move_tenant(&again, &a, "three", dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::UnknownShard { .. }), "{err}");
    // Back to the first server, which still holds the old copy: the import refuses to write
    // into a store that is not empty, and `a` stays on two, still served.
    let err = move_tenant(&again, &a, "one", dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            MoveError::Copy {
                source: eventsourcing_core::backup::BackupError::NotEmpty { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(again.stores().directory().shard_of(&a), "two");
    let handle = again.get("a").await.unwrap();
    assert_eq!(
        handle.store().stream_version(stream).await.unwrap(),
        version
    );
    // The failed move lifted its fence: `a` takes writes on two again.
    handle
        .store()
        .append(events(stream, version + 1, 1))
        .await
        .unwrap();
    drop(handle);
    // Nothing of the moves is left in the work directory but the directory file.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["tenants.directory"]);
}
