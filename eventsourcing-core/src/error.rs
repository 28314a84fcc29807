use uuid::Uuid;

use crate::{codec::CodecError, config::ConfigError, position::Position, tenant_id::TenantError};

/// A boxed error from a backend or from user code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when saving or loading aggregates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No events exist for this id (or not as many as the requested version).
    #[error("{}", not_found_message(id, *version))]
    NotFound {
        /// The aggregate id that was asked for.
        id: Uuid,
        /// The version that was asked for, if any.
        version: Option<u64>,
    },
    /// Another save reached this stream first; nothing of this save was written.
    #[error("concurrency conflict on stream {stream_id}: expected version {expected}, found version {actual}")]
    Conflict {
        /// The stream (aggregate id) that conflicted.
        stream_id: Uuid,
        /// The version this save expected the stream to be at.
        expected: u64,
        /// The version the stream was actually at.
        actual: u64,
    },
    /// A stored event could not be turned back into a domain event.
    #[error("cannot decode event `{event_type}` (schema version {schema_version}) at version {version} of stream {stream_id}: {source}")]
    Decode {
        /// The stream the event belongs to.
        stream_id: Uuid,
        /// The event's version in its stream.
        version: u64,
        /// The stored event type name.
        event_type: String,
        /// The stored schema version of the payload.
        schema_version: u32,
        /// Why it failed.
        #[source]
        source: EventDecodeError,
    },
    /// A stream was loaded as another aggregate type than the one that wrote it (two types
    /// share an id, e.g. through `id_from_name`); nothing was built.
    #[error("stream {stream_id} holds `{stored}` events, not `{requested}` ones")]
    WrongType {
        /// The stream.
        stream_id: Uuid,
        /// The aggregate type its events were written by.
        stored: String,
        /// The aggregate type it was loaded as.
        requested: &'static str,
    },
    /// A stored row could not be read back (a column holds what no writer of this library
    /// wrote: a hand edit, another program, a corrupted file). Reported per event, with its
    /// place in the log, instead of failing the whole page.
    #[error("the stored event at position {position:?} (stream {stream_id}, version {version}) cannot be read: {reason}")]
    BadRow {
        /// The row's place in the log.
        position: Position,
        /// Its stream, if that column could be read (nil otherwise).
        stream_id: Uuid,
        /// Its version, if that column could be read (0 otherwise).
        version: u64,
        /// Which column, and why.
        reason: String,
    },
    /// An event of a save cannot be stored as it is (see
    /// [`check_save`](crate::check_save)); nothing of the save was written.
    #[error("event {version} of stream {stream_id} cannot be stored: {reason}")]
    InvalidEvent {
        /// The event's stream.
        stream_id: Uuid,
        /// The event's version.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A domain event could not be encoded.
    #[error("cannot encode event `{event_type}` for stream {stream_id}: {source}")]
    Encode {
        /// The stream the event belongs to.
        stream_id: Uuid,
        /// The event type name.
        event_type: String,
        /// Why it failed.
        #[source]
        source: CodecError,
    },
    /// The stream's payloads were encrypted under a key of their own subject, and that key was
    /// deleted (crypto-shredding): they no longer decrypt, by design. A load builds nothing; a
    /// save writes nothing. Other subjects are unaffected.
    #[error("stream {stream_id} belongs to subject `{subject}`, whose key was deleted")]
    Shredded {
        /// The stream that was loaded or saved.
        stream_id: Uuid,
        /// The subject whose key was deleted.
        subject: String,
    },
    /// The stored events of a stream do not form a valid history of the aggregate type.
    #[error("stream {stream_id} is not a valid history of `{aggregate}`: {reason}")]
    Corrupt {
        /// The stream that was loaded.
        stream_id: Uuid,
        /// The aggregate type it was loaded as.
        aggregate: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A tracked append found its consumer already at or past the position it tried to record:
    /// the upstream event was processed before (perhaps by another instance). Nothing was
    /// written.
    #[error("`{name}` has already processed up to {recorded:?}, so {attempted:?} is not new")]
    AlreadyProcessed {
        /// The consumer (projection or process) name.
        name: String,
        /// The position it had recorded.
        recorded: Position,
        /// The position this append tried to record.
        attempted: Position,
    },
    /// A projection or process application stopped on an event it could not handle.
    #[error("`{name}` failed on event `{event_type}` (stream {stream_id}, version {version}, position {position:?}): {source}")]
    Handler {
        /// The projection or process name.
        name: String,
        /// The event's stream.
        stream_id: Uuid,
        /// The event's version.
        version: u64,
        /// The event's type.
        event_type: String,
        /// The event's place in the log.
        position: Position,
        /// What the handler returned.
        #[source]
        source: BoxError,
    },
    /// A command passed to [`Application::update`](crate::Application::update) returned an error.
    #[error("command rejected: {0}")]
    Command(#[source] BoxError),
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store's tables do not exist (or are not at the expected schema version).
    #[error("{0}")]
    Schema(String),
    /// The backend failed (I/O, a constraint, a statement the server refused, ...).
    #[error("event store failure: {0}")]
    Store(#[source] BoxError),
    /// The backend failed in a way worth retrying after a short wait: the connection was lost
    /// or refused, the pool had none free in time, the database was busy or locked, the server
    /// asked to retry (serialization failure, deadlock, lock timeout, shutdown). Nothing of the
    /// operation was written, except for a commit whose acknowledgement was lost: see
    /// [`is_transient`](Error::is_transient).
    #[error("event store failure (worth retrying): {0}")]
    Transient(#[source] BoxError),
    /// A tenant id was refused, a tenant does not exist, or no tenant place became free in time
    /// (see [`Tenants`](crate::Tenants)). [`TenantError::Busy`] and [`TenantError::Paused`] are
    /// worth retrying.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

fn not_found_message(id: &Uuid, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("aggregate {id} not found at version {v}"),
        None => format!("aggregate {id} not found"),
    }
}

impl Error {
    /// Wraps a backend error.
    pub fn store(err: impl Into<BoxError>) -> Self {
        Error::Store(err.into())
    }

    /// True for [`Error::Conflict`]: a concurrent save won, reload and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True for [`Error::Transient`]: the same call may succeed after a short wait.
    ///
    /// One case needs care: when the connection is lost while a save's commit is in flight,
    /// the save may have been written even though the caller got an error. Retrying it then
    /// gets [`Error::Conflict`] (the stream moved on) rather than writing it twice, because
    /// every save names the versions it writes; reload the aggregate to see whether the save
    /// took effect.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Transient(_)
                | Error::Tenant(TenantError::Busy { .. } | TenantError::Paused { .. })
        )
    }

    /// Wraps a backend error worth retrying.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        Error::Transient(err.into())
    }

    /// An event that did not decode: [`Error::Shredded`] when its subject's key was deleted,
    /// [`Error::Decode`] otherwise.
    pub(crate) fn decode_failed(
        stream_id: Uuid,
        version: u64,
        event_type: &str,
        schema_version: u32,
        source: EventDecodeError,
    ) -> Self {
        if let EventDecodeError::Codec(codec) = &source {
            if let Some(subject) = codec.shredded_subject() {
                return Error::Shredded {
                    stream_id,
                    subject: subject.to_owned(),
                };
            }
        }
        Error::Decode {
            stream_id,
            version,
            event_type: event_type.to_owned(),
            schema_version,
            source,
        }
    }

    /// A value that did not encode: [`Error::Shredded`] when its subject's key was deleted,
    /// [`Error::Encode`] otherwise.
    pub(crate) fn encode_failed(stream_id: Uuid, event_type: String, source: CodecError) -> Self {
        match source.shredded_subject() {
            Some(subject) => Error::Shredded {
                stream_id,
                subject: subject.to_owned(),
            },
            None => Error::Encode {
                stream_id,
                event_type,
                source,
            },
        }
    }

    /// True for [`Error::Shredded`].
    pub fn is_shredded(&self) -> bool {
        matches!(self, Error::Shredded { .. })
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Why a stored event could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The stored name is not one of the aggregate's events.
    #[error("`{name}` is not an event of `{aggregate}` (known: {})", known.join(", "))]
    UnknownType {
        /// The stored name.
        name: String,
        /// The aggregate type.
        aggregate: &'static str,
        /// The names it knows.
        known: &'static [&'static str],
    },
    /// The payload was written with a schema version this code does not read.
    #[error("schema version {found} is not supported (this code reads up to version {supported})")]
    UnsupportedSchemaVersion {
        /// The stored schema version.
        found: u32,
        /// The newest version the code knows.
        supported: u32,
    },
    /// The payload was written with an older schema version and no upcast turns it into the
    /// current one.
    #[error("no upcast handles schema version {found} (the current schema version is {current})")]
    NoUpcast {
        /// The stored schema version.
        found: u32,
        /// The event's current schema version.
        current: u32,
    },
    /// The codec rejected the payload.
    #[error(transparent)]
    Codec(#[from] CodecError),
}
