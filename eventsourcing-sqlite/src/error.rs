//! Turning driver errors into [`eventsourcing_core::Error`], and telling which are worth
//! retrying.

use eventsourcing_core::Error;

/// Turns a driver error into the runtime's error: a missing table becomes [`Error::Schema`]
/// telling how to create it, everything else is an [`Error::Store`] holding the
/// [`rusqlite::Error`] (downcast it for the SQLite error code).
pub(crate) fn sql_error(dbname: &str, err: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(_, Some(message)) = &err {
        if message.starts_with("no such table") {
            return missing_schema(dbname, message);
        }
    }
    if is_transient(&err) {
        return Error::Transient(Box::new(err));
    }
    Error::Store(Box::new(err))
}

/// [`Error::Schema`] saying the tables are missing and how to create them.
pub(crate) fn missing_schema(dbname: &str, detail: &str) -> Error {
    Error::Schema(format!(
        "the event store tables are missing from SQLite database `{dbname}` ({detail}): \
         call `SqliteStore::migrate()` once, or open the store with CREATE_TABLE=y"
    ))
}

/// Whether a driver error is worth retrying: `SQLITE_BUSY` (another connection held the lock
/// past the lock timeout) or `SQLITE_LOCKED` (a conflict inside a shared-cache connection). The
/// same work may succeed once the other side is done.
pub(crate) fn is_transient(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A background thread of the store is gone (it can only stop when the store is dropped, or if
/// it panicked).
pub(crate) fn stopped(dbname: &str) -> Error {
    Error::store(format!(
        "the SQLite connection thread for `{dbname}` has stopped"
    ))
}

/// A number that does not fit SQLite's signed 64-bit integers.
pub(crate) fn out_of_range(what: &str, value: u64) -> Error {
    Error::store(format!(
        "{what} {value} does not fit in a SQLite integer (at most {})",
        i64::MAX
    ))
}

/// A `u64` for a SQLite integer column, or an error naming `what` if it does not fit.
pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| out_of_range(what, value))
}

/// A value read back from SQLite that is not what this crate wrote.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadValue(pub(crate) String);

/// The database could not be opened or set up (path, permissions, a file that is not a
/// database, ...). The driver's error is its source.
#[derive(Debug, thiserror::Error)]
#[error("cannot open SQLite database `{dbname}`: {source}")]
pub(crate) struct CannotOpen {
    pub(crate) dbname: String,
    #[source]
    pub(crate) source: rusqlite::Error,
}

pub(crate) fn cannot_open(dbname: &str, source: rusqlite::Error) -> Error {
    Error::Store(Box::new(CannotOpen {
        dbname: dbname.to_owned(),
        source,
    }))
}
