//! The never-skip check itself, wherever the log is read from: the writers, the five readers,
//! and what must hold afterwards (`never_skip.rs` on the shared server, `never_skip_standby.rs`
//! with the readers on a hot standby).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use eventsourcing_postgres::PostgresStore;

use crate::{
    readers::{read_all, Reader, Seen},
    seed::{Deadline, Seed},
    workload::{self, key, Key, Plan},
};

/// The stores the readers use: `store` for the log (on the writers' server, or a store whose
/// log reads go to a standby) and `downstream` for the process application's copies.
pub(crate) struct Readers {
    pub(crate) store: PostgresStore,
    pub(crate) downstream: PostgresStore,
}

/// The test: the writers save through `store` (on schema `schema`) by `plan`, while the five
/// readers read `readers.store`'s log; then the log, as `store` and `readers.store` return
/// it, must be exactly the committed saves, and what each reader saw exactly that log.
pub(crate) async fn never_skip(
    store: &PostgresStore,
    schema: &str,
    readers: Readers,
    plan: Plan,
    seed: Seed,
    limit: Duration,
) {
    let started = Instant::now();
    let deadline = Deadline::after(limit, seed);
    let Readers {
        store: source,
        downstream,
    } = readers;
    let readers = vec![
        Reader::subscription(&source, 7, seed),
        Reader::subscription(&source, 500, seed),
        Reader::projection(&source, schema, "recorded_a", 10),
        Reader::projection(&source, schema, "recorded_b", 500),
        Reader::process(&source, downstream),
    ];

    let outcome = workload::run(store, schema, plan, seed, deadline).await;
    let written = started.elapsed();
    let committed = outcome.committed_keys();
    let rolled_back = outcome.rolled_back_keys();

    // The log: exactly the committed saves, each event once.
    let log: Seen = read_all(store, committed.len(), deadline, "the log")
        .await
        .iter()
        .map(|e| (e.position, key(e)))
        .collect();
    let source_log: Seen = read_all(&source, committed.len(), deadline, "the readers' log")
        .await
        .iter()
        .map(|e| (e.position, key(e)))
        .collect();
    same(
        "the readers' store's log",
        &source_log,
        &log,
        &outcome.rolled_back_keys(),
        seed,
    );
    let logged: HashSet<Key> = log.iter().map(|(_, k)| *k).collect();
    assert_eq!(logged.len(), log.len(), "an event twice in the log; {seed}");
    assert_eq!(
        logged,
        committed,
        "the log holds the committed saves, nothing else ({} missing, {} extra); {seed}",
        committed.difference(&logged).count(),
        logged.difference(&committed).count(),
    );
    assert!(
        log.windows(2).all(|w| w[0].0 < w[1].0),
        "the log's positions rise; {seed}"
    );
    let end = log.last().map(|(p, _)| *p).unwrap();

    for reader in &readers {
        reader.catch_up(end, deadline).await;
    }
    let caught_up = started.elapsed();
    for reader in readers {
        let name = reader.name().to_owned();
        let seen = reader.finish(store, log.len(), deadline).await;
        same(&name, &seen, &log, &rolled_back, seed);
    }

    // The hazard was really there: held saves committed after later positions, which a reader
    // tailing by position alone had passed.
    let first_seq: HashMap<Key, u64> = log.iter().map(|(p, k)| (*k, p.seq)).collect();
    let out_of_order = outcome.out_of_order(|k| first_seq[k]);
    let missed: HashSet<Key> = committed.difference(&outcome.naive_seen).copied().collect();
    let held = outcome.committed.iter().filter(|s| s.forced).count();
    eprintln!(
        "never_skip: {} events in {} saves by {} writers ({} rolled back, {held} held on \
         purpose); {out_of_order} commits returned after one holding a higher position; a \
         reader tailing by position alone missed {} events; writers done in {:.1?}, \
         all five readers caught up {:.1?} later; {seed}",
        log.len(),
        outcome.committed.len(),
        plan.writers,
        outcome.rolled_back.len(),
        missed.len(),
        written,
        caught_up - written,
    );
    assert_eq!(held, plan.holders, "every held save committed; {seed}");
    assert!(!rolled_back.is_empty(), "some saves rolled back; {seed}");
    assert!(
        outcome
            .forced_keys()
            .is_subset(&committed.difference(&outcome.naive_seen).copied().collect()),
        "the naive reader skipped every held save's events; {seed}"
    );
}

/// Fails unless `seen` is exactly `log`, saying how it differs.
fn same(name: &str, seen: &Seen, log: &Seen, rolled_back: &HashSet<Key>, seed: Seed) {
    if seen == log {
        return;
    }
    let keys: HashSet<Key> = seen.iter().map(|(_, k)| *k).collect();
    let logged: HashSet<Key> = log.iter().map(|(_, k)| *k).collect();
    let first_difference = seen.iter().zip(log).position(|(a, b)| a != b);
    panic!(
        "{name} did not see exactly the log: {} events seen ({} distinct), {} in the log; \
         {} missed, {} not in the log ({} of them rolled back); first difference at index \
         {first_difference:?}: seen {:?}, log {:?}; {seed}",
        seen.len(),
        keys.len(),
        log.len(),
        logged.difference(&keys).count(),
        keys.difference(&logged).count(),
        keys.intersection(rolled_back).count(),
        first_difference.and_then(|i| seen.get(i)),
        first_difference.and_then(|i| log.get(i)),
    );
}
