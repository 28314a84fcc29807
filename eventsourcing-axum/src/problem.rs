//! RFC 9457 problem details: the JSON body every error response carries.

use axum::{
    body::Body,
    http::{header, HeaderValue, Response, StatusCode},
    response::IntoResponse,
};
use serde::Serialize;

/// The media type of a problem-details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response body as RFC 9457 defines it: `type`, `title`, `status`, `detail`.
///
/// `type` is `about:blank` for errors that are plain HTTP (a route that does not exist, a
/// method not allowed), where `title` is the status's reason phrase; the library's own
/// problems have a type of their own under `urn:eventsourcing:problem:` (see
/// [`types`](crate::types)). Responses also carry [`retry_after`](Self::retry_after) as a
/// `Retry-After` header when set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for the client; never internal details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`, not in the body).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// Extension members (RFC 9457 section 3.2): more about this problem, beside the
    /// standard members.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem of kind `about:blank` for `status`: its title is the status's reason phrase.
    pub fn status(status: StatusCode) -> Self {
        Problem {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            retry_after: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// A problem of a kind of its own (`kind` a URI) with its title.
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            retry_after: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// With a detail for the client.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With an extension member `name` (a name other than the standard members').
    #[must_use]
    pub fn with_extension(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(name.to_owned(), value);
        self
    }

    /// With a `Retry-After` of `seconds`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The status as a [`StatusCode`] (500 if the number is not a valid status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        // Serializing strings and a number cannot fail; the fallback keeps the rule anyway.
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#.to_vec()
        });
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status_code();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A middleware body for [`axum::middleware::map_response`]: an error response (status 400
/// or more) that is not already problem details gets a problem-details body for its status,
/// keeping its headers (`Allow` on a 405, for one). Catches what no handler wrote: axum's
/// 405 for a method a route lacks, a layer's own rejection, a fallback.
///
/// ```
/// use axum::{middleware::map_response, routing::get, Router};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(map_response(eventsourcing_axum::ensure_problem_details));
/// ```
pub async fn ensure_problem_details(
    response: axum::response::Response,
) -> axum::response::Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = Problem::status(status).into_response();
    let (problem_parts, body) = problem.into_parts();
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

fn is_problem(response: &axum::response::Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}
