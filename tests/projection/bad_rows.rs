//! A stored row that cannot be read (metadata no writer of this library writes) is reported on
//! its own, with its position, and never stops the other consumers' reading: the log page still
//! comes back, a subscription reports it and goes on, a projection parks it under `Park` or
//! stops on it under `Stop`.

use eventsourcing::{Error, EventStore, OnError, Position, ProjectionOptions, Subscription};

use super::{events, expected, log, options, wait_for, Harness, Tally, WAIT};

pub async fn an_unreadable_row_is_reported_alone_and_parked_or_stopped_on<H: Harness>(h: H) {
    let (a, b) = (eventsourcing::new_id(), eventsourcing::new_id());
    h.store().append(events(a, 1, 3)).await.unwrap();
    h.store().append(events(b, 1, 2)).await.unwrap();
    h.corrupt_metadata(a, 2).await;

    // The page comes back whole: the bad row is marked, with what could be read of it.
    let all = log(h.store()).await;
    assert_eq!(all.len(), 5, "one bad row must not fail the page");
    let bad: Vec<_> = all.iter().filter(|e| e.defect.is_some()).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    let bad = bad[0].clone();
    assert_eq!((bad.stream_id, bad.version), (a, 2));
    let defect = bad.defect.clone().unwrap_or_default();
    assert!(defect.contains("metadata"), "{defect}");

    // A subscription reports it as an error naming the position, then goes on after it.
    let mut subscription = Subscription::new(h.store().clone(), Position::START);
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..all.len() {
        let next = tokio::time::timeout(WAIT, subscription.next()).await;
        match next.expect("the subscription delivers the five rows") {
            Ok(event) => seen.push(event.position),
            Err(e) => errors.push(e),
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(!seen.contains(&bad.position));
    let [Error::BadRow { position, .. }] = errors.as_slice() else {
        panic!("expected one BadRow, got {errors:?}");
    };
    assert_eq!(*position, bad.position);
    let message = errors[0].to_string();
    assert!(
        message.contains(&a.to_string()) && message.contains("version 2"),
        "{message}"
    );

    // Park: the row is parked, every other event handled, the projection goes on.
    let end = all.last().map(|e| e.position).unwrap_or_default();
    let park = ProjectionOptions {
        on_error: OnError::Park,
        ..options(500)
    };
    let runner = h.spawn(Tally::new("parks"), park);
    wait_for(&runner, end).await;
    runner.stop().await.unwrap();
    assert_eq!(
        h.model("parks").await,
        expected(h.store(), |e| e.defect.is_none()).await
    );
    let parked = h.parked("parks").await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(
        (parked[0].position, parked[0].stream_id, parked[0].version),
        (bad.position, a, 2)
    );
    assert!(parked[0].error.contains("metadata"), "{}", parked[0].error);
    assert_eq!(h.lag("parks").await, 0);

    // Stop: the runner ends naming the row; what came before it is committed, nothing after.
    for page in [1, 500] {
        let name = format!("stops-{page}");
        let runner = h.spawn(Tally::new(&name), options(page));
        let err = tokio::time::timeout(WAIT, runner.join())
            .await
            .expect("the runner stops on the row instead of going on")
            .unwrap_err();
        let Error::Handler { position, .. } = &err else {
            panic!("expected the runner to stop on the row, got {err:?}");
        };
        assert_eq!(*position, bad.position, "{err}");
        assert!(err.to_string().contains("metadata"), "{err}");
        let (recorded, model) = h.tracked_model(&name).await;
        assert!(recorded < Some(bad.position), "{recorded:?}");
        assert_eq!(
            model,
            expected(h.store(), |e| e.position < bad.position).await
        );
    }
}
