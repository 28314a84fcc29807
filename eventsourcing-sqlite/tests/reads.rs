//! Where reads run: on a multi-thread runtime on the caller's thread (no hand-off to a reader
//! thread), elsewhere on the reader threads; and that either way many concurrent reads, more
//! than there are connections, each get a whole answer while saves go on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::events;
use eventsourcing_core::{EventStore, Position, Uuid};
use eventsourcing_sqlite::{testing::TempGuard, SqliteStore};

/// The name of the thread a read runs on.
async fn reading_thread(store: &SqliteStore) -> String {
    store
        .query(|_| Ok(std::thread::current().name().unwrap_or("").to_owned()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_a_read_runs_on_the_callers_thread() {
    let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
    let caller = std::thread::current().name().unwrap_or("").to_owned();
    assert_eq!(reading_thread(&store).await, caller);
}

#[tokio::test]
async fn on_a_current_thread_runtime_reads_leave_the_runtimes_thread() {
    // Its one thread runs every task: a read there would hold all of them up.
    let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
    let thread = reading_thread(&store).await;
    assert!(thread.starts_with("sqlite-reader-"), "read on {thread}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_reads_go_to_the_one_connection() {
    let store = eventsourcing_sqlite::testing::memory_store();
    assert_eq!(reading_thread(&store).await, "sqlite-writer");
}

/// 16 tasks reading at once through `readers` connections while one task saves: every load is
/// a whole prefix of the stream, at least as long as what was saved before it began, and every
/// page of the log is in order.
async fn many_readers_while_saving(readers: usize) {
    let guard = TempGuard::new();
    let store = guard.store_with(|b| b.readers(readers)).await;
    let stream = Uuid::new_v4();
    store.append(events(stream, 1, 1)).await.unwrap();
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for version in 2..=200 {
                store
                    .append(events(stream, version, version))
                    .await
                    .unwrap();
            }
        }
    });
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let before = store.stream_version(stream).await.unwrap();
                    let loaded = store.load(stream, 0, None).await.unwrap();
                    assert!(loaded.len() as u64 >= before, "a load missed saved events");
                    let versions: Vec<u64> = loaded.iter().map(|e| e.version).collect();
                    assert_eq!(versions, (1..=loaded.len() as u64).collect::<Vec<_>>());
                    let page = store.read_log(Position::START, 50).await.unwrap();
                    assert!(page.windows(2).all(|w| w[0].position < w[1].position));
                }
            })
        })
        .collect();
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
        writer.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("the reads and saves did not finish within 120 s");
    assert_eq!(store.stream_version(stream).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_reads_than_connections_on_a_multi_thread_runtime() {
    many_readers_while_saving(2).await;
}

#[tokio::test]
async fn more_reads_than_connections_on_a_current_thread_runtime() {
    many_readers_while_saving(2).await;
}
