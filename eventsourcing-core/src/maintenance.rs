//! What an operator runs on a store (`eventsourcing-admin`): counts and sizes, index use, snapshot pruning, `vacuum`, and the store check (`verify`). The [`Maintenance`]
//! trait names them once; each store implements only its SQL, and what is the same on every
//! store is written here: the `vacuum` loop over the store's steps, and [`verify`]'s rules, over
//! pages of raw rows a store supplies in `(stream_id, version)` order and the snapshot rows that
//! do not fit their stream, held one page at a time.

use std::{future::Future, time::Duration};

use serde::Serialize;
use uuid::Uuid;

use crate::{error::Error, event::StoredEvent, store::EventStore};

mod verify;

pub use verify::verify;

/// The operations `eventsourcing-admin` runs, on any store that implements them (SQLite,
/// PostgreSQL, and the facade's `AnyStore`, which forwards to the store it holds).
///
/// A store implements the required methods with its own SQL; [`vacuum`](Self::vacuum) and
/// [`verify`](Self::verify) are written here once over the steps and pages it supplies.
pub trait Maintenance: EventStore {
    /// Counts of events, streams, snapshots and parked events, every tracking row with its
    /// lag (events of this store's log after its position), and each table's size. Read-only.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, Error>> + Send;

    /// Every index of the store's tables with its size and, where the database counts them,
    /// its scans since the statistics were reset.
    fn index_usage(&self) -> impl Future<Output = Result<Vec<IndexUsage>, Error>> + Send;

    /// Deletes the snapshots `prune` selects (never the newest `keep` of a stream) in one
    /// transaction. Snapshots only speed up loads: removing old ones changes no state and no
    /// projection.
    fn prune_snapshots(
        &self,
        prune: SnapshotPrune,
    ) -> impl Future<Output = Result<PruneReport, Error>> + Send;

    /// The statements [`vacuum`](Self::vacuum) runs, in order.
    fn vacuum_steps(&self) -> Vec<String>;

    /// Runs one of the [`vacuum_steps`](Self::vacuum_steps); what it returned, if anything
    /// worth showing.
    fn vacuum_step(&self, sql: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Reclaims space and refreshes the planner's statistics: the store's
    /// [`vacuum_steps`](Self::vacuum_steps), one after another; `step` is called before each
    /// with its index, the number of steps and its text.
    fn vacuum(
        &self,
        mut step: impl FnMut(usize, usize, &str) + Send,
    ) -> impl Future<Output = Result<Vec<MaintenanceStep>, Error>> + Send {
        async move {
            let steps = self.vacuum_steps();
            let mut done = Vec::with_capacity(steps.len());
            for (i, sql) in steps.iter().enumerate() {
                step(i, steps.len(), sql);
                let result = self.vacuum_step(sql).await?;
                done.push(MaintenanceStep {
                    step: sql.clone(),
                    result,
                });
            }
            Ok(done)
        }
    }

    /// The events stored: the total [`verify`](Self::verify) reports progress against.
    fn count_events(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The snapshots above their stream's version, or of a stream with no events, in
    /// `(stream_id, version)` order: at most [`MAX_LISTED`] + 1.
    fn bad_snapshots(&self) -> impl Future<Output = Result<Vec<RawSnapshot>, Error>> + Send;

    /// At most [`VERIFY_PAGE`] events after `after` in `(stream_id, version)` order (`None`:
    /// from the start), each read by the store's own reader to learn whether a load could read
    /// it.
    fn events_page(
        &self,
        after: Option<(Uuid, i64)>,
    ) -> impl Future<Output = Result<Vec<RawEvent>, Error>> + Send;

    /// Reads every event in `(stream_id, version)` order, a page at a time, and every snapshot
    /// that does not fit its stream, and checks them ([`verify`]). `progress` gets the events
    /// checked so far and the total. Read-only.
    fn verify(
        &self,
        payload: PayloadCheck,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> impl Future<Output = Result<VerifyReport, Error>> + Send {
        async move {
            let total = self.count_events().await?;
            let snapshots = self.bad_snapshots().await?;
            let page = |after| self.events_page(after);
            verify(self, payload, page, snapshots, |done| progress(done, total)).await
        }
    }
}

/// Counts and sizes of a store (`eventsourcing-admin status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Streams (distinct stream ids) stored.
    pub streams: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Events parked by projections (`OnError::Park`).
    pub parked: u64,
    /// Every consumer (projection or process) with a tracking row, and how far behind this
    /// store's log it is.
    pub consumers: Vec<ConsumerLag>,
    /// The store's tables with their sizes.
    pub tables: Vec<TableSize>,
}

/// A tracking row and its lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    /// The consumer's name.
    pub name: String,
    /// Its recorded position: commit part.
    pub position_commit: u64,
    /// Its recorded position: sequence part.
    pub position_seq: u64,
    /// Events of this store's log after that position. A process that follows another store's
    /// log is measured against this one all the same: read it as "events here it has not seen"
    /// only for consumers of this store.
    pub behind: u64,
}

/// One table's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// The table.
    pub table: String,
    /// Its rows' size in bytes (the heap, or the table's b-tree on SQLite).
    pub bytes: Option<u64>,
    /// Its indexes' size in bytes.
    pub index_bytes: Option<u64>,
}

/// One index: size and use (`eventsourcing-admin indexes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexUsage {
    /// The table it indexes.
    pub table: String,
    /// The index.
    pub index: String,
    /// Its size in bytes, if the database tells.
    pub bytes: Option<u64>,
    /// Index scans since the statistics were last reset; `None` where the database does not
    /// count them (SQLite).
    pub scans: Option<u64>,
    /// It enforces uniqueness (a primary key or unique constraint): needed even if never
    /// scanned.
    pub unique: bool,
}

impl IndexUsage {
    /// Never scanned and not needed for a constraint: a candidate for dropping (after a
    /// representative period since the statistics were reset).
    pub fn unused(&self) -> bool {
        self.scans == Some(0) && !self.unique
    }
}

/// What `prune_snapshots` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Snapshots deleted.
    pub deleted: u64,
    /// Snapshots left.
    pub kept: u64,
}

/// Which snapshots `prune_snapshots` removes: those beyond the newest `keep` of their stream
/// and, with `older_than`, only those taken longer ago than that. The newest `keep` (at least
/// one) of every stream are never removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPrune {
    /// Snapshots kept per stream, newest first; at least 1.
    pub keep: u32,
    /// Only snapshots older than this are removed.
    pub older_than: Option<Duration>,
}

/// One maintenance step done (`vacuum`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceStep {
    /// What ran (`VACUUM (ANALYZE) "s"."events"`, `PRAGMA optimize`, ...).
    pub step: String,
    /// What it returned, if anything worth showing.
    pub result: Option<String>,
}

/// How `verify` checks payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadCheck {
    /// Each payload must be valid JSON (the [`JsonCodec`](crate::JsonCodec)).
    #[default]
    Json,
    /// Any bytes (a compressing or encrypting codec): only that they can be read.
    Bytes,
}

/// An event row as stored, for [`verify`]: its key columns raw (the next page starts after
/// them), the rest as the store's own reader reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The stream.
    pub stream_id: Uuid,
    /// Its version, as stored (a negative or zero one is reported).
    pub version: i64,
    /// The row as a load reads it: a row the store cannot read (a column not as the store
    /// writes it: metadata of another shape, a timestamp out of range, ...) has a
    /// [`defect`](StoredEvent::defect), what a load would fail with as [`Error::BadRow`].
    pub event: StoredEvent,
}

/// A snapshot row that does not fit its stream, for [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshot {
    /// The stream.
    pub stream_id: Uuid,
    /// The snapshot's version.
    pub version: i64,
    /// The stream's current version; `None` when the stream has no events.
    pub stream_version: Option<i64>,
}

/// One thing wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The stream.
    pub stream_id: Uuid,
    /// The version concerned (of the event or snapshot).
    pub version: i64,
    /// A short kind: `gap`, `unreadable` (the store cannot read the row: metadata of another
    /// shape, a timestamp out of range, ...), `event_type`, `payload`, `snapshot`.
    pub kind: &'static str,
    /// What is wrong, in words.
    pub detail: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events read.
    pub events: u64,
    /// Streams read.
    pub streams: u64,
    /// Streams whose first events were archived (`eventsourcing-admin archive`): they start
    /// above version 1, at or below a snapshot's version + 1, so they still load.
    pub archived_streams: u64,
    /// Snapshot rows found not to fit their stream (counted in `problems` too).
    pub bad_snapshots: u64,
    /// Every problem found, up to [`MAX_LISTED`] (then `more` counts the rest).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.more == 0
    }
}

/// The tables every store keeps, in the order reports list them ([`StoreStats::tables`], the
/// PostgreSQL `vacuum`).
pub const TABLES: [&str; 5] = [
    "events",
    "snapshots",
    "tracking",
    "parked_events",
    "eventsourcing_migrations",
];

/// Problems listed in a [`VerifyReport`] at most (memory stays bounded on a badly broken store).
pub const MAX_LISTED: usize = 1000;

/// Rows `verify` reads per page.
pub const VERIFY_PAGE: usize = 500;
