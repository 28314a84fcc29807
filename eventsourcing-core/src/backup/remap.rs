//! [`Remap`]: a consumer's position in the source's log to the same place in the target's.

use std::collections::BTreeMap;

use crate::event::Position;

/// Maps source positions (of tracking and parked records) to target positions while an import
/// writes the events in log order.
///
/// A position maps to the new position of the last imported event at or before it: a consumer
/// that had processed up to event E in the source has processed up to E's new position in the
/// target. A position before every event maps to [`Position::START`]. Memory: the positions
/// asked for, not the events.
#[derive(Debug)]
pub struct Remap {
    wanted: Vec<Position>,
    next: usize,
    last_new: Position,
    found: BTreeMap<Position, Position>,
}

impl Remap {
    /// A remap of `wanted` (ascending, as [`Verified::positions`](super::Verified) gives them).
    pub fn new(mut wanted: Vec<Position>) -> Self {
        wanted.sort_unstable();
        wanted.dedup();
        Remap {
            wanted,
            next: 0,
            last_new: Position::START,
            found: BTreeMap::new(),
        }
    }

    /// The event at source position `old` was written at `new`. Events must come in ascending
    /// `old` order.
    pub fn event(&mut self, old: Position, new: Position) {
        while let Some(&wanted) = self.wanted.get(self.next) {
            if wanted >= old {
                break;
            }
            self.found.insert(wanted, self.last_new);
            self.next += 1;
        }
        self.last_new = new;
    }

    /// After the last event: the target position of a wanted source position.
    pub fn get(&mut self, old: Position) -> Position {
        while let Some(&wanted) = self.wanted.get(self.next) {
            self.found.insert(wanted, self.last_new);
            self.next += 1;
        }
        match self.found.get(&old) {
            Some(&new) => new,
            // Not asked for up front: the conservative answer is the last event's position
            // only if `old` is past every event, which `get` cannot know; START re-delivers
            // rather than skips.
            None => Position::START,
        }
    }
}
