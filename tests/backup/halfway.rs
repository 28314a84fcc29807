//! Imports that fail half-way leave the target as it was: a file whose checks pass but whose
//! records break the store's rules late (on both stores), and an import whose connection the
//! server kills while it writes (PostgreSQL).

use std::path::Path;

use eventsourcing::{
    backup::{BackupError, BackupWriter, Content, EventRecord, Header, Record},
    chrono::Utc,
    Backup as _, Metadata, Position, Uuid,
};
use eventsourcing_postgres::testing::TestSchema;

use crate::fixtures::{on_both_stores, wait::wait_for, BackupStore};

/// A sound file of `streams` streams of 10 events; with `duplicate`, its last event repeats
/// the first one's stream and version (at a later position), which no store accepts.
fn synthetic(path: &Path, streams: u128, duplicate: bool) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = BackupWriter::new(file, Header::new(Content::Full, "test")).unwrap();
    let mut seq = 0;
    let mut event = |stream: u128, version: u64| {
        seq += 1;
        Record::Event(EventRecord {
            stream_id: Uuid::from_u128(stream + 1),
            version,
            event_type: "Happened".into(),
            stream_type: String::new(),
            schema_version: 1,
            timestamp: Utc::now(),
            payload: format!("{{\"seq\":{seq}}}").into_bytes(),
            metadata: Metadata::default(),
            position: Position { commit: 1, seq },
            defect: None,
        })
    };
    for stream in 0..streams {
        for version in 1..=10 {
            writer.write(&event(stream, version)).unwrap();
        }
    }
    if duplicate {
        writer.write(&event(0, 1)).unwrap();
    }
    writer.finish().unwrap();
}

async fn late_failure_writes_nothing<T: BackupStore>(target: &T) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dup.esb");
    synthetic(&file, 500, true);
    let err = target.import(&file).await.unwrap_err();
    assert!(matches!(err, BackupError::Store(_)), "{err}");
    assert_eq!(target.table_rows().await, [0; 4], "rolled back: {err}");
    // The store is as it was: a sound file imports.
    let sound = dir.path().join("sound.esb");
    synthetic(&sound, 5, false);
    assert_eq!(target.import(&sound).await.unwrap().events, 50);
}

on_both_stores!(late_failure_writes_nothing: late_failure_writes_nothing_postgres, late_failure_writes_nothing_sqlite);

/// The server ends the importing session while it writes: the import fails, and the schema
/// has no row of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_import_connection_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.esb");
    synthetic(&file, 20_000, false);
    let schema = TestSchema::new().await;
    let store = schema.store().await;
    let killer = schema.client().await.unwrap();
    let import = tokio::spawn({
        let store = store.clone();
        let file = file.clone();
        async move { store.import(&file).await }
    });
    // The import's session: the one holding a transaction that has written to this schema.
    let find = format!(
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
           AND backend_xid IS NOT NULL AND query LIKE '%{}%'",
        schema.name()
    );
    let (killer, find, importing) = (&killer, &find, &import);
    let pid: i32 = wait_for("the importing session shows", move || async move {
        assert!(
            !importing.is_finished(),
            "the import ended before it could be killed"
        );
        let rows = killer.query(find, &[]).await.unwrap();
        rows.first().map(|row| row.get(0))
    })
    .await;
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let result = import.await.unwrap();
    assert!(
        result.is_err(),
        "the import went on after its session was killed"
    );
    assert_eq!(store.table_rows().await, [0; 4]);
}
