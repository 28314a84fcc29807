//! Projections progress independently, each at its own position, and report their lag.

use eventsourcing::{EventStore, NewEvent, Uuid};

use super::{event, expected, last_position, options, typed, wait_for, wait_until, Harness, Tally};

pub async fn projections_progress_independently_and_report_lag<H: Harness>(h: H) {
    let stream = Uuid::new_v4();
    let save: Vec<NewEvent> = (1..=100)
        .map(|v| typed(stream, v, if v % 5 == 0 { "Renamed" } else { "Happened" }))
        .collect();
    h.store().append(save).await.unwrap();
    let end = last_position(h.store()).await;
    let renames = || Tally {
        types: Some(vec!["Renamed".into()]),
        ..Tally::new("renames")
    };

    // Nothing recorded yet: every event is lag.
    assert_eq!(h.lag("all").await, 100);
    assert_eq!(h.lag("renames").await, 100);

    let all = h.spawn(Tally::new("all"), options(30));
    wait_for(&all, end).await;
    all.stop().await.unwrap();
    assert_eq!(h.lag("all").await, 0);
    assert_eq!(h.lag("renames").await, 100);
    assert_eq!(h.model("renames").await.events, vec![]);

    // Filtered-out events count as lag until the projection's position passes them.
    let only = h.spawn(renames(), options(30));
    wait_for(&only, end).await;
    only.stop().await.unwrap();
    assert_eq!(h.lag("renames").await, 0);
    assert_eq!(
        h.model("renames").await,
        expected(h.store(), |e| e.event_type == "Renamed").await
    );
    assert_eq!(h.model("all").await.events.len(), 100);

    // New events: both lag by them, independently.
    h.store()
        .append((101..=107).map(|v| event(stream, v)).collect())
        .await
        .unwrap();
    assert_eq!(h.lag("all").await, 7);
    assert_eq!(h.lag("renames").await, 7);
    let all = h.spawn(Tally::new("all"), options(30));
    wait_for(&all, last_position(h.store()).await).await;
    all.stop().await.unwrap();
    assert_eq!(h.lag("all").await, 0);
    assert_eq!(h.lag("renames").await, 7);

    // A running projection that skips a run of filtered-out events records them once it has
    // caught up: its lag reaches zero while it runs, not only when it stops.
    let only = h.spawn(renames(), options(5));
    wait_for(&only, last_position(h.store()).await).await;
    wait_until(
        "the running `renames` records the events it skipped",
        || async {
            assert!(!only.is_finished(), "`renames` ended early");
            h.lag("renames").await == 0
        },
    )
    .await;
    only.stop().await.unwrap();
    assert_eq!(h.lag("renames").await, 0);
    assert_eq!(
        h.model("renames").await,
        expected(h.store(), |e| e.event_type == "Renamed").await
    );
}
