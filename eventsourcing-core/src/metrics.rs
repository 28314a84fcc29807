//! Metrics and tracing spans: every metric this library records, named once.
//!
//! The library records through the [`metrics`](https://docs.rs/metrics) facade and never installs
//! an exporter: the application picks one (Prometheus, StatsD, OpenTelemetry …) and installs it
//! before it opens its stores; without one every record is a no-op (a few nanoseconds). Call
//! [`describe`] once after installing the recorder to give it the unit and meaning of each
//! metric. The same list is in [`METRICS`] for tools.
//!
//! | metric | kind | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `eventsourcing_saves_total` | counter | count | `aggregate_type`, `store` | saves that stored their events (`aggregate_type` is `mixed` for a save of several types) |
//! | `eventsourcing_save_failures_total` | counter | count | `aggregate_type`, `store`, `reason` | saves that stored nothing; `reason`: `conflict`, `transient` or `error` |
//! | `eventsourcing_events_appended_total` | counter | count | `aggregate_type`, `store` | events stored by saves (the event storage rate) |
//! | `eventsourcing_save_duration_seconds` | histogram | seconds | `aggregate_type`, `store` | time of a save's append, failed ones too |
//! | `eventsourcing_load_duration_seconds` | histogram | seconds | `aggregate_type`, `store`, `snapshot` | time to load and rebuild an aggregate; `snapshot`: `hit` (rebuilt from a snapshot), `miss` (the type snapshots but none was usable), `none` (the type does not snapshot) |
//! | `eventsourcing_snapshots_written_total` | counter | count | `aggregate_type`, `store` | snapshots written (automatic, replacing an unreadable one, or `take_snapshot`) |
//! | `eventsourcing_snapshot_hits_total` | counter | count | `aggregate_type`, `store` | loads that started from a snapshot |
//! | `eventsourcing_snapshot_misses_total` | counter | count | `aggregate_type`, `store` | loads of a snapshotting type that found no usable snapshot |
//! | `eventsourcing_log_reads_total` | counter | count | `store` | pages read from the log (`read_log`: projections, subscriptions, tools) |
//! | `eventsourcing_log_events_read_total` | counter | count | `store` | events those pages held |
//! | `eventsourcing_log_read_duration_seconds` | histogram | seconds | `store` | time of one log page read (query latency of the log) |
//! | `eventsourcing_projection_batches_total` | counter | count | `projection`, `store` | batches a projection or process application committed |
//! | `eventsourcing_projection_events_total` | counter | count | `projection`, `store` | events in those batches (handled or skipped by type) |
//! | `eventsourcing_projection_batch_duration_seconds` | histogram | seconds | `projection`, `store` | time of one batch, retries included |
//! | `eventsourcing_projection_lag_seconds` | gauge | seconds | `projection`, `store` | age of the last event a running projection handled, 0 once it has caught up with the log |
//! | `eventsourcing_projection_lag_events` | gauge | count | `projection`, `store` | events after the projection's position, set each time the store's `projection_lag(name)` is asked (e.g. by `eventsourcing-admin status`) |
//! | `eventsourcing_projection_failures_total` | counter | count | `projection`, `store`, `outcome` | `outcome`: `parked` (an event parked under `OnError::Park`), `stopped` (the runner ended with an error) |
//! | `eventsourcing_pool_connections_in_use` | gauge | count | `store`, `role` | connections doing work: PostgreSQL pooled connections checked out (`role` `pooled`); SQLite jobs running on the writer (`writer`) or on reader connections (`reader`) |
//! | `eventsourcing_pool_waiting` | gauge | count | `store`, `role` | callers waiting for a connection: PostgreSQL callers waiting for a pooled connection; SQLite jobs queued for the writer or for a reader |
//!
//! Labels take few values each: `store` is [`EventStore::store_kind`](crate::EventStore::store_kind)
//! (`memory`, `sqlite`, `postgres`), `aggregate_type` is `Aggregate::TYPE_NAME`, `projection` the
//! consumer's name. Pool gauges add up over every store of a kind in the process.
//!
//! Spans (through `tracing`, created only when a subscriber wants them): `eventsourcing.save`
//! (debug: `aggregate_type`, `stream_id` of the first aggregate, `events`), `eventsourcing.load`
//! (debug: `aggregate_type`, `stream_id`, `snapshot`), `eventsourcing.read_log` (debug: `store`,
//! `limit`, `events`) and `eventsourcing.projection_batch` (info: `projection`, `events`).

use std::{
    future::Future,
    sync::atomic::{AtomicI64, Ordering},
    time::Instant,
};

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use chrono::{DateTime, Utc};
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::{
    error::Error,
    event::{Position, StoredEvent},
};

/// Saves that stored their events.
pub const SAVES: &str = "eventsourcing_saves_total";
/// Saves that stored nothing.
pub const SAVE_FAILURES: &str = "eventsourcing_save_failures_total";
/// Events stored by saves.
pub const EVENTS_APPENDED: &str = "eventsourcing_events_appended_total";
/// Time of a save's append.
pub const SAVE_DURATION: &str = "eventsourcing_save_duration_seconds";
/// Time to load and rebuild an aggregate.
pub const LOAD_DURATION: &str = "eventsourcing_load_duration_seconds";
/// Snapshots written.
pub const SNAPSHOTS_WRITTEN: &str = "eventsourcing_snapshots_written_total";
/// Loads that started from a snapshot.
pub const SNAPSHOT_HITS: &str = "eventsourcing_snapshot_hits_total";
/// Loads of a snapshotting type that found no usable snapshot.
pub const SNAPSHOT_MISSES: &str = "eventsourcing_snapshot_misses_total";
/// Pages read from the log.
pub const LOG_READS: &str = "eventsourcing_log_reads_total";
/// Events read from the log.
pub const LOG_EVENTS_READ: &str = "eventsourcing_log_events_read_total";
/// Time of one log page read.
pub const LOG_READ_DURATION: &str = "eventsourcing_log_read_duration_seconds";
/// Batches a projection or process application committed.
pub const PROJECTION_BATCHES: &str = "eventsourcing_projection_batches_total";
/// Events in committed projection batches.
pub const PROJECTION_EVENTS: &str = "eventsourcing_projection_events_total";
/// Time of one projection batch.
pub const PROJECTION_BATCH_DURATION: &str = "eventsourcing_projection_batch_duration_seconds";
/// Age of the last event a running projection handled; 0 when caught up.
pub const PROJECTION_LAG_SECONDS: &str = "eventsourcing_projection_lag_seconds";
/// Events after a projection's position, as last asked with `projection_lag`.
pub const PROJECTION_LAG_EVENTS: &str = "eventsourcing_projection_lag_events";
/// Events parked and runners stopped.
pub const PROJECTION_FAILURES: &str = "eventsourcing_projection_failures_total";
/// Connections doing work.
pub const POOL_IN_USE: &str = "eventsourcing_pool_connections_in_use";
/// Callers waiting for a connection.
pub const POOL_WAITING: &str = "eventsourcing_pool_waiting";

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// One metric: its name, kind, unit, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name, following Prometheus conventions.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit of its values.
    pub unit: Unit,
    /// The label names it carries.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

const AGG: &[&str] = &["aggregate_type", "store"];
const PROJ: &[&str] = &["projection", "store"];
const POOL: &[&str] = &["store", "role"];

const fn metric(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Every metric the library records (the table above).
pub const METRICS: &[Metric] = &[
    metric(
        SAVES,
        Kind::Counter,
        Unit::Count,
        AGG,
        "Saves that stored their events",
    ),
    metric(
        SAVE_FAILURES,
        Kind::Counter,
        Unit::Count,
        &["aggregate_type", "store", "reason"],
        "Saves that stored nothing (reason: conflict, transient, error)",
    ),
    metric(
        EVENTS_APPENDED,
        Kind::Counter,
        Unit::Count,
        AGG,
        "Events stored by saves",
    ),
    metric(
        SAVE_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        AGG,
        "Time of a save's append",
    ),
    metric(
        LOAD_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        &["aggregate_type", "store", "snapshot"],
        "Time to load and rebuild an aggregate (snapshot: hit, miss, none)",
    ),
    metric(
        SNAPSHOTS_WRITTEN,
        Kind::Counter,
        Unit::Count,
        AGG,
        "Snapshots written",
    ),
    metric(
        SNAPSHOT_HITS,
        Kind::Counter,
        Unit::Count,
        AGG,
        "Loads that started from a snapshot",
    ),
    metric(
        SNAPSHOT_MISSES,
        Kind::Counter,
        Unit::Count,
        AGG,
        "Loads of a snapshotting type that found no usable snapshot",
    ),
    metric(
        LOG_READS,
        Kind::Counter,
        Unit::Count,
        &["store"],
        "Pages read from the log",
    ),
    metric(
        LOG_EVENTS_READ,
        Kind::Counter,
        Unit::Count,
        &["store"],
        "Events read from the log",
    ),
    metric(
        LOG_READ_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        &["store"],
        "Time of one log page read",
    ),
    metric(
        PROJECTION_BATCHES,
        Kind::Counter,
        Unit::Count,
        PROJ,
        "Batches a projection or process application committed",
    ),
    metric(
        PROJECTION_EVENTS,
        Kind::Counter,
        Unit::Count,
        PROJ,
        "Events in committed projection batches",
    ),
    metric(
        PROJECTION_BATCH_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        PROJ,
        "Time of one projection batch, retries included",
    ),
    metric(
        PROJECTION_LAG_SECONDS,
        Kind::Gauge,
        Unit::Seconds,
        PROJ,
        "Age of the last event a running projection handled; 0 once caught up",
    ),
    metric(
        PROJECTION_LAG_EVENTS,
        Kind::Gauge,
        Unit::Count,
        PROJ,
        "Events after the projection's position, as last asked with projection_lag",
    ),
    metric(
        PROJECTION_FAILURES,
        Kind::Counter,
        Unit::Count,
        &["projection", "store", "outcome"],
        "Events parked and runners stopped (outcome: parked, stopped)",
    ),
    metric(
        POOL_IN_USE,
        Kind::Gauge,
        Unit::Count,
        POOL,
        "Connections doing work",
    ),
    metric(
        POOL_WAITING,
        Kind::Gauge,
        Unit::Count,
        POOL,
        "Callers waiting for a connection",
    ),
];

/// Gives the installed recorder the unit and meaning of every metric in [`METRICS`]. Call it
/// once, after installing the recorder; without one it does nothing.
pub fn describe() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => ::metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => ::metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => ::metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// The aggregate types of one save, with the number of events of each, and the first stream.
#[derive(Debug, Default)]
pub(crate) struct SaveSummary {
    first_id: Option<Uuid>,
    first: Option<(&'static str, u64)>,
    /// Other types, for a save of several (rare: no allocation otherwise).
    more: Vec<(&'static str, u64)>,
}

impl SaveSummary {
    pub(crate) fn add(&mut self, aggregate_type: &'static str, id: Uuid, events: usize) {
        let events = events as u64;
        self.first_id.get_or_insert(id);
        match &mut self.first {
            None => self.first = Some((aggregate_type, events)),
            Some((t, n)) if *t == aggregate_type => *n += events,
            Some(_) => match self.more.iter_mut().find(|(t, _)| *t == aggregate_type) {
                Some((_, n)) => *n += events,
                None => self.more.push((aggregate_type, events)),
            },
        }
    }

    /// The `aggregate_type` label of the save.
    fn label(&self) -> &'static str {
        match (&self.first, self.more.is_empty()) {
            (Some((t, _)), true) => t,
            (None, _) => "",
            (Some(_), false) => "mixed",
        }
    }

    /// A span for the save (debug level).
    pub(crate) fn span(&self, events: usize) -> Span {
        tracing::debug_span!(
            "eventsourcing.save",
            aggregate_type = self.label(),
            stream_id = self.first_id.map(tracing::field::display),
            events
        )
    }

    /// Records a save's outcome and how long its append took.
    pub(crate) fn record(&self, store: &'static str, started: Instant, result: &Result<(), Error>) {
        let aggregate_type = self.label();
        let labels = [("aggregate_type", aggregate_type), ("store", store)];
        histogram!(SAVE_DURATION, &labels).record(started.elapsed());
        match result {
            Ok(()) => {
                counter!(SAVES, &labels).increment(1);
                for (t, n) in self.first.iter().chain(&self.more) {
                    counter!(EVENTS_APPENDED, "aggregate_type" => *t, "store" => store)
                        .increment(*n);
                }
            }
            Err(e) => {
                let reason = if e.is_conflict() {
                    "conflict"
                } else if e.is_transient() {
                    "transient"
                } else {
                    "error"
                };
                counter!(SAVE_FAILURES, "aggregate_type" => aggregate_type, "store" => store, "reason" => reason)
                    .increment(1);
            }
        }
    }
}

/// Whether a load started from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotUse {
    /// The type does not snapshot.
    None,
    /// Rebuilt from a snapshot.
    Hit,
    /// The type snapshots, but no usable snapshot was found.
    Miss,
}

/// A span for loading an aggregate (debug level).
pub(crate) fn load_span(aggregate_type: &'static str, id: Uuid) -> Span {
    tracing::debug_span!(
        "eventsourcing.load",
        aggregate_type,
        stream_id = %id,
        snapshot = tracing::field::Empty
    )
}

/// Records a successful load (and on its span whether it used a snapshot).
pub(crate) fn record_load(
    span: &Span,
    store: &'static str,
    aggregate_type: &'static str,
    snapshot: SnapshotUse,
    started: Instant,
) {
    let label = match snapshot {
        SnapshotUse::None => "none",
        SnapshotUse::Hit => "hit",
        SnapshotUse::Miss => "miss",
    };
    span.record("snapshot", label);
    let labels = [
        ("aggregate_type", aggregate_type),
        ("store", store),
        ("snapshot", label),
    ];
    histogram!(LOAD_DURATION, &labels).record(started.elapsed());
    let labels = &labels[..2];
    match snapshot {
        SnapshotUse::None => {}
        SnapshotUse::Hit => counter!(SNAPSHOT_HITS, labels).increment(1),
        SnapshotUse::Miss => counter!(SNAPSHOT_MISSES, labels).increment(1),
    }
}

/// Records a snapshot written.
pub(crate) fn record_snapshot_written(store: &'static str, aggregate_type: &str) {
    counter!(SNAPSHOTS_WRITTEN, "aggregate_type" => aggregate_type.to_owned(), "store" => store)
        .increment(1);
}

/// Runs a store's read of one log page inside an `eventsourcing.read_log` span and records it:
/// for store authors, around the body of `EventStore::read_log`.
pub async fn observe_log_read<F>(
    store: &'static str,
    after: Position,
    limit: usize,
    read: F,
) -> Result<Vec<StoredEvent>, Error>
where
    F: Future<Output = Result<Vec<StoredEvent>, Error>>,
{
    let span = tracing::debug_span!(
        "eventsourcing.read_log",
        store,
        after = ?after,
        limit,
        events = tracing::field::Empty
    );
    let started = Instant::now();
    let result = read.instrument(span.clone()).await;
    if let Ok(events) = &result {
        span.record("events", events.len());
        let labels = [("store", store)];
        histogram!(LOG_READ_DURATION, &labels).record(started.elapsed());
        counter!(LOG_READS, &labels).increment(1);
        counter!(LOG_EVENTS_READ, &labels).increment(events.len() as u64);
    }
    result
}

/// Records the answer of a store's `projection_lag(name)`: for store authors.
pub fn record_projection_lag(store: &'static str, projection: &str, events: u64) {
    gauge!(PROJECTION_LAG_EVENTS, "projection" => projection.to_owned(), "store" => store)
        .set(events as f64);
}

/// The metric handles of one projection runner, registered once when it starts.
#[derive(Debug)]
pub(crate) struct ProjectionMetrics {
    name: String,
    batches: Counter,
    events: Counter,
    duration: Histogram,
    lag: Gauge,
    parked: Counter,
    stopped: Counter,
}

impl ProjectionMetrics {
    pub(crate) fn new(name: &str, store: &'static str) -> Self {
        let labels = [("projection", name.to_owned()), ("store", store.to_owned())];
        let failure = |outcome: &'static str| counter!(PROJECTION_FAILURES, "projection" => name.to_owned(), "store" => store, "outcome" => outcome);
        ProjectionMetrics {
            name: name.to_owned(),
            batches: counter!(PROJECTION_BATCHES, &labels),
            events: counter!(PROJECTION_EVENTS, &labels),
            duration: histogram!(PROJECTION_BATCH_DURATION, &labels),
            lag: gauge!(PROJECTION_LAG_SECONDS, &labels),
            parked: failure("parked"),
            stopped: failure("stopped"),
        }
    }

    /// A span for one batch (info level).
    pub(crate) fn batch_span(&self, events: usize) -> Span {
        tracing::info_span!(
            "eventsourcing.projection_batch",
            projection = %self.name,
            events
        )
    }

    /// Records a batch: its time, and if it committed `events` (> 0), it and its events.
    pub(crate) fn batch(&self, started: Instant, events: usize) {
        self.duration.record(started.elapsed());
        if events > 0 {
            self.batches.increment(1);
            self.events.increment(events as u64);
        }
    }

    /// Sets the lag: 0 when caught up, else the age of the last event handled.
    pub(crate) fn lag(&self, caught_up: bool, last: Option<DateTime<Utc>>) {
        let seconds = match last {
            Some(at) if !caught_up => (Utc::now() - at).as_seconds_f64().max(0.0),
            _ => 0.0,
        };
        self.lag.set(seconds);
    }

    pub(crate) fn parked(&self, events: usize) {
        if events > 0 {
            self.parked.increment(events as u64);
        }
    }

    pub(crate) fn stopped(&self) {
        self.stopped.increment(1);
    }
}

/// The connection gauges of one kind of store and one role, kept in a `static` by the store
/// crate: [`queued`](Self::queued) when a caller starts waiting for a connection,
/// [`Queued::start`] once it has one, and the [`InUse`] guard dropped when it gives it back.
/// The counts add up over every store of the process that uses the same `static`.
#[derive(Debug)]
pub struct PoolGauges {
    store: &'static str,
    role: &'static str,
    in_use: AtomicI64,
    waiting: AtomicI64,
}

impl PoolGauges {
    /// Gauges labelled `store` and `role`.
    pub const fn new(store: &'static str, role: &'static str) -> Self {
        PoolGauges {
            store,
            role,
            in_use: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
        }
    }

    fn change(&self, which: &AtomicI64, name: &'static str, by: i64) {
        let now = which.fetch_add(by, Ordering::Relaxed) + by;
        gauge!(name, "store" => self.store, "role" => self.role).set(now as f64);
    }

    /// A caller starts waiting for a connection.
    pub fn queued(&'static self) -> Queued {
        self.change(&self.waiting, POOL_WAITING, 1);
        Queued { gauges: self }
    }
}

/// A caller waiting for a connection; dropped unstarted, it stops waiting.
#[derive(Debug)]
pub struct Queued {
    gauges: &'static PoolGauges,
}

impl Queued {
    /// The caller has its connection.
    pub fn start(self) -> InUse {
        let gauges = self.gauges;
        // Drop stops the waiting.
        drop(self);
        gauges.change(&gauges.in_use, POOL_IN_USE, 1);
        InUse { gauges }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gauges.change(&self.gauges.waiting, POOL_WAITING, -1);
    }
}

/// A connection in use; dropped when the caller gives it back.
#[derive(Debug)]
pub struct InUse {
    gauges: &'static PoolGauges,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.gauges.change(&self.gauges.in_use, POOL_IN_USE, -1);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
