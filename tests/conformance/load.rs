//! Loading: what a save stored comes back the same, at any version, and a load that cannot
//! succeed says why.

use eventsourcing::prelude::*;
use eventsourcing::{NewEvent, StoredEvent};

use super::fixtures::{load_error, new_endpoint, Counter, Gauge};
use super::widget::WidgetRegistryEndpoint;

pub async fn save_and_load<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    assert!(
        endpoint.pending_events().is_empty(),
        "save clears the pending events"
    );

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.id(), endpoint.id());
    assert_eq!(loaded.url, endpoint.url);
    assert_eq!(loaded.name, endpoint.name);
    assert_eq!(loaded.tenant_id, endpoint.tenant_id);
    assert_eq!(loaded.version(), 1);
    assert_eq!(
        loaded.created_on(),
        endpoint.created_on(),
        "timestamps survive the store"
    );
    assert_eq!(loaded, endpoint);
}

pub async fn update_persists_after_reload<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();

    let mut loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    loaded.update_name("Updated Name".into());
    app.save(&mut loaded).await.unwrap();

    let reloaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(reloaded.name, "Updated Name");
    assert_eq!(reloaded.version(), 2);
    assert_eq!(reloaded.modified_on(), loaded.modified_on());
    assert!(reloaded.modified_on() >= reloaded.created_on());
}

pub async fn fifteen_updates_then_reload<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    for i in 0..15 {
        endpoint.update_name(format!("Name {i}"));
    }
    assert_eq!(endpoint.pending_events().len(), 16);
    app.save(&mut endpoint).await.unwrap();

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.name, "Name 14");
    assert_eq!(loaded.version(), 16);
    assert_eq!(loaded, endpoint);
}

pub async fn get_at_returns_past_versions<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    for i in 1..=4 {
        endpoint.update_name(format!("Name {i}"));
    }
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    let stored = app.store().load(id, 0, None).await.unwrap();
    let first: WidgetRegistryEndpoint = app.repository().get_at(id, 1).await.unwrap();
    assert_eq!(first.name, "Test Endpoint");
    assert_eq!(first.version(), 1);
    for v in 2..=5u64 {
        let at: WidgetRegistryEndpoint = app.repository().get_at(id, v).await.unwrap();
        assert_eq!(at.name, format!("Name {}", v - 1));
        assert_eq!(at.version(), v);
        // Created when the first event was stored, modified when the last one read was.
        assert_eq!(at.created_on(), stored[0].timestamp);
        assert_eq!(at.modified_on(), stored[v as usize - 1].timestamp);
    }
    let err = app
        .repository()
        .get_at::<WidgetRegistryEndpoint>(id, 6)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { id: i, version: Some(6) } if i == id),
        "{err:?}"
    );
}

pub async fn exists_and_not_found<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    assert!(!app.repository().exists(endpoint.id()).await.unwrap());
    app.save(&mut endpoint).await.unwrap();
    assert!(app.repository().exists(endpoint.id()).await.unwrap());

    let missing = eventsourcing::new_id();
    assert!(!app.repository().exists(missing).await.unwrap());
    let err = app
        .repository()
        .get::<WidgetRegistryEndpoint>(missing)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), format!("aggregate {missing} not found"));
}

pub async fn decode_failure_names_stream_version_and_type<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    // An event whose payload lacks a field, written straight to the store.
    app.store()
        .append(vec![NewEvent {
            schema_version: 1,
            ..NewEvent::new(id, 2, "NameUpdated", br#"{"nom":"x"}"#.to_vec())
        }])
        .await
        .unwrap();
    let err = app
        .repository()
        .get::<WidgetRegistryEndpoint>(id)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Decode { version: 2, .. }), "{err:?}");
    assert!(msg.contains(&id.to_string()), "{msg}");
    assert!(msg.contains("`NameUpdated`"), "{msg}");
    assert!(msg.contains("version 2"), "{msg}");
    assert!(msg.contains("missing field `name`"), "{msg}");

    // An event type the aggregate does not know, on a stream of its own.
    let mut other = new_endpoint();
    app.save(&mut other).await.unwrap();
    app.store()
        .append(vec![NewEvent {
            schema_version: 1,
            ..NewEvent::new(other.id(), 2, "Exploded", b"{}".to_vec())
        }])
        .await
        .unwrap();
    let msg = load_error::<WidgetRegistryEndpoint, _>(&app, other.id()).await;
    assert!(
        msg.contains("`Exploded` is not an event of `WidgetRegistryEndpoint` (known: Registered, NameUpdated)"),
        "{msg}"
    );
    let at_1: WidgetRegistryEndpoint = app.repository().get_at(other.id(), 1).await.unwrap();
    assert_eq!(at_1.version(), 1, "earlier versions stay readable");
}

/// What a store returns for replay matches `load` in everything replay reads.
pub async fn load_for_replay_matches_load<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut e = new_endpoint();
    for i in 0..6 {
        e.update_name(format!("n{i}"));
    }
    app.save_with_metadata(&mut e, &Metadata::default().with("k", "v"))
        .await
        .unwrap();
    for (after, up_to) in [(0, None), (2, Some(5)), (7, None), (3, Some(3))] {
        let full = app.store().load(e.id(), after, up_to).await.unwrap();
        let lean = app
            .store()
            .load_for_replay(e.id(), after, up_to)
            .await
            .unwrap();
        let key = |v: &[StoredEvent]| {
            v.iter()
                .map(|x| {
                    (
                        x.stream_id,
                        x.version,
                        x.event_type.clone(),
                        x.schema_version,
                        x.timestamp,
                        x.payload.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&lean), key(&full), "after {after}, up to {up_to:?}");
    }
}

/// What `replay_into` feeds a fold.
#[derive(Default)]
struct Seen(Vec<(u64, String, String, u32, Vec<u8>)>);

impl eventsourcing::plumbing::Fold for Seen {
    fn event(&mut self, e: eventsourcing::plumbing::EventView<'_>) -> Result<(), Error> {
        self.0.push((
            e.version,
            e.event_type.to_owned(),
            e.stream_type.to_owned(),
            e.schema_version,
            e.payload.to_vec(),
        ));
        Ok(())
    }
}

/// A fold that fails at `at`, or panics there.
struct FailAt {
    at: u64,
    panic: bool,
}

impl eventsourcing::plumbing::Fold for FailAt {
    fn event(&mut self, e: eventsourcing::plumbing::EventView<'_>) -> Result<(), Error> {
        if e.version == self.at {
            assert!(!self.panic, "a fold panicked at version {}", e.version);
            return Err(Error::Store(format!("stopped at {}", e.version).into()));
        }
        Ok(())
    }
}

/// `replay_into` feeds a fold what `load_for_replay` returns, in the same order, over any
/// range; a fold's error comes back as it is, and a fold's panic is the caller's, the store
/// reading on afterwards.
pub async fn replay_into_feeds_what_load_for_replay_returns<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut e = new_endpoint();
    for i in 0..6 {
        e.update_name(format!("n{i}"));
    }
    app.save(&mut e).await.unwrap();
    let id = e.id();
    for (after, up_to) in [
        (0, None),
        (2, Some(5)),
        (7, None),
        (3, Some(3)),
        (0, Some(u64::MAX)),
    ] {
        let seen = store
            .replay_into(id, after, up_to, Seen::default())
            .await
            .unwrap();
        let loaded = store.load_for_replay(id, after, up_to).await.unwrap();
        let want: Vec<_> = loaded
            .iter()
            .map(|x| {
                (
                    x.version,
                    x.event_type.clone(),
                    x.stream_type.clone(),
                    x.schema_version,
                    x.payload.clone(),
                )
            })
            .collect();
        assert_eq!(seen.0, want, "after {after}, up to {up_to:?}");
    }
    assert_eq!(
        seen_types(&store, id).await,
        "WidgetRegistryEndpoint",
        "the first event names the type"
    );

    let err = store
        .replay_into(
            id,
            0,
            None,
            FailAt {
                at: 3,
                panic: false,
            },
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("stopped at 3"), "{err}");
    let panicked = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .replay_into(id, 0, None, FailAt { at: 2, panic: true })
                .await
                .is_ok()
        }
    })
    .await;
    assert!(
        panicked.unwrap_err().is_panic(),
        "the fold's panic reaches the caller"
    );
    for _ in 0..8 {
        let loaded: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
        assert_eq!(
            loaded.version(),
            7,
            "the store reads on after a fold panicked"
        );
    }
}

async fn seen_types<S: EventStore>(store: &S, id: Uuid) -> String {
    let seen = store
        .replay_into(id, 0, Some(1), Seen::default())
        .await
        .unwrap();
    seen.0.first().map(|e| e.2.clone()).unwrap_or_default()
}

/// Two types sharing an event name and a name-based id: the stream remembers which type wrote
/// it, and loading it as the other is `Error::WrongType` naming both, never a wrong aggregate.
pub async fn a_stream_never_loads_as_another_type<S: EventStore>(store: S) {
    let app = Application::new(store);
    let id = eventsourcing::id_from_name("shared by two types");
    let mut counter = Counter::open_with_id(id);
    counter.add(3);
    app.save(&mut counter).await.unwrap();

    let err = app.repository().get::<Gauge>(id).await.unwrap_err();
    match &err {
        Error::WrongType {
            stream_id,
            stored,
            requested,
        } => assert_eq!(
            (*stream_id, stored.as_str(), *requested),
            (id, "Counter", "Gauge")
        ),
        other => panic!("expected WrongType, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("Counter") && message.contains("Gauge"),
        "{message}"
    );
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.total, 3);
    // The stream says so once, on the event that created it.
    let stored = app.store().load(id, 0, None).await.unwrap();
    let types: Vec<&str> = stored.iter().map(|e| e.stream_type.as_str()).collect();
    assert_eq!(types, ["Counter", ""]);

    // Another program's later event naming another type changes nothing, on every store: the
    // type is the one the first event records, and only that one is read.
    let stray = NewEvent::new(
        id,
        3,
        stored[1].event_type.clone(),
        stored[1].payload.clone(),
    )
    .of_type("Gauge");
    app.store().append(vec![stray]).await.unwrap();
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!((loaded.total, loaded.version()), (6, 3));
    assert!(matches!(
        app.repository().get::<Gauge>(id).await,
        Err(Error::WrongType { .. })
    ));
}
