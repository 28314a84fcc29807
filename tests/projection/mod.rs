//! The projection conformance suite: written once, run against every store that has projections.
//!
//! A store's test file says `mod projection;`, implements [`Harness`] (how to spawn the tally
//! projection on that store and read what it wrote) and invokes
//! `projection::projection_tests!(module: fixture)` where `async fn fixture() -> H` makes a
//! harness on a fresh, empty store (its guard inside, cleaning up when dropped). The tests land
//! in `module::projection`, so `cargo test projection` selects them.
//!
//! - `exactly_once.rs`: aborts, concurrent writers, two runners, live wake-ups.
//! - `failures.rs`: the Stop and Park policies, a failing setup.
//! - `lag.rs`: independent positions and the lag they report.
//! - `process.rs`: process applications (`spawn_process`) parking and running twice at once.
//! - `random_aborts.rs`: a projection, and two instances of a process application, aborted at
//!   random moments many times while writers save (randomness from `seed.rs`).
//! - `kill.rs`: child processes running a projection or a process application, killed with
//!   SIGKILL at random moments (`kill_tests!`, for stores another process can open).

#![allow(
    dead_code,
    unreachable_pub,
    async_fn_in_trait,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../common/wait.rs"]
pub mod wait;

#[path = "../common/stores.rs"]
pub mod stores;

pub mod bad_rows;
pub mod exactly_once;
pub mod failures;
pub mod kill;
pub mod lag;
pub mod process;
pub mod random_aborts;
pub mod seed;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing::{
    chrono::{DateTime, TimeDelta, Utc},
    postgres::PostgresStore,
    sqlite::SqliteStore,
    BoxError, EventStore, NewEvent, ParkedEvent, Position, ProjectionOptions, RunnerHandle,
    StoredEvent, Uuid,
};

use stores::Projections;
pub(crate) use wait::{wait_until, WAIT};

/// One store under test: the tally projection on it, and its read model and positions.
pub trait Harness: Send + Sync + 'static {
    /// The store.
    type Store: Projections + Expected;

    /// The store the harness was made with.
    fn store(&self) -> &Self::Store;

    /// Another instance of the store on the same database, as a second process would open it
    /// (a private in-memory database has only the one: a clone of it).
    async fn another_store(&self) -> Self::Store;

    /// Starts `tally` on `store` (the harness's own or [`another_store`](Self::another_store)).
    fn spawn_on(
        &self,
        store: &Self::Store,
        tally: Tally,
        options: ProjectionOptions,
    ) -> RunnerHandle;

    /// The tally `name`'s recorded tracking position and its read model, from one consistent
    /// snapshot of the database (an empty model before its tables exist).
    async fn tracked_model(&self, name: &str) -> (Option<Position>, Model);

    /// Overwrites the stored metadata of event `version` of `stream_id` with `{"correlation_id":
    /// 5}`: JSON the store accepts, but not metadata any writer of this library writes (as a
    /// hand edit or another program would leave it).
    async fn corrupt_metadata(&self, stream_id: Uuid, version: u64);

    /// Starts `tally` on the harness's store.
    fn spawn(&self, tally: Tally, options: ProjectionOptions) -> RunnerHandle {
        self.spawn_on(self.store(), tally, options)
    }

    /// The tally `name`'s read model.
    async fn model(&self, name: &str) -> Model {
        self.tracked_model(name).await.1
    }

    /// The store's `projection_lag(name)`.
    async fn lag(&self, name: &str) -> u64 {
        self.store().projection_lag(name).await.unwrap()
    }

    /// The store's own `parked(name)` (its inherent method, not `EventStore::parked`).
    async fn parked(&self, name: &str) -> Vec<ParkedEvent> {
        self.store().own_parked(name).await.unwrap()
    }

    /// The store's `unpark(name, position)`.
    async fn unpark(&self, name: &str, position: Position) -> bool {
        self.store().unpark(name, position).await.unwrap()
    }
}

/// What the suite expects of each store where the stores differ.
pub trait Expected {
    /// How far the `parked_at` the store records may be behind our clock: its precision, and
    /// for a server its clock's distance from ours.
    const CLOCK_SLACK: TimeDelta;

    /// What the store's error says about the broken setup's `CREATE TABLE nonsense (`.
    const SYNTAX_ERROR: &'static str;
}

/// `parked_at` is kept in microseconds.
impl Expected for SqliteStore {
    const CLOCK_SLACK: TimeDelta = TimeDelta::milliseconds(1);
    const SYNTAX_ERROR: &'static str = "incomplete input";
}

/// The server's clock and ours may differ a little.
impl Expected for PostgresStore {
    const CLOCK_SLACK: TimeDelta = TimeDelta::seconds(5);
    const SYNTAX_ERROR: &'static str = "syntax error";
}

/// A read model of the log, as each store's harness implements it in its own tables: one row per
/// event handled, keyed by (projection, position) so that a second application of an event
/// breaks the key and fails the handler, and a count per stream.
#[derive(Debug, Clone)]
pub struct Tally {
    pub name: String,
    pub types: Option<Vec<String>>,
    /// Events of this type fail, after writing their row (which must be rolled back).
    pub fail_on: Option<&'static str>,
    /// Events of this type panic, after writing their row.
    pub panic_on: Option<&'static str>,
    /// The setup runs `CREATE TABLE nonsense (` instead of creating the tables.
    pub broken_setup: bool,
    /// Waits this long per event inside the batch's transaction, to make catch-up slow.
    pub delay: Duration,
    /// Events handled (and not failed), across every attempt.
    pub handled: Arc<AtomicU64>,
}

impl Tally {
    pub fn new(name: &str) -> Self {
        Tally {
            name: name.to_owned(),
            types: None,
            fail_on: None,
            panic_on: None,
            broken_setup: false,
            delay: Duration::ZERO,
            handled: Arc::default(),
        }
    }

    /// Called by a harness after writing the event's row: fails or panics as asked.
    pub fn check(&self, event: &StoredEvent) -> Result<(), BoxError> {
        let kind = Some(event.event_type.as_str());
        if self.fail_on == kind {
            return Err(
                format!("cannot tally {:?}", String::from_utf8_lossy(&event.payload)).into(),
            );
        }
        if self.panic_on == kind {
            panic!("tally exploded");
        }
        Ok(())
    }

    /// Called by a harness once the event is fully handled.
    pub fn count(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a tally holds: (position, stream, version) per event in log order, and the count per
/// stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub events: Vec<(Position, Uuid, u64)>,
    pub streams: BTreeMap<Uuid, u64>,
}

/// What the log implies for a tally of the events `keep` accepts.
pub async fn expected<S: EventStore>(store: &S, keep: impl Fn(&StoredEvent) -> bool) -> Model {
    expected_in(&log(store).await, keep)
}

/// What `log` implies for a tally of the events `keep` accepts.
pub fn expected_in(log: &[StoredEvent], keep: impl Fn(&StoredEvent) -> bool) -> Model {
    let mut model = Model::default();
    for e in log.iter().filter(|e| keep(e)) {
        model.events.push((e.position, e.stream_id, e.version));
        *model.streams.entry(e.stream_id).or_insert(0) += 1;
    }
    model
}

/// After an abort or a kill (`what`): the tally's recorded position has not gone back from
/// `previous`, and its read model (read with the position, in one snapshot) is exactly the log
/// up to that position: `known`, or the store's log read after the model. Returns the recorded
/// position and the model.
pub async fn assert_prefix<H: Harness>(
    h: &H,
    known: Option<&[StoredEvent]>,
    previous: Option<Position>,
    what: &str,
) -> (Option<Position>, Model) {
    let (recorded, model) = h.tracked_model("tally").await;
    assert!(
        recorded >= previous,
        "{what}: the recorded position went back from {previous:?} to {recorded:?}"
    );
    let upto = recorded.unwrap_or(Position::START);
    let read;
    let log = match known {
        Some(log) => log,
        None => {
            read = log(h.store()).await;
            &read
        }
    };
    assert_eq!(
        model,
        expected_in(log, |e| e.position <= upto),
        "{what} at {recorded:?}"
    );
    (recorded, model)
}

pub async fn log<S: EventStore>(store: &S) -> Vec<StoredEvent> {
    store.read_log(Position::START, usize::MAX).await.unwrap()
}

/// The log once it holds what `complete` looks for. A store may hold back the newest events
/// for a while (PostgreSQL, behind a transaction still running anywhere on the server, for up
/// to `LOG_CATCH_UP`): a test that knows what it wrote waits for all of it.
pub async fn log_when<S: EventStore>(
    store: &S,
    what: &str,
    complete: impl Fn(&[StoredEvent]) -> bool,
) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let read = log(store).await;
        if complete(&read) {
            return read;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting until the log holds {what} ({} events read)",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many events of `event_type` `log` holds.
pub fn count(log: &[StoredEvent], event_type: &str) -> usize {
    log.iter().filter(|e| e.event_type == event_type).count()
}

/// How many `Happened`, `Copied` and `CopiesOpened` events `log` holds: what the copying
/// process application and its upstream wrote.
pub fn copy_counts(log: &[StoredEvent]) -> [usize; 3] {
    ["Happened", "Copied", "CopiesOpened"].map(|t| count(log, t))
}

pub async fn last_position<S: EventStore>(store: &S) -> Position {
    log(store)
        .await
        .last()
        .map_or(Position::START, |e| e.position)
}

/// Waits until the runner has got to `end`; fails if it ends first or after [`WAIT`].
pub async fn wait_for(handle: &RunnerHandle, end: Position) {
    wait_until(&format!("the runner gets to {end:?}"), || {
        assert!(
            !handle.is_finished() || handle.position() >= end,
            "the runner ended at {:?}, before getting to {end:?}",
            handle.position()
        );
        std::future::ready(handle.position() >= end)
    })
    .await;
}

pub fn typed(stream_id: Uuid, version: u64, event_type: &'static str) -> NewEvent {
    let payload = format!(r#"{{"n":{version}}}"#).into_bytes();
    NewEvent::new(stream_id, version, event_type, payload)
}

pub fn event(stream_id: Uuid, version: u64) -> NewEvent {
    typed(stream_id, version, "Happened")
}

/// Versions `from..=to` of a stream.
pub fn events(stream_id: Uuid, from: u64, to: u64) -> Vec<NewEvent> {
    (from..=to).map(|v| event(stream_id, v)).collect()
}

/// `saves` saves of `streams` new streams of `per_stream` events each.
pub async fn fill<S: EventStore>(store: &S, saves: usize, streams: usize, per_stream: u64) {
    for _ in 0..saves {
        let save = (0..streams)
            .flat_map(|_| events(Uuid::new_v4(), 1, per_stream))
            .collect();
        store.append(save).await.unwrap();
    }
}

/// A new stream `s`: Happened, Happened, Poison, Happened, Panic, Happened; and the whole log.
pub async fn poisoned<S: EventStore>(store: &S) -> (Uuid, Vec<StoredEvent>) {
    let s = Uuid::new_v4();
    let kinds = [
        "Happened", "Happened", "Poison", "Happened", "Panic", "Happened",
    ];
    let save = (1..)
        .zip(kinds)
        .map(|(v, kind)| typed(s, v, kind))
        .collect();
    store.append(save).await.unwrap();
    (s, log(store).await)
}

/// What a consumer parked of the two failing events [`poisoned`] wrote.
pub struct ParkedFailures<'a> {
    /// The consumer's name.
    pub name: &'a str,
    /// The stream and the log [`poisoned`] returned.
    pub poisoned: (Uuid, &'a [StoredEvent]),
    /// A time before the consumer started.
    pub before: DateTime<Utc>,
    /// What the error of the `Poison` event says.
    pub poison_error: &'a str,
    /// What the handler of the `Panic` event panicked with.
    pub panic_message: &'a str,
}

impl ParkedFailures<'_> {
    /// `parked` holds the `Poison` event (version 3) and then the `Panic` event (version 5),
    /// each at its position in the log, with the errors expected. Returns the two.
    pub fn check<H: Harness>(&self, parked: &[ParkedEvent]) -> (ParkedEvent, ParkedEvent) {
        let (s, log) = self.poisoned;
        assert_eq!(parked.len(), 2, "{parked:?}");
        let (poison, panic) = (&parked[0], &parked[1]);
        assert_eq!(
            (poison.name.as_str(), poison.stream_id, poison.version),
            (self.name, s, 3)
        );
        assert_eq!(poison.position, log[2].position);
        assert_eq!(poison.event_type, "Poison");
        assert!(poison.error.contains(self.poison_error), "{}", poison.error);
        assert!(poison.parked_at >= self.before - H::Store::CLOCK_SLACK);
        assert_eq!(
            (panic.stream_id, panic.version, panic.event_type.as_str()),
            (s, 5, "Panic")
        );
        assert_eq!(panic.position, log[4].position);
        assert!(
            panic.error.contains("panicked") && panic.error.contains(self.panic_message),
            "{}",
            panic.error
        );
        (poison.clone(), panic.clone())
    }
}

pub fn options(page_size: usize) -> ProjectionOptions {
    ProjectionOptions {
        page_size,
        poll_interval: Duration::from_millis(20),
        ..ProjectionOptions::default()
    }
}

/// Runs every test of the suite on the harness `$fixture` makes, in a module
/// `$module::projection`.
macro_rules! projection_tests {
    ($module:ident: $fixture:ident) => {
        $crate::projection::projection_tests!(@tests $module: $fixture;
            exactly_once::abort_in_the_middle_of_catch_up_then_restart_applies_each_event_once,
            exactly_once::eight_writers_with_a_live_projection_end_consistent,
            exactly_once::a_live_event_arrives_without_waiting_for_the_poll,
            exactly_once::two_runners_of_one_projection_apply_each_event_once,
            failures::a_failing_handler_stops_and_a_restart_resumes_from_that_event,
            failures::a_failing_handler_parks_the_event_and_goes_on,
            failures::a_failing_setup_ends_the_runner_naming_the_projection,
            lag::projections_progress_independently_and_report_lag,
            process::a_failing_process_parks_the_event_downstream_and_goes_on,
            process::two_instances_of_a_process_handle_each_event_once,
            bad_rows::an_unreadable_row_is_reported_alone_and_parked_or_stopped_on,
            random_aborts::random_aborts_while_writers_save_apply_each_event_once,
            random_aborts::random_aborts_of_two_process_instances_copy_each_event_once,
        );
    };
    (@tests $module:ident: $fixture:ident; $($file:ident :: $name:ident),* $(,)?) => {
        mod $module {
            mod projection {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        $crate::projection::$file::$name(super::super::$fixture().await).await;
                    }
                )*
            }
        }
    };
}
pub(crate) use projection_tests;
