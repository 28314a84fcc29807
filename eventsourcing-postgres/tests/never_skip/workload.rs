//! The writers: many sessions saving through `append_in` inside transactions they hold open
//! for random times, some rolled back after inserting, and a few held open on purpose until a
//! later position has committed and a naive reader (tailing by `position > last`) has passed
//! them, so that out-of-order commits, and a naive reader missing events, happen on every run
//! rather than by luck.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing_core::{NewEvent, StoredEvent};
use eventsourcing_postgres::PostgresStore;
use uuid::Uuid;

use crate::seed::{Deadline, Seed};

/// An event as the writers know it: stream, version, and the save that wrote it (a save rolled
/// back leaves its versions free for the next save, so the save tells the two apart).
pub(crate) type Key = (Uuid, u64, u64);

/// The key of a stored event (its payload is its save's tag).
pub(crate) fn key(event: &StoredEvent) -> Key {
    (event.stream_id, event.version, tag_of(&event.payload))
}

fn tag_of(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a payload that is not a save tag: {payload:?}"))
}

/// How the writers write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Writers, each on a session of its own.
    pub(crate) writers: usize,
    /// Saves each writer makes (the holders' partners make more while a hold is pending).
    pub(crate) saves_per_writer: usize,
    /// A save's transaction stays open up to this long after its insert (uniformly random).
    pub(crate) max_hold: Duration,
    /// Saves rolled back after their insert, per thousand (and each writer's third save).
    pub(crate) rollback_per_mille: u64,
    /// Writers `0..holders` each hold one save open until a later position has committed and
    /// the naive reader has read past it; the others never do, and go on saving until those
    /// holds are over.
    pub(crate) holders: usize,
}

/// One save; its tag (writer << 32 | index) is the payload of each of its events.
#[derive(Debug, Clone)]
pub(crate) struct Save {
    /// Its events.
    pub(crate) keys: Vec<Key>,
    /// When its commit returned, counted across all writers (0 for rolled-back saves).
    pub(crate) commit_order: u64,
    /// Held open on purpose until a later position committed.
    pub(crate) forced: bool,
}

/// What the writers did, and what the naive reader saw.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The committed saves.
    pub(crate) committed: Vec<Save>,
    /// The saves rolled back after inserting.
    pub(crate) rolled_back: Vec<Save>,
    /// What a reader tailing by `position > last` alone saw.
    pub(crate) naive_seen: HashSet<Key>,
}

impl Outcome {
    /// Every committed event.
    pub(crate) fn committed_keys(&self) -> HashSet<Key> {
        self.committed.iter().flat_map(|s| s.keys.clone()).collect()
    }

    /// Every event rolled back.
    pub(crate) fn rolled_back_keys(&self) -> HashSet<Key> {
        self.rolled_back
            .iter()
            .flat_map(|s| s.keys.clone())
            .collect()
    }

    /// The committed events of the saves held open on purpose.
    pub(crate) fn forced_keys(&self) -> HashSet<Key> {
        self.committed
            .iter()
            .filter(|s| s.forced)
            .flat_map(|s| s.keys.clone())
            .collect()
    }

    /// Saves whose commit returned after that of a save holding a higher position: the
    /// commits that overtook a lower position (counted loosely, by when `COMMIT` returned).
    pub(crate) fn out_of_order(&self, first_seq: impl Fn(&Key) -> u64) -> usize {
        let mut by_commit: Vec<(u64, u64)> = self
            .committed
            .iter()
            .map(|s| (s.commit_order, first_seq(&s.keys[0])))
            .collect();
        by_commit.sort_unstable();
        by_commit.windows(2).filter(|w| w[1].1 < w[0].1).count()
    }
}

/// What the writers and the naive reader share.
struct Shared {
    store: PostgresStore,
    plan: Plan,
    seed: Seed,
    deadline: Deadline,
    table: String,
    commit_counter: AtomicU64,
    naive_last: AtomicI64,
    holds_pending: AtomicUsize,
    writers_done: AtomicBool,
}

/// Runs the writers (and the naive reader) on `store`, whose schema is `schema`, to the end.
/// Every wait is bounded by `deadline`.
pub(crate) async fn run(
    store: &PostgresStore,
    schema: &str,
    plan: Plan,
    seed: Seed,
    deadline: Deadline,
) -> Outcome {
    assert!(
        plan.holders < plan.writers,
        "holds need writers that do not hold"
    );
    let shared = Arc::new(Shared {
        store: store.clone(),
        plan,
        seed,
        deadline,
        table: format!("\"{schema}\".events"),
        commit_counter: AtomicU64::new(1),
        naive_last: AtomicI64::new(0),
        holds_pending: AtomicUsize::new(plan.holders),
        writers_done: AtomicBool::new(false),
    });
    let naive = tokio::spawn(naive_reader(Arc::clone(&shared)));
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| tokio::spawn(writer(w, Arc::clone(&shared))))
        .collect();
    let mut outcome = Outcome {
        committed: Vec::new(),
        rolled_back: Vec::new(),
        naive_seen: HashSet::new(),
    };
    for (w, writer) in writers.into_iter().enumerate() {
        let (committed, rolled_back) = deadline
            .run(&format!("writer {w} to finish"), writer)
            .await
            .unwrap_or_else(|e| panic!("writer {w} failed: {e}; {seed}"));
        outcome.committed.extend(committed);
        outcome.rolled_back.extend(rolled_back);
    }
    shared.writers_done.store(true, Ordering::SeqCst);
    outcome.naive_seen = deadline
        .run("the naive reader to reach the end", naive)
        .await
        .unwrap_or_else(|e| panic!("the naive reader failed: {e}; {seed}"));
    outcome
}

/// One writer: two streams of its own, saves of one to four events across them.
async fn writer(w: usize, shared: Arc<Shared>) -> (Vec<Save>, Vec<Save>) {
    let (plan, seed) = (shared.plan, shared.seed);
    let mut rng = seed.rng(w as u64);
    let holder = w < plan.holders;
    // In the first half, so that the other writers are still busy.
    let quarter = (plan.saves_per_writer / 4).max(1) as u64;
    let hold_at = if holder {
        quarter + rng.below(quarter)
    } else {
        u64::MAX
    };
    let fail =
        |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("writer {w}: {what}: {e}; {seed}") };
    let mut client = match shared.store.dedicated_client().await {
        Ok(c) => c,
        Err(e) => fail("connecting", &e),
    };
    let streams = [Uuid::new_v4(), Uuid::new_v4()];
    let mut versions = [0u64; 2];
    let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
    for i in 0u64.. {
        if i >= plan.saves_per_writer as u64 {
            if holder || shared.holds_pending.load(Ordering::SeqCst) == 0 {
                break;
            }
            shared.deadline.check(|| {
                format!("writer {w}: the held saves to commit (this writer keeps saving for them)")
            });
        }
        let tag = ((w as u64) << 32) | i;
        let mut next = versions;
        let mut events = Vec::new();
        for (s, id) in streams.iter().enumerate() {
            for _ in 0..rng.below(3) {
                next[s] += 1;
                let payload = tag.to_string().into_bytes();
                events.push(NewEvent::new(*id, next[s], "Happened", payload));
            }
        }
        if events.is_empty() {
            next[0] += 1;
            let payload = tag.to_string().into_bytes();
            events.push(NewEvent::new(streams[0], next[0], "Happened", payload));
        }
        let keys: Vec<Key> = events
            .iter()
            .map(|e| (e.stream_id, e.version, tag))
            .collect();
        let tx = match client.transaction().await {
            Ok(tx) => tx,
            Err(e) => fail("BEGIN", &e),
        };
        if let Err(e) = shared.store.append_in(&tx, events).await {
            fail(&format!("appending save {tag}"), &e);
        }
        let forced = i == hold_at;
        if forced {
            let sql = format!(
                "SELECT max(position) FROM {} WHERE tx_id = pg_current_xact_id()",
                shared.table
            );
            let mine: i64 = match tx.query_one(&sql, &[]).await {
                Ok(row) => row.get(0),
                Err(e) => fail("reading its own positions", &e),
            };
            // Passing `mine` means the naive reader read a later position, committed while
            // this one is open: it will never read this save.
            while shared.naive_last.load(Ordering::SeqCst) <= mine {
                shared.deadline.check(|| {
                    format!(
                        "writer {w}: a later position to commit, and the naive reader to \
                         pass it, while save {tag} (positions up to {mine}) is held open"
                    )
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            let hold_us = rng.below(plan.max_hold.as_micros() as u64 + 1);
            tokio::time::sleep(Duration::from_micros(hold_us)).await;
            // The third save of each writer always rolls back, so every run has some.
            if i == 2 || rng.chance(plan.rollback_per_mille) {
                if let Err(e) = tx.rollback().await {
                    fail("ROLLBACK", &e);
                }
                rolled_back.push(Save {
                    keys,
                    commit_order: 0,
                    forced: false,
                });
                continue;
            }
        }
        if let Err(e) = tx.commit().await {
            fail(&format!("committing save {tag}"), &e);
        }
        let commit_order = shared.commit_counter.fetch_add(1, Ordering::SeqCst);
        if forced {
            shared.holds_pending.fetch_sub(1, Ordering::SeqCst);
        }
        versions = next;
        committed.push(Save {
            keys,
            commit_order,
            forced,
        });
    }
    (committed, rolled_back)
}

/// A reader that tails by `position > last` alone, on a session of its own: what readers did
/// before transaction ids. It publishes how far it got, and ends on the first empty read after
/// the writers are done.
async fn naive_reader(shared: Arc<Shared>) -> HashSet<Key> {
    let seed = shared.seed;
    let client = shared
        .store
        .dedicated_client()
        .await
        .unwrap_or_else(|e| panic!("the naive reader: connecting: {e}; {seed}"));
    let sql = format!(
        "SELECT stream_id, version, payload, position FROM {} \
         WHERE position > $1 ORDER BY position LIMIT 1000",
        shared.table
    );
    let mut seen = HashSet::new();
    let mut last = 0i64;
    loop {
        // Read before the query: once the writers are done every commit is visible.
        let finishing = shared.writers_done.load(Ordering::SeqCst);
        let rows = client
            .query(&sql, &[&last])
            .await
            .unwrap_or_else(|e| panic!("the naive reader: {e}; {seed}"));
        for row in &rows {
            let payload: Vec<u8> = row.get(2);
            let version: i64 = row.get(1);
            seen.insert((row.get(0), version as u64, tag_of(&payload)));
            last = row.get(3);
        }
        shared.naive_last.store(last, Ordering::SeqCst);
        if rows.is_empty() {
            if finishing {
                return seen;
            }
            // Each read scans the table (no index on the position alone): poll gently.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
