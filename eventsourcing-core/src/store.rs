use std::future::Future;

use uuid::Uuid;

use crate::{
    changes::Changes,
    error::Error,
    event::{NewEvent, Position, Snapshot, StoredEvent, Tracking},
    projection::ParkedEvent,
    replay::{fold_stored, Fold},
};

/// The one seam between the runtime and a storage backend.
///
/// Every store (in memory, SQLite, PostgreSQL) implements it, and the conformance suite in
/// `tests/conformance` checks each one against the same expectations.
pub trait EventStore: Send + Sync + 'static {
    /// Writes all `events` atomically, or nothing.
    ///
    /// `events` may hold several streams; within a stream the versions are contiguous and
    /// ascending. The first event of a stream must be at the stream's current version + 1,
    /// otherwise the store returns [`Error::Conflict`] naming that stream and writes nothing.
    fn append(&self, events: Vec<NewEvent>) -> impl Future<Output = Result<(), Error>> + Send;

    /// Reads the events of one stream with `after_version < version <= up_to`, in version order.
    fn load(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send;

    /// The events of one stream for rebuilding an aggregate: like [`load`](Self::load), but a
    /// store may leave `position` and `metadata` at their defaults, since replay reads neither.
    /// Stores override it to read less; the default is `load`.
    fn load_for_replay(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        self.load(stream_id, after_version, up_to)
    }

    /// Feeds the events of one stream with `after_version < version <= up_to` to `fold`, in
    /// version order, and returns it: what a load replays. A store overrides it to hand out
    /// views of its rows instead of building a [`StoredEvent`] per event; the default is
    /// [`load_for_replay`](Self::load_for_replay), then [`fold_stored`](crate::fold_stored).
    /// An error of `fold` ends it, returned as is; a row the store cannot read is
    /// [`Error::BadRow`].
    fn replay_into<F: Fold>(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        fold: F,
    ) -> impl Future<Output = Result<F, Error>> + Send {
        async move {
            let events = self
                .load_for_replay(stream_id, after_version, up_to)
                .await?;
            fold_stored(&events, fold)
        }
    }

    /// The stream's current version: 0 if it has no events.
    fn stream_version(&self, stream_id: Uuid) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Reads at most `limit` events of all streams after `after` in the global order.
    ///
    /// A reader that repeatedly passes the last position it saw never skips an event, even one
    /// whose save commits after later-numbered events.
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send;

    /// Writes a snapshot, replacing one at the same stream and version, then keeps only the
    /// newest `keep` snapshots of that stream (all of them when `None`), in one transaction.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        keep: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The newest snapshot of the stream at or below `at_or_below` (any version when `None`).
    fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send;

    /// What a snapshotting load reads: the newest snapshot of the stream at or below `up_to`
    /// (any version when `None`) and the events after it up to `up_to`, read as
    /// [`load_for_replay`](Self::load_for_replay) reads them (after version 0 when there is no
    /// snapshot). Stores override it to read both in one round trip; the default makes the two
    /// calls.
    ///
    /// The events start after the snapshot's version even if the caller cannot use the
    /// snapshot (another struct shape): it then reads the earlier events itself.
    fn load_from_snapshot(
        &self,
        stream_id: Uuid,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<(Option<Snapshot>, Vec<StoredEvent>), Error>> + Send {
        async move {
            let snapshot = self.load_snapshot(stream_id, up_to).await?;
            let after = snapshot.as_ref().map_or(0, |s| s.version);
            let events = self.load_for_replay(stream_id, after, up_to).await?;
            Ok((snapshot, events))
        }
    }

    /// Appends `events` (possibly none) and records `tracking`, atomically: both or neither.
    ///
    /// Fails like [`append`](Self::append), and with [`Error::AlreadyProcessed`] (writing
    /// nothing) when the consumer has already recorded `tracking.position` or a later one.
    fn append_tracked(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The position a consumer last recorded with [`append_tracked`](Self::append_tracked).
    fn tracking_position(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send;

    /// Records that consumer `parked.name` could not handle the event at `parked.position`,
    /// and moves the consumer's tracking position to it, atomically: both or neither.
    ///
    /// Fails with [`Error::AlreadyProcessed`] (writing nothing) when the consumer has already
    /// recorded that position or a later one. Process applications park this way under
    /// [`OnError::Park`](crate::OnError::Park); projections park inside their own batch
    /// transaction.
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), Error>> + Send;

    /// The events consumer `name` parked, in log order.
    fn parked(&self, name: &str) -> impl Future<Output = Result<Vec<ParkedEvent>, Error>> + Send;

    /// Wakes subscribers when new events may be readable. A store that cannot tell returns
    /// [`Changes::none`], and subscribers fall back to polling.
    fn changes(&self) -> Changes;

    /// What kind of store this is (`memory`, `sqlite`, `postgres`): the `store` label of the
    /// [metrics](crate::metrics). Other stores may keep the default, `other`.
    fn store_kind(&self) -> &'static str {
        "other"
    }
}
