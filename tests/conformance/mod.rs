//! The conformance suite: written once against the `EventStore` trait, run against every store.
//!
//! A store's test file says `mod conformance;` and `conformance::conformance_tests!(fixture);`
//! where `async fn fixture() -> (S, G)` makes a fresh, empty store and a guard that cleans it
//! up when dropped.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use eventsourcing::prelude::*;
use eventsourcing::{NewEvent, Position, StoredEvent};

/// The seed's aggregate.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetRegistryEndpoint {
    meta: Meta<Self>,
    pub url: String,
    pub name: String,
    pub tenant_id: String,
}

#[events]
impl WidgetRegistryEndpoint {
    #[event("Registered")]
    pub fn create(url: String, name: String, tenant_id: String) -> Self {
        Self { meta: Meta::default(), url, name, tenant_id }
    }

    #[event("NameUpdated")]
    pub fn update_name(&mut self, name: String) {
        self.name = name;
    }

    /// A command: validates, then records.
    pub fn rename(&mut self, name: &str) -> Result<(), String> {
        if name.trim().is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        self.update_name(name.to_owned());
        Ok(())
    }
}

/// A second aggregate type, for saves that span types.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    meta: Meta<Self>,
    pub total: i64,
}

#[events]
impl Counter {
    #[event]
    pub fn open() -> Self {
        Self { meta: Meta::default(), total: 0 }
    }

    #[event]
    pub fn add(&mut self, amount: i64) {
        self.total += amount;
    }
}

fn new_endpoint() -> WidgetRegistryEndpoint {
    WidgetRegistryEndpoint::create(
        "https://example.com".into(),
        "Test Endpoint".into(),
        "tenant-123".into(),
    )
}

pub async fn save_and_load<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    assert!(endpoint.pending_events().is_empty(), "save clears the pending events");

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.id(), endpoint.id());
    assert_eq!(loaded.url, endpoint.url);
    assert_eq!(loaded.name, endpoint.name);
    assert_eq!(loaded.tenant_id, endpoint.tenant_id);
    assert_eq!(loaded.version(), 1);
    assert_eq!(loaded.created_on(), endpoint.created_on(), "timestamps survive the store");
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

pub async fn two_copies_conflict<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();

    let mut first: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    let mut second: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    first.update_name("first".into());
    second.update_name("second".into());
    app.save(&mut first).await.unwrap();
    let err = app.save(&mut second).await.unwrap_err();
    match &err {
        Error::Conflict { stream_id, expected, actual } => {
            assert_eq!(*stream_id, id);
            assert_eq!(*expected, 1);
            assert_eq!(*actual, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.is_conflict());
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    assert_eq!(second.pending_events().len(), 1, "a failed save keeps the pending events");

    let loaded: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.name, "first");
    assert_eq!(loaded.version(), 2);
}

pub async fn multi_aggregate_save_is_all_or_nothing<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    let mut counter = Counter::open();
    app.save((&mut endpoint, &mut counter)).await.unwrap();
    assert_eq!(app.store().stream_version(endpoint.id()).await.unwrap(), 1);
    assert_eq!(app.store().stream_version(counter.id()).await.unwrap(), 1);

    // Someone else moves the counter on.
    let mut other: Counter = app.repository().get(counter.id()).await.unwrap();
    other.add(5);
    app.save(&mut other).await.unwrap();

    // A save of both, where the counter copy is stale: nothing of it may be written.
    endpoint.update_name("never stored".into());
    counter.add(1);
    let fresh = Counter::open();
    let mut fresh_vec = vec![fresh];
    let err = app
        .save((&mut endpoint, &mut fresh_vec, &mut counter))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.name, "Test Endpoint");
    assert_eq!(loaded.version(), 1);
    assert!(!app.repository().exists(fresh_vec[0].id()).await.unwrap());
    let counter_now: Counter = app.repository().get(counter.id()).await.unwrap();
    assert_eq!(counter_now.total, 5);
    assert_eq!(endpoint.pending_events().len(), 1);
    assert_eq!(fresh_vec[0].pending_events().len(), 1);
}

pub async fn get_at_returns_past_versions<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    for i in 1..=4 {
        endpoint.update_name(format!("Name {i}"));
    }
    app.save(&mut endpoint).await.unwrap();
    let id = endpoint.id();
    let first: WidgetRegistryEndpoint = app.repository().get_at(id, 1).await.unwrap();
    assert_eq!(first.name, "Test Endpoint");
    assert_eq!(first.version(), 1);
    for v in 2..=5u64 {
        let at: WidgetRegistryEndpoint = app.repository().get_at(id, v).await.unwrap();
        assert_eq!(at.name, format!("Name {}", v - 1));
        assert_eq!(at.version(), v);
    }
    let err = app
        .repository()
        .get_at::<WidgetRegistryEndpoint>(id, 6)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { id: i, version: Some(6) } if i == id), "{err:?}");
}

pub async fn exists_and_not_found<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut endpoint = new_endpoint();
    assert!(!app.repository().exists(endpoint.id()).await.unwrap());
    app.save(&mut endpoint).await.unwrap();
    assert!(app.repository().exists(endpoint.id()).await.unwrap());

    let missing = eventsourcing::new_id();
    assert!(!app.repository().exists(missing).await.unwrap());
    let err = app.repository().get::<WidgetRegistryEndpoint>(missing).await.unwrap_err();
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
            stream_id: id,
            version: 2,
            event_type: "NameUpdated".into(),
            schema_version: 1,
            timestamp: eventsourcing::now(),
            payload: br#"{"nom":"x"}"#.to_vec(),
            metadata: Metadata::default(),
        }])
        .await
        .unwrap();
    let err = app.repository().get::<WidgetRegistryEndpoint>(id).await.unwrap_err();
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
            stream_id: other.id(),
            version: 2,
            event_type: "Exploded".into(),
            schema_version: 1,
            timestamp: eventsourcing::now(),
            payload: b"{}".to_vec(),
            metadata: Metadata::default(),
        }])
        .await
        .unwrap();
    let msg = app
        .repository()
        .get::<WidgetRegistryEndpoint>(other.id())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`Exploded` is not an event of `WidgetRegistryEndpoint` (known: Registered, NameUpdated)"),
        "{msg}"
    );
    let at_1: WidgetRegistryEndpoint = app.repository().get_at(other.id(), 1).await.unwrap();
    assert_eq!(at_1.version(), 1, "earlier versions stay readable");
}

pub async fn update_helper_runs_commands<S: EventStore>(store: S) {
    let app = Application::new(store);
    let endpoint = app.create(new_endpoint()).await.unwrap();
    let id = endpoint.id();

    let updated: WidgetRegistryEndpoint =
        app.update(id, |e: &mut WidgetRegistryEndpoint| e.rename("Renamed")).await.unwrap();
    assert_eq!(updated.name, "Renamed");

    let err = app
        .update(id, |e: &mut WidgetRegistryEndpoint| e.rename("  "))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    assert!(err.to_string().contains("a name cannot be empty"), "{err}");
    let loaded: WidgetRegistryEndpoint = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.version(), 2, "a rejected command saves nothing");
}

/// 8 tasks add to one counter concurrently with retries: every increment lands exactly once.
pub async fn concurrent_updates_with_retry<S: EventStore>(store: S) {
    let app = Application::new(store);
    let counter = app.create(Counter::open()).await.unwrap();
    let id = counter.id();
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                app.update_with_retry(id, Retry::attempts(1000), |c: &mut Counter| {
                    c.add(t + 1);
                    Ok::<_, std::convert::Infallible>(())
                })
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded: Counter = app.repository().get(id).await.unwrap();
    assert_eq!(loaded.total, (1..=8).sum::<i64>() * 10);
    assert_eq!(loaded.version(), 81);
}

pub async fn read_log_pages_in_order<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut expected = Vec::new();
    for i in 0..7 {
        let mut e = new_endpoint();
        e.update_name(format!("n{i}"));
        expected.push((e.id(), 1u64));
        expected.push((e.id(), 2u64));
        app.save(&mut e).await.unwrap();
    }
    let mut seen: Vec<StoredEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let page = app.store().read_log(after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().position;
        seen.extend(page);
    }
    let got: Vec<(Uuid, u64)> = seen.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(got, expected);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    let all = app.store().read_log(Position::START, 1000).await.unwrap();
    assert_eq!(all, seen, "paging and one read see the same log");
}

pub async fn metadata_round_trips<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut e = new_endpoint();
    let correlation = eventsourcing::new_id();
    let metadata = Metadata::default()
        .with_correlation_id(correlation)
        .with("user", "alice");
    app.save_with_metadata(&mut e, &metadata).await.unwrap();
    let events = app.store().load(e.id(), 0, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata, metadata);
    assert_eq!(events[0].event_type, "Registered");
    assert_eq!(events[0].schema_version, 1);
    let payload: serde_json::Value = serde_json::from_slice(&events[0].payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"url": "https://example.com", "name": "Test Endpoint", "tenant_id": "tenant-123"})
    );
}

pub async fn non_contiguous_first_version_is_a_conflict<S: EventStore>(store: S) {
    let id = eventsourcing::new_id();
    let event = |version| NewEvent {
        stream_id: id,
        version,
        event_type: "add".into(),
        schema_version: 1,
        timestamp: eventsourcing::now(),
        payload: b"{}".to_vec(),
        metadata: Metadata::default(),
    };
    let err = store.append(vec![event(3)]).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.stream_version(id).await.unwrap(), 0);
    store.append(vec![event(1), event(2)]).await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 2);
}

/// Runs every conformance test against a store made by `$fixture`.
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance::conformance_tests!(@tests $fixture;
            save_and_load,
            update_persists_after_reload,
            fifteen_updates_then_reload,
            two_copies_conflict,
            multi_aggregate_save_is_all_or_nothing,
            get_at_returns_past_versions,
            exists_and_not_found,
            decode_failure_names_stream_version_and_type,
            update_helper_runs_commands,
            concurrent_updates_with_retry,
            read_log_pages_in_order,
            metadata_round_trips,
            non_contiguous_first_version_is_a_conflict,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;
