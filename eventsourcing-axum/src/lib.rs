//! A thin [axum] integration for `eventsourcing`: the library's errors as HTTP responses with
//! RFC 9457 problem-details bodies, and extractors whose rejections are problem details too.
//!
//! What every axum service on the library would otherwise write itself:
//!
//! - [`HttpError`]: handlers return `Result<_, HttpError>` and use `?` on the library's calls;
//!   each [`Error`](eventsourcing::Error) becomes the right status (404, 409, 412 with
//!   `If-Match`, 422, 503 with `Retry-After`, a generic 500 whose cause goes to the log only).
//! - [`Problem`]: the `application/problem+json` body (`type`, `title`, `status`, `detail`).
//! - [`Json`], [`Path`], [`Query`]: axum's extractors with problem-details rejections (400
//!   malformed JSON or path, 415 wrong content type, 422 wrong shape, 413 body too large).
//! - [`ensure_problem_details`]: a `map_response` middleware giving every other error
//!   response (axum's own 404 and 405, a layer's rejection) a problem-details body.
//!
//! No state extractor: an [`Application`](eventsourcing::Application) is cheap to clone, so
//! axum's own `State<Application<S>>` (or a state struct holding one) is all a handler needs.
//!
//! ```no_run
//! use axum::{extract::State, middleware::map_response, routing::get, Router};
//! use eventsourcing::{Application, MemoryStore, Uuid};
//! use eventsourcing_axum::{ensure_problem_details, HttpError, Json, Path};
//!
//! async fn version(
//!     State(app): State<Application<MemoryStore>>,
//!     Path(id): Path<Uuid>,
//! ) -> Result<Json<u64>, HttpError> {
//!     use eventsourcing::EventStore;
//!     match app.store().stream_version(id).await? {
//!         0 => Err(eventsourcing::Error::NotFound { id, version: None }.into()),
//!         v => Ok(Json(v)),
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Application::new(MemoryStore::new());
//! let router = Router::new()
//!     .route("/streams/{id}/version", get(version))
//!     .layer(map_response(ensure_problem_details))
//!     .with_state(app);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, router).await
//! # }
//! ```

mod error;
mod extract;
mod problem;

pub use error::{internal, precondition_failed, types, HttpError, RETRY_AFTER_SECONDS};
pub use extract::{Json, Path, Query};
pub use problem::{ensure_problem_details, Problem, PROBLEM_JSON};
