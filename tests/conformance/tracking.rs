//! Tracking positions: a consumer's progress, recorded atomically with what it writes.

use eventsourcing::prelude::*;
use eventsourcing::{Position, Tracking};

use super::fixtures::raw_event;

/// Events and a tracking position are written together or not at all, and a position already
/// recorded is refused.
pub async fn tracking_is_atomic_with_events<S: EventStore>(store: S) {
    assert_eq!(store.tracking_position("audit").await.unwrap(), None);
    let a = eventsourcing::new_id();
    let at = |seq| Position { commit: seq, seq };
    let track = |name: &str, seq| Tracking {
        name: name.into(),
        position: at(seq),
    };
    store
        .append_tracked(vec![raw_event(a, 1)], track("audit", 5))
        .await
        .unwrap();
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(5)));
    assert_eq!(store.stream_version(a).await.unwrap(), 1);

    // A conflicting event: neither the event nor the new position is written.
    let err = store
        .append_tracked(vec![raw_event(a, 1)], track("audit", 6))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(5)));

    // Already processed: nothing is written.
    let b = eventsourcing::new_id();
    let err = store
        .append_tracked(vec![raw_event(b, 1)], track("audit", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyProcessed { .. }), "{err:?}");
    assert_eq!(store.stream_version(b).await.unwrap(), 0);

    // Only a position (no events) moves the tracking on; other names are independent.
    store
        .append_tracked(vec![], track("audit", 9))
        .await
        .unwrap();
    store
        .append_tracked(vec![], track("other", 1))
        .await
        .unwrap();
    assert_eq!(store.tracking_position("audit").await.unwrap(), Some(at(9)));
    assert_eq!(store.tracking_position("other").await.unwrap(), Some(at(1)));
}
