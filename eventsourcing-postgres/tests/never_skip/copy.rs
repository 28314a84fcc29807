//! The process application: for each upstream event it creates one `Copy` aggregate (a stream
//! of its own, one event) in the downstream application, naming the event it copies. A second
//! handling of an event would show as a second copy.
//!
//! The aggregate is written by hand (this crate's tests do not depend on the derive crate),
//! with the support functions the derive's generated code calls.

use eventsourcing_core::{
    serde::{Deserialize, Serialize},
    Aggregate, BoxError, Codec, CodecError, DomainEvent, EventDecodeError, EventSourced,
    EventStore, Meta, Outbox, Position, Process, StoredEvent,
};
use uuid::Uuid;

use crate::workload::{key, Key};

/// The one event of a `Copy`: which upstream event it copies, and where it was in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(crate = "eventsourcing_core::serde")]
pub(crate) struct Copied {
    commit: u64,
    seq: u64,
    stream_id: Uuid,
    version: u64,
    save: u64,
}

impl Copied {
    /// The upstream event's position and key.
    pub(crate) fn source(&self) -> (Position, Key) {
        let position = Position {
            commit: self.commit,
            seq: self.seq,
        };
        (position, (self.stream_id, self.version, self.save))
    }
}

impl DomainEvent for Copied {
    const NAMES: &'static [&'static str] = &["Copied"];

    fn name(&self) -> &'static str {
        "Copied"
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }

    fn decode<C: Codec>(
        codec: &C,
        _name: &str,
        _schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, EventDecodeError> {
        Ok(codec.decode(payload)?)
    }
}

/// A copy of one upstream event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "eventsourcing_core::serde")]
pub(crate) struct Copy {
    meta: Meta<Copy>,
    of: Copied,
}

impl EventSourced for Copy {
    type Event = Copied;

    fn create_from(event: Copied) -> Result<Self, Copied> {
        Ok(Copy {
            meta: Meta::default(),
            of: event,
        })
    }

    fn apply(&mut self, event: Copied) -> Result<(), Copied> {
        Err(event)
    }
}

impl Aggregate for Copy {
    const TYPE_NAME: &'static str = "Copy";
    const STATE_FINGERPRINT: u64 = 1;

    fn meta(&self) -> &Meta<Self> {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut Meta<Self> {
        &mut self.meta
    }
}

impl Copy {
    fn of(event: &StoredEvent) -> Copy {
        let (stream_id, version, save) = key(event);
        let copied = Copied {
            commit: event.position.commit,
            seq: event.position.seq,
            stream_id,
            version,
            save,
        };
        let built = copied.clone();
        eventsourcing_core::__private::record_creation(Uuid::new_v4(), "copied", copied, || Copy {
            meta: Meta::default(),
            of: built,
        })
    }
}

/// The process application.
pub(crate) struct Copier;

impl Process for Copier {
    fn name(&self) -> &str {
        "copier"
    }

    async fn handle<S: EventStore, C: Codec>(
        &mut self,
        event: &StoredEvent,
        out: &mut Outbox<'_, S, C>,
    ) -> Result<(), BoxError> {
        out.save(&mut Copy::of(event))?;
        Ok(())
    }
}
