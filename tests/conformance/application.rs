//! The application's helpers: commands through `update`, retries, the `on_saved` hook.

use std::sync::{Arc, Mutex};

use eventsourcing::prelude::*;

use super::fixtures::{new_endpoint, Counter};
use super::widget::WidgetRegistryEndpoint;

pub async fn update_helper_runs_commands<S: EventStore>(store: S) {
    let app = Application::new(store);
    let endpoint = app.create(new_endpoint()).await.unwrap();
    let id = endpoint.id();

    let updated: WidgetRegistryEndpoint = app
        .update(id, |e: &mut WidgetRegistryEndpoint| e.rename("Renamed"))
        .await
        .unwrap();
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

/// The seed's notifier, done right: a failing hook never fails the save or loses the event.
pub async fn failing_hook_never_fails_the_save<S: EventStore>(store: S) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Application::new(store).on_saved(move |events| {
        log.lock().unwrap().extend(events.iter().map(|e| e.version));
        Err("the notification service is down".into())
    });
    let mut endpoint = new_endpoint();
    endpoint.update_name("x".into());
    app.save(&mut endpoint).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await.unwrap();
    assert_eq!(loaded.version(), 2);

    let panicking = app.clone().on_saved(|_| panic!("a bug in the hook"));
    endpoint.update_name("y".into());
    panicking.save(&mut endpoint).await.unwrap();
    assert_eq!(app.store().stream_version(endpoint.id()).await.unwrap(), 3);
}
