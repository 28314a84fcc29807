//! What every request shares: the application, the read model, the projection's handle.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use eventsourcing::{AnyApplication, Env, Error, Position, RunnerHandle};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{config::Config, read_model::ReadModel};

/// The service's shared state: cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    app: AnyApplication,
    read_model: ReadModel,
    runner: Mutex<Option<RunnerHandle>>,
    stall: Mutex<Stall>,
    metrics: Option<PrometheusHandle>,
    config: Config,
}

/// When the projection was last seen to move (or to be caught up).
#[derive(Debug)]
struct Stall {
    position: Position,
    since: Instant,
}

/// How the projection is doing, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionHealth {
    /// Whether its runner is still running.
    pub running: bool,
    /// Events of the log it has not passed yet (`None` if that could not be read).
    pub lag: Option<u64>,
    /// Whether it lags and has not moved for longer than `WIDGETS_STALL_AFTER`.
    pub stalled: bool,
}

impl AppState {
    /// Opens the store the environment names (the library's variables, each first as
    /// `WIDGETS_<NAME>`), starts the read model's projection and waits until its table exists.
    pub async fn open(
        env: &Env,
        config: Config,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, Error> {
        let env = env.clone().with_app_name("widgets");
        // As `application_from_env`: the store, snapshots, compression and encryption.
        let app = eventsourcing::application_from(&env).await?;
        let (read_model, runner) = ReadModel::start(app.store(), app.codec()).await?;
        Ok(AppState {
            inner: Arc::new(Inner {
                app,
                read_model,
                runner: Mutex::new(Some(runner)),
                stall: Mutex::new(Stall {
                    position: Position::START,
                    since: Instant::now(),
                }),
                metrics,
                config,
            }),
        })
    }

    /// The application every handler saves and loads through.
    pub fn app(&self) -> &AnyApplication {
        &self.inner.app
    }

    pub(crate) fn read_model(&self) -> &ReadModel {
        &self.inner.read_model
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The projection's state: running, its lag, stalled or not.
    pub async fn projection_health(&self) -> ProjectionHealth {
        let (running, position) = {
            let runner = self
                .inner
                .runner
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match runner.as_ref() {
                Some(r) => (!r.is_finished(), r.position()),
                None => (false, Position::START),
            }
        };
        let lag = match self.inner.read_model.lag(self.inner.app.store()).await {
            Ok(lag) => Some(lag),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the projection's lag");
                None
            }
        };
        let stalled = {
            let mut stall = self
                .inner
                .stall
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if position != stall.position || lag == Some(0) {
                stall.position = position;
                stall.since = Instant::now();
            }
            lag.is_some_and(|l| l > 0) && stall.since.elapsed() > self.inner.config.stall_after
        };
        ProjectionHealth {
            running,
            lag,
            stalled,
        }
    }

    /// Stops the projection between two batches (after the server has drained), logging how
    /// it ended. Later calls do nothing.
    pub async fn stop_projection(&self) {
        let runner = self
            .inner
            .runner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(runner) = runner {
            match runner.stop().await {
                Ok(()) => tracing::info!("projection stopped"),
                Err(e) => tracing::error!(error = %e, "the projection had stopped with an error"),
            }
        }
    }
}

/// How long `/readyz` waits for the store before calling it unreachable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
