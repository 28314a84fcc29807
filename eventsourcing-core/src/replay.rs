//! Replay one event at a time: [`EventView`] (an event as replay reads it, borrowed from a
//! store's row where the store can), [`Fold`] (what [`EventStore::replay_into`] feeds) and the
//! `Replayer` that rebuilds an aggregate from them (what [`replay`](crate::replay) and
//! loads use).
//!
//! [`EventStore::replay_into`]: crate::EventStore::replay_into

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    aggregate::{Aggregate, DomainEvent},
    applying,
    codec::Codec,
    error::Error,
    event::StoredEvent,
};

/// When an event was stored, as microseconds after the Unix epoch (what both stores keep),
/// always within [`DateTime`]'s range. A replay turns only its first and last event's into a
/// [`DateTime`] (`created_on`, `modified_on`): the calendar arithmetic per event was a twentieth
/// of an SQLite load (measured with `perf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredTime(i64);

impl StoredTime {
    /// The time `micros` microseconds after the Unix epoch, or `None` outside what a
    /// [`DateTime<Utc>`] can hold.
    pub fn from_micros(micros: i64) -> Option<Self> {
        let range = DateTime::<Utc>::MIN_UTC.timestamp_micros()
            ..=DateTime::<Utc>::MAX_UTC.timestamp_micros();
        range.contains(&micros).then_some(StoredTime(micros))
    }

    /// The microseconds after the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// As a [`DateTime`].
    pub fn to_datetime(self) -> DateTime<Utc> {
        // In range by construction; the epoch stands in for what cannot happen.
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }
}

impl From<DateTime<Utc>> for StoredTime {
    fn from(time: DateTime<Utc>) -> Self {
        StoredTime(time.timestamp_micros())
    }
}

/// One event of a stream as replay reads it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// Its version in the stream.
    pub version: u64,
    /// When it was stored.
    pub timestamp: StoredTime,
    /// Its stored name.
    pub event_type: &'a str,
    /// The stream's aggregate type where this event records it
    /// ([`records_stream_type`](Self::records_stream_type)); empty on the others.
    pub stream_type: &'a str,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// Its encoded payload.
    pub payload: &'a [u8],
}

impl<'a> EventView<'a> {
    /// Whether the event at `version` records its stream's aggregate type: a save records it
    /// on a stream's first event only, a load checks it there, and a store need not read it
    /// from the others.
    pub fn records_stream_type(version: u64) -> bool {
        version == 1
    }

    /// A load's type check: the stream type recorded on this event, if any, must be `A`'s.
    pub(crate) fn check_type<A: Aggregate>(
        stream_id: Uuid,
        version: u64,
        stream_type: &str,
    ) -> Result<(), Error> {
        if !Self::records_stream_type(version)
            || stream_type.is_empty()
            || stream_type == A::TYPE_NAME
        {
            return Ok(());
        }
        Err(Error::WrongType {
            stream_id,
            stored: stream_type.to_owned(),
            requested: A::TYPE_NAME,
        })
    }

    /// The view of a stored event.
    pub fn of(event: &'a StoredEvent) -> Self {
        EventView {
            version: event.version,
            timestamp: event.timestamp.into(),
            event_type: &event.event_type,
            stream_type: &event.stream_type,
            schema_version: event.schema_version,
            payload: &event.payload,
        }
    }
}

/// Takes a stream's events one at a time, in version order ([`EventStore::replay_into`]).
///
/// [`EventStore::replay_into`]: crate::EventStore::replay_into
pub trait Fold: Send {
    /// Takes the next event; an error ends the replay with it.
    fn event(&mut self, event: EventView<'_>) -> Result<(), Error>;

    /// Runs `feed`, which hands this fold events with [`event`](Self::event), synchronously
    /// on the calling thread. A store that feeds many events in one go does it through this,
    /// so that a fold can set up once what each event would otherwise set up again (the
    /// replay's scope: about 3 % of an SQLite `load_1000`). By default it runs `feed`.
    fn feeding<R>(&mut self, feed: impl FnOnce(&mut Self) -> R) -> R
    where
        Self: Sized,
    {
        feed(self)
    }
}

/// Feeds `events` to `fold`: what a store without a cheaper way does
/// ([`EventStore::replay_into`](crate::EventStore::replay_into)'s default). A row the store
/// could not read ([`StoredEvent::defect`]) ends it with [`Error::BadRow`].
pub fn fold_stored<F: Fold>(events: &[StoredEvent], mut fold: F) -> Result<F, Error> {
    fold.feeding(|fold| {
        events.iter().try_for_each(|event| {
            event.check_defect()?;
            fold.event(EventView::of(event))
        })
    })?;
    Ok(fold)
}

/// Rebuilds an aggregate of type `A` from its events, one at a time, continuing from a base
/// (a snapshot's state) if given.
pub(crate) struct Replayer<'c, A, C> {
    codec: &'c C,
    stream_id: Uuid,
    /// The aggregate so far (`None` before its first event).
    current: Option<A>,
    /// When the last event applied was stored: the aggregate's `modified_on`, set once at the
    /// end.
    last: Option<StoredTime>,
    /// Whether a [`Fold::feeding`] on this thread holds the replay scope.
    in_scope: bool,
}

impl<'c, A: Aggregate, C: Codec> Replayer<'c, A, C> {
    /// A replay of stream `stream_id` from `base`.
    pub(crate) fn new(codec: &'c C, stream_id: Uuid, base: Option<A>) -> Self {
        Replayer {
            codec,
            stream_id,
            current: base,
            last: None,
            in_scope: false,
        }
    }

    /// The aggregate so far.
    pub(crate) fn into_aggregate(self) -> Option<A> {
        let mut current = self.current;
        if let (Some(aggregate), Some(last)) = (current.as_mut(), self.last) {
            aggregate.meta_mut().modified_on = last.to_datetime();
        }
        current
    }

    /// Decodes and applies the next event. Fails with [`Error::Corrupt`] when its version does
    /// not follow, or when the history does not start with a creation event (or has a creation
    /// event later), and with [`Error::Decode`] when its payload does not decode. Call it inside
    /// a replay scope (nested event calls in replayed bodies must record nothing).
    pub(crate) fn apply(&mut self, stored: EventView<'_>) -> Result<(), Error> {
        let stream_id = self.stream_id;
        let expected = self.current.as_ref().map_or(0, |a| a.version()) + 1;
        if stored.version != expected {
            return Err(Error::Corrupt {
                stream_id,
                aggregate: A::TYPE_NAME,
                reason: format!(
                    "expected version {expected}, found version {}",
                    stored.version
                ),
            });
        }
        let event = A::Event::decode(
            self.codec,
            stored.event_type,
            stored.schema_version,
            stored.payload,
        )
        .map_err(|source| {
            Error::decode_failed(
                stream_id,
                stored.version,
                stored.event_type,
                stored.schema_version,
                source,
            )
        })?;
        match self.current.as_mut() {
            None => {
                let created = {
                    let _creation = applying::Scope::enter(applying::Mode::ReplayCreation);
                    A::create_from(event)
                };
                let mut aggregate = created.map_err(|e| Error::Corrupt {
                    stream_id,
                    aggregate: A::TYPE_NAME,
                    reason: format!("the first event `{}` is not a creation event", e.name()),
                })?;
                let meta = aggregate.meta_mut();
                meta.id = stream_id;
                meta.version = stored.version;
                meta.created_on = stored.timestamp.to_datetime();
                meta.pending.clear();
                self.current = Some(aggregate);
            }
            Some(aggregate) => {
                aggregate.apply(event).map_err(|e| Error::Corrupt {
                    stream_id,
                    aggregate: A::TYPE_NAME,
                    reason: format!(
                        "creation event `{}` at version {}",
                        e.name(),
                        stored.version
                    ),
                })?;
                aggregate.meta_mut().version = stored.version;
            }
        }
        self.last = Some(stored.timestamp);
        Ok(())
    }
}

/// A load's replay as a [`Fold`]: checks each event is of the stream's aggregate type, then
/// applies it inside a replay scope (nested event calls in replayed bodies record nothing):
/// entered once for a whole [`feeding`](Fold::feeding), else per event (the fold may run on
/// any thread).
impl<A: Aggregate, C: Codec> Fold for Replayer<'_, A, C> {
    fn event(&mut self, event: EventView<'_>) -> Result<(), Error> {
        EventView::check_type::<A>(self.stream_id, event.version, event.stream_type)?;
        if self.in_scope {
            return self.apply(event);
        }
        let _scope = applying::Scope::enter(applying::Mode::Replay);
        self.apply(event)
    }

    fn feeding<R>(&mut self, feed: impl FnOnce(&mut Self) -> R) -> R {
        let _scope = applying::Scope::enter(applying::Mode::Replay);
        let outer = std::mem::replace(&mut self.in_scope, true);
        let fed = feed(self);
        self.in_scope = outer;
        fed
    }
}

/// Rebuilds an aggregate from stored events, continuing from `base` if given.
///
/// Fails with [`Error::Decode`] naming the stream, version and event type when a payload does not
/// decode, and with [`Error::Corrupt`] when the versions are not contiguous or the history does
/// not start with a creation event.
pub fn replay<A: Aggregate, C: Codec>(
    codec: &C,
    stream_id: Uuid,
    base: Option<A>,
    events: impl IntoIterator<Item = StoredEvent>,
) -> Result<Option<A>, Error> {
    let mut replayer = Replayer::new(codec, stream_id, base);
    // Once per load, not per event: nested event calls in replayed bodies record nothing.
    let _scope = applying::Scope::enter(applying::Mode::Replay);
    for stored in events {
        replayer.apply(EventView::of(&stored))?;
    }
    Ok(replayer.into_aggregate())
}
