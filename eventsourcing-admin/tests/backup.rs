//! `export`, `import`, `archive` and `archive restore` through the real binary, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::Target;
use eventsourcing::{
    backup::{BackupReader, Record},
    chrono::{TimeZone, Utc},
    AnyStore, EventStore, Metadata, NewEvent, Position, Snapshot, Tracking, Uuid,
};
use eventsourcing_postgres::testing::log_holding;

/// `n` streams of three events recorded in 2020 (metadata on the first), a snapshot of each at
/// version 3; returns once the log shows every event.
async fn fill(store: &AnyStore, n: u128) -> Vec<Uuid> {
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
    log_holding(store, 3 * ids.len()).await;
    ids
}

/// Records that a consumer `name` has handled the log up to its event `index` (from 0).
async fn consumer_at(store: &AnyStore, name: &str, index: usize) {
    let position = log_holding(store, index + 1).await[index].position;
    let tracking = Tracking {
        name: name.into(),
        position,
    };
    store.append_tracked(vec![], tracking).await.unwrap();
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
        let store = source.migrated().await;
        fill(&store, 8).await;
        consumer_at(&store, "projection", 10).await;
        let first = dir.path().join(format!("{}.esb", source.name()));
        let first_arg = first.to_str().unwrap();
        let counts = &source
            .admin(&["--json", "export", first_arg])
            .assert_code(0)
            .json()["counts"];
        assert_eq!(counts["events"], 24, "{counts}");
        assert_eq!(counts["snapshots"], 8, "{counts}");
        // The file exists now: a second export to it is refused, and it is left whole.
        source.admin(&["export", first_arg]).assert_code(1);
        let expected = content(&first);
        source.admin(&["verify"]).assert_code(0);

        for target in Target::both().await {
            let what = format!("{} -> {}", source.name(), target.name());
            target
                .admin(&["import", first_arg])
                .assert_code(0)
                .assert_stdout("imported 24 events");
            let second = dir
                .path()
                .join(format!("{}-{}.esb", source.name(), target.name()));
            target
                .admin(&["export", second.to_str().unwrap()])
                .assert_code(0);
            assert_eq!(content(&second), expected, "{what}");
            target.admin(&["verify"]).assert_code(0);
            // Not empty any more: refused, exit 1, the reason named.
            target
                .admin(&["import", first_arg])
                .assert_code(1)
                .assert_stderr("not empty");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_truncated_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = Target::sqlite();
    fill(&source.migrated().await, 5).await;
    let file = dir.path().join("whole.esb");
    source
        .admin(&["export", file.to_str().unwrap()])
        .assert_code(0);
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.esb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for target in Target::both().await {
        target
            .admin(&["import", cut.to_str().unwrap()])
            .assert_code(1)
            .assert_stderr("backup file");
        let events = log_holding(&target.open().await, 0).await.len();
        assert_eq!(events, 0, "{}: nothing written", target.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_restore_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    for target in Target::both().await {
        let store = target.migrated().await;
        let ids = fill(&store, 4).await;
        consumer_at(&store, "slow", 0).await;
        let file = dir.path().join(format!("{}-cold.esb", target.name()));
        let file_arg = file.to_str().unwrap();
        target
            .admin(&["archive", "--before", "2021-01-01", file_arg])
            .assert_code(1)
            .assert_stderr("`slow`")
            .assert_stderr("--force");
        assert!(!file.exists());

        let archived = target
            .admin(&[
                "--json",
                "archive",
                "--before",
                "2021-01-01",
                "--force",
                file_arg,
            ])
            .assert_code(0)
            .json();
        assert_eq!(archived["counts"]["events"], 8, "{archived}");
        assert_eq!(archived["streams"].as_array().unwrap().len(), 4);
        for id in &ids {
            let left = store.load(*id, 0, None).await.unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].version, 3);
        }
        // Archived streams start at their snapshot's version: whole, not a gap.
        let verified = target.admin(&["--json", "verify"]).assert_code(0).json();
        assert_eq!(verified["archived_streams"], 4, "{verified}");

        target
            .admin(&["archive", "restore", file_arg])
            .assert_code(0)
            .assert_stdout("restored 8 events");
        for id in &ids {
            assert_eq!(store.load(*id, 0, None).await.unwrap().len(), 3);
        }
        // Every event back: the store checks whole again.
        target.admin(&["verify"]).assert_code(0);
        target
            .admin(&["archive", "restore", file_arg])
            .assert_code(1)
            .assert_stderr("already holds");
    }
}
