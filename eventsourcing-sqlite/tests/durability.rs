//! What one store wrote, another store on the same file sees: after a clean close, while both
//! are open, and after a store was leaked without closing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::events;
use eventsourcing_core::{EventStore, Position, Uuid};
use eventsourcing_sqlite::{testing::TempGuard, SqliteStore, Synchronous};

/// A store on a new file holding `count` events of one new stream: the file's guard, the
/// stream and the store.
async fn holding(count: u64) -> (TempGuard, Uuid, SqliteStore) {
    let guard = TempGuard::new();
    let stream = Uuid::new_v4();
    let store = guard.store().await;
    store.append(events(stream, 1, count)).await.unwrap();
    (guard, stream, store)
}

#[tokio::test]
async fn a_reopened_store_sees_what_was_saved() {
    let (guard, stream, first) = holding(3).await;
    let written = first.read_log(Position::START, 10).await.unwrap();
    drop(first);

    let second = guard.store().await;
    assert_eq!(second.read_log(Position::START, 10).await.unwrap(), written);
    assert_eq!(second.stream_version(stream).await.unwrap(), 3);
    // Positions continue after the old ones.
    second.append(events(stream, 4, 4)).await.unwrap();
    let all = second.read_log(Position::START, 10).await.unwrap();
    assert!(all[3].position > all[2].position);
}

#[tokio::test]
async fn two_open_stores_on_one_file_see_each_other_and_conflict() {
    let guard = TempGuard::new();
    let stream = Uuid::new_v4();
    let a = guard.store().await;
    let b = guard
        .store_with(|b| b.synchronous(Synchronous::Normal))
        .await;
    a.append(events(stream, 1, 2)).await.unwrap();
    assert_eq!(b.stream_version(stream).await.unwrap(), 2);
    assert_eq!(
        b.load(stream, 0, None).await.unwrap(),
        a.load(stream, 0, None).await.unwrap()
    );

    // b saves on top of what a wrote; a's stale save then conflicts with b's version.
    b.append(events(stream, 3, 3)).await.unwrap();
    let err = a.append(events(stream, 3, 4)).await.unwrap_err();
    assert!(
        matches!(
            err,
            eventsourcing_core::Error::Conflict {
                expected: 2,
                actual: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(a.read_log(Position::START, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_store_leaked_without_closing_loses_nothing() {
    let (guard, stream, leaked) = holding(5).await;
    // Its connections stay open and are never closed (no checkpoint, no clean shutdown).
    std::mem::forget(leaked);

    let other = guard.store().await;
    assert_eq!(other.stream_version(stream).await.unwrap(), 5);
    other.append(events(stream, 6, 6)).await.unwrap();
    drop(other);
    let again = guard.store().await;
    assert_eq!(again.load(stream, 0, None).await.unwrap().len(), 6);
}

#[test]
fn open_blocking_works_outside_a_runtime() {
    let guard = TempGuard::new();
    let store = SqliteStore::open_blocking(guard.config()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        store.append(events(Uuid::new_v4(), 1, 1)).await.unwrap();
        assert_eq!(store.read_log(Position::START, 10).await.unwrap().len(), 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_connection_is_waited_for_then_reported() {
    use std::time::Duration;

    use eventsourcing_sqlite::rusqlite::{Connection, ErrorCode};

    let guard = TempGuard::new();
    let impatient = guard
        .store_with(|b| b.lock_timeout(Duration::from_millis(200)))
        .await;
    // Opened (and migrated) before the lock is taken: opening waits for it too.
    let patient = guard
        .store_with(|b| b.lock_timeout(Duration::from_secs(600)))
        .await;
    let stream = Uuid::new_v4();
    let other = Connection::open(guard.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Held past the timeout: reported as busy (no duration is asserted: a slow machine may
    // take longer than the timeout to report it).
    let err = impatient.append(events(stream, 1, 1)).await.unwrap_err();
    let driver = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<eventsourcing_sqlite::rusqlite::Error>())
        .unwrap_or_else(|| panic!("expected a rusqlite error, got {err:?}"));
    assert_eq!(driver.sqlite_error_code(), Some(ErrorCode::DatabaseBusy));
    // Reads do not wait for writers.
    assert_eq!(impatient.stream_version(stream).await.unwrap(), 0);

    // Released within the timeout, the save waits and goes through: `patient`'s timeout no
    // test machine reaches, and its save cannot finish while the lock is held.
    let mut save = tokio::spawn({
        let patient = patient.clone();
        async move { patient.append(events(stream, 1, 1)).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut save)
            .await
            .is_err(),
        "the save finished while another connection held the write lock"
    );
    assert_eq!(patient.stream_version(stream).await.unwrap(), 0);
    other.execute_batch("COMMIT").unwrap();
    tokio::time::timeout(Duration::from_secs(60), save)
        .await
        .expect("the save did not go through within 60 s of the lock's release")
        .unwrap()
        .unwrap();
    assert_eq!(patient.stream_version(stream).await.unwrap(), 1);
}

#[tokio::test]
async fn an_unopenable_path_names_the_database() {
    let guard = TempGuard::new();
    let missing_dir = guard.path().join("no-such-dir").join("events.db");
    let dbname = missing_dir.to_string_lossy().into_owned();
    let err = SqliteStore::open(eventsourcing_sqlite::SqliteConfig::new(dbname.clone()))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&dbname), "{message}");
    assert!(
        matches!(err, eventsourcing_core::Error::Store(_)),
        "{err:?}"
    );
}

/// The files in the guard's directory, by name.
fn files_beside(guard: &TempGuard) -> Vec<String> {
    let dir = guard.path().parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_leaves_only_its_database_file() {
    // The connections close one after another, the writer last, which checkpoints the log and
    // deletes it. (Closed at the same moment, each saw the others still open and the `-wal` and
    // `-shm` files stayed behind, now and then.) Many rounds, each with every reader busy.
    let guard = TempGuard::new();
    for round in 0..20 {
        let store = guard.store_with(|b| b.readers(4)).await;
        let stream = Uuid::new_v4();
        store.append(events(stream, 1, 3)).await.unwrap();
        let reads = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.read_log(Position::START, 1000).await.unwrap() })
        });
        for read in reads {
            assert_eq!(read.await.unwrap().len(), 3 * (round + 1));
        }
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .unwrap();
        assert_eq!(files_beside(&guard), ["events.db"], "after round {round}");
    }
}
