//! The projections the SQLite figures run: one that does nothing, and one that reports when its
//! handler sees each event.

use std::time::Instant;

use eventsourcing::{
    prelude::*,
    sqlite::{rusqlite::Transaction, SqliteProjection},
    BoxError as CoreBoxError, StoredEvent,
};
use tokio::sync::mpsc;

/// A projection that does nothing with the events.
pub(crate) struct NoOp(pub(crate) String);

impl SqliteProjection for NoOp {
    fn name(&self) -> &str {
        &self.0
    }

    fn handle(&mut self, _: &Transaction<'_>, event: &StoredEvent) -> Result<(), CoreBoxError> {
        std::hint::black_box(event);
        Ok(())
    }
}

/// Sends the time its handler sees each event.
pub(crate) struct Stopwatch(pub(crate) mpsc::UnboundedSender<(Uuid, Instant)>);

impl SqliteProjection for Stopwatch {
    fn name(&self) -> &str {
        "bench-live"
    }

    fn handle(&mut self, _: &Transaction<'_>, event: &StoredEvent) -> Result<(), CoreBoxError> {
        let _ = self.0.send((event.stream_id, Instant::now()));
        Ok(())
    }
}
