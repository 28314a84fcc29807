//! [`Position`]: a place in the notification log. Its own module, so that the error type can
//! name positions without depending on the event envelope (which returns errors).

use serde::{Deserialize, Serialize};

/// A place in the global order of all events of a store (the notification log).
///
/// Positions compare first by `commit`, then by `seq`. On PostgreSQL `commit` is the writing
/// transaction's id, so the order is one in which no event can later appear before a position a
/// reader has passed; single-writer stores number their saves in `commit`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// The save (transaction) order.
    pub commit: u64,
    /// The order within and across saves.
    pub seq: u64,
}

impl Position {
    /// The position before every event.
    pub const START: Position = Position { commit: 0, seq: 0 };
}
