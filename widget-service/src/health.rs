//! `/healthz`, `/readyz` and `/metrics`.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use eventsourcing_axum::Problem;
use serde::Serialize;

use crate::{
    read_model::check_schema,
    state::{AppState, ProjectionHealth, READY_TIMEOUT},
};

/// `GET /healthz`: the process is up and serving.
pub(crate) async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    /// `ok`, or why the store is not ready (unreachable, migrations missing).
    store: String,
    projection: ProjectionHealth,
}

/// `GET /readyz`: 200 when the store answers, every migration is applied, and the projection
/// runs and is not stalled; 503 otherwise, as problem details whose extension members say
/// what is wrong (`ready`, `store`, `projection`).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let store = match tokio::time::timeout(READY_TIMEOUT, check_schema(state.app().store())).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) if e.is_transient() => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            "unreachable".to_owned()
        }
        Ok(Err(e @ eventsourcing::Error::Schema(_))) => {
            tracing::warn!(error = %e, "readiness: schema");
            "migrations not applied".to_owned()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store check failed");
            "failing".to_owned()
        }
        Err(_) => "no answer".to_owned(),
    };
    let projection = state.projection_health().await;
    let ready = store == "ok" && projection.running && !projection.stalled;
    let body = Readiness {
        ready,
        store,
        projection,
    };
    if ready {
        return axum::Json(body).into_response();
    }
    // Not ready is an error response like any other: problem details, with the readiness
    // report as extension members.
    let mut problem = Problem::status(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail("not ready: see store and projection")
        .with_retry_after(eventsourcing_axum::RETRY_AFTER_SECONDS);
    if let Ok(serde_json::Value::Object(members)) = serde_json::to_value(&body) {
        problem.extensions = members;
    }
    problem.into_response()
}

/// `GET /metrics`: everything recorded through the `metrics` facade (the library's and this
/// service's), in Prometheus' text format; 404 when no recorder was installed.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => Problem::status(StatusCode::NOT_FOUND)
            .with_detail("no metrics recorder is installed")
            .into_response(),
    }
}
