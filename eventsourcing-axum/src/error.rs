//! The library's [`Error`] as an HTTP response.

use axum::{http::StatusCode, response::IntoResponse};
use eventsourcing::Error;

use crate::problem::Problem;

/// The problem types of the library's errors (the `type` member of the body).
pub mod types {
    /// The aggregate (or the version asked for) does not exist: 404.
    pub const NOT_FOUND: &str = "urn:eventsourcing:problem:not-found";
    /// A concurrent save reached the aggregate first: 409.
    pub const CONFLICT: &str = "urn:eventsourcing:problem:conflict";
    /// The client's `If-Match` version is not the current one: 412.
    pub const PRECONDITION_FAILED: &str = "urn:eventsourcing:problem:precondition-failed";
    /// A command rejected its input: 422.
    pub const INVALID: &str = "urn:eventsourcing:problem:invalid";
    /// The store is unreachable or busy; retry after `Retry-After` seconds: 503.
    pub const UNAVAILABLE: &str = "urn:eventsourcing:problem:unavailable";
    /// Anything else: 500, with the detail only in the server's log.
    pub const INTERNAL: &str = "urn:eventsourcing:problem:internal";
}

/// Seconds a client is told to wait after a transient store failure.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An [`Error`] of the library (or a [`Problem`] a handler chose) as a response. Handlers
/// return `Result<_, HttpError>` and use `?` on the library's calls:
///
/// | error | status |
/// |---|---|
/// | [`Error::NotFound`], [`Error::WrongType`] (the id is another kind of aggregate) | 404 |
/// | [`Error::Conflict`] | 409; 412 through [`HttpError::precondition`] when the client sent `If-Match` |
/// | [`Error::Command`], [`Error::InvalidEvent`] (the input was refused) | 422, with the reason |
/// | [`Error::Transient`] (store unreachable, pool exhausted, database busy) | 503 with `Retry-After` |
/// | anything else | 500 with a generic body; the error itself is logged at `error` |
///
/// (The orphan rule keeps `IntoResponse` off the library's `Error` itself; this wrapper is the
/// one place that says how each error looks over HTTP.)
#[derive(Debug)]
pub enum HttpError {
    /// An error of the library, mapped by the table above.
    Store(Error),
    /// A response chosen by the handler.
    Problem(Problem),
}

impl HttpError {
    /// A conflict as the failure of the client's precondition (`If-Match`): 412 instead of
    /// 409. Any other error maps as usual.
    pub fn precondition(error: Error) -> Self {
        match error {
            Error::Conflict {
                expected, actual, ..
            } => HttpError::Problem(precondition_failed(expected, actual)),
            other => HttpError::Store(other),
        }
    }

    /// The problem this error is answered with (logging a 500's cause).
    pub fn into_problem(self) -> Problem {
        match self {
            HttpError::Problem(problem) => problem,
            HttpError::Store(error) => problem_of(error),
        }
    }
}

/// 412 for a client that expected version `expected` of a resource now at `actual`.
pub fn precondition_failed(expected: u64, actual: u64) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        types::PRECONDITION_FAILED,
        "Precondition Failed",
    )
    .with_detail(format!(
        "If-Match names version {expected}, but the current version is {actual}"
    ))
}

fn problem_of(error: Error) -> Problem {
    match error {
        Error::NotFound { id, version } => {
            let detail = match version {
                Some(v) => format!("{id} has no version {v}"),
                None => format!("{id} does not exist"),
            };
            Problem::new(StatusCode::NOT_FOUND, types::NOT_FOUND, "Not Found").with_detail(detail)
        }
        Error::WrongType { stream_id, .. } => {
            Problem::new(StatusCode::NOT_FOUND, types::NOT_FOUND, "Not Found")
                .with_detail(format!("{stream_id} does not exist"))
        }
        Error::Conflict {
            stream_id,
            expected,
            actual,
        } => Problem::new(StatusCode::CONFLICT, types::CONFLICT, "Conflict").with_detail(format!(
            "{stream_id} changed concurrently: expected version {expected}, found {actual}"
        )),
        Error::Command(reason) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::INVALID,
            "Unprocessable Content",
        )
        .with_detail(reason.to_string()),
        Error::InvalidEvent { reason, .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::INVALID,
            "Unprocessable Content",
        )
        .with_detail(reason),
        error if error.is_transient() => {
            tracing::warn!(error = %chain(&error), "store unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                "Service Unavailable",
            )
            .with_detail("the event store is unavailable; retry later")
            .with_retry_after(RETRY_AFTER_SECONDS)
        }
        error => {
            tracing::error!(error = %chain(&error), "request failed");
            internal()
        }
    }
}

/// The body of every 500: nothing about the cause.
pub fn internal() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        types::INTERNAL,
        "Internal Server Error",
    )
    .with_detail("the request failed; the server's log has the cause")
}

/// The error and its sources, one after the other.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        HttpError::Store(error)
    }
}

impl From<Problem> for HttpError {
    fn from(problem: Problem) -> Self {
        HttpError::Problem(problem)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> axum::response::Response {
        self.into_problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::{body::to_bytes, http::header};
    use eventsourcing::Uuid;

    use super::*;
    use crate::problem::PROBLEM_JSON;

    async fn answer(error: HttpError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, 1 << 16).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn each_error_has_its_status() {
        let id = Uuid::nil();
        let conflict = || Error::Conflict {
            stream_id: id,
            expected: 3,
            actual: 4,
        };
        let cases = [
            (HttpError::from(Error::NotFound { id, version: None }), 404),
            (HttpError::from(conflict()), 409),
            (HttpError::precondition(conflict()), 412),
            (
                HttpError::from(Error::Command("a name cannot be empty".into())),
                422,
            ),
            (HttpError::from(Error::transient("connection refused")), 503),
            (
                HttpError::from(Error::store("disk I/O error at /var/lib/x")),
                500,
            ),
        ];
        for (error, status) in cases {
            let (got, headers, body) = answer(error).await;
            assert_eq!(got.as_u16(), status);
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
            assert_eq!(body["status"], status);
        }
    }

    #[tokio::test]
    async fn a_500_says_nothing_of_its_cause_and_a_503_says_when_to_retry() {
        let (_, _, body) =
            answer(Error::store("disk I/O error at /var/lib/secret.db").into()).await;
        assert!(!body.to_string().contains("secret"), "{body}");
        let (_, headers, _) = answer(Error::transient("pool timed out").into()).await;
        assert_eq!(
            headers[header::RETRY_AFTER],
            RETRY_AFTER_SECONDS.to_string().as_str()
        );
    }

    #[tokio::test]
    async fn a_command_rejection_tells_the_client_why() {
        let (_, _, body) = answer(Error::Command("a name cannot be empty".into()).into()).await;
        assert_eq!(body["detail"], "a name cannot be empty");
        assert_eq!(body["type"], types::INVALID);
    }
}
