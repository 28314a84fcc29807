//! A crash-like stop loses no acknowledged save and leaves no half-written one.
//!
//! The test binary re-runs itself as a child process (`crash_child`, selected by an environment
//! variable). The child saves multi-event batches from several tasks at once into a file
//! database, printing `BEGIN <batch> <events>` before each save and `ACK <batch>` once the save
//! returned. Then it dies in the middle of the run: it calls `std::process::abort()` from another
//! thread while saves are in flight, or the parent kills it with SIGKILL. The parent reopens the
//! database and checks that every acknowledged batch is fully there and every other batch is
//! fully there or fully absent. Some batches are larger than SQLite's page cache, so their pages
//! spill into the write-ahead log before the commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use eventsourcing_core::{EventStore, Metadata, NewEvent, Position, StoredEvent, Uuid};
use eventsourcing_sqlite::{testing::TempGuard, SqliteConfig, SqliteStore, Synchronous};

const CHILD: &str = "ES_SQLITE_CRASH_CHILD";
const DB: &str = "ES_SQLITE_CRASH_DB";
const SYNC: &str = "ES_SQLITE_CRASH_SYNC";
const ABORT_AFTER: &str = "ES_SQLITE_CRASH_ABORT_AFTER";
/// How many tasks save at once (default 4). With one, each save is written on the saving
/// task's own thread; with several, most are queued and committed together by the writer.
const TASKS: &str = "ES_SQLITE_CRASH_TASKS";

/// The child's side. A no-op (and a passing test) unless the parent selected it.
#[test]
fn crash_child() {
    let Ok(run) = std::env::var(CHILD) else {
        return;
    };
    let db = std::env::var(DB).unwrap();
    let synchronous: Synchronous = std::env::var(SYNC).unwrap().parse().unwrap();
    let abort_after: Option<u64> = std::env::var(ABORT_AFTER).ok().map(|n| n.parse().unwrap());
    let tasks: u64 = std::env::var(TASKS).map_or(4, |n| n.parse().unwrap());

    let acks = Arc::new(AtomicU64::new(0));
    if let Some(limit) = abort_after {
        let acks = Arc::clone(&acks);
        std::thread::spawn(move || {
            while acks.load(Ordering::SeqCst) < limit {
                std::thread::sleep(Duration::from_micros(200));
            }
            // The saving tasks keep going: some of their saves are in flight right now.
            std::process::abort();
        });
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let config = SqliteConfig::builder()
            .dbname(db)
            .synchronous(synchronous)
            .build();
        let store = SqliteStore::open(config).await.unwrap();
        let next_batch = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..tasks)
            .map(|task| {
                let (store, acks, next_batch, run) = (
                    store.clone(),
                    Arc::clone(&acks),
                    Arc::clone(&next_batch),
                    run.clone(),
                );
                tokio::spawn(async move {
                    // Each task has its own streams, so its saves never conflict.
                    let streams: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
                    let mut versions = [0u64; 3];
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((task + 1) * 0x1234_5678));
                    loop {
                        let batch = next_batch.fetch_add(1, Ordering::SeqCst);
                        let (count, size) = if batch % 25 == 24 {
                            (300, 8_000) // 2.4 MB: more than the page cache holds
                        } else {
                            (1 + rng.below(12), rng.below(2_000) as usize)
                        };
                        let mut events = Vec::new();
                        for i in 0..count {
                            let s = rng.below(3) as usize;
                            versions[s] += 1;
                            events.push(new_event(streams[s], versions[s], &run, batch, i, size));
                        }
                        println!("BEGIN {run}:{batch} {count}");
                        store.append(events).await.unwrap();
                        println!("ACK {run}:{batch}");
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn new_event(stream: Uuid, version: u64, run: &str, batch: u64, i: u64, size: usize) -> NewEvent {
    let mut payload = format!("{run}:{batch}:{i}:").into_bytes();
    payload.resize(payload.len() + size, b'x');
    NewEvent {
        metadata: Metadata::default().with("batch", batch.to_string()),
        ..NewEvent::new(stream, version, "Saved", payload)
    }
}

/// The batch (`run:batch`) an event belongs to.
fn batch_of(event: &StoredEvent) -> String {
    let text = String::from_utf8_lossy(&event.payload);
    let mut parts = text.splitn(3, ':');
    format!("{}:{}", parts.next().unwrap(), parts.next().unwrap())
}

/// What the children said: events per begun batch, and the acknowledged batches.
#[derive(Default)]
struct Said {
    begun: HashMap<String, u64>,
    acked: HashSet<String>,
}

impl Said {
    fn line(&mut self, line: &str) {
        // The harness prints `test crash_child ... ` without a newline before the first line.
        let mut words = line
            .split_whitespace()
            .skip_while(|w| *w != "BEGIN" && *w != "ACK");
        match (words.next(), words.next(), words.next()) {
            (Some("BEGIN"), Some(batch), Some(count)) => {
                self.begun.insert(batch.to_owned(), count.parse().unwrap());
            }
            (Some("ACK"), Some(batch), None) => {
                self.acked.insert(batch.to_owned());
            }
            _ => {}
        }
    }
}

fn child(run: &str, guard: &TempGuard, synchronous: Synchronous) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, run)
        .env(DB, guard.dbname())
        .env(SYNC, synchronous.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// Reopens the database and checks it against everything the children said.
async fn check(guard: &TempGuard, said: &Said) {
    let store = SqliteStore::open(guard.config()).await.unwrap();
    let log = store.read_log(Position::START, usize::MAX).await.unwrap();
    let mut found: HashMap<String, Vec<&StoredEvent>> = HashMap::new();
    for event in &log {
        found.entry(batch_of(event)).or_default().push(event);
    }
    for batch in &said.acked {
        let count = found.get(batch).map_or(0, Vec::len) as u64;
        assert_eq!(
            count, said.begun[batch],
            "acknowledged batch {batch} is not all there"
        );
    }
    for (batch, events) in &found {
        let expected = *said
            .begun
            .get(batch)
            .unwrap_or_else(|| panic!("batch {batch} is stored but was never begun"));
        assert_eq!(
            events.len() as u64,
            expected,
            "batch {batch} is half-written"
        );
        // One transaction: its events hold consecutive positions.
        assert!(
            events
                .windows(2)
                .all(|w| w[1].position.seq == w[0].position.seq + 1),
            "batch {batch} is interleaved with another"
        );
    }
    // Every stream is a contiguous history from version 1.
    let streams: HashSet<Uuid> = log.iter().map(|e| e.stream_id).collect();
    for stream in streams {
        let events = store.load(stream, 0, None).await.unwrap();
        assert!(events
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64 + 1));
    }
}

/// Three runs on one file, each ended by `abort()` while saves are in flight, `tasks` of
/// them saving at once.
async fn abort_mid_run(synchronous: Synchronous, tasks: u64) {
    let guard = TempGuard::new();
    let mut said = Said::default();
    for (run, abort_after) in [("a", 30u64), ("b", 7), ("c", 60)] {
        let output = child(run, &guard, synchronous)
            .env(ABORT_AFTER, abort_after.to_string())
            .env(TASKS, tasks.to_string())
            .output()
            .unwrap();
        assert!(!output.status.success(), "the child was meant to abort");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                output.status.signal(),
                Some(6),
                "SIGABRT: {:?}",
                output.status
            );
        }
        let before = said.acked.len();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            said.line(line);
        }
        let acked = (said.acked.len() - before) as u64;
        assert!(
            acked >= abort_after,
            "run {run}: only {acked} saves acknowledged"
        );
        let in_flight = said
            .begun
            .keys()
            .filter(|b| b.starts_with(run) && !said.acked.contains(*b))
            .count();
        // A single saver may be caught between two saves; several always have one going.
        assert!(
            in_flight > 0 || tasks == 1,
            "run {run}: no save was in flight at the abort"
        );
        check(&guard, &said).await;
    }
}

#[tokio::test]
async fn abort_mid_run_loses_no_acknowledged_save_and_leaves_none_half_written() {
    abort_mid_run(Synchronous::Full, 4).await;
}

#[tokio::test]
async fn abort_mid_run_with_synchronous_normal_too() {
    abort_mid_run(Synchronous::Normal, 4).await;
}

/// One saver: its saves are written on its own thread (nothing else is being saved), and an
/// abort in the middle of one still loses no acknowledged save and leaves none half-written.
#[tokio::test]
async fn abort_mid_run_of_a_single_saver_writing_on_its_own_thread() {
    abort_mid_run(Synchronous::Full, 1).await;
}

/// The child is killed from outside (SIGKILL: no handler, no unwinding, no close) after it has
/// acknowledged some saves.
#[tokio::test]
async fn kill_mid_run_loses_no_acknowledged_save_and_leaves_none_half_written() {
    let guard = TempGuard::new();
    let mut said = Said::default();
    for (run, kill_after) in [("k1", 25), ("k2", 40)] {
        let mut process = child(run, &guard, Synchronous::Full).spawn().unwrap();
        let stdout = process.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = 0;
        while acked < kill_after {
            assert!(Instant::now() < deadline, "the child is too slow");
            let line = lines.next().expect("the child stopped early").unwrap();
            if line.starts_with("ACK") {
                acked += 1;
            }
            said.line(&line);
        }
        process.kill().unwrap();
        // Whatever the child printed before it died counts too.
        for line in lines {
            said.line(&line.unwrap());
        }
        assert!(!process.wait().unwrap().success());
        check(&guard, &said).await;
    }
}
