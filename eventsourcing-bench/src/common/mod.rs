//! What every store's benchmark shares: the aggregate and its raw payloads, the raw baselines'
//! fold, the timing loops of the figures that both stores measure alike, the live-latency
//! harness, and reporting.

pub(crate) mod catchup_memory;
pub(crate) mod cipher;
pub(crate) mod counter;
pub(crate) mod fold;
pub(crate) mod live;
pub(crate) mod recorder;
pub(crate) mod stats;
pub(crate) mod timing;

/// The error of a benchmark step. Not `Send`: every figure runs on the main task, and what runs
/// in spawned tasks reports its errors as strings.
pub(crate) type BoxError = Box<dyn std::error::Error>;
