//! The write-ahead log stays bounded while readers read and the writer writes, and nothing
//! written is lost to the truncations.
#![allow(clippy::unwrap_used)]

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use eventsourcing_core::{EventStore, NewEvent, Position, Uuid};
use eventsourcing_sqlite::{testing::TempGuard, SqliteConfig, SqliteStore, Synchronous};

/// The limit of these tests: small, so that a few megabytes of saves pass it many times.
const LIMIT: u64 = 256 << 10;
/// What the log may hold past the limit: the writer looks after each save, so one save's pages
/// (40 events of 1 KiB: about 86 KB of frames), and room for one truncation that a long read
/// kept from finishing (the writer then tries again a limit's worth later). Without the limit
/// this test's log reached 6 MB.
const MARGIN: u64 = 512 << 10;
const SAVES: u64 = 300;
const EVENTS_PER_SAVE: u64 = 40;

fn wal_size(guard: &TempGuard) -> u64 {
    let mut wal = guard.path().as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn save(stream: Uuid, save: u64) -> Vec<NewEvent> {
    (1..=EVENTS_PER_SAVE)
        .map(|i| {
            let version = save * EVENTS_PER_SAVE + i;
            NewEvent::new(stream, version, "Filled", vec![b'x'; 1024])
        })
        .collect()
}

/// Readers that read the log and the start of a stream in a loop until stopped, counting
/// their reads.
fn spawn_readers(
    store: &SqliteStore,
    stream: Uuid,
    stop: &Arc<AtomicBool>,
    reads: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|i| {
            let (store, stop, reads) = (store.clone(), Arc::clone(stop), Arc::clone(reads));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if i % 2 == 0 {
                        store.read_log(Position::START, 200).await.unwrap();
                    } else {
                        store.load(stream, 0, Some(200)).await.unwrap();
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_stays_under_its_limit_while_readers_read() {
    let guard = TempGuard::new();
    let config = guard
        .builder()
        .synchronous(Synchronous::Normal)
        .wal_size_limit(Some(LIMIT))
        .build();
    let store = SqliteStore::open(config.clone()).await.unwrap();
    let stream = Uuid::new_v4();
    store.append(save(stream, 0)).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers = spawn_readers(&store, stream, &stop, &reads);
    let mut largest = 0;
    for n in 1..SAVES {
        store.append(save(stream, n)).await.unwrap();
        largest = largest.max(wal_size(&guard));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    eprintln!(
        "largest -wal file {largest} bytes (limit {LIMIT}); {} reads ran alongside",
        reads.load(Ordering::Relaxed)
    );
    assert!(
        largest <= LIMIT + MARGIN,
        "the -wal file reached {largest} bytes (limit {LIMIT} + margin {MARGIN})"
    );
    // The saves wrote far more log than the limit: it was passed, and truncated, many times.
    let total_bytes = SAVES * EVENTS_PER_SAVE * 1024;
    assert!(total_bytes > 20 * LIMIT, "{total_bytes}");
    assert!(reads.load(Ordering::Relaxed) > 0);

    drop(store);
    let reopened = SqliteStore::open(config).await.unwrap();
    let all = reopened.load(stream, 0, None).await.unwrap();
    assert_eq!(all.len() as u64, SAVES * EVENTS_PER_SAVE);
    assert!(all.iter().zip(1..).all(|(e, v)| e.version == v));
    assert_eq!(
        reopened.stream_version(stream).await.unwrap(),
        SAVES * EVENTS_PER_SAVE
    );
}

/// `journal_size_limit` is the limit too: a log SQLite starts over by itself is cut back.
#[tokio::test]
async fn without_readers_the_log_also_stays_under_its_limit() {
    let guard = TempGuard::new();
    let store = SqliteStore::open(
        guard
            .builder()
            .synchronous(Synchronous::Normal)
            .wal_size_limit(Some(LIMIT))
            .build(),
    )
    .await
    .unwrap();
    let stream = Uuid::new_v4();
    let mut largest = 0;
    for n in 0..100 {
        store.append(save(stream, n)).await.unwrap();
        largest = largest.max(wal_size(&guard));
    }
    assert!(largest <= LIMIT + MARGIN, "{largest}");
}

#[test]
fn the_limit_is_a_setting() {
    assert_eq!(SqliteConfig::default().wal_size_limit(), Some(64 << 20));
    let off = SqliteConfig::builder().wal_size_limit(Some(0)).build();
    assert_eq!(off.wal_size_limit(), None);
    let env = eventsourcing_core::Env::from_map([("SQLITE_WAL_SIZE_LIMIT", "1048576")]);
    let config = SqliteConfig::from_env(&env).unwrap();
    assert_eq!(config.wal_size_limit(), Some(1 << 20));
    let env = eventsourcing_core::Env::from_map([("SQLITE_WAL_SIZE_LIMIT", "0")]);
    assert_eq!(SqliteConfig::from_env(&env).unwrap().wal_size_limit(), None);
    for bad in ["-1", "64MB", "1.5", "9223372036854775808"] {
        let env = eventsourcing_core::Env::from_map([("SQLITE_WAL_SIZE_LIMIT", bad)]);
        let err = SqliteConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "SQLITE_WAL_SIZE_LIMIT", "{bad}: {err}");
    }
}
