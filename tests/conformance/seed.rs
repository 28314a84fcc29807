//! The seed of a test's generated cases: `EVENTSOURCING_TEST_SEED`, else a random one, printed
//! either way so that a failure can be replayed with the same cases.

/// This run's seed, printed with how to replay it.
pub(crate) fn seed() -> u64 {
    let seed = match std::env::var("EVENTSOURCING_TEST_SEED") {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("EVENTSOURCING_TEST_SEED={value:?} is not a u64")),
        Err(_) => random(),
    };
    eprintln!("{}", replay_hint(seed));
    seed
}

/// What a failure message says to replay it.
pub(crate) fn replay_hint(seed: u64) -> String {
    format!("seed {seed}: replay with EVENTSOURCING_TEST_SEED={seed}")
}

/// A fresh seed from the OS's randomness, through the standard library's hasher keys (no
/// dependency for it).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}
