//! Process applications on the same engine: a copier that reads the store's log and saves, per
//! upstream event, one `Copied` event downstream (an Application on the same store).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use eventsourcing::prelude::*;
use eventsourcing::{
    chrono::Utc, id_from_name, spawn_process, BoxError, Codec, OnError, Outbox, Position, Process,
    ProjectionOptions, StoredEvent,
};

use super::{
    event, events, last_position, log, options, poisoned, wait_for, Harness, ParkedFailures,
};

/// The copies of one upstream stream: the versions copied, in the order they were.
#[derive(Aggregate, Debug, Serialize, Deserialize)]
pub struct Copies {
    meta: Meta<Self>,
    pub source: Uuid,
    pub versions: Vec<u64>,
}

#[events]
impl Copies {
    #[event("CopiesOpened")]
    pub fn open(source: Uuid) -> Self {
        Self {
            meta: Meta::default(),
            source,
            versions: Vec::new(),
        }
    }

    #[event("Copied")]
    pub fn copy(&mut self, version: u64) {
        self.versions.push(version);
    }
}

pub fn copies_id(source: Uuid) -> Uuid {
    id_from_name(&format!("copies/{source}"))
}

pub struct Copier {
    pub fail_on: Option<&'static str>,
    pub panic_on: Option<&'static str>,
    /// Waits this long per event before copying it, to make catch-up slow.
    pub delay: Duration,
    /// Events copied (and not failed), across every attempt.
    pub handled: Arc<AtomicU64>,
}

impl Copier {
    pub fn sound() -> Self {
        Copier {
            fail_on: None,
            panic_on: None,
            delay: Duration::ZERO,
            handled: Arc::default(),
        }
    }
}

impl Process for Copier {
    fn name(&self) -> &str {
        "copier"
    }

    /// Not its own events: it reads the log it writes to.
    fn event_types(&self) -> Option<Vec<String>> {
        Some(["Happened", "Poison", "Panic"].map(String::from).to_vec())
    }

    async fn handle<S: EventStore, C: Codec>(
        &mut self,
        event: &StoredEvent,
        out: &mut Outbox<'_, S, C>,
    ) -> Result<(), BoxError> {
        let kind = Some(event.event_type.as_str());
        if self.fail_on == kind {
            return Err(format!("cannot copy {}@{}", event.stream_id, event.version).into());
        }
        if self.panic_on == kind {
            panic!("copier exploded");
        }
        tokio::time::sleep(self.delay).await;
        let id = copies_id(event.stream_id);
        let mut copies = match out.app().repository().get::<Copies>(id).await {
            Ok(copies) => copies,
            Err(e) if e.is_not_found() => Copies::open_with_id(id, event.stream_id),
            Err(e) => return Err(e.into()),
        };
        copies.copy(event.version);
        out.save(&mut copies)?;
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The versions of `source` copied downstream.
pub async fn copied<S: EventStore>(app: &Application<S>, source: Uuid) -> Vec<u64> {
    let copies: Copies = app.repository().get(copies_id(source)).await.unwrap();
    assert_eq!(copies.source, source);
    copies.versions
}

/// How many events of each type the log holds.
pub async fn types<S: EventStore>(store: &S) -> BTreeMap<String, usize> {
    let mut types = BTreeMap::new();
    for e in log(store).await {
        *types.entry(e.event_type).or_insert(0) += 1;
    }
    types
}

/// The last upstream event's position: what the copier must get to.
pub async fn last_upstream<S: EventStore>(store: &S) -> Position {
    log(store)
        .await
        .iter()
        .filter(|e| !e.event_type.starts_with("Copie"))
        .map(|e| e.position)
        .max()
        .unwrap_or(Position::START)
}

pub async fn a_failing_process_parks_the_event_downstream_and_goes_on<H: Harness>(h: H) {
    let store = h.store();
    let (s, upstream) = poisoned(store).await;
    let clean = Uuid::new_v4();
    store.append(events(clean, 1, 3)).await.unwrap();
    let end = last_position(store).await;
    let before = Utc::now();
    let app = Application::new(store.clone());
    let copier = Copier {
        fail_on: Some("Poison"),
        panic_on: Some("Panic"),
        ..Copier::sound()
    };
    let park = ProjectionOptions {
        on_error: OnError::Park,
        ..options(2)
    };
    let runner = spawn_process(copier, store.clone(), app.clone(), park);
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();

    // Every other event copied exactly once, in order.
    assert_eq!(copied(&app, s).await, vec![1, 2, 4, 6]);
    assert_eq!(copied(&app, clean).await, vec![1, 2, 3]);
    let types = types(store).await;
    assert_eq!(types["Copied"], 7, "{types:?}");
    assert_eq!(types["CopiesOpened"], 2, "{types:?}");

    // Parked in the downstream store, which the process's position has moved past.
    let parked = store.parked("copier").await.unwrap();
    let (poison, panic) = ParkedFailures {
        name: "copier",
        poisoned: (s, &upstream),
        before,
        poison_error: &format!("cannot copy {s}@3"),
        panic_message: "copier exploded",
    }
    .check::<H>(&parked);
    assert_eq!(h.parked("copier").await, parked);
    let recorded = store.tracking_position("copier").await.unwrap();
    assert!(recorded >= Some(end), "{recorded:?} is before {end:?}");

    // A restart copies nothing again; a new event is copied once.
    let runner = spawn_process(Copier::sound(), store.clone(), app.clone(), options(2));
    store.append(vec![event(clean, 4)]).await.unwrap();
    wait_for(&runner, last_upstream(store).await).await;
    runner.stop().await.unwrap();
    assert_eq!(copied(&app, s).await, vec![1, 2, 4, 6]);
    assert_eq!(copied(&app, clean).await, vec![1, 2, 3, 4]);
    assert_eq!(store.parked("copier").await.unwrap(), parked);

    assert!(h.unpark("copier", poison.position).await);
    assert_eq!(store.parked("copier").await.unwrap(), vec![panic]);
}

/// Both instances read and save at once (the second on another store instance where the store
/// has one); the tracked save lets only one record each event.
pub async fn two_instances_of_a_process_handle_each_event_once<H: Harness>(h: H) {
    let sources: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for chunk in sources.chunks(4) {
        let save = chunk.iter().flat_map(|s| events(*s, 1, 10)).collect();
        h.store().append(save).await.unwrap();
    }
    let end = last_position(h.store()).await;
    let other = h.another_store().await;
    let app = Application::new(h.store().clone());
    let a = spawn_process(Copier::sound(), h.store().clone(), app.clone(), options(16));
    let b = spawn_process(
        Copier::sound(),
        other.clone(),
        Application::new(other),
        options(7),
    );
    wait_for(&a, end).await;
    wait_for(&b, end).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    for s in &sources {
        assert_eq!(copied(&app, *s).await, (1..=10).collect::<Vec<_>>());
    }
    let types = types(h.store()).await;
    assert_eq!(types["Copied"], 200, "{types:?}");
    assert_eq!(types["CopiesOpened"], 20, "{types:?}");
    assert_eq!(types["Happened"], 200, "{types:?}");
    assert!(h.store().parked("copier").await.unwrap().is_empty());
}
