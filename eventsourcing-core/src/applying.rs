//! What an event method does when it is called while another event is being applied.
//!
//! An event's body runs twice in an aggregate's life: live, when its method records it, and on
//! every load, when replay applies the stored event. A body that recorded other events would
//! store them as events of their own besides its own effect; replay would then apply the body
//! (whose nested calls apply again) and the stored nested events too, and rebuild another state.
//! `#[events]` refuses direct calls (`self.bump()` in an event body) at compile time; this guard
//! catches at run time what the macro cannot see (a helper, a method of another type):
//!
//! - live: the nested event method panics, naming both methods, before it changes anything. It
//!   is a programming error, as deterministic as a `RefCell` double borrow, so the first test
//!   that takes the path finds it; and no event that would make replay diverge is recorded.
//! - replaying a stored later event: the nested call does nothing. Code from before this guard
//!   stored each nested event as an event of its own, which replay applies in its turn; applying
//!   it inside the body as well was the double application.
//! - replaying a creation event (or building a value inside a replayed event): the nested call
//!   applies without recording. `record_creation` always dropped what was recorded while the
//!   value was built, so only the body's effect ever reached the store.
//!
//! So replay of stored events never panics because of this and never leaves pending events.

use std::cell::Cell;

#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// No event is being applied on this thread.
    Idle,
    /// An event method is applying its event before recording it.
    Live {
        aggregate: &'static str,
        method: &'static str,
    },
    /// Replay is loading stored events (creation events aside, see below).
    Replay,
    /// Replay is building an aggregate from its creation event.
    ReplayCreation,
}

thread_local! {
    // One per thread is enough: event bodies are synchronous (event methods cannot be
    // async), so a body starts and ends on one thread with nothing else run in between.
    // A const `Cell` has no destructor, so reading it never fails, even at thread exit.
    static MODE: Cell<Mode> = const { Cell::new(Mode::Idle) };
}

/// What the event method that asked does; apply its body while holding the scope.
pub(crate) enum Enter {
    /// Apply and record: no other event is being applied.
    Record(Scope),
    /// Apply, record nothing.
    Apply(Scope),
    /// Neither apply nor record (never for a creation event).
    Skip,
}

/// Called by an event method before its body runs; `creation` for a creation event.
pub(crate) fn enter(aggregate: &'static str, method: &'static str, creation: bool) -> Enter {
    // One replace on the common path (nothing being applied), restored by the scope.
    let scope = Scope::enter(Mode::Live { aggregate, method });
    match scope.previous {
        Mode::Idle => Enter::Record(scope),
        Mode::Live {
            aggregate: outer_aggregate,
            method: outer,
        } => {
            drop(scope);
            panic!(
                "event method `{outer_aggregate}::{outer}` called event method `{aggregate}::{method}` while being applied: an event's body is replayed from the stored event alone, so it must not record other events; call both from a command method instead"
            )
        }
        mode @ (Mode::Replay | Mode::ReplayCreation) => {
            tracing::warn!(
                aggregate,
                method,
                "an event method was called while a stored event was replayed; it records nothing (an event's body must not call event methods)"
            );
            if matches!(mode, Mode::Replay) && !creation {
                drop(scope);
                Enter::Skip
            } else {
                MODE.set(Mode::ReplayCreation);
                Enter::Apply(scope)
            }
        }
    }
}

/// Sets the mode until dropped, also when the body panics.
pub(crate) struct Scope {
    previous: Mode,
}

impl Scope {
    pub(crate) fn enter(mode: Mode) -> Self {
        Scope {
            previous: MODE.replace(mode),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        MODE.set(self.previous);
    }
}
