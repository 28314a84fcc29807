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

/// Pages through the whole log from the start with `limit`, on the caller's thread (which has
/// a reader thread read the page it guesses comes next): the positions read.
async fn positions_paged(store: &SqliteStore, limit: usize) -> Vec<u64> {
    let (mut after, mut seen) = (Position::START, Vec::new());
    loop {
        let page = store.read_log(after, limit).await.unwrap();
        seen.extend(page.iter().map(|e| e.position.commit));
        match page.last() {
            Some(last) if page.len() == limit => after = last.position,
            Some(_) | None => return seen,
        }
    }
}

/// What the table holds, in position order.
async fn positions_stored(store: &SqliteStore) -> Vec<u64> {
    let all = store.read_log(Position::START, usize::MAX).await.unwrap();
    all.iter().map(|e| e.position.commit).collect()
}

/// A catch-up on the caller's thread reads every event once, in order, whether the guess at
/// the next page is right (contiguous positions) or wrong (rows deleted by hand leave holes),
/// and while a writer saves meanwhile (a page guessed before a save is never taken for full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_with_pages_guessed_ahead_reads_each_event_once_in_order() {
    let guard = TempGuard::new();
    let store = guard.store_with(|b| b.readers(4)).await;
    for _ in 0..30 {
        store.append(events(Uuid::new_v4(), 1, 37)).await.unwrap();
    }
    for limit in [1, 10, 37, 100] {
        assert_eq!(
            positions_paged(&store, limit).await,
            positions_stored(&store).await,
            "contiguous, pages of {limit}"
        );
    }

    // Holes: every 13th row removed by hand, by another connection.
    let other = rusqlite::Connection::open(guard.path()).unwrap();
    other
        .execute("DELETE FROM events WHERE position % 13 = 0", [])
        .unwrap();
    drop(other);
    for limit in [10, 37, 100] {
        let stored = positions_stored(&store).await;
        assert!(stored.windows(2).any(|w| w[1] != w[0] + 1), "holes made");
        assert_eq!(
            positions_paged(&store, limit).await,
            stored,
            "holes, pages of {limit}"
        );
    }

    // A writer saving while the log is read from the start again and again.
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for _ in 0..100 {
                store.append(events(Uuid::new_v4(), 1, 7)).await.unwrap();
            }
        }
    });
    let reads = async {
        while !writer.is_finished() {
            let seen = positions_paged(&store, 10).await;
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, no repeat");
            let stored = positions_stored(&store).await;
            assert_eq!(
                seen[..],
                stored[..seen.len()],
                "a prefix of the log, no hole"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(120), reads)
        .await
        .expect("the reads did not finish within 120 s");
    writer.await.unwrap();
    assert_eq!(
        positions_paged(&store, 10).await,
        positions_stored(&store).await
    );
}

/// A runtime without timers (`enable_time` not called) pages through the log with the pages
/// read ahead on the reader threads: no read needs a timer.
#[test]
fn paging_with_reads_ahead_needs_no_timer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
        for _ in 0..5 {
            store.append(events(Uuid::new_v4(), 1, 9)).await.unwrap();
        }
        assert_eq!(
            positions_paged(&store, 4).await,
            positions_stored(&store).await
        );
    });
}
