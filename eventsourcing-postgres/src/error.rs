//! Turning driver and pool errors into [`eventsourcing_core::Error`], and telling which of them
//! are worth retrying.

use std::{fmt, time::Duration};

use eventsourcing_core::Error;
use tokio_postgres::error::SqlState;

/// A driver error as [`Error::Store`]. Its message includes the server's (tokio-postgres shows
/// only "db error"); the `tokio_postgres::Error` is its `source()`, for the SQLSTATE.
pub(crate) fn pg_error(err: tokio_postgres::Error) -> Error {
    if is_transient(&err) {
        return Error::Transient(Box::new(PgError(err)));
    }
    Error::Store(Box::new(PgError(err)))
}

/// A tokio-postgres error whose `Display` includes its cause.
#[derive(Debug)]
pub(crate) struct PgError(pub(crate) tokio_postgres::Error);

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(f, &self.0)
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `err: cause: cause's cause ...`, on one line.
fn write_chain(f: &mut fmt::Formatter<'_>, err: &tokio_postgres::Error) -> fmt::Result {
    write!(f, "{err}")?;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        write!(f, ": {}", cause.to_string().replace('\n', " "))?;
        source = cause.source();
    }
    Ok(())
}

/// Like [`pg_error`], but a missing table or schema becomes [`Error::Schema`] telling what to
/// run.
pub(crate) fn query_error(err: tokio_postgres::Error, schema: &str) -> Error {
    if is_missing_table(&err) {
        return missing_tables(schema, &PgError(err));
    }
    pg_error(err)
}

pub(crate) fn is_missing_table(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME
    )
}

pub(crate) fn missing_tables(schema: &str, cause: &dyn fmt::Display) -> Error {
    Error::Schema(format!(
        "the event store tables do not exist in schema `{schema}` ({cause}): run \
         `PERSISTENCE_MODULE=eventsourcing.postgres eventsourcing-admin migrate` (or call \
         `PostgresStore::migrate`), or set CREATE_TABLE=y to create them at start-up"
    ))
}

/// The same failure for another save of a group that failed together (core's `Error` is not
/// `Clone`): the same kind, the same message.
pub(crate) fn shared_error(err: &Error) -> Error {
    match err {
        Error::Schema(message) => Error::Schema(message.clone()),
        Error::Transient(_) => Error::Transient(Box::new(Shared(err.to_string()))),
        _ => Error::Store(Box::new(Shared(err.to_string()))),
    }
}

#[derive(Debug)]
struct Shared(String);

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Shared {}

/// The connection was lost while a group of saves was written: each may have committed or
/// not. Transient: read the stream to know, then save again if it is not there.
#[derive(Debug)]
pub(crate) struct OutcomeUnknown {
    pub(crate) cause: String,
}

impl fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the save may or may not have committed (its group's connection was lost: {})",
            self.cause
        )
    }
}

impl std::error::Error for OutcomeUnknown {}

/// Opening a connection failed. Names the server, never the password.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) target: String,
    pub(crate) source: tokio_postgres::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to PostgreSQL at {}: ", self.target)?;
        write_chain(f, &self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// No pooled connection became free in time.
#[derive(Debug)]
pub(crate) struct PoolTimeout {
    pub(crate) waited: Duration,
    pub(crate) last_error: Option<String>,
}

impl fmt::Display for PoolTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no database connection became available within {:?} (POSTGRES_CONNECT_TIMEOUT / POOL_TIMEOUT)",
            self.waited
        )?;
        if let Some(last) = &self.last_error {
            write!(f, "; the last attempt to connect failed: {last}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PoolTimeout {}

/// Too many callers already wait for a connection.
#[derive(Debug)]
pub(crate) struct TooManyWaiting {
    pub(crate) max_waiting: u32,
}

impl fmt::Display for TooManyWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "every connection is in use and {} callers already wait for one (POSTGRES_MAX_WAITING)",
            self.max_waiting
        )
    }
}

impl std::error::Error for TooManyWaiting {}

/// A value the store cannot represent in PostgreSQL (or read back).
#[derive(Debug)]
pub(crate) struct OutOfRange(pub(crate) String);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfRange {}

pub(crate) fn out_of_range(message: impl Into<String>) -> Error {
    Error::Store(Box::new(OutOfRange(message.into())))
}

/// Whether an error is worth retrying after a backoff: the connection or the pool failed, or
/// the server asks to retry (serialization failure, deadlock, lock timeout, shutdown).
pub(crate) fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<ConnectError>()
            || e.is::<PoolTimeout>()
            || e.is::<TooManyWaiting>()
            || e.is::<std::io::Error>()
        {
            return true;
        }
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            if pg.is_closed() {
                return true;
            }
            if let Some(code) = pg.code() {
                return transient_code(code);
            }
        }
        next = e.source();
    }
    false
}

/// Whether a SQLSTATE asks the client to try again.
pub(crate) fn transient_code(code: &SqlState) -> bool {
    const RETRY: [SqlState; 8] = [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    ];
    // Class 08: connection exceptions.
    RETRY.contains(code) || code.code().starts_with("08")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_found_in_the_chain() {
        assert!(is_transient(&std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        )));
        assert!(!is_transient(&*eventsourcing_core::BoxError::from(
            "a handler bug"
        )));
        assert!(transient_code(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(transient_code(&SqlState::CONNECTION_FAILURE));
        assert!(!transient_code(&SqlState::UNIQUE_VIOLATION));
    }
}
