//! Every event applied exactly once: through aborts, concurrent writers, two runners of one
//! projection; and a live event handled without waiting for the poll.

use std::{sync::atomic::Ordering, sync::Arc, time::Duration};

use eventsourcing::{sqlite::testing::Writers, EventStore, Position, ProjectionOptions, Uuid};

use super::{
    event, events, expected, fill, last_position, options, wait_for, wait_until, Harness, Tally,
};

pub async fn abort_in_the_middle_of_catch_up_then_restart_applies_each_event_once<H: Harness>(
    h: H,
) {
    // 3,000 events over 300 streams.
    fill(h.store(), 30, 10, 10).await;
    let end = last_position(h.store()).await;

    // Abort three times at different points of the catch-up (after about 700, 1400 and 2100
    // events), each time with a batch perhaps in the middle of its transaction.
    let mut previous = Position::START;
    for _ in 0..3 {
        let tally = Tally {
            delay: Duration::from_micros(100),
            ..Tally::new("tally")
        };
        let handled = Arc::clone(&tally.handled);
        let runner = h.spawn(tally, options(25));
        wait_until("the tally has handled 700 events", || {
            assert!(!runner.is_finished(), "the projection ended early");
            std::future::ready(handled.load(Ordering::Relaxed) >= 700)
        })
        .await;
        runner.abort();
        let _ = runner.join().await;
        // The read model is exactly the log up to the recorded position, never more or less
        // (read together, in one snapshot).
        let (recorded, model) = h.tracked_model("tally").await;
        let recorded = recorded.expect("a position is recorded after 700 events");
        assert!(
            recorded > previous && recorded < end,
            "aborted at {recorded:?} (before: {previous:?}), not in the middle"
        );
        previous = recorded;
        assert_eq!(
            model,
            expected(h.store(), |e| e.position <= recorded).await,
            "after the abort at {recorded:?}"
        );
    }

    let runner = h.spawn(Tally::new("tally"), options(25));
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    let (recorded, model) = h.tracked_model("tally").await;
    assert_eq!(recorded, Some(end));
    assert_eq!(model.events.len(), 3000);
    assert_eq!(model, expected(h.store(), |_| true).await);
    assert_eq!(h.lag("tally").await, 0);
}

pub async fn eight_writers_with_a_live_projection_end_consistent<H: Harness>(h: H) {
    let runner = h.spawn(Tally::new("tally"), options(500));
    Writers::spawn(h.store(), 8, 40).join().await;
    let end = last_position(h.store()).await;
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    let model = h.model("tally").await;
    assert_eq!(model.events.len() as u64, 8 * Writers::per_writer(40));
    assert_eq!(model, expected(h.store(), |_| true).await);
    assert_eq!(h.lag("tally").await, 0);
}

/// With a poll interval of an hour, only the store's wake-up can bring a live event within the
/// suite's wait.
pub async fn a_live_event_arrives_without_waiting_for_the_poll<H: Harness>(h: H) {
    let stream = Uuid::new_v4();
    h.store().append(events(stream, 1, 5)).await.unwrap();
    let hour_poll = ProjectionOptions {
        poll_interval: Duration::from_secs(3600),
        ..ProjectionOptions::default()
    };
    let runner = h.spawn(Tally::new("tally"), hour_poll);
    wait_for(&runner, last_position(h.store()).await).await;
    // Caught up: the runner now waits for a wake-up (or an hour). Two live events in turn; an
    // event saved before the runner has gone back to its wait is not missed either (it looks
    // for saves since its last read first).
    for version in [6, 7] {
        h.store()
            .append(vec![event(stream, version)])
            .await
            .unwrap();
        wait_for(&runner, last_position(h.store()).await).await;
    }
    runner.stop().await.unwrap();
    assert_eq!(h.model("tally").await.streams[&stream], 7);
    assert_eq!(h.model("tally").await, expected(h.store(), |_| true).await);
}

/// A duplicate would break the tally's key, fail the handler and stop a runner. The second
/// runner is on another store instance where the store has one, as in a second process.
pub async fn two_runners_of_one_projection_apply_each_event_once<H: Harness>(h: H) {
    fill(h.store(), 30, 10, 10).await;
    let end = last_position(h.store()).await;
    let other = h.another_store().await;
    let a = h.spawn(Tally::new("tally"), options(20));
    let b = h.spawn_on(&other, Tally::new("tally"), options(35));
    wait_for(&a, end).await;
    wait_for(&b, end).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let model = h.model("tally").await;
    assert_eq!(model.events.len(), 3000);
    assert_eq!(model, expected(h.store(), |_| true).await);
}
