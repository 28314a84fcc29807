//! `EVENTSOURCING_BENCH_RECORDER=prometheus`: runs the figures with the Prometheus recorder
//! installed (no HTTP listener), to measure what the library's metrics cost against a run
//! without a recorder. `EVENTSOURCING_BENCH_ONLY=append,load`: runs only those groups of figures.

use std::time::Duration;

use eventsourcing::metrics;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::BoxError;

/// The installed recorder, if any.
pub(crate) struct Recorder(PrometheusHandle);

impl Recorder {
    /// Installs the recorder `EVENTSOURCING_BENCH_RECORDER` names (`prometheus`), or none.
    pub(crate) fn from_env() -> Result<Option<Self>, BoxError> {
        match std::env::var("EVENTSOURCING_BENCH_RECORDER").as_deref() {
            Err(_) | Ok("" | "none") => Ok(None),
            Ok("prometheus") => {
                let handle = PrometheusBuilder::new().install_recorder()?;
                metrics::describe();
                // What `PrometheusBuilder::install` does beside its listener: drain the
                // histograms now and then, so that they stay small.
                let upkeep = handle.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        upkeep.run_upkeep();
                    }
                });
                eprintln!("# recorder: prometheus (no listener)");
                Ok(Some(Recorder(handle)))
            }
            Ok(other) => Err(format!(
                "EVENTSOURCING_BENCH_RECORDER: unknown recorder `{other}` (known: prometheus, none)"
            )
            .into()),
        }
    }

    /// Says how much the recorder holds, to show that the figures went through it.
    pub(crate) fn report(&self) {
        let text = self.0.render();
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        eprintln!("# recorder: {samples} samples rendered");
    }
}

/// Whether the group of figures `group` runs: all of them unless `EVENTSOURCING_BENCH_ONLY`
/// lists some (comma-separated).
pub(crate) fn wanted(group: &str) -> bool {
    match std::env::var("EVENTSOURCING_BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|g| g.trim() == group),
        _ => true,
    }
}
