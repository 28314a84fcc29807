//! The global order never skips: transactions that take their positions early and commit late
//! are never passed by a tailing reader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use eventsourcing_core::{EventStore, NewEvent, Position, StoredEvent};
use eventsourcing_postgres::testing::fresh;
use uuid::Uuid;

fn event(stream_id: Uuid, version: u64) -> NewEvent {
    NewEvent::new(stream_id, version, "Happened", b"{}".to_vec())
}

fn keys(events: &[StoredEvent]) -> Vec<(Uuid, u64)> {
    events.iter().map(|e| (e.stream_id, e.version)).collect()
}

/// Marten's test: a transaction takes its position and stays open while later positions
/// commit; the reader must not move past it, and must see it once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_never_passes_an_open_transaction() {
    let (store, _schema) = fresh().await;
    let (before, slow, fast1, fast2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    store.append(vec![event(before, 1)]).await.unwrap();

    let mut client = store.dedicated_client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    store
        .append_in(&tx, vec![event(slow, 1), event(slow, 2)])
        .await
        .unwrap();
    // Later positions commit while the slow transaction is open.
    store.append(vec![event(fast1, 1)]).await.unwrap();
    store.append(vec![event(fast2, 1)]).await.unwrap();

    let seen = store.read_log(Position::START, 100).await.unwrap();
    assert_eq!(
        keys(&seen),
        vec![(before, 1)],
        "nothing past the open transaction"
    );
    let head = seen[0].position;
    assert!(store.read_log(head, 100).await.unwrap().is_empty());

    tx.commit().await.unwrap();
    let after = store.read_log(head, 100).await.unwrap();
    assert_eq!(
        keys(&after),
        vec![(slow, 1), (slow, 2), (fast1, 1), (fast2, 1)],
        "the slow transaction's events come first: it began writing first"
    );
    // Its positions were taken before the fast ones, and still no one was skipped.
    assert!(after[0].position.seq < after[2].position.seq);
    let all = store.read_log(Position::START, 100).await.unwrap();
    assert_eq!(keys(&all[1..]), keys(&after));
}

/// A rolled-back transaction leaves a hole in the positions; readers do not wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_leaves_no_gap_to_wait_for() {
    let (store, _schema) = fresh().await;
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let mut client = store.dedicated_client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    store.append_in(&tx, vec![event(gone, 1)]).await.unwrap();
    tx.rollback().await.unwrap();
    store.append(vec![event(kept, 1)]).await.unwrap();

    let started = Instant::now();
    let seen = store.read_log(Position::START, 100).await.unwrap();
    assert_eq!(keys(&seen), vec![(kept, 1)]);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no wait on the hole: {:?}",
        started.elapsed()
    );
}

/// A tiny xorshift generator: the test needs jitter, not quality.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Rng(Uuid::new_v4().as_u64_pair().0 | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const WRITERS: usize = 8;
const SAVES_PER_WRITER: usize = 60;

/// One committed save: its events, and when its commit returned (a global counter).
struct Committed {
    events: Vec<(Uuid, u64)>,
    commit_order: u64,
}

/// Issue 3's stress test: 8 writers on their own connections hold their transactions open
/// for random times (so positions commit out of order, and some roll back), while a reader
/// tails `read_log` from the last position it saw. Every committed event is seen exactly once,
/// and reading the whole log again gives exactly the order the tailing reader saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_with_random_open_transactions_and_a_tailing_reader() {
    let (store, _schema) = fresh().await;
    let committed: Arc<Mutex<Vec<Committed>>> = Arc::default();
    let commit_counter = Arc::new(AtomicU64::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));

    // The reader tails the log while the writers run.
    let reader = {
        let store = store.clone();
        let writers_done = Arc::clone(&writers_done);
        let committed = Arc::clone(&committed);
        tokio::spawn(async move {
            let mut seen: Vec<StoredEvent> = Vec::new();
            let mut last = Position::START;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let page = store.read_log(last, 50).await.unwrap();
                for e in &page {
                    assert!(e.position > last, "positions only move forward");
                    last = e.position;
                }
                seen.extend(page);
                if writers_done.load(Ordering::SeqCst) {
                    let expected: usize = committed
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|c| c.events.len())
                        .sum();
                    if seen.len() >= expected {
                        return seen;
                    }
                }
                assert!(Instant::now() < deadline, "the reader never caught up");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // For comparison, a naive reader that tails by `position > last` alone.
    let naive = {
        let client = store.dedicated_client().await.unwrap();
        let table = format!("\"{}\".events", _schema.name());
        let writers_done = Arc::clone(&writers_done);
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut last = 0i64;
            let mut idle_rounds = 0;
            loop {
                let rows = client
                    .query(
                        &format!(
                            "SELECT stream_id, version, position FROM {table} \
                             WHERE position > $1 ORDER BY position LIMIT 50"
                        ),
                        &[&last],
                    )
                    .await
                    .unwrap();
                for row in &rows {
                    seen.insert((row.get::<_, Uuid>(0), row.get::<_, i64>(1) as u64));
                    last = row.get(2);
                }
                if rows.is_empty() && writers_done.load(Ordering::SeqCst) {
                    idle_rounds += 1;
                    if idle_rounds > 20 {
                        return seen;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let committed = Arc::clone(&committed);
        let commit_counter = Arc::clone(&commit_counter);
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new();
            let mut client = store.dedicated_client().await.unwrap();
            // Two streams per writer, so saves also span streams.
            let streams = [Uuid::new_v4(), Uuid::new_v4()];
            let mut versions = [0u64; 2];
            let mut rolled_back = 0;
            for _ in 0..SAVES_PER_WRITER {
                let mut events = Vec::new();
                let mut next = versions;
                for (s, id) in streams.iter().enumerate() {
                    for _ in 0..rng.below(3) {
                        next[s] += 1;
                        events.push(event(*id, next[s]));
                    }
                }
                if events.is_empty() {
                    next[0] += 1;
                    events.push(event(streams[0], next[0]));
                }
                let keys: Vec<(Uuid, u64)> =
                    events.iter().map(|e| (e.stream_id, e.version)).collect();
                let tx = client.transaction().await.unwrap();
                store.append_in(&tx, events).await.unwrap();
                // Hold the transaction (and its positions) open for a while.
                tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
                if w % 2 == 0 && rng.below(10) == 0 {
                    tx.rollback().await.unwrap();
                    rolled_back += 1;
                    continue;
                }
                tx.commit().await.unwrap();
                let order = commit_counter.fetch_add(1, Ordering::SeqCst);
                versions = next;
                committed.lock().unwrap().push(Committed {
                    events: keys,
                    commit_order: order,
                });
            }
            rolled_back
        }));
    }
    let mut rolled_back = 0;
    for writer in writers {
        rolled_back += writer.await.unwrap();
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let committed = Arc::try_unwrap(committed)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    let expected: HashSet<(Uuid, u64)> = committed.iter().flat_map(|c| c.events.clone()).collect();
    let seen_keys = keys(&seen);
    let unique: HashSet<(Uuid, u64)> = seen_keys.iter().copied().collect();
    assert_eq!(unique.len(), seen_keys.len(), "no event seen twice");
    assert_eq!(unique, expected, "every committed event seen, nothing else");

    // Reading the whole log again gives exactly the same order.
    let mut reread: Vec<StoredEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_log(after, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        reread.extend(page);
    }
    assert_eq!(reread, seen, "the order never changes between reads");

    // The hazard was really there: some save committed before another that had taken a lower
    // position, which a reader tracking `position > last` would have skipped.
    let first_seq: HashMap<(Uuid, u64), u64> = seen
        .iter()
        .map(|e| ((e.stream_id, e.version), e.position.seq))
        .collect();
    let mut by_commit: Vec<(u64, u64)> = committed
        .iter()
        .map(|c| (c.commit_order, first_seq[&c.events[0]]))
        .collect();
    by_commit.sort();
    let out_of_order = by_commit.windows(2).filter(|w| w[1].1 < w[0].1).count();
    eprintln!(
        "{} events in {} saves ({} rolled back); {} commits overtook a lower position",
        seen.len(),
        committed.len(),
        rolled_back,
        out_of_order
    );
    assert!(
        out_of_order > 0,
        "the writers did not overlap: the test proves nothing"
    );
    let naive_seen = naive.await.unwrap();
    let missed = expected.difference(&naive_seen).count();
    eprintln!(
        "a reader tailing by position alone missed {missed} of {} events",
        expected.len()
    );
    assert!(
        missed > 0,
        "the naive reader should have skipped late commits"
    );
}
