use std::{borrow::Cow, collections::BTreeMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
pub use crate::position::Position;

/// The current time in UTC, truncated to microseconds so that it survives every store unchanged.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Who and what caused a save: attached to every event the save writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together everything done for one request or workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message (command or event) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Free key/values (user id, tenant, request path, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Metadata {
    /// True when nothing is set; stores then write no metadata at all.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.values.is_empty()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Adds a key/value.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }
}

/// An event on its way into a store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The aggregate id.
    pub stream_id: Uuid,
    /// Its version in the stream (1 for the first event).
    pub version: u64,
    /// The stored event name.
    pub event_type: Cow<'static, str>,
    /// The aggregate type of the stream (`Aggregate::TYPE_NAME`), given on the event that
    /// creates it (version 1); `Application::save` leaves it empty on later events, and a raw
    /// write may leave it empty everywhere. A load as another type than the one given is refused
    /// ([`Error::WrongType`]).
    pub stream_type: Cow<'static, str>,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When the event was recorded (UTC, microsecond precision).
    pub timestamp: DateTime<Utc>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// Correlation, causation and user key/values.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event of `stream_id` at `version`, recorded now, schema version 1, no metadata: what
    /// an import, a migration script or a test writes without an aggregate.
    pub fn new(
        stream_id: Uuid,
        version: u64,
        event_type: impl Into<Cow<'static, str>>,
        payload: Vec<u8>,
    ) -> Self {
        NewEvent {
            stream_id,
            version,
            event_type: event_type.into(),
            stream_type: Cow::Borrowed(""),
            schema_version: 1,
            timestamp: now(),
            payload,
            metadata: Metadata::default(),
        }
    }
}

impl NewEvent {
    /// The same event, saying which aggregate type its stream belongs to.
    pub fn of_type(mut self, stream_type: impl Into<Cow<'static, str>>) -> Self {
        self.stream_type = stream_type.into();
        self
    }
}

impl StoredEvent {
    /// [`Error::BadRow`] for a row with a [`defect`](Self::defect); `Ok` for a sound one.
    pub fn check_defect(&self) -> Result<(), Error> {
        match &self.defect {
            None => Ok(()),
            Some(reason) => Err(Error::BadRow {
                position: self.position,
                stream_id: self.stream_id,
                version: self.version,
                reason: reason.clone(),
            }),
        }
    }

    /// A row of which only the position could be read: what a store returns for it.
    pub fn defective(position: Position, reason: String) -> Self {
        StoredEvent {
            stream_id: Uuid::nil(),
            version: 0,
            position,
            event_type: String::new(),
            stream_type: String::new(),
            schema_version: 0,
            timestamp: DateTime::<Utc>::UNIX_EPOCH,
            payload: Vec::new(),
            metadata: Metadata::default(),
            defect: Some(reason),
        }
    }
}

/// An event as a store returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The aggregate id.
    pub stream_id: Uuid,
    /// Its version in the stream.
    pub version: u64,
    /// Its place in the global order.
    pub position: Position,
    /// The stored event name.
    pub event_type: String,
    /// The aggregate type of the stream, on the event that created it (version 1); empty on
    /// later events and where the writer did not say.
    pub stream_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When the event was recorded.
    pub timestamp: DateTime<Utc>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// Correlation, causation and user key/values.
    pub metadata: Metadata,
    /// Why a column of this event's stored row could not be read (`None` for a sound row):
    /// the fields it would have filled keep their defaults. A store reports such a row this way
    /// instead of failing the whole page of the log, so that one bad row never stops every
    /// consumer: [`Subscription`](crate::Subscription) returns it as [`Error::BadRow`] and moves
    /// on, a projection stops on it or parks it ([`OnError`](crate::OnError)), and loading its
    /// aggregate is an [`Error::BadRow`].
    pub defect: Option<String>,
}

/// A stored copy of an aggregate's state at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate id.
    pub stream_id: Uuid,
    /// The version the state is at.
    pub version: u64,
    /// The aggregate type name (`Aggregate::TYPE_NAME`).
    pub state_type: String,
    /// The shape of the state that wrote it (`Aggregate::STATE_FINGERPRINT`).
    pub fingerprint: u64,
    /// When the event at `version` was recorded.
    pub timestamp: DateTime<Utc>,
    /// The encoded state.
    pub payload: Vec<u8>,
}

/// A consumer's progress through the log: "`name` has processed everything up to `position`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// The consumer (projection or process application) name.
    pub name: String,
    /// The position of the last event it processed.
    pub position: Position,
}

impl Tracking {
    /// The check every store makes before recording a tracked append: the consumer must not
    /// have recorded this position or a later one ([`Error::AlreadyProcessed`] otherwise).
    pub fn check_after(&self, recorded: Option<Position>) -> Result<(), Error> {
        match recorded {
            Some(recorded) if recorded >= self.position => Err(Error::AlreadyProcessed {
                name: self.name.clone(),
                recorded,
                attempted: self.position,
            }),
            _ => Ok(()),
        }
    }
}
