//! Process applications: exactly once across an abort, and a failing handler stops the runner.

use eventsourcing::prelude::*;
use eventsourcing::{read_log_stream, spawn_process, Position, ProjectionOptions};
use futures_util::StreamExt;

use super::audit::{audit_log_id, AuditLog, Auditor};
use super::fixtures::new_endpoint;
use super::wait::wait_until;

/// The position of the last `NameUpdated` in the log: the last event the auditor handles.
async fn last_rename<S: EventStore>(store: &S) -> Position {
    read_log_stream(store, Position::START, 1000)
        .map(|e| e.unwrap())
        .filter(|e| std::future::ready(e.event_type == "NameUpdated"))
        .fold(Position::START, |a, e| async move { a.max(e.position) })
        .await
}

/// Runs a sound auditor until it has processed the last rename of the log, then stops it.
async fn audit_to_the_end<S: EventStore + Clone>(
    store: &S,
    app: &Application<S>,
    options: ProjectionOptions,
) {
    let auditor = spawn_process(
        Auditor { fail_on: None },
        store.clone(),
        app.clone(),
        options,
    );
    let end = last_rename(store).await;
    wait_until("the process catches up", || {
        assert!(!auditor.is_finished(), "the process stopped early");
        std::future::ready(auditor.position() >= end)
    })
    .await;
    auditor.stop().await.unwrap();
}

/// 4 concurrent writers rename endpoints while the process runs; it is aborted in the middle and
/// restarted. Every rename ends up in its audit log exactly once, in order.
pub async fn process_application_is_exactly_once<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let options = ProjectionOptions {
        poll_interval: std::time::Duration::from_millis(20),
        page_size: 16,
        ..ProjectionOptions::default()
    };
    let first = spawn_process(
        Auditor { fail_on: None },
        store.clone(),
        app.clone(),
        options,
    );

    let mut writers = Vec::new();
    for w in 0..4 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            let mut endpoint = new_endpoint();
            app.save(&mut endpoint).await.unwrap();
            for i in 0..30 {
                endpoint.update_name(format!("w{w}-{i}"));
                app.save(&mut endpoint).await.unwrap();
            }
            endpoint.id()
        }));
    }
    // Abort somewhere in the middle of the work: once the process has recorded a position.
    wait_until("the process records a position", || {
        assert!(
            !first.is_finished(),
            "the process stopped before its first position"
        );
        std::future::ready(first.position() > Position::START)
    })
    .await;
    first.abort();
    let _ = first.join().await;
    let mut ids = Vec::new();
    for w in writers {
        ids.push(w.await.unwrap());
    }

    audit_to_the_end(&store, &app, options).await;

    for (w, id) in ids.iter().enumerate() {
        let log: AuditLog = app.repository().get(audit_log_id(*id)).await.unwrap();
        let expected: Vec<String> = (0..30).map(|i| format!("w{w}-{i}")).collect();
        assert_eq!(log.renames, expected, "audit log of writer {w}");
    }
}

/// A handler that keeps failing stops the process with an error naming the event; a restart
/// (with the handler fixed) resumes from that event, not after it.
pub async fn failing_handler_stops_and_restart_resumes<S: EventStore + Clone>(store: S) {
    let app = Application::new(store.clone());
    let mut endpoint = new_endpoint();
    for name in ["a", "poison", "b"] {
        endpoint.update_name(name.into());
    }
    app.save(&mut endpoint).await.unwrap();
    let options = ProjectionOptions {
        poll_interval: std::time::Duration::from_millis(20),
        ..ProjectionOptions::default()
    };

    let failing = spawn_process(
        Auditor {
            fail_on: Some("poison".into()),
        },
        store.clone(),
        app.clone(),
        options,
    );
    let err = failing.join().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Handler { version: 3, .. }), "{err:?}");
    for part in [
        "`auditor`",
        "`NameUpdated`",
        &endpoint.id().to_string(),
        "version 3",
        "cannot audit the name \"poison\"",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    let log_id = audit_log_id(endpoint.id());
    let log: AuditLog = app.repository().get(log_id).await.unwrap();
    assert_eq!(
        log.renames,
        vec!["a"],
        "nothing after the failing event was processed"
    );

    // Fixed.
    audit_to_the_end(&store, &app, options).await;
    let log: AuditLog = app.repository().get(log_id).await.unwrap();
    assert_eq!(log.renames, vec!["a", "poison", "b"]);
}
