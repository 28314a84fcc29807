//! Child processes killed with SIGKILL at random moments: no unwinding, no rollback sent, no
//! connection closed; the database alone must keep each batch whole or absent.
//!
//! The test binary re-runs itself as a child (`kill_worker`, selected by [`ROLE`]), which opens
//! the parent's database (where [`Reopen::location`] says), runs the tally projection or the
//! copier process application with a slow handler over a prepared log, and prints how many
//! events it has handled. The parent kills it once it has handled a random number of events
//! plus a random pause (so mostly in the middle of a batch), checks the read model against the
//! log, repeats, and finally runs the runner to the end in-process: each event applied once.
//!
//! A store's test file invokes `projection::kill_tests!(fixture, Harness)` at its top level.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{atomic::Ordering, mpsc, Arc},
    time::{Duration, Instant},
};

use eventsourcing::prelude::*;
use eventsourcing::{spawn_process, Position};

use super::{
    assert_prefix, copy_counts, expected_in, fill, log_when, options,
    process::{copied, copies_id, Copier, Copies},
    seed::{Rng, Seeded},
    wait_for, Harness, Tally, WAIT,
};

/// Set in a child: what it runs (`projection` or `process`).
pub const ROLE: &str = "EVENTSOURCING_KILL_WORKER";
const PAGE: &str = "EVENTSOURCING_KILL_PAGE";
const DELAY_US: &str = "EVENTSOURCING_KILL_DELAY_US";

/// The child's test, at the top level of the test binary.
pub const WORKER_TEST: &str = "kill_worker";

/// How long a kill round may take before the test fails instead of hanging.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// A harness whose database another process can open.
pub trait Reopen: Harness + Sized {
    /// The environment variables that tell a child process where the database is.
    fn location(&self) -> Vec<(&'static str, String)>;

    /// In the child: a harness on the database the parent's `location` names. Dropping it
    /// leaves the database to the parent.
    async fn reopen() -> Self;
}

/// The child's side: a no-op (and a passing test) unless the parent set [`ROLE`]. Runs until
/// it is killed (or for a minute at most); prints `HANDLED <n>` whenever its count changes,
/// `ENDED …` if the runner ends.
pub async fn worker<H: Reopen>() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let page: usize = std::env::var(PAGE).unwrap().parse().unwrap();
    let delay = Duration::from_micros(std::env::var(DELAY_US).unwrap().parse().unwrap());
    let h = H::reopen().await;
    let (runner, handled) = match role.as_str() {
        "projection" => {
            let tally = Tally {
                delay,
                ..Tally::new("tally")
            };
            let handled = Arc::clone(&tally.handled);
            (h.spawn(tally, options(page)), handled)
        }
        "process" => {
            let copier = Copier {
                delay,
                ..Copier::sound()
            };
            let handled = Arc::clone(&copier.handled);
            let store = h.store().clone();
            let app = Application::new(store.clone());
            (spawn_process(copier, store, app, options(page)), handled)
        }
        other => panic!("{ROLE}={other:?}: expected `projection` or `process`"),
    };
    // A child whose parent died unexpectedly goes too, in time.
    let deadline = Instant::now() + ROUND_LIMIT;
    let mut reported = None;
    while Instant::now() < deadline {
        if runner.is_finished() {
            println!("ENDED {:?}", runner.join().await);
            return;
        }
        let now = handled.load(Ordering::Relaxed);
        if reported != Some(now) {
            println!("HANDLED {now}");
            reported = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A child running `role` on the harness's database, its stdout piped.
fn spawn_child<H: Reopen>(h: &H, role: &str, page: u64, delay_us: u64) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", WORKER_TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PAGE, page.to_string())
        .env(DELAY_US, delay_us.to_string())
        .envs(h.location())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command.spawn().unwrap()
}

/// What a child said, line by line; `None` when its stdout closed.
type Said = (usize, Option<String>);

/// One child under watch: when it is to be killed, and what it said last.
struct Watched {
    process: Child,
    /// Killed once it has reported this many events handled ...
    target: u64,
    /// ... and this much longer.
    pause: Duration,
    kill_at: Option<Instant>,
    reported: u64,
    killed: bool,
}

/// A child left alive by a failing round is killed, not left running.
impl Drop for Watched {
    fn drop(&mut self) {
        if !self.killed {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Kills each child at its own random moment: once it has reported handling a random number
/// of events (up to three pages), after a random pause of up to 20 ms; or after 5 s if it never
/// gets there (caught up). Returns the count each child last reported before its kill.
fn kill_at_random(children: Vec<Child>, rng: &mut Rng, page: u64, replay: &str) -> Vec<u64> {
    let (tx, rx) = mpsc::channel::<Said>();
    let mut watched: Vec<Watched> = children
        .into_iter()
        .enumerate()
        .map(|(i, mut process)| {
            let stdout = process.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, None));
            });
            Watched {
                process,
                target: rng.range(1..=3 * page),
                pause: rng.millis(0..=20),
                kill_at: None,
                reported: 0,
                killed: false,
            }
        })
        .collect();
    let started = Instant::now();
    while watched.iter().any(|w| !w.killed) {
        assert!(
            started.elapsed() < ROUND_LIMIT,
            "the children were not killed within {ROUND_LIMIT:?}; {replay}"
        );
        if let Ok((i, said)) = rx.recv_timeout(Duration::from_millis(1)) {
            let w = &mut watched[i];
            match said {
                Some(line) => w.reported = heard(&line, w.reported, replay),
                None => assert!(w.killed, "child {i} ended before its kill; {replay}"),
            }
        }
        for w in watched.iter_mut().filter(|w| !w.killed) {
            if w.kill_at.is_none() && w.reported >= w.target {
                w.kill_at = Some(Instant::now() + w.pause);
            }
            let due = w.kill_at.is_some_and(|at| Instant::now() >= at);
            if due || started.elapsed() > Duration::from_secs(5) {
                w.process.kill().unwrap();
                w.killed = true;
            }
        }
    }
    watched
        .into_iter()
        .map(|mut w| {
            let status = w.process.wait().unwrap();
            assert!(
                !status.success(),
                "the child was meant to be killed; {replay}"
            );
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(9), "SIGKILL: {status:?}; {replay}");
            }
            w.reported
        })
        .collect()
}

/// The count a child's line reports (`reported` if it reports none); fails on `ENDED`.
fn heard(line: &str, reported: u64, replay: &str) -> u64 {
    // The test harness prints `test kill_worker ... ` without a newline before the first line.
    let mut words = line
        .split_whitespace()
        .skip_while(|w| *w != "HANDLED" && *w != "ENDED");
    match words.next() {
        Some("HANDLED") => words.next().unwrap().parse().unwrap(),
        Some(_) => panic!("a child's runner ended by itself: {line}; {replay}"),
        None => reported,
    }
}

/// Kills a child running the tally at random moments, four times, then runs it to the end
/// in-process. After each kill the read model is the log up to the recorded position.
pub async fn a_projection_killed_at_random_moments_applies_each_event_once<H: Reopen>(h: H) {
    let mut seeded = Seeded::new();
    let replay = seeded.replay();
    let rng = &mut seeded.rng;
    fill(h.store(), 20, 10, 10).await;
    let log = log_when(h.store(), "the 2,000 events", |l| l.len() >= 2000).await;
    let end = log.last().unwrap().position;

    let (mut previous, mut rolled_back) = (None, 0);
    for kill in 1..=4 {
        let before = h.model("tally").await.events.len();
        let (page, delay_us) = (rng.range(5..=40), rng.range(500..=1500));
        let child = spawn_child(&h, "projection", page, delay_us);
        let reported =
            tokio::task::block_in_place(|| kill_at_random(vec![child], rng, page, &replay))[0];

        let what = format!("kill {kill} (page {page}, {delay_us} us per event); {replay}");
        let (recorded, model) = assert_prefix(&h, Some(&log), previous, &what).await;
        previous = recorded;
        let committed = (model.events.len() - before) as u64;
        rolled_back += u64::from(reported > committed);
        println!(
            "kill {kill}: page {page}, {reported} events handled by the child, {committed} \
             committed"
        );
    }
    println!("{rolled_back} of 4 kills rolled back a batch in progress");

    let runner = h.spawn(Tally::new("tally"), options(50));
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    let (recorded, model) = h.tracked_model("tally").await;
    assert_eq!(recorded, Some(end), "{replay}");
    assert_eq!(model.events.len(), 2000, "{replay}");
    assert_eq!(model, expected_in(&log, |_| true), "{replay}");
    assert_eq!(h.lag("tally").await, 0, "{replay}");
}

/// Two children run the copier at once; each is killed at its own random moment, four rounds;
/// then one instance runs to the end in-process. After each round the copies are exactly the
/// upstream events up to the recorded position.
pub async fn two_process_instances_killed_at_random_moments_copy_each_event_once<H: Reopen>(h: H) {
    let mut seeded = Seeded::new();
    let replay = seeded.replay();
    let rng = &mut seeded.rng;
    let sources: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();
    for chunk in sources.chunks(6) {
        let save = chunk
            .iter()
            .flat_map(|s| super::events(*s, 1, 10))
            .collect();
        h.store().append(save).await.unwrap();
    }
    let upstream = log_when(h.store(), "the 600 events", |l| l.len() >= 600).await;
    let app = Application::new(h.store().clone());

    for kill in 1..=4 {
        let page = rng.range(2..=15);
        let children = (0..2)
            .map(|_| spawn_child(&h, "process", page, rng.range(500..=1500)))
            .collect();
        let reported = tokio::task::block_in_place(|| kill_at_random(children, rng, page, &replay));
        let (recorded, copies) = settled_copies(&app, &sources).await;
        let upto = recorded.unwrap_or(Position::START);
        for (s, copies) in sources.iter().zip(copies) {
            let wanted: Vec<u64> = upstream
                .iter()
                .filter(|e| e.stream_id == *s && e.position <= upto)
                .map(|e| e.version)
                .collect();
            assert_eq!(
                copies, wanted,
                "kill {kill} (page {page}): the copies of {s} at {recorded:?}; {replay}"
            );
        }
        println!("kill {kill}: page {page}, {reported:?} events handled by the children");
    }

    let runner = spawn_process(Copier::sound(), h.store().clone(), app.clone(), options(10));
    wait_for(&runner, upstream.last().unwrap().position).await;
    runner.stop().await.unwrap();
    for s in &sources {
        assert_eq!(
            copied(&app, *s).await,
            (1..=10).collect::<Vec<_>>(),
            "{replay}"
        );
    }
    let log = log_when(h.store(), "every copy", |l| l.len() >= 1260).await;
    assert_eq!(
        copy_counts(&log),
        [600, 600, 60],
        "Happened, Copied, CopiesOpened; {replay}"
    );
}

/// The copier's recorded position and the copies of each source, read when no commit lands
/// between the two: a killed child's last commit may still be finishing on a database server
/// (the position is read before and after the copies, until both reads agree).
async fn settled_copies<S: EventStore>(
    app: &Application<S>,
    sources: &[Uuid],
) -> (Option<Position>, Vec<Vec<u64>>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let before = app.store().tracking_position("copier").await.unwrap();
        let mut read = Vec::new();
        for s in sources {
            read.push(copies(app, *s).await);
        }
        let after = app.store().tracking_position("copier").await.unwrap();
        if before == after {
            return (after, read);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copier's position still moves {WAIT:?} after its last instance was killed"
        );
    }
}

/// The versions of `source` copied so far (none before its copies exist).
async fn copies<S: EventStore>(app: &Application<S>, source: Uuid) -> Vec<u64> {
    match app.repository().get::<Copies>(copies_id(source)).await {
        Ok(copies) => copies.versions,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("loading the copies of {source}: {e}"),
    }
}

/// The kill tests, and the child's test (`kill_worker`), for a harness another process can
/// open; at the top level of a store's test file.
macro_rules! kill_tests {
    ($fixture:ident, $harness:ty) => {
        /// In a child process the kill tests started: runs a projection or a process
        /// application until killed. Returns at once otherwise.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn kill_worker() {
            $crate::projection::kill::worker::<$harness>().await;
        }

        $crate::projection::kill::kill_tests!(@tests $fixture;
            a_projection_killed_at_random_moments_applies_each_event_once,
            two_process_instances_killed_at_random_moments_copy_each_event_once,
        );
    };
    (@tests $fixture:ident; $($name:ident),* $(,)?) => {
        mod projection_kills {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::projection::kill::$name(super::$fixture().await).await;
                }
            )*
        }
    };
}
pub(crate) use kill_tests;
