//! Appending: conflicts, atomic saves across aggregates, metadata, contiguous versions.

use eventsourcing::prelude::*;
use eventsourcing::NewEvent;

use super::fixtures::{new_endpoint, raw_event, Counter};
use super::widget::WidgetRegistryEndpoint;

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
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => {
            assert_eq!(*stream_id, id);
            assert_eq!(*expected, 1);
            assert_eq!(*actual, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.is_conflict());
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    assert_eq!(
        second.pending_events().len(),
        1,
        "a failed save keeps the pending events"
    );

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
    let event = |version| raw_event(id, version);
    let err = store.append(vec![event(3)]).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.stream_version(id).await.unwrap(), 0);
    store.append(vec![event(1), event(2)]).await.unwrap();
    assert_eq!(store.stream_version(id).await.unwrap(), 2);
}

/// The same save is accepted or refused alike on every store: text PostgreSQL keeps (quotes,
/// backslashes, emoji, other scripts, control characters but NUL) round-trips; a NUL in
/// metadata or in the event type, version 0 and an empty type are an `Error::InvalidEvent`
/// naming the event, and nothing of that save is written.
pub async fn the_same_metadata_is_accepted_or_refused_alike<S: EventStore>(store: S) {
    let id = Uuid::new_v4();
    let odd = "quote\" back\\slash \u{1F600} \u{4E2D}\u{6587} tab\t nl\n \u{7}";
    let kept = NewEvent {
        metadata: Metadata::default().with(odd, odd),
        ..NewEvent::new(id, 1, "Happened", b"{}".to_vec())
    };
    store.append(vec![kept.clone()]).await.unwrap();
    let loaded = store.load(id, 0, None).await.unwrap();
    assert_eq!(loaded[0].metadata, kept.metadata);

    let nul = |key: &str, value: &str| NewEvent {
        metadata: Metadata::default().with(key, value),
        ..NewEvent::new(id, 2, "Happened", b"{}".to_vec())
    };
    for (bad, says) in [
        (nul("user", "a\0b"), "NUL"),
        (nul("us\0er", "a"), "NUL"),
        (NewEvent::new(id, 2, "Hap\0pened", b"{}".to_vec()), "NUL"),
        (NewEvent::new(id, 2, "", b"{}".to_vec()), "empty"),
    ] {
        // In a save of two streams: the good one is not written either.
        let other = Uuid::new_v4();
        let good = NewEvent::new(other, 1, "Happened", b"{}".to_vec());
        let err = store.append(vec![good, bad]).await.unwrap_err();
        match &err {
            Error::InvalidEvent {
                stream_id, version, ..
            } => assert_eq!((*stream_id, *version), (id, 2), "{err}"),
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
        assert!(err.to_string().contains(says), "{err}");
        assert_eq!(store.stream_version(other).await.unwrap(), 0);
        assert_eq!(store.stream_version(id).await.unwrap(), 1);
    }
}
