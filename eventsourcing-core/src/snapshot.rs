use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    aggregate::Aggregate,
    codec::{Codec, CodecError, EncodeContext, PayloadKind},
    config::{ConfigError, Env},
    event::Snapshot,
};

/// When snapshots are taken and how many are kept.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `IS_SNAPSHOTTING_ENABLED` | unset: types with `#[aggregate(snapshot_every = N)]` snapshot, and only their loads look for snapshots | `n`: none read, none written; `y`: every load looks for a snapshot (so `take_snapshot` helps any type) |
/// | `SNAPSHOT_INTERVAL` | unset: each type's own `snapshot_every` | a snapshot whenever a save takes an aggregate across a multiple of N, for every type |
/// | `MAX_SNAPSHOTS` | unset: keep all | keep the newest N snapshots per aggregate, pruned in the same write as a new one |
///
/// Snapshots are written right after the events' write commits, awaited by `save` but never
/// failing it: the events are already stored, so a failed snapshot only costs a slower load
/// (it is logged with `tracing`). A save that crosses no multiple of the interval pays nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshotting {
    enabled: Option<bool>,
    interval: Option<u64>,
    keep: Option<u32>,
}

/// The variable that turns snapshots on or off.
pub const IS_SNAPSHOTTING_ENABLED: &str = "IS_SNAPSHOTTING_ENABLED";
/// The variable that sets the interval for every aggregate type.
pub const SNAPSHOT_INTERVAL: &str = "SNAPSHOT_INTERVAL";
/// The variable that bounds the snapshots kept per aggregate.
pub const MAX_SNAPSHOTS: &str = "MAX_SNAPSHOTS";

impl Snapshotting {
    /// Reads `IS_SNAPSHOTTING_ENABLED`, `SNAPSHOT_INTERVAL` and `MAX_SNAPSHOTS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let enabled = env.flag(&[IS_SNAPSHOTTING_ENABLED])?;
        let interval = positive(env, SNAPSHOT_INTERVAL)?;
        let keep = positive(env, MAX_SNAPSHOTS)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(Snapshotting {
            enabled,
            interval,
            keep,
        })
    }

    /// No snapshots read or written.
    pub fn disabled() -> Self {
        Snapshotting {
            enabled: Some(false),
            ..Self::default()
        }
    }

    /// A snapshot every `interval` events for every aggregate type (at least 1).
    pub fn every(interval: u64) -> Self {
        Snapshotting {
            enabled: Some(true),
            interval: Some(interval.max(1)),
            keep: None,
        }
    }

    /// Keeps at most `keep` snapshots per aggregate (at least 1).
    pub fn keep(mut self, keep: u32) -> Self {
        self.keep = Some(keep.max(1));
        self
    }

    /// How many snapshots are kept per aggregate (`None`: all).
    pub fn kept(&self) -> Option<u32> {
        self.keep
    }

    /// Whether loads of `A` look for snapshots: when `IS_SNAPSHOTTING_ENABLED=y`, or when `A`
    /// snapshots automatically. Other loads skip the lookup (a round trip) entirely.
    pub fn reads_for<A: Aggregate>(&self) -> bool {
        match self.enabled {
            Some(false) => false,
            Some(true) => true,
            None => self.interval_for::<A>().is_some(),
        }
    }

    /// The interval for `A`, if it snapshots automatically.
    pub fn interval_for<A: Aggregate>(&self) -> Option<u64> {
        if self.enabled == Some(false) {
            return None;
        }
        self.interval.or(A::SNAPSHOT_EVERY).filter(|n| *n > 0)
    }

    /// Whether a save that takes `A` from `saved` to `version` should write a snapshot.
    pub(crate) fn due<A: Aggregate>(&self, saved: u64, version: u64) -> bool {
        self.interval_for::<A>()
            .is_some_and(|n| version / n > saved / n)
    }
}

fn positive(env: &Env, key: &str) -> Result<Option<u64>, ConfigError> {
    match env.parse::<u64>(&[key])? {
        Some(0) => {
            let name = env
                .lookup(&[key])
                .map_or_else(|| key.to_owned(), |(n, _)| n);
            Err(ConfigError::new(name, "must be at least 1"))
        }
        other => Ok(other),
    }
}

#[derive(Serialize)]
struct StateOut<'a, A> {
    created_on: DateTime<Utc>,
    state: &'a A,
}

#[derive(Deserialize)]
struct StateIn<A> {
    created_on: DateTime<Utc>,
    state: A,
}

/// Encodes an aggregate's current state as a snapshot.
pub(crate) fn take<A: Aggregate, C: Codec>(
    codec: &C,
    aggregate: &A,
) -> Result<Snapshot, CodecError> {
    let context = EncodeContext::new(aggregate.id(), A::TYPE_NAME, PayloadKind::Snapshot);
    let payload = codec.encode_in(
        &context,
        &StateOut {
            created_on: aggregate.created_on(),
            state: aggregate,
        },
    )?;
    Ok(Snapshot {
        stream_id: aggregate.id(),
        version: aggregate.version(),
        state_type: A::TYPE_NAME.to_owned(),
        fingerprint: A::STATE_FINGERPRINT,
        timestamp: aggregate.modified_on(),
        payload,
    })
}

/// Why a stored snapshot was not used.
#[derive(Debug)]
pub(crate) enum Unusable {
    OtherType(String),
    OtherShape,
    Undecodable(CodecError),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::OtherType(t) => write!(f, "it holds a `{t}`"),
            Unusable::OtherShape => f.write_str("it was written by a differently shaped struct"),
            Unusable::Undecodable(e) => write!(f, "it does not decode: {e}"),
        }
    }
}

/// Rebuilds an aggregate from a snapshot written by the same shape of struct.
pub(crate) fn restore<A: Aggregate, C: Codec>(
    codec: &C,
    snapshot: &Snapshot,
) -> Result<A, Unusable> {
    if snapshot.state_type != A::TYPE_NAME {
        return Err(Unusable::OtherType(snapshot.state_type.clone()));
    }
    if snapshot.fingerprint != A::STATE_FINGERPRINT {
        return Err(Unusable::OtherShape);
    }
    let decoded: StateIn<A> = codec
        .decode(&snapshot.payload)
        .map_err(Unusable::Undecodable)?;
    let mut aggregate = decoded.state;
    let meta = aggregate.meta_mut();
    meta.id = snapshot.stream_id;
    meta.version = snapshot.version;
    meta.created_on = decoded.created_on;
    meta.modified_on = snapshot.timestamp;
    meta.pending.clear();
    Ok(aggregate)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_seeds_variables() {
        let env = Env::from_map([
            ("IS_SNAPSHOTTING_ENABLED", "y"),
            ("SNAPSHOT_INTERVAL", "10"),
            ("MAX_SNAPSHOTS", "5"),
        ]);
        let s = Snapshotting::from_env(&env).unwrap();
        assert_eq!(s, Snapshotting::every(10).keep(5));

        let off =
            Snapshotting::from_env(&Env::from_map([("IS_SNAPSHOTTING_ENABLED", "n")])).unwrap();
        assert_eq!(off, Snapshotting::disabled());

        let unset = Snapshotting::from_env(&Env::from_map::<&str, &str>([])).unwrap();
        assert_eq!(unset, Snapshotting::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SNAPSHOT_INTERVAL", "0"),
            ("SNAPSHOT_INTERVAL", "ten"),
            ("MAX_SNAPSHOTS", "-1"),
            ("IS_SNAPSHOTTING_ENABLED", "sometimes"),
        ] {
            let env = Env::from_map([(var, value)]).with_app_name("widgets");
            let err = Snapshotting::from_env(&env).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
        let env = Env::from_map([("WIDGETS_SNAPSHOT_INTERVAL", "0")]).with_app_name("widgets");
        assert_eq!(
            Snapshotting::from_env(&env).unwrap_err().var,
            "WIDGETS_SNAPSHOT_INTERVAL"
        );
    }
}
