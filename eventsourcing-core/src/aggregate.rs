use std::fmt;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::{
    applying,
    codec::{Codec, CodecError},
    error::{Error, EventDecodeError},
    event::{now, StoredEvent},
};

/// The namespace of the name-based ids made by [`id_from_name`].
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1f_5a3c_2d4e_4b7a_9c1d_8e2f_3a4b_5c6d);

/// A new random (version 4) aggregate id.
pub fn new_id() -> Uuid {
    Uuid::new_v4()
}

/// A deterministic (version 5) id from a name, like the Python library's `create_id`: the same
/// name always gives the same id, so "the endpoint for this URL" can be found without an index.
pub fn id_from_name(name: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// The generated enum of an aggregate's events. Written by `#[aggregate]`, never by hand.
pub trait DomainEvent: Clone + fmt::Debug + Send + Sync + 'static {
    /// Every stored name this type accepts (current names and aliases).
    const NAMES: &'static [&'static str];

    /// The stored name of this event.
    fn name(&self) -> &'static str;

    /// The schema version its payload is written with.
    fn schema_version(&self) -> u32;

    /// Encodes the event's fields (not its name).
    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;

    /// Decodes a stored payload by its stored name and schema version.
    fn decode<C: Codec>(
        codec: &C,
        name: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, EventDecodeError>;
}

/// The replay half of an aggregate: what `#[aggregate]` generates from the `#[event]` methods.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no event methods",
    label = "`{Self}` needs an `#[events]` impl block",
    note = "add `#[events]` on an `impl {Self}` block and mark its event methods with `#[event]`"
)]
pub trait EventSourced: Sized {
    /// The generated event enum.
    type Event: DomainEvent;

    /// Builds the aggregate from a creation event; gives the event back if it is not one.
    fn create_from(event: Self::Event) -> Result<Self, Self::Event>;

    /// Applies a later event; gives it back if it is a creation event.
    fn apply(&mut self, event: Self::Event) -> Result<(), Self::Event>;
}

/// An event-sourced aggregate. Derived with `#[derive(Aggregate)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    note = "add `#[derive(Aggregate)]` to the struct, with a field `meta: Meta<Self>`"
)]
pub trait Aggregate: EventSourced + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate's type name (the struct name unless `#[aggregate(name = "...")]`).
    const TYPE_NAME: &'static str;

    /// A fingerprint of the state's shape (field names and types), computed at compile time.
    /// Snapshots written by a differently shaped struct carry another fingerprint.
    const STATE_FINGERPRINT: u64;

    /// Take a snapshot every this many events (`#[aggregate(snapshot_every = N)]`), unless the
    /// application's [`Snapshotting`](crate::Snapshotting) says otherwise.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The aggregate's identity and bookkeeping.
    fn meta(&self) -> &Meta<Self>;

    /// The aggregate's identity and bookkeeping, mutably.
    fn meta_mut(&mut self) -> &mut Meta<Self>;

    /// The aggregate id.
    fn id(&self) -> Uuid {
        self.meta().id
    }

    /// The version of the last event applied (the first event is version 1).
    fn version(&self) -> u64 {
        self.meta().version
    }

    /// When the first event was recorded.
    fn created_on(&self) -> DateTime<Utc> {
        self.meta().created_on
    }

    /// When the last event was recorded.
    fn modified_on(&self) -> DateTime<Utc> {
        self.meta().modified_on
    }

    /// Events recorded since the aggregate was loaded or last saved.
    fn pending_events(&self) -> &[Recorded<Self::Event>] {
        &self.meta().pending
    }
}

/// An event recorded by an event method and not yet saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    /// The version this event gives the aggregate.
    pub version: u64,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
    /// The event itself.
    pub event: E,
}

/// An aggregate's identity and bookkeeping: its id, version, timestamps and pending events.
///
/// Put one field of this type in the aggregate struct (`meta: Meta<Self>`) and set it to
/// `Meta::default()` in the creation event; the runtime fills it in. It is not part of the
/// state: it serializes as nothing and compares equal by id, version and timestamps only.
pub struct Meta<A: EventSourced> {
    pub(crate) id: Uuid,
    pub(crate) version: u64,
    pub(crate) created_on: DateTime<Utc>,
    pub(crate) modified_on: DateTime<Utc>,
    pub(crate) pending: Vec<Recorded<A::Event>>,
}

impl<A: EventSourced> Meta<A> {
    /// The aggregate id.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The current version.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// When the first event was recorded.
    pub fn created_on(&self) -> DateTime<Utc> {
        self.created_on
    }
    /// When the last event was recorded.
    pub fn modified_on(&self) -> DateTime<Utc> {
        self.modified_on
    }
    /// Events not yet saved.
    pub fn pending(&self) -> &[Recorded<A::Event>] {
        &self.pending
    }
    /// The version the store holds: the current version less the pending events.
    pub fn saved_version(&self) -> u64 {
        self.version - self.pending.len() as u64
    }
    /// Drops the pending events after a successful save.
    pub(crate) fn clear_pending(&mut self) {
        self.pending.clear();
    }
}

impl<A: EventSourced> Default for Meta<A> {
    fn default() -> Self {
        Meta {
            id: Uuid::nil(),
            version: 0,
            created_on: DateTime::UNIX_EPOCH,
            modified_on: DateTime::UNIX_EPOCH,
            pending: Vec::new(),
        }
    }
}

impl<A: EventSourced> Clone for Meta<A> {
    fn clone(&self) -> Self {
        Meta {
            id: self.id,
            version: self.version,
            created_on: self.created_on,
            modified_on: self.modified_on,
            pending: self.pending.clone(),
        }
    }
}

impl<A: EventSourced> fmt::Debug for Meta<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("created_on", &self.created_on)
            .field("modified_on", &self.modified_on)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<A: EventSourced> PartialEq for Meta<A> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.version == other.version
            && self.created_on == other.created_on
            && self.modified_on == other.modified_on
    }
}

impl<A: EventSourced> Eq for Meta<A> {}

impl<A: EventSourced> Serialize for Meta<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de, A: EventSourced> Deserialize<'de> for Meta<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Meta::default())
    }
}

/// Builds an aggregate with its creation event's body and records that event. Called by the
/// generated `…_with_id` constructor; `method` is the event method's name, for the panic below.
///
/// # Panics
///
/// When called while an event is being applied live: the outer event's body recorded another
/// event (see the `applying` module).
#[doc(hidden)]
pub fn record_creation<A: Aggregate>(
    id: Uuid,
    method: &'static str,
    event: A::Event,
    build: impl FnOnce() -> A,
) -> A {
    let mut aggregate = match applying::enter(A::TYPE_NAME, method, true) {
        applying::Enter::Record(scope) => {
            let aggregate = build();
            drop(scope);
            aggregate
        }
        // Inside a replayed event: the value is built (a constructor cannot be skipped) but
        // gets no event, as the code that stored the outer event gave it none that counted.
        applying::Enter::Apply(_scope) => return build(),
        // Never returned for a creation event; building is still the one answer.
        applying::Enter::Skip => return build(),
    };
    let timestamp = now();
    let meta = aggregate.meta_mut();
    meta.id = id;
    meta.version = 1;
    meta.created_on = timestamp;
    meta.modified_on = timestamp;
    meta.pending.clear();
    meta.pending.push(Recorded {
        version: 1,
        timestamp,
        event,
    });
    aggregate
}

/// Applies an event with its method's body and records it. Called by the generated event
/// method; `method` is its name, for the panic below.
///
/// # Panics
///
/// When called while an event is being applied live: the outer event's body recorded another
/// event (see the `applying` module).
#[doc(hidden)]
pub fn record<A: Aggregate>(
    aggregate: &mut A,
    method: &'static str,
    event: A::Event,
    apply: impl FnOnce(&mut A),
) {
    match applying::enter(A::TYPE_NAME, method, false) {
        applying::Enter::Record(scope) => {
            apply(aggregate);
            drop(scope);
        }
        applying::Enter::Apply(_scope) => return apply(aggregate),
        applying::Enter::Skip => return,
    }
    let timestamp = now();
    let meta = aggregate.meta_mut();
    meta.version += 1;
    meta.modified_on = timestamp;
    let version = meta.version;
    meta.pending.push(Recorded {
        version,
        timestamp,
        event,
    });
}

/// The event type of an `#[events]` block that failed to compile: it has no values. Lets the
/// macro report its own error instead of a cascade of missing-trait errors.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum NoEvents {}

impl DomainEvent for NoEvents {
    const NAMES: &'static [&'static str] = &[];
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn schema_version(&self) -> u32 {
        match *self {}
    }
    fn encode<C: Codec>(&self, _codec: &C) -> Result<Vec<u8>, CodecError> {
        match *self {}
    }
    fn decode<C: Codec>(
        _codec: &C,
        name: &str,
        _schema_version: u32,
        _payload: &[u8],
    ) -> Result<Self, EventDecodeError> {
        Err(EventDecodeError::UnknownType {
            name: name.to_owned(),
            aggregate: "",
            known: &[],
        })
    }
}

// Beside `DomainEvent`, so that the event envelope (`event.rs`) needs nothing of this module.
impl StoredEvent {
    /// Decodes the payload as one of an aggregate's events (e.g. `WidgetEvent`), for projections
    /// and process applications. Errors name the stream, version, type and schema version.
    pub fn decode<E: DomainEvent, C: Codec>(&self, codec: &C) -> Result<E, Error> {
        E::decode(codec, &self.event_type, self.schema_version, &self.payload).map_err(|source| {
            Error::decode_failed(
                self.stream_id,
                self.version,
                &self.event_type,
                self.schema_version,
                source,
            )
        })
    }
}
