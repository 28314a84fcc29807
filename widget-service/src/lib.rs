//! The seed's widget registry as an HTTP service: the Django integration of the seed, in axum.
//!
//! One [`Application`](eventsourcing::Application) on the store the environment names
//! (`PERSISTENCE_MODULE` and the library's other variables, SQLite by default) is shared by
//! every request; a projection keeps a per-tenant read model in the same database.
//!
//! | route | what |
//! |---|---|
//! | `POST /endpoints` | register `{url, name, tenant_id}`: 201, `Location`, `ETag: "1"` |
//! | `GET /endpoints/{id}[?version=N]` | the endpoint now or at version `N`, `ETag` its version |
//! | `PATCH /endpoints/{id}` | rename `{name}`; `If-Match: "N"` gives 412 unless `N` is current; without it a conflict is retried |
//! | `GET /endpoints/{id}/history[?after=V&limit=N]` | its events, paged |
//! | `GET /tenants/{tenant}/endpoints[?after=ID&limit=N]` | the tenant's endpoints, from the read model |
//! | `GET /healthz`, `/readyz`, `/metrics` | up; ready (store, migrations, projection); Prometheus text |
//!
//! Every error is an RFC 9457 problem-details body ([`eventsourcing_axum`]).
//!
//! Modules: `config` (settings), `read_model` (the projection per store), `views` (bodies and
//! their checks; uses `read_model`'s row type), `state` (shared state, uses `read_model`),
//! `routes` and `health` (handlers, use `state` and `views`), `http` (the router, uses the
//! handlers). None uses a module that uses it.

pub mod config;
mod health;
pub mod http;
mod read_model;
mod routes;
pub mod state;
pub mod views;

// The seed's aggregate, shared with the examples and the library's tests.
#[path = "../../examples/common/widget.rs"]
mod widget;

use std::{future::Future, time::Duration};

pub use config::Config;
pub use read_model::{TenantEndpoint, PROJECTION};
pub use state::AppState;
use tokio::{net::TcpListener, sync::watch};

/// Serves `state` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (at most `shutdown_timeout`, then gives up on them), then stops the projection.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeout = state.config().shutdown_timeout;
    let (stopping, mut stopping_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the requests in flight");
        let _ = stopping.send(true);
    };
    let server = axum::serve(listener, http::router(state.clone())).with_graceful_shutdown(signal);
    let deadline = async move {
        if stopping_rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(timeout).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(?timeout, "requests still in flight after the shutdown timeout; leaving them");
            Ok(())
        }
    };
    state.stop_projection().await;
    result
}

/// Resolves on SIGTERM or ctrl-c (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Histogram buckets for request durations, in seconds (100 µs to 10 s).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A pause used by polling loops.
pub const POLL: Duration = Duration::from_millis(10);
