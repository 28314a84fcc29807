//! The load of the fault tests: eight writers saving to aggregates of their own through one
//! `PostgresStore`, a record of every attempt and every save, and the check of what the store
//! holds afterwards.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use eventsourcing_core::{Error, EventStore, NewEvent, Position, StoredEvent};
use eventsourcing_postgres::PostgresStore;
use tokio::{
    task::JoinHandle,
    time::{sleep, timeout, Instant},
};
use uuid::Uuid;

const WRITERS: usize = 8;
/// Aggregates per writer.
const STREAMS: usize = 3;
/// At most this many saves per writer (a save's retries count once).
const MAX_SAVES: u32 = 3000;
/// Between two saves of a writer: load, not a flood (the machine is shared).
const PACE: Duration = Duration::from_millis(2);
/// Before retrying a save that failed transiently.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// One `append` call must return (with a result or an error) within this.
const APPEND_PATIENCE: Duration = Duration::from_secs(20);
/// Everything — the writers' work and every wait of the driver — ends within this.
const TEST_BUDGET: Duration = Duration::from_secs(50);
/// After a fault the store must serve again within this.
const RECOVERY: Duration = Duration::from_secs(20);
/// Acknowledged saves every writer must make to count as "making progress".
const PROGRESS: u32 = 5;

/// What happened to one call of `append`.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    attempts: u64,
    acked: u64,
    transient: u64,
    other: u64,
    /// A retried save refused with a conflict because its earlier attempt had committed.
    ack_lost: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.acked += other.acked;
        self.transient += other.transient;
        self.other += other.other;
        self.ack_lost += other.ack_lost;
    }
}

/// How a save ended.
#[derive(Debug, Clone)]
enum Outcome {
    Acked,
    /// Its commit's acknowledgement was lost; the retry's conflict and a re-read showed it.
    AckLostPresent,
    Failed(String),
}

/// One save: its events (stream, version, payload) and how it ended.
#[derive(Debug)]
struct Save {
    writer: usize,
    events: Vec<(Uuid, u64, Vec<u8>)>,
    outcome: Outcome,
}

/// What the writers and the driver share.
struct Shared {
    stop: AtomicBool,
    deadline: Instant,
    acked: Vec<AtomicU32>,
    running: Vec<AtomicBool>,
    /// The failures that stopped writers, for the driver's messages.
    failures: Mutex<Vec<String>>,
}

/// The writers at work, and the times the store took to serve again after each fault.
pub(crate) struct Load {
    shared: Arc<Shared>,
    writers: Vec<JoinHandle<Writer>>,
    recoveries: Mutex<Vec<Recovery>>,
}

/// How long a fault lasted (killing sessions; stopping, waiting and starting the server),
/// and how long after it the store answered a read again, and every writer had [`PROGRESS`]
/// more saves acknowledged.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    lasted: Duration,
    answered: Duration,
    progressed: Duration,
}

impl Load {
    /// Starts the eight writers on `store` (clones of it: one pool).
    pub(crate) fn start(store: &PostgresStore) -> Load {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            deadline: Instant::now() + TEST_BUDGET,
            acked: (0..WRITERS).map(|_| AtomicU32::new(0)).collect(),
            running: (0..WRITERS).map(|_| AtomicBool::new(true)).collect(),
            failures: Mutex::new(Vec::new()),
        });
        let writers = (0..WRITERS)
            .map(|index| {
                let writer = Writer {
                    index,
                    store: store.clone(),
                    streams: (0..STREAMS).map(|_| Uuid::new_v4()).collect(),
                    versions: HashMap::new(),
                    tally: Tally::default(),
                    saves: Vec::new(),
                    shared: Arc::clone(&shared),
                };
                tokio::spawn(writer.run())
            })
            .collect();
        Load {
            shared,
            writers,
            recoveries: Mutex::new(Vec::new()),
        }
    }

    /// Waits until every writer has had [`PROGRESS`] more saves acknowledged; fails the test
    /// if that takes longer than [`RECOVERY`].
    pub(crate) async fn wait_for_acks(&self) {
        let base: Vec<u32> = self
            .shared
            .acked
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .collect();
        let until = (Instant::now() + RECOVERY).min(self.shared.deadline);
        loop {
            let behind: Vec<usize> = (0..WRITERS)
                .filter(|&w| self.shared.acked[w].load(Ordering::Acquire) < base[w] + PROGRESS)
                .collect();
            if behind.is_empty() {
                return;
            }
            let stopped: Vec<usize> = behind
                .iter()
                .copied()
                .filter(|&w| !self.shared.running[w].load(Ordering::Acquire))
                .collect();
            assert!(
                stopped.is_empty(),
                "writers {stopped:?} stopped before making progress: {:#?}",
                self.shared.failures.lock().unwrap()
            );
            assert!(
                Instant::now() < until,
                "writers {behind:?} had fewer than {PROGRESS} saves acknowledged within \
                 {RECOVERY:?}: the store does not serve again"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// After a fault that `began` then and is over now: waits until the same store answers
    /// again (a read), then until every writer has had saves acknowledged again. Both bounded
    /// by [`RECOVERY`]; the times go into the figures.
    pub(crate) async fn fault_over(&self, store: &PostgresStore, began: Instant) {
        let over = Instant::now();
        let until = over + RECOVERY;
        loop {
            let last = match timeout(RECOVERY, store.stream_version(Uuid::nil())).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {RECOVERY:?}"),
            };
            assert!(
                Instant::now() < until,
                "the store did not serve again within {RECOVERY:?} of the fault; last error: {last}"
            );
            sleep(Duration::from_millis(20)).await;
        }
        let answered = over.elapsed();
        self.wait_for_acks().await;
        self.recoveries.lock().unwrap().push(Recovery {
            lasted: over - began,
            answered,
            progressed: over.elapsed(),
        });
    }

    /// Stops the writers, reads everything back and counts.
    pub(crate) async fn finish(self, store: &PostgresStore) -> Figures {
        self.shared.stop.store(true, Ordering::Release);
        let mut tally = Tally::default();
        let mut saves = Vec::new();
        let mut streams = Vec::new();
        for handle in self.writers {
            let writer = timeout(APPEND_PATIENCE * 2, handle)
                .await
                .expect("a writer did not stop")
                .expect("a writer panicked");
            tally.add(writer.tally);
            saves.extend(writer.saves);
            streams.extend(writer.streams);
        }
        let mut figures = check(store, &streams, &saves).await;
        figures.tally = tally;
        figures.recoveries = self.recoveries.into_inner().unwrap();
        let pool = store.pool_state();
        figures.pool = (pool.connections, pool.idle_connections);
        figures.refilled = refilled(store).await;
        figures.failures = saves
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Failed(e) => Some(format!("writer {}: {e}", s.writer)),
                _ => None,
            })
            .collect();
        figures
    }
}

/// Waits, reading every 10 ms, until the pool holds its `pool_size` connections again; fails
/// the test after [`RECOVERY`].
async fn refilled(store: &PostgresStore) -> Duration {
    let began = Instant::now();
    let want = store.config().pool_size();
    while store.pool_state().connections < want {
        assert!(
            began.elapsed() < RECOVERY,
            "the pool did not get back to {want} connections within {RECOVERY:?}: {:?}",
            store.pool_state()
        );
        timeout(RECOVERY, store.stream_version(Uuid::nil()))
            .await
            .expect("a read hung")
            .expect("a read failed after the fault");
        sleep(Duration::from_millis(10)).await;
    }
    began.elapsed()
}

/// One writer: its aggregates, their versions as it knows them, and its record.
struct Writer {
    index: usize,
    store: PostgresStore,
    streams: Vec<Uuid>,
    versions: HashMap<Uuid, u64>,
    tally: Tally,
    saves: Vec<Save>,
    shared: Arc<Shared>,
}

impl Writer {
    async fn run(mut self) -> Writer {
        for n in 0..MAX_SAVES {
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            let events = self.next_save(n);
            let outcome = self.save(&events).await;
            let failed = matches!(outcome, Outcome::Failed(_));
            if let Outcome::Failed(e) = &outcome {
                let message = format!("writer {}: {e}", self.index);
                self.shared.failures.lock().unwrap().push(message);
            }
            self.saves.push(Save {
                writer: self.index,
                events: events
                    .iter()
                    .map(|e| (e.stream_id, e.version, e.payload.clone()))
                    .collect(),
                outcome,
            });
            if failed {
                // Not what these tests expect: stop this writer, the checks report it.
                break;
            }
            for event in &events {
                self.versions.insert(event.stream_id, event.version);
            }
            self.shared.acked[self.index].fetch_add(1, Ordering::AcqRel);
            sleep(PACE).await;
        }
        self.shared.running[self.index].store(false, Ordering::Release);
        self
    }

    /// Save `n`: one event, three events of one aggregate, or two events of one aggregate and
    /// one of another, in turn. Each payload is a marker no other event has.
    fn next_save(&self, n: u32) -> Vec<NewEvent> {
        let first = self.streams[(n as usize / 3) % STREAMS];
        let second = self.streams[(n as usize / 3 + 1) % STREAMS];
        let targets = match n % 3 {
            0 => vec![first],
            1 => vec![first, first, first],
            _ => vec![first, first, second],
        };
        let mut next = self.versions.clone();
        targets
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let version = next.entry(*id).or_insert(0);
                *version += 1;
                let marker = format!(
                    r#"{{"writer":{},"save":{n},"event":{i},"of":{}}}"#,
                    self.index,
                    targets.len()
                );
                NewEvent::new(*id, *version, "Saved", marker.into_bytes())
            })
            .collect()
    }

    /// Saves `events`, retrying transient failures as an application would, until it is
    /// acknowledged, known to be written, or fails otherwise.
    async fn save(&mut self, events: &[NewEvent]) -> Outcome {
        let mut retried = false;
        loop {
            if Instant::now() > self.shared.deadline {
                return Outcome::Failed(format!("still retrying after {TEST_BUDGET:?}"));
            }
            self.tally.attempts += 1;
            let result = match timeout(APPEND_PATIENCE, self.store.append(events.to_vec())).await {
                Ok(result) => result,
                Err(_) => {
                    self.tally.other += 1;
                    return Outcome::Failed(format!(
                        "append did not return within {APPEND_PATIENCE:?}"
                    ));
                }
            };
            match result {
                Ok(()) => {
                    self.tally.acked += 1;
                    return Outcome::Acked;
                }
                Err(e) if e.is_transient() => {
                    self.tally.transient += 1;
                    retried = true;
                    sleep(RETRY_PAUSE).await;
                }
                // Nobody else writes these aggregates: a retry's conflict means an earlier
                // attempt committed and its acknowledgement was lost. Check, as the crate docs
                // tell callers to.
                Err(conflict @ Error::Conflict { .. }) if retried => {
                    return match self.was_written(&events[0]).await {
                        Ok(true) => {
                            self.tally.ack_lost += 1;
                            Outcome::AckLostPresent
                        }
                        Ok(false) => {
                            self.tally.other += 1;
                            Outcome::Failed(format!("{conflict}, and the save is not stored"))
                        }
                        Err(e) => {
                            self.tally.other += 1;
                            Outcome::Failed(format!("{conflict}; re-reading failed: {e}"))
                        }
                    };
                }
                Err(e) => {
                    self.tally.other += 1;
                    return Outcome::Failed(e.to_string());
                }
            }
        }
    }

    /// Whether `first`, the first event of a save, is stored (its marker at its version).
    async fn was_written(&self, first: &NewEvent) -> Result<bool, Error> {
        let before = first.version - 1;
        loop {
            match self
                .store
                .load(first.stream_id, before, Some(first.version))
                .await
            {
                Ok(events) => {
                    return Ok(events.first().is_some_and(|e| e.payload == first.payload))
                }
                Err(e) if e.is_transient() && Instant::now() < self.shared.deadline => {
                    sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The figures of one test.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    tally: Tally,
    saves: usize,
    acked_saves: usize,
    present: usize,
    lost: usize,
    duplicated: usize,
    half_written: usize,
    /// Stored events that no save of the test wrote.
    unknown: usize,
    /// Streams whose versions are not 1, 2, 3, … without a gap.
    gapped_streams: usize,
    events: usize,
    log_events: usize,
    /// What is wrong with the log, if anything.
    log_problems: Vec<String>,
    recoveries: Vec<Recovery>,
    /// The pool's connections and idle connections at the end.
    pool: (u32, u32),
    /// How long the pool then took to hold `pool_size` connections again (one read every
    /// 10 ms meanwhile).
    refilled: Duration,
    failures: Vec<String>,
}

impl Figures {
    /// One block of figures on standard output.
    pub(crate) fn print(&self, fault: &str) {
        let t = &self.tally;
        println!(
            "FAULT {fault}\n  append calls {} = acknowledged {} + failed transient {} + failed other {} + ack lost (conflict on retry, save present) {}\n  \
             saves {} (acknowledged or ack lost: {}): present {}, duplicated {}, lost {}, half-written {}, unknown events {}\n  \
             events {} in streams, {} in the log; streams with gaps {}\n  \
             faults lasted {}; after each, the same store answered after {} and every writer had {PROGRESS} saves acknowledged after {}\n  \
             the pool at the end (same store): {} connections, {} idle; back to its pool size after {:.2} s more",
            t.attempts,
            t.acked,
            t.transient,
            t.other,
            t.ack_lost,
            self.saves,
            self.acked_saves,
            self.present,
            self.duplicated,
            self.lost,
            self.half_written,
            self.unknown,
            self.events,
            self.log_events,
            self.gapped_streams,
            seconds(self.recoveries.iter().map(|r| r.lasted)),
            seconds(self.recoveries.iter().map(|r| r.answered)),
            seconds(self.recoveries.iter().map(|r| r.progressed)),
            self.pool.0,
            self.pool.1,
            self.refilled.as_secs_f64(),
        );
    }

    /// Saves whose retry found them stored already.
    pub(crate) fn ack_lost(&self) -> u64 {
        self.tally.ack_lost
    }

    /// Nothing acknowledged lost or doubled, nothing half, the log complete, no failure other
    /// than transient ones (and lost acknowledgements, found out and checked).
    pub(crate) fn assert_sound(&self) {
        assert!(
            self.failures.is_empty() && self.tally.other == 0,
            "saves failed with errors that are not transient: {:#?}",
            self.failures
        );
        assert!(
            self.tally.transient > 0,
            "no save failed: the fault did not hit the store's connections"
        );
        assert_eq!(self.lost, 0, "acknowledged saves are missing");
        assert_eq!(self.duplicated, 0, "saves are stored twice");
        assert_eq!(self.half_written, 0, "multi-event saves are stored in part");
        assert_eq!(self.unknown, 0, "events are stored that no save wrote");
        assert_eq!(self.gapped_streams, 0, "stream versions have gaps");
        assert!(
            self.log_problems.is_empty(),
            "the log is not complete: {:#?}",
            self.log_problems
        );
        assert!(self.acked_saves > 0);
    }
}

/// `0.12 s, 0.30 s`.
fn seconds(times: impl Iterator<Item = Duration>) -> String {
    times
        .map(|t| format!("{:.2} s", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads every stream and the whole log back, and counts what is there against the record.
async fn check(store: &PostgresStore, streams: &[Uuid], saves: &[Save]) -> Figures {
    let mut figures = Figures {
        saves: saves.len(),
        ..Figures::default()
    };
    // marker -> how many times stored
    let mut stored: HashMap<&[u8], usize> = HashMap::new();
    let mut in_streams: HashSet<(Uuid, u64)> = HashSet::new();
    let mut loaded: Vec<StoredEvent> = Vec::new();
    for id in streams {
        let events = timeout(RECOVERY, store.load(*id, 0, None))
            .await
            .expect("loading a stream hung")
            .expect("loading a stream after the fault");
        if events
            .iter()
            .enumerate()
            .any(|(i, e)| e.version != i as u64 + 1)
        {
            figures.gapped_streams += 1;
        }
        figures.events += events.len();
        in_streams.extend(events.iter().map(|e| (e.stream_id, e.version)));
        loaded.extend(events);
    }
    for event in &loaded {
        *stored.entry(&event.payload).or_default() += 1;
    }
    let mut known: HashSet<&[u8]> = HashSet::new();
    for save in saves {
        let copies: Vec<usize> = save
            .events
            .iter()
            .map(|(_, _, marker)| stored.get(marker.as_slice()).copied().unwrap_or(0))
            .collect();
        known.extend(save.events.iter().map(|(_, _, m)| m.as_slice()));
        let all = copies.iter().all(|&c| c >= 1);
        let none = copies.iter().all(|&c| c == 0);
        if copies.iter().any(|&c| c > 1) {
            figures.duplicated += 1;
        }
        if all {
            figures.present += 1;
        } else if !none {
            figures.half_written += 1;
        }
        if matches!(save.outcome, Outcome::Acked | Outcome::AckLostPresent) {
            figures.acked_saves += 1;
            if !all {
                figures.lost += 1;
            }
        }
    }
    figures.unknown = loaded
        .iter()
        .filter(|e| !known.contains(e.payload.as_slice()))
        .count();
    check_log(store, &in_streams, &mut figures).await;
    figures
}

/// The log from the start: every event of the streams once, in increasing positions.
async fn check_log(store: &PostgresStore, in_streams: &HashSet<(Uuid, u64)>, f: &mut Figures) {
    let mut after = Position::START;
    let mut seen: HashSet<(Uuid, u64)> = HashSet::new();
    loop {
        let page = timeout(RECOVERY, store.read_log(after, 1000))
            .await
            .expect("reading the log hung")
            .expect("reading the log after the fault");
        let Some(last) = page.last() else { break };
        for event in &page {
            if event.position <= after {
                f.log_problems
                    .push(format!("position {:?} after {after:?}", event.position));
            }
            after = event.position;
            if !seen.insert((event.stream_id, event.version)) {
                f.log_problems.push(format!(
                    "{} version {} twice in the log",
                    event.stream_id, event.version
                ));
            }
        }
        after = last.position;
    }
    f.log_events = seen.len();
    let missing = in_streams.difference(&seen).count();
    if missing > 0 {
        f.log_problems
            .push(format!("{missing} stored events are missing from the log"));
    }
    let extra = seen.difference(in_streams).count();
    if extra > 0 {
        f.log_problems.push(format!(
            "{extra} events in the log belong to no stream of the test"
        ));
    }
}
