//! The router: routes, and the layers every request goes through.

use std::time::Instant;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use eventsourcing_axum::{ensure_problem_details, Problem};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{health, routes, state::AppState};

/// The counter of requests, by method, route and status.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// The histogram of request durations in seconds, by method and route.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

/// The service's routes and layers, outermost first: a request id (`x-request-id`, made if
/// the client sent none, echoed on the response),
/// a panic as a 500 problem, a `tracing` span per request carrying the id, the request
/// metrics, problem details for every error response, the body limit.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().body_limit;
    Router::new()
        .route("/endpoints", post(routes::create))
        .route("/endpoints/{id}", get(routes::get).patch(routes::rename))
        .route("/endpoints/{id}/history", get(routes::history))
        .route("/tenants/{tenant}/endpoints", get(routes::tenant_endpoints))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panicked))
                .layer(TraceLayer::new_for_http().make_span_with(span))
                .layer(middleware::from_fn(record_metrics))
                .layer(middleware::map_response(ensure_problem_details))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}

async fn not_found() -> Problem {
    Problem::status(StatusCode::NOT_FOUND).with_detail("no such route")
}

fn span(request: &Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a handler panicked");
    eventsourcing_axum::internal().into_response()
}
