//! Helpers shared by the test files.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use eventsourcing_core::{
    chrono::{DateTime, Utc},
    NewEvent, Uuid,
};

/// A timestamp with microsecond precision (what the store keeps).
pub fn at_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap()
}

/// An event of `stream` at `version` with a payload naming both.
pub fn event(stream: Uuid, version: u64) -> NewEvent {
    NewEvent {
        timestamp: at_micros(1_700_000_000_123_456 + version as i64),
        ..NewEvent::new(
            stream,
            version,
            "Happened",
            format!("{stream}:{version}").into_bytes(),
        )
    }
}

/// Events `from..=to` of `stream`.
pub fn events(stream: Uuid, from: u64, to: u64) -> Vec<NewEvent> {
    (from..=to).map(|v| event(stream, v)).collect()
}
