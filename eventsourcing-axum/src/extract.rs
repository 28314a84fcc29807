//! axum's `Json`, `Path` and `Query` extractors, whose rejections are problem details.

use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection, QueryRejection},
        FromRequest, FromRequestParts,
    },
    http::StatusCode,
    response::IntoResponse,
};

use crate::problem::Problem;

/// [`axum::Json`], rejecting with problem details: 400 for malformed JSON, 415 without a JSON
/// content type, 422 for JSON of the wrong shape (a missing field, a wrong type), 413 for a
/// body over the limit ([`axum::extract::DefaultBodyLimit`]). Also a response, like axum's.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

/// [`axum::extract::Path`], rejecting with a 400 problem (a malformed id, for one).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

/// [`axum::extract::Query`], rejecting with a 400 problem.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

// The rejections' texts describe the client's input (a serde message, a path segment), never
// server internals, so they are the detail.
// A rejection with a 5xx status (a route whose path has no such parameter) is the server's
// fault: logged, and answered with the generic 500.
fn rejected(status: StatusCode, text: String) -> Problem {
    if status.is_server_error() {
        tracing::error!(error = %text, "extractor failed");
        return crate::error::internal();
    }
    Problem::status(status).with_detail(text)
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}
