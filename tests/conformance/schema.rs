//! Schema evolution: snapshots of another struct shape, upcast event payloads, payloads newer
//! than the code.

use eventsourcing::prelude::*;
use eventsourcing::NewEvent;

use super::fixtures::{load_error, Counting};

pub mod v1 {
    use eventsourcing::prelude::*;

    /// The first shape of an aggregate stored as `Gadget`.
    #[derive(Aggregate, Debug, Clone, Serialize, Deserialize)]
    #[aggregate(name = "Gadget", snapshot_every = 2)]
    pub struct Gadget {
        meta: Meta<Self>,
        pub label: String,
        pub count: u32,
    }

    #[events]
    impl Gadget {
        #[event("Made")]
        pub fn make(label: String) -> Self {
            Self {
                meta: Meta::default(),
                label,
                count: 0,
            }
        }
        #[event("Bumped")]
        pub fn bump(&mut self) {
            self.count += 1;
        }
    }
}

pub mod v2 {
    use eventsourcing::prelude::*;

    /// The same stored type after a code change: `count` became `bumps` and a field was added.
    #[derive(Aggregate, Debug, Clone, Serialize, Deserialize)]
    #[aggregate(name = "Gadget", snapshot_every = 2)]
    pub struct Gadget {
        meta: Meta<Self>,
        pub label: String,
        pub bumps: u64,
        pub history: Vec<u64>,
    }

    #[events]
    impl Gadget {
        #[event("Made")]
        pub fn make(label: String) -> Self {
            Self {
                meta: Meta::default(),
                label,
                bumps: 0,
                history: vec![],
            }
        }
        #[event("Bumped")]
        pub fn bump(&mut self) {
            self.bumps += 1;
            self.history.push(self.bumps);
        }
    }
}

/// A snapshot written by a differently shaped struct is ignored (the load replays the events)
/// and replaced by one in the current shape.
pub async fn snapshot_of_another_shape_is_ignored_and_replaced<S: EventStore>(store: S) {
    let store = Counting::new(store);
    let app = Application::new(store.clone());
    let mut old = v1::Gadget::make("g".into());
    old.bump();
    old.bump();
    old.bump();
    app.save(&mut old).await.unwrap();
    let id = old.id();
    let written = store.load_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(
        written.fingerprint,
        <v1::Gadget as Aggregate>::STATE_FINGERPRINT
    );
    assert_ne!(
        <v1::Gadget as Aggregate>::STATE_FINGERPRINT,
        <v2::Gadget as Aggregate>::STATE_FINGERPRINT
    );

    store.take_loads();
    let new: v2::Gadget = app.repository().get(id).await.unwrap();
    assert_eq!(
        (new.bumps, new.history.clone(), new.version()),
        (3, vec![1, 2, 3], 4)
    );
    // The events after the unusable snapshot come with it (one read where the store can), then
    // the whole stream is replayed from version 0.
    let loads = store.take_loads();
    assert_eq!(
        loads,
        vec![(written.version, 0), (0, 4)],
        "the old snapshot was not used"
    );

    let replaced = store.load_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(replaced.version, 4);
    assert_eq!(
        replaced.fingerprint,
        <v2::Gadget as Aggregate>::STATE_FINGERPRINT
    );
    let again: v2::Gadget = app.repository().get(id).await.unwrap();
    assert_eq!(again.history, vec![1, 2, 3]);
    assert_eq!(
        store.take_loads(),
        vec![(4, 0)],
        "the fresh snapshot is used"
    );
}

/// An event whose payload changed shape: version 2 splits `name` into `first` and `last`.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    meta: Meta<Self>,
    pub first: String,
    pub last: String,
}

#[events]
impl Person {
    #[event("Registered", version = 2, upcast = Self::upcast_registered)]
    pub fn register(first: String, last: String) -> Self {
        Self {
            meta: Meta::default(),
            first,
            last,
        }
    }

    #[event("Renamed", version = 3)]
    pub fn rename(&mut self, first: String, last: String) {
        self.first = first;
        self.last = last;
    }

    fn upcast_registered(
        from: u32,
        mut value: eventsourcing::serde_json::Value,
    ) -> Option<eventsourcing::serde_json::Value> {
        if from != 1 {
            return None;
        }
        let name = value.get("name")?.as_str()?.to_owned();
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        value["first"] = first.into();
        value["last"] = last.into();
        Some(value)
    }
}

pub async fn old_event_payload_loads_through_its_upcast<S: EventStore>(store: S) {
    let app = Application::new(store);
    let id = eventsourcing::new_id();
    let stored = |version, event_type: &'static str, schema_version, payload: &str| NewEvent {
        schema_version,
        ..NewEvent::new(id, version, event_type, payload.as_bytes().to_vec())
    };
    // Written by the code of version 1, never rewritten.
    app.store()
        .append(vec![stored(
            1,
            "Registered",
            1,
            r#"{"name":"Ada Lovelace"}"#,
        )])
        .await
        .unwrap();
    let person: Person = app.repository().get(id).await.unwrap();
    assert_eq!(
        (person.first.as_str(), person.last.as_str()),
        ("Ada", "Lovelace")
    );
    let raw = app.store().load(id, 0, None).await.unwrap();
    assert_eq!(
        raw[0].payload,
        br#"{"name":"Ada Lovelace"}"#.to_vec(),
        "stored events are never rewritten"
    );

    // New events are written at the current schema version.
    let mut person = person;
    person.rename("Augusta".into(), "King".into());
    app.save(&mut person).await.unwrap();
    let raw = app.store().load(id, 1, None).await.unwrap();
    assert_eq!(raw[0].schema_version, 3);

    // `Renamed` has no upcast: a version-2 payload is a clear error.
    app.store()
        .append(vec![stored(3, "Renamed", 2, r#"{"first":"A","last":"B"}"#)])
        .await
        .unwrap();
    let msg = load_error::<Person, _>(&app, id).await;
    for part in [
        id.to_string().as_str(),
        "`Renamed`",
        "schema version 2",
        "at version 3",
        "no upcast handles schema version 2",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
}

pub async fn payload_newer_than_the_code_is_a_clear_error<S: EventStore>(store: S) {
    let app = Application::new(store);
    let id = eventsourcing::new_id();
    app.store()
        .append(vec![NewEvent {
            schema_version: 9,
            ..NewEvent::new(
                id,
                1,
                "Registered",
                br#"{"first":"a","last":"b","middle":"c"}"#.to_vec(),
            )
        }])
        .await
        .unwrap();
    let msg = load_error::<Person, _>(&app, id).await;
    assert!(
        msg.contains("schema version 9 is not supported (this code reads up to version 2)"),
        "{msg}"
    );
}
