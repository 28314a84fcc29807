//! The failure policies: Stop (the runner ends naming the event; a restart resumes from it) and
//! Park (the event is recorded, nothing it wrote is kept, the runner goes on); a failing setup.

use eventsourcing::{chrono::Utc, Error, EventStore, OnError, ProjectionOptions};

use super::{
    event, expected, options, poisoned, wait_for, Expected, Harness, ParkedFailures, Tally,
};

pub async fn a_failing_handler_stops_and_a_restart_resumes_from_that_event<H: Harness>(h: H) {
    let (s, log) = poisoned(h.store()).await;
    // Events before the poison in an earlier batch (page size 1), in the same one (2, 500).
    for page in [1, 2, 500] {
        let name = format!("tally-{page}");
        let failing = || Tally {
            fail_on: Some("Poison"),
            ..Tally::new(&name)
        };
        let err = h.spawn(failing(), options(page)).join().await.unwrap_err();
        let Error::Handler {
            name: failed,
            stream_id,
            version,
            event_type,
            position,
            ..
        } = &err
        else {
            panic!("expected a handler error, got {err:?}");
        };
        assert_eq!(
            (failed.as_str(), *stream_id, *version, event_type.as_str()),
            (name.as_str(), s, 3, "Poison")
        );
        assert_eq!(*position, log[2].position);
        let message = err.to_string();
        for part in [&name, "Poison", &s.to_string(), "version 3", "cannot tally"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        // The events before it are committed, nothing of it (not even its first row).
        let (recorded, model) = h.tracked_model(&name).await;
        assert_eq!(recorded, Some(log[1].position));
        assert_eq!(
            h.store().tracking_position(&name).await.unwrap(),
            Some(log[1].position)
        );
        assert_eq!(model, expected(h.store(), |e| e.version <= 2).await);
        assert_eq!(h.lag(&name).await, 4);
        assert!(h.parked(&name).await.is_empty());

        // A restart with the same failing handler fails on the same event again.
        let err = h.spawn(failing(), options(page)).join().await.unwrap_err();
        assert!(matches!(err, Error::Handler { version: 3, .. }), "{err:?}");
        assert_eq!(h.tracked_model(&name).await.0, Some(log[1].position));

        // Fixed, it resumes from the poison, not after it.
        let fixed = h.spawn(Tally::new(&name), options(page));
        wait_for(&fixed, log[5].position).await;
        fixed.stop().await.unwrap();
        assert_eq!(h.model(&name).await, expected(h.store(), |_| true).await);
        assert_eq!(h.lag(&name).await, 0);
    }
}

pub async fn a_failing_handler_parks_the_event_and_goes_on<H: Harness>(h: H) {
    let (s, log) = poisoned(h.store()).await;
    let before = Utc::now();
    let tally = Tally {
        fail_on: Some("Poison"),
        panic_on: Some("Panic"),
        ..Tally::new("tally")
    };
    let park = ProjectionOptions {
        on_error: OnError::Park,
        ..options(500)
    };
    let runner = h.spawn(tally, park);
    wait_for(&runner, log[5].position).await;
    runner.stop().await.unwrap();

    // Everything else is handled; nothing the failing events wrote is kept.
    let (recorded, model) = h.tracked_model("tally").await;
    assert_eq!(
        model,
        expected(h.store(), |e| !["Poison", "Panic"]
            .contains(&e.event_type.as_str()))
        .await
    );
    assert_eq!(recorded, Some(log[5].position));
    assert_eq!(h.lag("tally").await, 0);

    let parked = h.parked("tally").await;
    let (poison, panic) = ParkedFailures {
        name: "tally",
        poisoned: (s, &log),
        before,
        poison_error: "cannot tally",
        panic_message: "tally exploded",
    }
    .check::<H>(&parked);
    // The store's own list and the trait's agree.
    assert_eq!(h.store().parked("tally").await.unwrap(), parked);
    assert!(h.parked("other").await.is_empty());

    // The store still works after the panic (on SQLite's writer thread).
    h.store().append(vec![event(s, 7)]).await.unwrap();

    // An operator removes a parked event once dealt with.
    assert!(h.unpark("tally", poison.position).await);
    assert!(!h.unpark("tally", poison.position).await);
    assert_eq!(h.parked("tally").await, vec![panic]);
}

pub async fn a_failing_setup_ends_the_runner_naming_the_projection<H: Harness>(h: H) {
    let broken = Tally {
        broken_setup: true,
        ..Tally::new("broken")
    };
    let err = h
        .spawn(broken, ProjectionOptions::default())
        .join()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`broken`"), "{message}");
    assert!(message.contains(H::Store::SYNTAX_ERROR), "{message}");
    assert_eq!(h.store().tracking_position("broken").await.unwrap(), None);
}
