//! Export, import and archive on both stores (library calls; `eventsourcing-admin`'s tests run
//! the same through the binary).
//!
//! - round trip: a filled store → export → import into an empty PostgreSQL schema and an empty
//!   SQLite file → export again gives the same records (positions compared by what they point
//!   at), the widgets load equal, the tracking and parked positions point at the same events.
//! - bad input: a truncated file, a flipped byte, a newer format version, a non-empty target:
//!   each a clear error, and the target's row counts unchanged.
//! - half-way failures: a late constraint violation, a killed PostgreSQL session: nothing
//!   written.
//! - archive: refused while a consumer is behind; then the streams load equal from their
//!   snapshots, go on saving, and `archive restore` puts the events back at their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../examples/common/widget.rs"]
mod widget;

mod archive;
mod fixtures;
mod halfway;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use eventsourcing::{backup::BackupError, Backup as _, EventStore};
use eventsourcing_postgres::testing::TestSchema;
use eventsourcing_sqlite::testing::temp_file_store;
use fixtures::{content, fill, on_both_stores, widgets, BackupStore};

/// A store's export, and what an import of it must give.
struct Exported {
    dir: tempfile::TempDir,
    file: PathBuf,
    /// The export's records ([`content`]).
    records: Vec<String>,
    ids: Vec<eventsourcing::Uuid>,
    /// The widgets of `ids`, as the source loads them.
    widgets: Vec<widget::WidgetRegistryEndpoint>,
}

async fn round_trip_from<S: BackupStore>(source: &S) {
    let ids = fill(source, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("first.esb");
    let counts = source.export_file(&file).await.unwrap();
    assert_eq!(counts.tracking, 3, "halfway, caught_up, parking");
    assert_eq!(counts.parked, 1);
    assert_eq!(counts.snapshots, 20);
    let exported = Exported {
        records: content(&file),
        widgets: widgets(source, &ids).await,
        dir,
        file,
        ids,
    };

    let schema = TestSchema::new().await;
    check_target(&schema.store().await, &exported, "pg.esb").await;
    let (sqlite, _guard) = temp_file_store();
    check_target(&sqlite, &exported, "sq.esb").await;
}

/// Imports the export into `target`, exports it again (to `again` in the export's directory)
/// and checks the records, the widgets and the consumers' positions are the source's.
async fn check_target<T: BackupStore>(target: &T, exported: &Exported, again: &str) {
    let counts = target.import(&exported.file).await.unwrap();
    assert_eq!(counts.events as usize, fixtures::log(target).await.len());
    let again = exported.dir.path().join(again);
    target.export_file(&again).await.unwrap();
    let found = content(&again);
    // The headers differ (source, time); every other record is the same, in the same order.
    assert_eq!(found.len(), exported.records.len());
    assert_eq!(found, exported.records, "records after import and export");
    assert_eq!(widgets(target, &exported.ids).await, exported.widgets);
    // The consumers point at the same events as in the source: checked through the
    // positions of the target's own log.
    let log = fixtures::log(target).await;
    let halfway = target.tracking_position("halfway").await.unwrap().unwrap();
    assert_eq!(halfway, log[log.len() / 2].position);
    let caught_up = target
        .tracking_position("caught_up")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caught_up, log[log.len() - 1].position);
    let parked = target.parked("parking").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].position, log[3].position);
    assert_eq!(
        (parked[0].stream_id, parked[0].version),
        (log[3].stream_id, log[3].version)
    );
}

on_both_stores!(round_trip_from: round_trip_from_postgres, round_trip_from_sqlite);

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn gzip(path: &Path, text: &str) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}

async fn bad_input_into<T: BackupStore>(target: &T) {
    let (source, _guard) = temp_file_store();
    fill(&source, 12).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.esb");
    source.export_file(&good).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.esb");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let flipped = dir.path().join("flipped.esb");
    let mut changed = bytes.clone();
    changed[bytes.len() / 2] ^= 0x10;
    std::fs::write(&flipped, &changed).unwrap();
    let newer = dir.path().join("newer.esb");
    gzip(
        &newer,
        &gunzip(&good).replacen("\"format_version\":1", "\"format_version\":2", 1),
    );
    let edited = dir.path().join("edited.esb");
    gzip(&edited, &gunzip(&good).replacen("w1", "w9", 1));
    let missing_trailer = dir.path().join("no-trailer.esb");
    let text = gunzip(&good);
    let body: String = text
        .lines()
        .take(text.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    gzip(&missing_trailer, &body);

    let empty = target.table_rows().await;
    assert_eq!(empty, [0; 4]);
    for (file, what) in [
        (&truncated, "truncated"),
        (&flipped, "flipped"),
        (&newer, "newer"),
        (&edited, "edited"),
        (&missing_trailer, "no trailer"),
    ] {
        let err = target.import(file).await.unwrap_err();
        let message = err.to_string();
        match what {
            "newer" => assert!(
                matches!(
                    err,
                    BackupError::NewerVersion {
                        found: 2,
                        supported: 1
                    }
                ),
                "{what}: {message}"
            ),
            "edited" => assert!(matches!(err, BackupError::Checksum { .. }), "{message}"),
            "no trailer" => assert!(matches!(err, BackupError::Truncated { .. }), "{message}"),
            _ => assert!(
                matches!(
                    err,
                    BackupError::Truncated { .. }
                        | BackupError::Io(_)
                        | BackupError::Checksum { .. }
                        | BackupError::Format { .. }
                ),
                "{what}: {message}"
            ),
        }
        assert!(message.starts_with("backup file"), "{what}: {message}");
        assert_eq!(target.table_rows().await, empty, "{what}: nothing written");
    }

    // A sound file into a store that has rows: refused, and the rows are as they were.
    target.import(&good).await.unwrap();
    let full = target.table_rows().await;
    let err = target.import(&good).await.unwrap_err();
    assert!(not_empty(&err, "events") > 0);
    assert_eq!(target.table_rows().await, full);
    assert!(full[0] > 0 && full[1] > 0 && full[2] > 0 && full[3] > 0);
}

on_both_stores!(bad_input_into: bad_input_into_postgres, bad_input_into_sqlite);

/// The rows `err` found in `table`, the first table of the target with rows, when it refused
/// an import into a store that is not empty (and says so).
fn not_empty(err: &BackupError, table: &str) -> u64 {
    match err {
        BackupError::NotEmpty { table: found, rows } if *found == table => {
            assert!(err.to_string().contains("not empty"), "{err}");
            *rows
        }
        other => panic!("not a refusal naming the rows of {table}: {other}"),
    }
}

/// A store with only a tracking row is not empty either (its consumer would be misplaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracking_row_alone_makes_a_store_non_empty() {
    let (source, _guard) = temp_file_store();
    fill(&source, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.esb");
    source.export_file(&file).await.unwrap();
    let schema = TestSchema::new().await;
    let pg = schema.store().await;
    let tracking = eventsourcing::Tracking {
        name: "x".into(),
        position: eventsourcing::Position { commit: 1, seq: 1 },
    };
    pg.append_tracked(vec![], tracking).await.unwrap();
    let err = pg.import(&file).await.unwrap_err();
    assert_eq!(not_empty(&err, "tracking"), 1);
    assert_eq!(pg.table_rows().await, [0, 0, 1, 0]);
}
