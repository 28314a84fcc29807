//! `export`, `import`, `archive` and `archive restore` through the real binary, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::Target;
use eventsourcing::{
    backup::{BackupReader, Record},
    chrono::{TimeZone, Utc},
    postgres::PostgresStore,
    sqlite::{SqliteConfig, SqliteStore},
    EventStore, Metadata, NewEvent, Position, Snapshot, StoredEvent, Tracking, Uuid,
};

/// The library's handle on the store a target points the binary at.
enum Handle {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

async fn handle(target: &Target) -> Handle {
    match target {
        Target::Sqlite { path, .. } => Handle::Sqlite(
            SqliteStore::open(SqliteConfig::new(path.clone()))
                .await
                .unwrap(),
        ),
        Target::Postgres { schema } => Handle::Postgres(schema.store().await),
    }
}

macro_rules! on {
    ($handle:expr, $s:ident => $body:expr) => {
        match $handle {
            Handle::Sqlite($s) => $body,
            Handle::Postgres($s) => $body,
        }
    };
}

/// `n` streams of three events recorded in 2020 (metadata on the first), a snapshot of each at
/// version 3.
async fn fill<S: EventStore>(store: &S, n: u128) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::from_u128(1000 + i);
        let at = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, i as u32).unwrap();
        let events = (1..=3)
            .map(|v| {
                let mut e = NewEvent::new(id, v, "Happened", format!("{{\"n\":{v}}}").into_bytes())
                    .of_type(if v == 1 { "thing" } else { "" });
                e.timestamp = at;
                if v == 1 {
                    e.metadata = Metadata::default().with("user", format!("u{i}"));
                }
                e
            })
            .collect();
        store.append(events).await.unwrap();
        let snapshot = Snapshot {
            stream_id: id,
            version: 3,
            state_type: "thing".into(),
            fingerprint: 7,
            timestamp: at,
            payload: b"{\"n\":3}".to_vec(),
        };
        store.save_snapshot(snapshot, None).await.unwrap();
        ids.push(id);
    }
    ids
}

/// The log once it holds `n` events (PostgreSQL holds back events behind any running
/// transaction on the shared server), for at most a minute.
async fn log<S: EventStore>(store: &S, n: usize) -> Vec<StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log = store.read_log(Position::START, 100_000).await.unwrap();
        if log.len() >= n || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The records of a backup with positions replaced by the place of the event they point at.
fn content(path: &Path) -> Vec<String> {
    let mut reader = BackupReader::open(path).unwrap();
    let mut positions = Vec::new();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        out.push(match record {
            Record::Event(mut e) => {
                positions.push(e.position);
                e.position = Position::START;
                format!("{e:?}")
            }
            Record::Tracking(mut t) => {
                let at = positions.partition_point(|p| *p <= t.position);
                t.position = Position::START;
                format!("{t:?} after #{at}")
            }
            other => format!("{other:?}"),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_either_kind_gives_the_same_backup() {
    let dir = tempfile::tempdir().unwrap();
    for source in Target::both().await {
        assert_eq!(source.admin(&["migrate"]).code, 0);
        let store = handle(&source).await;
        on!(&store, s => {
            fill(s, 8).await;
            let events = log(s, 24).await;
            let tracking = Tracking { name: "projection".into(), position: events[10].position };
            s.append_tracked(vec![], tracking).await.unwrap();
        });
        let first = dir.path().join(format!("{}.esb", source.name()));
        let first_arg = first.to_str().unwrap();
        let run = source.admin(&["--json", "export", first_arg]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(run.json()["counts"]["events"], 24);
        assert_eq!(run.json()["counts"]["snapshots"], 8);
        // The file exists now: a second export to it is refused, and it is left whole.
        let again = source.admin(&["export", first_arg]);
        assert_eq!(again.code, 1, "{}", again.all());
        let expected = content(&first);
        let run = source.admin(&["verify"]);
        assert_eq!(run.code, 0, "{}", run.all());

        for target in Target::both().await {
            let what = format!("{} -> {}", source.name(), target.name());
            let run = target.admin(&["import", first_arg]);
            assert_eq!(run.code, 0, "{what}: {}", run.all());
            assert!(
                run.stdout.contains("imported 24 events"),
                "{what}: {}",
                run.all()
            );
            let second = dir
                .path()
                .join(format!("{}-{}.esb", source.name(), target.name()));
            let run = target.admin(&["export", second.to_str().unwrap()]);
            assert_eq!(run.code, 0, "{what}: {}", run.all());
            assert_eq!(content(&second), expected, "{what}");
            let run = target.admin(&["verify"]);
            assert_eq!(run.code, 0, "{what}: verify: {}", run.all());
            // Not empty any more: refused, exit 1, the reason named.
            let run = target.admin(&["import", first_arg]);
            assert_eq!(run.code, 1, "{what}: {}", run.all());
            assert!(run.stderr.contains("not empty"), "{what}: {}", run.all());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_truncated_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = Target::sqlite();
    assert_eq!(source.admin(&["migrate"]).code, 0);
    on!(&handle(&source).await, s => { fill(s, 5).await; });
    let file = dir.path().join("whole.esb");
    assert_eq!(source.admin(&["export", file.to_str().unwrap()]).code, 0);
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.esb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for target in Target::both().await {
        let run = target.admin(&["import", cut.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("backup file"), "{}", run.all());
        let events = on!(&handle(&target).await, s => log(s, 0).await.len());
        assert_eq!(events, 0, "{}: nothing written", target.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_restore_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    for target in Target::both().await {
        assert_eq!(target.admin(&["migrate"]).code, 0);
        let store = handle(&target).await;
        let ids = on!(&store, s => {
            let ids = fill(s, 4).await;
            let events = log(s, 12).await;
            let behind = Tracking { name: "slow".into(), position: events[0].position };
            s.append_tracked(vec![], behind).await.unwrap();
            ids
        });
        let file = dir.path().join(format!("{}-cold.esb", target.name()));
        let file_arg = file.to_str().unwrap();
        let run = target.admin(&["archive", "--before", "2021-01-01", file_arg]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("`slow`") && run.stderr.contains("--force"),
            "{}",
            run.all()
        );
        assert!(!file.exists());

        let run = target.admin(&[
            "--json",
            "archive",
            "--before",
            "2021-01-01",
            "--force",
            file_arg,
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(run.json()["counts"]["events"], 8, "{}", run.all());
        assert_eq!(run.json()["streams"].as_array().unwrap().len(), 4);
        on!(&store, s => {
            for id in &ids {
                let left = s.load(*id, 0, None).await.unwrap();
                assert_eq!(left.len(), 1);
                assert_eq!(left[0].version, 3);
            }
        });
        // Archived streams start at their snapshot's version: whole, not a gap.
        let run = target.admin(&["--json", "verify"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(run.json()["archived_streams"], 4, "{}", run.all());

        let run = target.admin(&["archive", "restore", file_arg]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(run.stdout.contains("restored 8 events"), "{}", run.all());
        on!(&store, s => {
            for id in &ids {
                assert_eq!(s.load(*id, 0, None).await.unwrap().len(), 3);
            }
        });
        // Every event back: the store checks whole again.
        let run = target.admin(&["verify"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let run = target.admin(&["archive", "restore", file_arg]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("already holds"), "{}", run.all());
    }
}
