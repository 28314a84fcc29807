//! Replaying the recorded events of any sequence of commands rebuilds an equal aggregate.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use eventsourcing::prelude::*;
use eventsourcing::{JsonCodec, StoredEvent};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// `EVENTSOURCING_TEST_SEED`, shared with the conformance suite.
#[path = "conformance/seed.rs"]
#[allow(dead_code)] // `replay_hint`: here proptest words the failure, after the printed seed.
mod seed;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed::seed()),
        ..ProptestConfig::default()
    }
}

#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    meta: Meta<Self>,
    owner: String,
    balance: i64,
    frozen: bool,
    tags: BTreeMap<String, u32>,
    history: Vec<Option<f32>>,
}

#[events]
impl Account {
    #[event("Opened")]
    fn open(owner: String) -> Self {
        Self {
            meta: Meta::default(),
            owner,
            balance: 0,
            frozen: false,
            tags: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    #[event("Deposited")]
    fn deposited(&mut self, amount: i64) {
        self.balance = self.balance.wrapping_add(amount);
    }

    #[event("Frozen")]
    fn frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    #[event("Tagged")]
    fn tagged(&mut self, tag: String, weight: u32) {
        let total = self.tags.entry(tag).or_default();
        *total = total.wrapping_add(weight);
    }

    #[event("Noted")]
    fn noted(&mut self, value: Option<f32>) {
        self.history.push(value);
    }

    #[event("Renamed")]
    fn renamed(&mut self, owner: String) {
        self.owner = owner;
    }

    /// A command that records nothing when it is not allowed.
    fn deposit(&mut self, amount: i64) -> Result<(), String> {
        if self.frozen {
            return Err("frozen".into());
        }
        self.deposited(amount);
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Command {
    Deposit(i64),
    Freeze(bool),
    Tag(String, u32),
    Note(Option<f32>),
    Rename(String),
    Save,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<i64>().prop_map(Command::Deposit),
        any::<bool>().prop_map(Command::Freeze),
        ("\\PC{0,12}", any::<u32>()).prop_map(|(t, w)| Command::Tag(t, w)),
        proptest::option::of(-1.0e6f32..1.0e6).prop_map(Command::Note),
        "\\PC{0,20}".prop_map(Command::Rename),
        Just(Command::Save),
    ]
}

fn run(account: &mut Account, command: &Command) {
    match command {
        Command::Deposit(a) => {
            let _ = account.deposit(*a);
        }
        Command::Freeze(f) => account.frozen(*f),
        Command::Tag(t, w) => account.tagged(t.clone(), *w),
        Command::Note(v) => account.noted(*v),
        Command::Rename(o) => account.renamed(o.clone()),
        Command::Save => {}
    }
}

proptest! {
    #![proptest_config(config())]

    /// Pure replay: encode the pending events, decode and apply them.
    #[test]
    fn replay_of_recorded_events_equals_the_aggregate(
        owner in "\\PC{0,16}",
        commands in proptest::collection::vec(command(), 0..60),
    ) {
        let mut account = Account::open(owner);
        for c in &commands {
            run(&mut account, c);
        }
        let codec = JsonCodec;
        let stored: Vec<StoredEvent> = account
            .pending_events()
            .iter()
            .map(|r| StoredEvent {
                stream_id: account.id(),
                version: r.version,
                position: eventsourcing::Position::default(),
                event_type: eventsourcing::DomainEvent::name(&r.event).to_owned(),
                stream_type: String::new(),
                schema_version: 1,
                timestamp: r.timestamp,
                payload: eventsourcing::DomainEvent::encode(&r.event, &codec).unwrap(),
                metadata: Metadata::default(),
                defect: None,
            })
            .collect();
        let rebuilt: Account = eventsourcing::replay(&codec, account.id(), None, stored)
            .unwrap()
            .unwrap();
        prop_assert_eq!(&rebuilt, &account);
        prop_assert_eq!(rebuilt.version() as usize, account.pending_events().len());
    }

    /// Through the application and a store, saving at random points.
    #[test]
    fn save_and_reload_equals_the_aggregate(
        owner in "\\PC{0,16}",
        commands in proptest::collection::vec(command(), 0..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let app = Application::new(MemoryStore::new());
            let mut account = Account::open(owner);
            // The live aggregate as it was at each version (index = version - 1), to compare
            // every `get_at` with.
            let mut live = vec![account.clone()];
            for c in &commands {
                run(&mut account, c);
                if account.version() as usize > live.len() {
                    live.push(account.clone());
                }
                if matches!(c, Command::Save) {
                    app.save(&mut account).await.unwrap();
                }
            }
            app.save(&mut account).await.unwrap();
            let loaded: Account = app.repository().get(account.id()).await.unwrap();
            assert_eq!(loaded, account);
            assert_eq!(live.len() as u64, account.version());
            for (at_version, expected) in (1..).zip(&live) {
                let at: Account = app.repository().get_at(account.id(), at_version).await.unwrap();
                assert_eq!(at.version(), at_version);
                assert_eq!(&at, expected, "state at version {at_version}");
            }
        });
    }
}
