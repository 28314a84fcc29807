//! Seeded randomness for the tests that abort or kill at random moments: the seed comes from
//! `EVENTSOURCING_TEST_SEED` (else a fresh random one), is printed, and is named with the command
//! that replays it in every failure, so a failing run can be run again with the same choices.

use std::{
    hash::{BuildHasher, Hasher},
    ops::RangeInclusive,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The variable a replay sets.
pub const SEED_VAR: &str = "EVENTSOURCING_TEST_SEED";

/// A small, fast generator (SplitMix64): the same seed gives the same choices on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range` (the modulo bias is irrelevant at these sizes).
    pub fn range(&mut self, range: RangeInclusive<u64>) -> u64 {
        let (low, high) = range.into_inner();
        low + self.next_u64() % (high - low + 1)
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A duration of `range` milliseconds.
    pub fn millis(&mut self, range: RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.range(range))
    }

    /// A generator of its own for another task, drawn from this one (so still replayable).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// A test's seed and generator. Made at the start of the test, on the test's thread (whose
/// name is the test's path); if the test panics, dropping it prints how to replay.
#[derive(Debug)]
pub struct Seeded {
    pub seed: u64,
    pub rng: Rng,
    test: String,
}

impl Seeded {
    pub fn new() -> Self {
        let seed = match std::env::var(SEED_VAR) {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{SEED_VAR}={text:?} is not a u64: {e}")),
            Err(_) => fresh_seed(),
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("<this test>")
            .to_owned();
        let seeded = Seeded {
            seed,
            rng: Rng::new(seed),
            test,
        };
        println!("{}", seeded.replay());
        seeded
    }

    /// The seed and the command that replays the test with it.
    pub fn replay(&self) -> String {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| match stem.rsplit_once('-') {
                Some((name, _hash)) => name.to_owned(),
                None => stem,
            })
            .unwrap_or_else(|| "<test binary>".to_owned());
        format!(
            "seed {seed} (replay the same random choices, timing aside: \
             {SEED_VAR}={seed} cargo test --test {binary} -- --exact {test})",
            seed = self.seed,
            test = self.test,
        )
    }
}

impl Drop for Seeded {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed with {}", self.replay());
        }
    }
}

/// A seed nobody chose: the process's random hasher keys and the clock.
fn fresh_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}
