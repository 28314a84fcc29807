//! What the property tests share: how many cases to run, and one runtime for all of them.

use std::sync::OnceLock;

use proptest::test_runner::Config as ProptestConfig;

/// `default` cases (or the number in the environment variable `var`), divided by `divide` (for
/// the slower stores), at least one.
pub fn cases(var: &str, default: u32, divide: u32) -> ProptestConfig {
    let cases: u32 = std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: (cases / divide.max(1)).max(1),
        ..ProptestConfig::default()
    }
}

/// One runtime for every case: stores keep background tasks on it while they live.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a Tokio runtime for the property tests: {e}"))
    })
}
