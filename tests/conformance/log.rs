//! The notification log: paged reads, the log as a stream, live subscriptions.

use eventsourcing::prelude::*;
use eventsourcing::{read_log_stream, Position, StoredEvent, Subscription};
use futures_util::StreamExt;

use super::fixtures::{new_endpoint, Counter};

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

/// The log read as a stream, in small pages, sees every event once, in order.
pub async fn log_stream_reads_everything_in_pages<S: EventStore>(store: S) {
    let app = Application::new(store);
    let mut counters: Vec<Counter> = (0..40).map(|_| Counter::open()).collect();
    for c in counters.iter_mut() {
        c.add(1);
    }
    app.save(&mut counters).await.unwrap();
    let events: Vec<StoredEvent> = read_log_stream(app.store(), Position::START, 7)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.len(), 80);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let from_middle: Vec<_> = read_log_stream(app.store(), events[49].position, 3)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(from_middle, events[50..].to_vec());
}

/// A subscription catches up, then receives a new event live: woken by the store, not by its
/// poll interval (an hour here).
pub async fn subscription_catches_up_then_follows_live<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut before = new_endpoint();
    app.save(&mut before).await.unwrap();

    let mut subscription = Subscription::new(store.clone(), Position::START)
        .poll_interval(std::time::Duration::from_secs(3600))
        .event_types(["NameUpdated"]);
    // Caught up: the log holds only `Registered`, which the filter skips.
    let caught_up =
        tokio::time::timeout(std::time::Duration::from_secs(60), subscription.try_next())
            .await
            .expect("catching up")
            .unwrap();
    assert!(caught_up.is_none(), "{caught_up:?}");
    assert!(subscription.position() > Position::START);
    // Now a live rename. With an hour's poll interval only the store's change notification can
    // deliver it in time, whether the save lands before or after the waiter starts waiting.
    let waiter = tokio::spawn(async move {
        let event = subscription.next().await.unwrap();
        (event, subscription.position())
    });
    before.update_name("live".into());
    app.save(&mut before).await.unwrap();
    let (event, position) = tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
        .await
        .expect("the subscription was not woken by the save")
        .unwrap();
    assert_eq!((event.stream_id, event.version), (before.id(), 2));
    assert_eq!(event.event_type, "NameUpdated");
    assert_eq!(position, event.position);
}
