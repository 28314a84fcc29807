//! Aborts at random moments, many in a row, while writers keep saving: a projection runner, and
//! two instances of one process application at once. After every abort the read model is the
//! log up to the recorded position; at the end each event has been applied exactly once.
//!
//! The moments come from the test's seed (see `seed.rs`): a random wait, or a random number of
//! events handled, with random page sizes and handler delays.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing::prelude::*;
use eventsourcing::{spawn_process, RunnerHandle};

use super::{
    assert_prefix, copy_counts, count, event, expected_in, fill, log_when, options,
    process::{copied, Copier},
    seed::{Rng, Seeded},
    wait_for, Harness, Tally,
};

/// Waits for a random moment: a random time, or until `handled` has grown by a random count
/// (for at most 200 ms: a caught-up runner handles nothing more).
async fn random_moment(rng: &mut Rng, handled: &AtomicU64, per_event_max: u64) {
    if rng.coin() {
        tokio::time::sleep(rng.millis(0..=30)).await;
    } else {
        let count = rng.range(0..=4 * per_event_max);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while handled.load(Ordering::Relaxed) < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Aborts `runner` and waits for it to go; fails if it had ended by itself (an error) instead.
pub async fn abort(runner: RunnerHandle, replay: &str) {
    runner.abort();
    if let Err(e) = runner.join().await {
        assert!(
            e.to_string().contains("cancelled"),
            "the runner ended by itself before the abort: {e}; {replay}"
        );
    }
}

/// `writers` tasks, each saving `saves` saves of 1 to 3 events to a stream of its own, with a
/// random pause (0 to 3 ms) before each save; joining gives the number of events saved.
fn writers<S: EventStore + Clone>(store: &S, rng: &mut Rng, writers: usize, saves: u64) -> Writers {
    let tasks = (0..writers)
        .map(|_| {
            let (store, mut rng) = (store.clone(), rng.fork());
            tokio::spawn(async move {
                let stream = Uuid::new_v4();
                let mut version = 0;
                for _ in 0..saves {
                    tokio::time::sleep(rng.millis(0..=3)).await;
                    let count = rng.range(1..=3);
                    let save = (version + 1..=version + count)
                        .map(|v| event(stream, v))
                        .collect();
                    store.append(save).await.unwrap();
                    version += count;
                }
                version
            })
        })
        .collect();
    Writers(tasks)
}

struct Writers(Vec<tokio::task::JoinHandle<u64>>);

impl Writers {
    fn done(&self) -> bool {
        self.0.iter().all(|t| t.is_finished())
    }

    async fn join(self) -> u64 {
        let mut saved = 0;
        for task in self.0 {
            saved += task.await.unwrap();
        }
        saved
    }
}

pub async fn random_aborts_while_writers_save_apply_each_event_once<H: Harness>(h: H) {
    let mut seeded = Seeded::new();
    let replay = seeded.replay();
    let rng = &mut seeded.rng;
    fill(h.store(), 10, 10, 5).await;
    let writers = writers(h.store(), rng, 3, 100);

    // Abort at least 25 times, and until the writers are done.
    let mut previous = None;
    let mut round = 0;
    while round < 25 || !writers.done() {
        round += 1;
        let delay_us = rng.range(0..=200);
        let tally = Tally {
            delay: Duration::from_micros(delay_us),
            ..Tally::new("tally")
        };
        let handled = Arc::clone(&tally.handled);
        let page = rng.range(1..=40) as usize;
        let runner = h.spawn(tally, options(page));
        random_moment(rng, &handled, page as u64).await;
        abort(runner, &replay).await;

        let what = format!("abort {round} (page {page}, {delay_us} us per event); {replay}");
        previous = assert_prefix(&h, None, previous, &what).await.0;
    }
    let total = 500 + writers.join().await as usize;
    let log = log_when(h.store(), &format!("{total} events"), |l| l.len() >= total).await;
    let end = log.last().unwrap().position;

    let runner = h.spawn(Tally::new("tally"), options(25));
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    let (recorded, model) = h.tracked_model("tally").await;
    assert_eq!(recorded, Some(end), "after {round} aborts; {replay}");
    let all = expected_in(&log, |_| true);
    assert_eq!(all.events.len(), total, "{replay}");
    assert_eq!(model, all, "after {round} aborts; {replay}");
    assert_eq!(h.lag("tally").await, 0, "{replay}");
    println!("{round} aborts, {} events", all.events.len());
}

/// Each instance is aborted and restarted at its own random moments, the second on another
/// store instance where the store has one (as in a second process), while writers save.
pub async fn random_aborts_of_two_process_instances_copy_each_event_once<H: Harness>(h: H) {
    let mut seeded = Seeded::new();
    let replay = seeded.replay();
    let rng = &mut seeded.rng;
    let sources: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
    let save = sources.iter().map(|s| event(*s, 1)).collect();
    h.store().append(save).await.unwrap();
    let writers = upstream_writers(h.store(), rng, &sources);

    let writing = Arc::new(AtomicBool::new(true));
    let instances = [h.store().clone(), h.another_store().await].map(|store| {
        let (mut rng, writing, replay) = (rng.fork(), Arc::clone(&writing), replay.clone());
        tokio::spawn(async move {
            let app = Application::new(store.clone());
            let mut rounds = 0;
            while rounds < 15 || writing.load(Ordering::Relaxed) {
                rounds += 1;
                let delay = Duration::from_micros(rng.range(0..=500));
                let copier = Copier {
                    delay,
                    ..Copier::sound()
                };
                let handled = Arc::clone(&copier.handled);
                let page = rng.range(1..=20) as usize;
                let runner = spawn_process(copier, store.clone(), app.clone(), options(page));
                random_moment(&mut rng, &handled, page as u64).await;
                abort(runner, &replay).await;
            }
            rounds
        })
    });
    let versions = writers.join().await;
    writing.store(false, Ordering::Relaxed);
    let mut rounds = Vec::new();
    for instance in instances {
        rounds.push(instance.await.unwrap());
    }

    let upstream: usize = versions.values().sum::<u64>() as usize;
    let log = log_when(h.store(), "every upstream event", |l| {
        count(l, "Happened") >= upstream
    })
    .await;
    let end = log
        .iter()
        .filter(|e| e.event_type == "Happened")
        .map(|e| e.position)
        .max();

    let app = Application::new(h.store().clone());
    let runner = spawn_process(Copier::sound(), h.store().clone(), app.clone(), options(10));
    wait_for(&runner, end.unwrap()).await;
    runner.stop().await.unwrap();
    assert_eq!(versions.len(), sources.len());
    for (s, last) in versions {
        assert_eq!(
            copied(&app, s).await,
            (1..=last).collect::<Vec<_>>(),
            "the copies of {s} after {rounds:?} aborts; {replay}"
        );
    }
    // Each copy holds its upstream event's version once; nothing else was saved either.
    let total = 2 * upstream + sources.len();
    let log = log_when(h.store(), "every copy", |l| l.len() >= total).await;
    assert_eq!(
        copy_counts(&log),
        [upstream, upstream, sources.len()],
        "Happened, Copied, CopiesOpened after {rounds:?} aborts; {replay}"
    );
    assert!(h.store().parked("copier").await.unwrap().is_empty());
    println!("{rounds:?} aborts, {upstream} upstream events");
}

/// Three writers, each saving one event at a time to a random one of its own four sources,
/// 40 times; joining gives every source's last version.
fn upstream_writers<S: EventStore + Clone>(
    store: &S,
    rng: &mut Rng,
    sources: &[Uuid],
) -> UpstreamWriters {
    let tasks = sources
        .chunks(4)
        .map(|own| {
            let (store, mut rng, own) = (store.clone(), rng.fork(), own.to_vec());
            tokio::spawn(async move {
                let mut versions: BTreeMap<Uuid, u64> = own.iter().map(|s| (*s, 1)).collect();
                for _ in 0..40 {
                    tokio::time::sleep(rng.millis(0..=3)).await;
                    let s = own[rng.range(0..=own.len() as u64 - 1) as usize];
                    let version = versions[&s] + 1;
                    store.append(vec![event(s, version)]).await.unwrap();
                    versions.insert(s, version);
                }
                versions
            })
        })
        .collect();
    UpstreamWriters(tasks)
}

struct UpstreamWriters(Vec<tokio::task::JoinHandle<BTreeMap<Uuid, u64>>>);

impl UpstreamWriters {
    /// Every source's last version.
    async fn join(self) -> BTreeMap<Uuid, u64> {
        let mut versions = BTreeMap::new();
        for task in self.0 {
            versions.extend(task.await.unwrap());
        }
        versions
    }
}
