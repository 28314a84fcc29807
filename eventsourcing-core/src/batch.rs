//! One batch of a projection runner: what to do with each event of it, given the position the
//! store has recorded and the handler failures found so far. Pure logic, shared by every store.

use std::{any::Any, panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;

use crate::{
    error::BoxError,
    event::{Position, StoredEvent},
};

/// A page of the log, handed to a store's [`BatchTarget`](crate::engine::BatchTarget) to apply
/// in one transaction.
#[derive(Debug)]
pub struct Batch {
    /// Every event read, the filtered-out ones too: they move the position on.
    pub events: Vec<StoredEvent>,
    /// The position to record when every event is done: the last event's, or (for a batch with
    /// no events) the position the runner has skipped to.
    pub end: Position,
    /// The event types the consumer handles; `None` for all.
    pub types: Option<Arc<[String]>>,
}

/// Whether a consumer of `types` (`None`: all) handles `event`. A row whose type could not be
/// read is handled (as a failure), never skipped unseen.
pub(crate) fn wanted(types: Option<&[String]>, event: &StoredEvent) -> bool {
    (event.defect.is_some() && event.event_type.is_empty())
        || types.is_none_or(|types| types.contains(&event.event_type))
}

/// The handler failures found in earlier attempts at one batch, by index into
/// [`Batch::events`]: the next attempt stops before the first, or parks them.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Stop before this event ([`OnError::Stop`](crate::OnError::Stop)).
    pub stop: Option<usize>,
    /// Park these events instead of handling them, with the error text of each
    /// ([`OnError::Park`](crate::OnError::Park)).
    pub parked: Vec<(usize, String)>,
}

/// One thing to do inside the batch's transaction, in order.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Hand the event to the handler. On failure, return [`Outcome::Failed`] with `index`.
    Handle {
        /// The event's index in [`Batch::events`].
        index: usize,
        /// The event.
        event: &'a StoredEvent,
    },
    /// Record the event as parked, with the handler's error text.
    Park {
        /// The event.
        event: &'a StoredEvent,
        /// What the handler failed with.
        error: &'a str,
    },
}

/// What one attempt at a batch does: its steps, then the position to record (if any).
#[derive(Debug)]
pub struct Plan<'a> {
    /// The steps, in log order.
    pub steps: Vec<Step<'a>>,
    /// The position to write to the tracking row once every step succeeded, then commit;
    /// `None`: nothing to record, roll back.
    pub record: Option<Position>,
    /// Whether the attempt ends before a known failing event.
    pub stopped: bool,
}

impl Batch {
    /// Whether the consumer handles `event`.
    pub fn wants(&self, event: &StoredEvent) -> bool {
        wanted(self.types.as_deref(), event)
    }

    /// The failures known before any attempt: the rows that could not be read
    /// ([`StoredEvent::defect`]) among those the consumer handles, as `OnError` says. Returns
    /// the known failures and, under `Stop`, the first such row's index and error.
    pub(crate) fn defects(&self, park: bool) -> (Known, Option<(usize, BoxError)>) {
        let mut known = Known::default();
        let mut first = None;
        for (index, event) in self.events.iter().enumerate() {
            let Err(error) = event.check_defect() else {
                continue;
            };
            if !self.wants(event) {
                continue;
            }
            if park {
                known.parked.push((index, error.to_string()));
            } else {
                known.stop = Some(index);
                first = Some((index, BoxError::from(error)));
                break;
            }
        }
        (known, first)
    }

    /// What an attempt does when the store has recorded `recorded` (read in the attempt's own
    /// transaction, under the lock that keeps other runners of the consumer out): events at or
    /// before it were applied already (perhaps by another runner) and are skipped, so no event
    /// is applied twice; a batch it covers whole does nothing.
    pub fn plan<'a>(&'a self, recorded: Option<Position>, known: &'a Known) -> Plan<'a> {
        let mut steps = Vec::new();
        let mut done = None;
        let mut stopped = false;
        if recorded.is_some_and(|r| r >= self.end) {
            return Plan {
                steps,
                record: None,
                stopped,
            };
        }
        for (index, event) in self.events.iter().enumerate() {
            if recorded.is_some_and(|r| event.position <= r) {
                continue;
            }
            if known.stop == Some(index) {
                stopped = true;
                break;
            }
            if self.wants(event) {
                let step = match known.parked.iter().find(|(i, _)| *i == index) {
                    Some((_, error)) => Step::Park { event, error },
                    None => Step::Handle { index, event },
                };
                steps.push(step);
            }
            done = Some(event.position);
        }
        let last = if stopped { done } else { Some(self.end) };
        Plan {
            steps,
            record: last.filter(|p| recorded.is_none_or(|r| *p > r)),
            stopped,
        }
    }
}

/// How one attempt at a batch ended.
#[derive(Debug)]
pub enum Outcome {
    /// Committed, or had nothing to commit.
    Done {
        /// The tracking position after the attempt: what it committed, or what was recorded
        /// already if it committed nothing.
        position: Option<Position>,
        /// It ended before [`Known::stop`] ([`Plan::stopped`]).
        stopped: bool,
    },
    /// The handler failed on the event at `index`; the attempt's transaction was rolled back.
    Failed {
        /// The failing event's index in [`Batch::events`].
        index: usize,
        /// What the handler returned (or its panic, as an error).
        error: BoxError,
        /// The tracking position the attempt read.
        recorded: Option<Position>,
    },
}

/// Runs user code; a panic becomes an error instead of unwinding through the runner (or a
/// store's writer thread).
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T, BoxError>) -> Result<T, BoxError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(panicked(&*panic)))
}

/// Awaits user code; a panic becomes an error.
pub async fn catch_panic_async<T>(
    f: impl std::future::Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panicked(&*panic)))
}

fn panicked(panic: &(dyn Any + Send)) -> BoxError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("the handler panicked: {message}").into()
}

/// An error with its sources, joined by `": "`, leaving out a source whose text the message
/// already includes.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Metadata;
    use chrono::Utc;
    use uuid::Uuid;

    fn event(seq: u64, event_type: &str) -> StoredEvent {
        StoredEvent {
            stream_id: Uuid::nil(),
            version: seq,
            position: Position { commit: 1, seq },
            event_type: event_type.into(),
            stream_type: String::new(),
            schema_version: 1,
            timestamp: Utc::now(),
            payload: Vec::new(),
            metadata: Metadata::default(),
            defect: None,
        }
    }

    fn batch(types: Option<&[&str]>) -> Batch {
        let events = vec![event(1, "A"), event(2, "B"), event(3, "A"), event(4, "A")];
        Batch {
            end: events[3].position,
            events,
            types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn handled(plan: &Plan<'_>) -> Vec<u64> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Handle { event, .. } => Some(event.version),
                Step::Park { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_batch_handles_every_wanted_event_and_records_its_end() {
        let b = batch(Some(&["A"]));
        let none = Known::default();
        let plan = b.plan(None, &none);
        assert_eq!(handled(&plan), [1, 3, 4]);
        assert_eq!(plan.record, Some(b.end));
        assert!(!plan.stopped);
    }

    #[test]
    fn events_the_recorded_position_covers_are_skipped() {
        let b = batch(None);
        let none = Known::default();
        let plan = b.plan(Some(b.events[1].position), &none);
        assert_eq!(handled(&plan), [3, 4]);
        let whole = b.plan(Some(b.end), &none);
        assert!(whole.steps.is_empty());
        assert_eq!(whole.record, None);
    }

    #[test]
    fn a_known_stop_ends_before_the_failing_event_keeping_the_ones_before() {
        let b = batch(None);
        let known = Known {
            stop: Some(2),
            parked: Vec::new(),
        };
        let plan = b.plan(None, &known);
        assert_eq!(handled(&plan), [1, 2]);
        assert_eq!(plan.record, Some(b.events[1].position));
        assert!(plan.stopped);
        // Failing on the first new event: nothing to record.
        let first = Known {
            stop: Some(0),
            parked: Vec::new(),
        };
        let plan = b.plan(None, &first);
        assert!(plan.steps.is_empty() && plan.stopped && plan.record.is_none());
    }

    #[test]
    fn known_failures_are_parked_in_place() {
        let b = batch(None);
        let known = Known {
            stop: None,
            parked: vec![(1, "bad".into())],
        };
        let plan = b.plan(None, &known);
        assert_eq!(handled(&plan), [1, 3, 4]);
        assert!(matches!(plan.steps[1], Step::Park { error: "bad", .. }));
        assert_eq!(plan.record, Some(b.end));
    }

    #[test]
    fn panics_become_errors_and_chains_do_not_repeat_themselves() {
        let e = catch_panic::<()>(|| panic!("boom"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("the handler panicked: boom"));
        let io = std::io::Error::other("disk gone");
        let outer = crate::Error::store(io);
        assert_eq!(
            error_chain(&outer),
            "event store failure: disk gone",
            "the source's text is already in the message"
        );
    }
}
