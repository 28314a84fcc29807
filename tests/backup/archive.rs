//! `archive` and `archive restore` on both stores.

use eventsourcing::{
    backup::BackupError, chrono::Utc, Aggregate, Archive as _, EventStore, Position, Snapshotting,
    Tracking,
};
use eventsourcing_sqlite::testing::temp_file_store;

use crate::{
    fixtures::{app, log, on_both_stores, widgets, BackupStore},
    widget::WidgetRegistryEndpoint as Widget,
};

async fn archive_and_restore<S: BackupStore>(store: &S) {
    let app = app(store);
    let save = |i: usize, renames: usize| {
        let app = app.clone();
        async move {
            let mut w = Widget::create(format!("https://old/{i}"), format!("o{i}"), "t".into());
            for r in 0..renames {
                w.rename(&format!("o{i}-{r}")).unwrap();
            }
            app.save(&mut w).await.unwrap();
            w.id()
        }
    };
    // Quiet streams: three with a snapshot at their newest version, one without.
    let mut quiet = Vec::new();
    for i in 0..3 {
        let id = save(i, 4).await;
        app.take_snapshot::<Widget>(id, None).await.unwrap();
        quiet.push(id);
    }
    let unsnapshotted = save(9, 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut_off = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // A busy stream, newer than the cut-off.
    let busy = save(10, 2).await;
    let all = [quiet.clone(), vec![unsnapshotted, busy]].concat();
    let before = widgets(store, &all).await;
    let log_before = log(store).await;

    // A consumer halfway through the quiet streams' events: refused, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.esb");
    let behind = Tracking {
        name: "lagging".into(),
        position: log_before[2].position,
    };
    store.append_tracked(vec![], behind).await.unwrap();
    let rows = store.table_rows().await;
    let err = store.archive(cut_off, &file, false).await.unwrap_err();
    assert!(
        matches!(&err, BackupError::ConsumerBehind { name, .. } if name == "lagging"),
        "{err}"
    );
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(!file.exists(), "no file written when refused");
    assert_eq!(store.table_rows().await, rows);

    // Caught up: archived.
    let caught_up = Tracking {
        name: "lagging".into(),
        position: log_before[log_before.len() - 1].position,
    };
    store.append_tracked(vec![], caught_up).await.unwrap();
    let report = store.archive(cut_off, &file, false).await.unwrap();
    let mut archived = report.streams.clone();
    archived.sort();
    let mut expected = quiet.clone();
    expected.sort();
    assert_eq!(archived, expected);
    assert_eq!(report.skipped, vec![unsnapshotted]);
    assert_eq!(
        report.counts.events,
        3 * 4,
        "all but the newest of 5 events, 3 streams"
    );
    assert_eq!(log(store).await.len(), log_before.len() - 12);
    for id in &quiet {
        assert_eq!(
            store.load(*id, 0, None).await.unwrap().len(),
            1,
            "the newest stays"
        );
    }
    // Every widget loads as before (the archived ones from their snapshots).
    assert_eq!(widgets(store, &all).await, before);

    // An archived stream goes on: its version is kept.
    let mut w: Widget = app.repository().get(quiet[0]).await.unwrap();
    w.rename("after archive").unwrap();
    app.save(&mut w).await.unwrap();

    // Restore: every event back at its original position; a full replay works again.
    let restored = store.restore_archive(&file).await.unwrap();
    assert_eq!(restored.events, 12);
    let log_after = log(store).await;
    assert_eq!(log_after.len(), log_before.len() + 1);
    assert_eq!(log_after[..log_before.len()], log_before[..]);
    let replay_only =
        eventsourcing::Application::new(store.clone()).with_snapshotting(Snapshotting::disabled());
    let again: Widget = replay_only.repository().get(quiet[0]).await.unwrap();
    assert_eq!(again, w);
    for (id, expected) in all.iter().zip(&before).skip(1) {
        assert_eq!(
            &replay_only.repository().get::<Widget>(*id).await.unwrap(),
            expected
        );
    }
    // A second restore is refused, writing nothing.
    let rows = store.table_rows().await;
    let err = store.restore_archive(&file).await.unwrap_err();
    assert!(matches!(err, BackupError::AlreadyPresent { .. }), "{err}");
    assert_eq!(store.table_rows().await, rows);
    let _ = Position::START;
}

on_both_stores!(archive_and_restore: archive_and_restore_postgres, archive_and_restore_sqlite);

/// `--force` archives even when a consumer is behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_archives_past_a_lagging_consumer() {
    let (store, _guard) = temp_file_store();
    let app = app(&store);
    let mut w = Widget::create("https://f".into(), "f".into(), "t".into());
    w.rename("g").unwrap();
    app.save(&mut w).await.unwrap();
    app.take_snapshot::<Widget>(w.id(), None).await.unwrap();
    let tracking = Tracking {
        name: "stuck".into(),
        position: Position { commit: 0, seq: 0 },
    };
    store.append_tracked(vec![], tracking).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.esb");
    let later = Utc::now() + eventsourcing::chrono::Duration::seconds(1);
    assert!(store.archive(later, &file, false).await.is_err());
    let report = store.archive(later, &file, true).await.unwrap();
    assert_eq!(report.counts.events, 1);
    assert_eq!(app.repository().get::<Widget>(w.id()).await.unwrap(), w);
}
