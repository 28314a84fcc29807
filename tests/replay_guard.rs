//! An event's body must not record other events (issue 10, item 1): replay rebuilds the same
//! state as live recording, whatever path a nested event call takes.
//!
//! Direct calls are compile errors (`tests/ui/fail/event_calls_event*.rs`); these tests cover
//! what the macro cannot see, a call through a helper: live it panics naming both methods,
//! and replay of events stored by older code never panics and rebuilds their live state.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use eventsourcing::prelude::*;
use eventsourcing::{DomainEvent, JsonCodec, NewEvent, StoredEvent};
use proptest::prelude::*;

#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    meta: Meta<Self>,
    n: i64,
    log: Vec<i64>,
}

/// Hides the event call from `#[events]`, as a helper in another module would.
fn bump_via(counter: &mut Counter) {
    counter.bump();
}

/// Builds another aggregate, which records its creation event.
fn fresh() -> Counter {
    Counter::start()
}

#[events]
impl Counter {
    #[event]
    fn start() -> Self {
        Self {
            meta: Meta::default(),
            n: 0,
            log: Vec::new(),
        }
    }

    #[event]
    fn start_bumped() -> Self {
        let mut counter = Self {
            meta: Meta::default(),
            n: 0,
            log: Vec::new(),
        };
        bump_via(&mut counter);
        counter
    }

    #[event]
    fn bump(&mut self) {
        self.n += 1;
    }

    #[event]
    fn added(&mut self, amount: i64) {
        self.n = self.n.wrapping_add(amount);
        self.log.push(amount);
    }

    #[event]
    fn bump_twice_via_helper(&mut self) {
        bump_via(self);
        bump_via(self);
    }

    #[event]
    fn adopt(&mut self) {
        let other = fresh();
        self.n += other.n;
    }

    /// A command: calling event methods from here records each of them, and that is fine.
    fn bump_twice(&mut self) {
        self.bump();
        self.bump();
    }

    /// A command recording two events with arguments.
    fn add_then_undo(&mut self, amount: i64) {
        self.added(amount);
        self.added(amount.wrapping_neg());
    }
}

fn panic_message(result: std::thread::Result<()>) -> String {
    let payload = result.expect_err("the nested event call must panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn a_nested_event_call_through_a_helper_panics_naming_both_methods() {
    let mut counter = Counter::start();
    let message = panic_message(catch_unwind(AssertUnwindSafe(|| {
        counter.bump_twice_via_helper();
    })));
    assert!(
        message.contains(
            "event method `Counter::bump_twice_via_helper` called event method `Counter::bump`"
        ),
        "{message}"
    );
    assert!(
        message.contains("call both from a command method instead"),
        "{message}"
    );
    // The nested call panicked before it changed or recorded anything.
    assert_eq!(counter.n, 0);
    assert_eq!(counter.pending_events().len(), 1);
}

#[test]
fn a_creation_event_calling_an_event_method_on_the_new_value_panics() {
    let message = panic_message(catch_unwind(|| {
        let _ = Counter::start_bumped();
    }));
    assert!(
        message
            .contains("event method `Counter::start_bumped` called event method `Counter::bump`"),
        "{message}"
    );
}

#[test]
fn an_event_body_building_another_aggregate_panics() {
    let mut counter = Counter::start();
    let message = panic_message(catch_unwind(AssertUnwindSafe(|| counter.adopt())));
    assert!(
        message.contains("event method `Counter::adopt` called event method `Counter::start`"),
        "{message}"
    );
}

#[test]
fn after_a_caught_panic_the_thread_records_again() {
    let mut counter = Counter::start();
    let _ = catch_unwind(AssertUnwindSafe(|| counter.bump_twice_via_helper()));
    let mut other = Counter::start();
    other.bump();
    other.bump_twice();
    assert_eq!(other.n, 3);
    assert_eq!(other.pending_events().len(), 4);
}

fn stored(id: eventsourcing::Uuid, events: Vec<CounterEvent>) -> Vec<StoredEvent> {
    let codec = JsonCodec;
    events
        .into_iter()
        .zip(1..)
        .map(|(event, version)| StoredEvent {
            stream_id: id,
            version,
            position: eventsourcing::Position::default(),
            event_type: event.name().to_owned(),
            schema_version: 1,
            timestamp: eventsourcing::now(),
            payload: event.encode(&codec).unwrap(),
            metadata: Metadata::default(),
            stream_type: String::new(),
            defect: None,
        })
        .collect()
}

/// Code from before the guard recorded the nested events (applied first, so stored first) and
/// then the outer one; live it reached `n = 2`. Replay used to apply the nested calls again
/// (`n = 4`) and leave them pending; now it rebuilds the live state, without panicking.
#[test]
fn replaying_a_history_with_nested_events_rebuilds_the_live_state() {
    let id = eventsourcing::new_id();
    let history = stored(
        id,
        vec![
            CounterEvent::Start {},
            CounterEvent::Bump {},
            CounterEvent::Bump {},
            CounterEvent::BumpTwiceViaHelper {},
        ],
    );
    assert_replays_to(id, history, 2, 4);
}

/// Replaying `history` gives `n` at `version`, with nothing pending: by `replay`, and loaded
/// from every store (each feeds its rows to the replay its own way).
fn assert_replays_to(id: Uuid, history: Vec<StoredEvent>, n: i64, version: u64) {
    let counter: Counter = eventsourcing::replay(&JsonCodec, id, None, history.clone())
        .unwrap()
        .unwrap();
    assert_eq!((counter.n, counter.version()), (n, version));
    assert!(counter.pending_events().is_empty());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let file = eventsourcing::sqlite::SqliteConfig::builder()
            .dbname(dir.path().join("replay.db").display().to_string())
            .build();
        let (postgres, _schema) = eventsourcing::postgres::testing::fresh().await;
        assert_loads_to(MemoryStore::new(), id, &history, n, version).await;
        let memory = eventsourcing::sqlite::SqliteStore::open_memory().unwrap();
        assert_loads_to(memory, id, &history, n, version).await;
        let file = eventsourcing::sqlite::SqliteStore::open(file)
            .await
            .unwrap();
        assert_loads_to(file, id, &history, n, version).await;
        assert_loads_to(postgres, id, &history, n, version).await;
    });
}

/// `history` written to `store` as it is, then loaded: `n` at `version`, nothing pending.
async fn assert_loads_to<S: EventStore>(
    store: S,
    id: Uuid,
    history: &[StoredEvent],
    n: i64,
    version: u64,
) {
    let events = history
        .iter()
        .map(|e| {
            let event = NewEvent::new(id, e.version, e.event_type.clone(), e.payload.clone());
            match e.version {
                1 => event.of_type("Counter"),
                _ => event,
            }
        })
        .collect();
    store.append(events).await.unwrap();
    let app = Application::new(store);
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!((loaded.n, loaded.version()), (n, version));
    assert!(loaded.pending_events().is_empty());
}

/// A creation event's nested events were never stored (the creation dropped them), only their
/// effect: replay applies them and records nothing.
#[test]
fn replaying_a_creation_with_nested_events_rebuilds_the_live_state() {
    let id = eventsourcing::new_id();
    let history = stored(
        id,
        vec![CounterEvent::StartBumped {}, CounterEvent::Bump {}],
    );
    assert_replays_to(id, history, 2, 2);
}

#[derive(Debug, Clone)]
enum Command {
    Bump,
    BumpTwice,
    Add(i64),
    AddThenUndo(i64),
    Save,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Bump),
        Just(Command::BumpTwice),
        any::<i64>().prop_map(Command::Add),
        any::<i64>().prop_map(Command::AddThenUndo),
        Just(Command::Save),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Commands that call several event methods: the state saved live is the state reloaded.
    #[test]
    fn live_state_equals_reloaded_state(commands in proptest::collection::vec(command(), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let app = Application::new(MemoryStore::new());
            let mut counter = Counter::start();
            let mut recorded = 1;
            for c in &commands {
                match c {
                    Command::Bump => counter.bump(),
                    Command::BumpTwice => counter.bump_twice(),
                    Command::Add(a) => counter.added(*a),
                    Command::AddThenUndo(a) => counter.add_then_undo(*a),
                    Command::Save => app.save(&mut counter).await.unwrap(),
                }
                recorded += match c {
                    Command::Bump | Command::Add(_) => 1,
                    Command::BumpTwice | Command::AddThenUndo(_) => 2,
                    Command::Save => 0,
                };
            }
            app.save(&mut counter).await.unwrap();
            assert_eq!(counter.version(), recorded);
            let loaded: Counter = app.repository().get(counter.id()).await.unwrap();
            assert_eq!(loaded, counter);
            assert!(loaded.pending_events().is_empty());
        });
    }
}
