//! The random seed of a test run: from `EVENTSOURCING_TEST_SEED`, else random; printed, and
//! named with how to replay it in every failure message. Bounded waits that say what they
//! waited for.

use std::{fmt, time::Duration};

use tokio::time::Instant;

/// The variable that fixes the seed.
pub(crate) const SEED_VAR: &str = "EVENTSOURCING_TEST_SEED";

/// A test run's seed, and the test binary it replays in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seed {
    value: u64,
    target: &'static str,
    test: &'static str,
}

impl Seed {
    /// The seed of `EVENTSOURCING_TEST_SEED` (decimal), else a random one; printed. `target`
    /// is the test target's name (`--test <target>`), `test` the test function's.
    pub(crate) fn from_env(target: &'static str, test: &'static str) -> Self {
        let value = match std::env::var(SEED_VAR) {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{SEED_VAR}={v:?} is not a decimal u64: {e}")),
            _ => uuid::Uuid::new_v4().as_u64_pair().0,
        };
        let seed = Seed {
            value,
            target,
            test,
        };
        eprintln!("{test}: {seed}");
        seed
    }

    /// A generator of its own for each actor (writer `n`, ...), so that one actor's draws do
    /// not depend on how the others' interleave.
    pub(crate) fn rng(&self, actor: u64) -> Rng {
        let mut rng = Rng((self.value ^ actor.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        // Mixes the nearby seeds of neighbouring actors apart.
        for _ in 0..8 {
            rng.next();
        }
        rng
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same random choices replay; the interleaving with the server still varies.
        write!(
            f,
            "seed {0} (replay: {SEED_VAR}={0} cargo test -p eventsourcing-postgres --test {1} \
             -- --exact {2})",
            self.value, self.target, self.test
        )
    }
}

/// A tiny xorshift generator: the test needs jitter, not quality.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `per_mille` times in a thousand.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A bound on a wait: past it, the test fails saying what it waited for, and with which seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    limit: Duration,
    seed: Seed,
}

impl Deadline {
    /// `limit` from now.
    pub(crate) fn after(limit: Duration, seed: Seed) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
            seed,
        }
    }

    /// The run's seed.
    pub(crate) fn seed(&self) -> Seed {
        self.seed
    }

    /// Fails if the deadline has passed; `what` says what was still awaited.
    pub(crate) fn check(&self, what: impl FnOnce() -> String) {
        if Instant::now() >= self.at {
            panic!(
                "gave up after {:?} waiting for {}; {}",
                self.limit,
                what(),
                self.seed
            );
        }
    }

    /// Awaits `future` until the deadline; fails naming `what` if it does not end by then.
    pub(crate) async fn run<F: std::future::Future>(&self, what: &str, future: F) -> F::Output {
        match tokio::time::timeout_at(self.at, future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "gave up after {:?} waiting for {what}; {}",
                self.limit, self.seed
            ),
        }
    }
}
