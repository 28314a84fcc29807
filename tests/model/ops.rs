//! The operations a model test runs, and the strategies that make random sequences of them.
//!
//! Saves are described relative to the state they meet (the next version of a stream, a stale
//! one, one past the end), so that a shrunk sequence still means what the original did.

use eventsourcing::chrono::{DateTime, Utc};
use eventsourcing::{Snapshot, Uuid};
use proptest::collection::vec;
use proptest::prelude::*;

/// How many streams and consumer names a case uses: few, so that operations meet each other.
pub(crate) const STREAMS: usize = 4;
pub(crate) const NAMES: [&str; 3] = ["projection-a", "process-b", "nämé with spaces"];

/// The id of the stream numbered `index`.
pub(crate) fn stream_id(index: usize) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + index as u128 + 1)
}

/// A timestamp from microseconds since the epoch (the epoch itself where out of range).
pub(crate) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Where one stream's part of a save starts, relative to the stream's current version.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// The current version + 1: accepted.
    Next,
    /// That many versions before the next one (a stale copy); version 0 when it goes below.
    Stale(u64),
    /// That many versions past the next one.
    Ahead(u64),
    /// An absolute version at the top of the storable range, or past it.
    Absolute(u64),
}

/// One stream's events in a save.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) stream: usize,
    pub(crate) start: Start,
    pub(crate) events: Vec<EventSpec>,
    /// Skip a version before the event at this index (a save that is not contiguous).
    pub(crate) gap_at: Option<usize>,
}

/// A save: the parts of several streams, their events interleaved by `interleave` (each
/// entry picks the part that gives the next event), each stream's own order kept.
#[derive(Debug, Clone)]
pub(crate) struct Save {
    pub(crate) parts: Vec<Part>,
    pub(crate) interleave: Vec<usize>,
}

/// One event's content.
#[derive(Debug, Clone)]
pub(crate) struct EventSpec {
    pub(crate) event_type: String,
    pub(crate) stream_type: String,
    pub(crate) schema_version: u32,
    pub(crate) micros: i64,
    pub(crate) payload: Vec<u8>,
    pub(crate) correlation: Option<u128>,
    pub(crate) causation: Option<u128>,
    pub(crate) values: Vec<(String, String)>,
}

/// Where a log read starts.
#[derive(Debug, Clone)]
pub(crate) enum After {
    /// `Position::START`.
    Start,
    /// After the event at this index (modulo the log's length + 1; 0 is the start).
    Event(usize),
    /// After every storable position.
    End,
}

/// One call on a store.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Append(Save),
    AppendTracked {
        save: Save,
        name: usize,
        position: (u64, u64),
    },
    SaveSnapshot {
        snapshot: Snapshot,
        keep: Option<u32>,
    },
    Load {
        stream: usize,
        after: u64,
        up_to: Option<u64>,
        replay: bool,
    },
    StreamVersion(usize),
    ReadLog {
        after: After,
        limit: usize,
    },
    LoadSnapshot {
        stream: usize,
        at_or_below: Option<u64>,
    },
    TrackingPosition(usize),
    Park {
        name: usize,
        position: (u64, u64),
        stream: usize,
        version: u64,
        event_type: String,
        error: String,
    },
    Parked(usize),
}

/// Up to `max` operations.
pub(crate) fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 0..=max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => save().prop_map(Op::Append),
        4 => (save_or_empty(), 0..NAMES.len(), tracking_position())
            .prop_map(|(save, name, position)| Op::AppendTracked { save, name, position }),
        3 => snapshot(),
        4 => (0..STREAMS, bound(), proptest::option::weighted(0.7, bound()), any::<bool>())
            .prop_map(|(stream, after, up_to, replay)| Op::Load { stream, after, up_to, replay }),
        2 => (0..STREAMS).prop_map(Op::StreamVersion),
        4 => (after(), limit()).prop_map(|(after, limit)| Op::ReadLog { after, limit }),
        2 => (0..STREAMS, proptest::option::weighted(0.7, bound()))
            .prop_map(|(stream, at_or_below)| Op::LoadSnapshot { stream, at_or_below }),
        1 => (0..NAMES.len()).prop_map(Op::TrackingPosition),
        2 => park(),
        1 => (0..NAMES.len()).prop_map(Op::Parked),
    ]
}

fn save() -> impl Strategy<Value = Save> {
    (vec(part(), 1..=3), vec(0..3usize, 0..8))
        .prop_map(|(parts, interleave)| Save { parts, interleave })
}

/// A tracked append may carry no events: only the position moves.
fn save_or_empty() -> impl Strategy<Value = Save> {
    prop_oneof![
        1 => Just(Save { parts: Vec::new(), interleave: Vec::new() }),
        3 => save(),
    ]
}

fn part() -> impl Strategy<Value = Part> {
    (
        0..STREAMS,
        start(),
        vec(event(), 1..=3),
        proptest::option::weighted(0.05, 1..3usize),
    )
        .prop_map(|(stream, start, events, gap_at)| Part {
            stream,
            start,
            events,
            gap_at,
        })
}

fn start() -> impl Strategy<Value = Start> {
    let top = i64::MAX as u64;
    prop_oneof![
        40 => Just(Start::Next),
        2 => (1..4u64).prop_map(Start::Stale),
        2 => (1..4u64).prop_map(Start::Ahead),
        1 => prop_oneof![Just(top - 1), Just(top), Just(top + 1), Just(u64::MAX)]
            .prop_map(Start::Absolute),
    ]
}

prop_compose! {
    /// An event of a save: each field beside the strategy it comes from.
    fn event()(
        event_type in event_type(),
        stream_type in prop_oneof![
            4 => Just(String::new()),
            1 => Just("Counter".to_owned()),
            1 => text(),
        ],
        schema_version in schema_version(),
        micros in micros(),
        payload in vec(any::<u8>(), 0..12),
        correlation in proptest::option::weighted(0.2, any::<u128>()),
        causation in proptest::option::weighted(0.1, any::<u128>()),
        values in prop_oneof![
            4 => Just(Vec::new()),
            1 => vec((text_or_nul(), text_or_nul()), 1..3),
        ],
    ) -> EventSpec {
        EventSpec {
            event_type,
            stream_type,
            schema_version,
            micros,
            payload,
            correlation,
            causation,
            values,
        }
    }
}

/// Mostly ordinary names; now and then one that no store keeps (empty, or with a NUL).
fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => prop_oneof![Just("Opened"), Just("Added"), Just("Renamed")].prop_map(str::to_owned),
        4 => "\\PC{1,6}",
        1 => Just(String::new()),
        1 => "[a-z]{0,3}\0[a-z]{0,3}",
    ]
}

/// Any printable text, including none.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,6}"
}

/// Text that now and then holds a NUL character (which no store keeps in metadata).
fn text_or_nul() -> impl Strategy<Value = String> {
    prop_oneof![40 => text(), 1 => "[a-z]{0,2}\0"]
}

fn schema_version() -> impl Strategy<Value = u32> {
    let top = i32::MAX as u32;
    small_or_edges(40, 0..4u32, [top, top + 1, u32::MAX])
}

/// Mostly `small`, now and then one of the `edges` of the range a store keeps.
fn small_or_edges<T: Clone + std::fmt::Debug + 'static>(
    weight: u32,
    small: impl Strategy<Value = T> + 'static,
    edges: [T; 3],
) -> BoxedStrategy<T> {
    prop_oneof![weight => small, 1 => proptest::sample::select(edges.to_vec())].boxed()
}

/// Microseconds since the epoch, from the 17th century to the 22nd: a range every store keeps.
fn micros() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1_500_000_000_000_000..1_800_000_000_000_000i64,
        1 => -10_000_000_000_000_000..4_102_444_800_000_000i64,
        1 => Just(0),
    ]
}

/// A version bound for loads and snapshot lookups: small, or at the edges of the range.
fn bound() -> impl Strategy<Value = u64> {
    let top = i64::MAX as u64;
    small_or_edges(12, 0..8u64, [top, top + 1, u64::MAX])
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![10 => 0..6usize, 1 => Just(usize::MAX)]
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![
        1 => Just(After::Start),
        6 => any::<usize>().prop_map(After::Event),
        1 => Just(After::End),
    ]
}

/// A consumer's upstream position: small, so that positions meet, now and then the largest a
/// SQL store keeps. Never `Position::START`, which no event has: PostgreSQL reads a recorded
/// START as nothing recorded (a second park or tracked append at START is accepted there and
/// refused elsewhere).
fn tracking_position() -> impl Strategy<Value = (u64, u64)> {
    let top = i64::MAX as u64;
    prop_oneof![
        12 => (0..4u64, 0..4u64).prop_filter("START is no event's position", |p| *p != (0, 0)),
        1 => Just((top, top)),
    ]
}

fn snapshot() -> impl Strategy<Value = Op> {
    (
        0..STREAMS,
        0..8u64,
        text(),
        any::<u64>(),
        micros(),
        vec(any::<u8>(), 0..12),
        // `Some(0)` included: every store keeps at least the newest one.
        proptest::option::weighted(0.4, 0..4u32),
    )
        .prop_map(
            |(stream, version, state_type, fingerprint, micros, payload, keep)| {
                let snapshot = Snapshot {
                    stream_id: stream_id(stream),
                    version,
                    state_type,
                    fingerprint,
                    timestamp: time(micros),
                    payload,
                };
                Op::SaveSnapshot { snapshot, keep }
            },
        )
}

fn park() -> impl Strategy<Value = Op> {
    (
        0..NAMES.len(),
        tracking_position(),
        0..STREAMS,
        0..8u64,
        event_type().prop_filter("stores keep no NUL", |t| !t.contains('\0')),
        text(),
    )
        .prop_map(
            |(name, position, stream, version, event_type, error)| Op::Park {
                name,
                position,
                stream,
                version,
                event_type,
                error,
            },
        )
}
