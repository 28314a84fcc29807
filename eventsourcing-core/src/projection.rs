//! What every store's projection runner shares: its options and what it parks.
//!
//! The runners themselves live in the store crates (`eventsourcing_sqlite::spawn_projection`,
//! `eventsourcing_postgres::spawn_projection`), because a projection's read-model writes and its
//! tracking position commit in the store's own transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event::Position;

/// What a projection runner does when a projection's handler fails on an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Commit the events of the batch before the failing one, nothing of the failing one, and
    /// end the runner with [`Error::Handler`](crate::Error::Handler) naming the projection and
    /// the event (type, stream, version, position). A restart tries that event again. The
    /// default.
    #[default]
    Stop,
    /// Record the event in the store's `parked_events` table in the transaction that moves the
    /// position past it, and go on with the next event; whatever the handler wrote for it is
    /// rolled back. Operators list parked events with the store's `parked(name)`.
    Park,
}

/// How a projection runner reads, batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct ProjectionOptions {
    /// Events read per query, and at most handled per transaction (default 500). Bigger pages
    /// catch up faster (one commit per page); smaller ones hold the store for less time.
    pub page_size: usize,
    /// How long to wait for a wake-up before reading the log anyway (default 1 s). Saves
    /// through the same store wake the runner at once; this bounds the delay when a wake-up
    /// is lost or comes from elsewhere.
    pub poll_interval: Duration,
    /// Consecutive attempts after a transient failure (a busy or lost connection, a
    /// serialization failure, a deadlock, a lock timeout) before the runner ends with the
    /// error (default 10).
    pub attempts: u32,
    /// The first wait after a transient failure; it doubles up to 5 s (default 50 ms).
    pub backoff: Duration,
    /// What to do with an event the handler fails on (default [`OnError::Stop`]).
    pub on_error: OnError,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            page_size: 500,
            poll_interval: Duration::from_secs(1),
            attempts: 10,
            backoff: Duration::from_millis(50),
            on_error: OnError::Stop,
        }
    }
}

/// An event a projection running with [`OnError::Park`] could not handle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParkedEvent {
    /// The projection's name.
    pub name: String,
    /// The event's place in the log (read it again with `read_log` from just before it).
    pub position: Position,
    /// The event's stream.
    pub stream_id: Uuid,
    /// The event's version in its stream.
    pub version: u64,
    /// The event's type.
    pub event_type: String,
    /// What the handler returned, with its sources joined by `": "`.
    pub error: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

impl ParkedEvent {
    /// `event`, parked now by consumer `name` with the handler's `error` text.
    pub fn new(name: &str, event: &crate::event::StoredEvent, error: &str) -> Self {
        ParkedEvent {
            name: name.to_owned(),
            position: event.position,
            stream_id: event.stream_id,
            version: event.version,
            event_type: event.event_type.clone(),
            error: error.to_owned(),
            parked_at: Utc::now(),
        }
    }
}
