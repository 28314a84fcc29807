use std::{fmt, sync::Arc};

use uuid::Uuid;

use crate::{
    aggregate::{replay, Aggregate, DomainEvent},
    codec::{Codec, JsonCodec},
    error::{BoxError, Error},
    event::{Metadata, NewEvent},
    store::EventStore,
};

/// Saves aggregates to an event store and loads them back.
///
/// Cheap to clone: clones share the store and codec.
pub struct Application<S, C = JsonCodec> {
    inner: Arc<Inner<S, C>>,
}

struct Inner<S, C> {
    store: S,
    codec: C,
}

impl<S, C> Clone for Application<S, C> {
    fn clone(&self) -> Self {
        Application {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Application<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("store", &self.inner.store)
            .field("codec", &self.inner.codec)
            .finish()
    }
}

/// How often [`Application::update_with_retry`] reloads and retries after a concurrency
/// conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
}

impl Retry {
    /// At most `attempts` attempts in all (at least one).
    pub fn attempts(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
        }
    }
}

/// Aggregates that can be saved together in one atomic write: `&mut A`, `&mut [A]`,
/// `&mut Vec<A>`, and tuples of up to four of these (of different aggregate types).
pub trait Unsaved {
    /// Encodes the pending events.
    fn collect<C: Codec>(
        &self,
        codec: &C,
        metadata: &Metadata,
        out: &mut Vec<NewEvent>,
    ) -> Result<(), Error>;

    /// Forgets the pending events once they are stored.
    fn mark_saved(&mut self);
}

impl<A: Aggregate> Unsaved for &mut A {
    fn collect<C: Codec>(
        &self,
        codec: &C,
        metadata: &Metadata,
        out: &mut Vec<NewEvent>,
    ) -> Result<(), Error> {
        encode_pending(&**self, codec, metadata, out)
    }

    fn mark_saved(&mut self) {
        self.meta_mut().clear_pending();
    }
}

impl<A: Aggregate> Unsaved for &mut [A] {
    fn collect<C: Codec>(
        &self,
        codec: &C,
        metadata: &Metadata,
        out: &mut Vec<NewEvent>,
    ) -> Result<(), Error> {
        for aggregate in self.iter() {
            encode_pending(aggregate, codec, metadata, out)?;
        }
        Ok(())
    }

    fn mark_saved(&mut self) {
        for aggregate in self.iter_mut() {
            aggregate.meta_mut().clear_pending();
        }
    }
}

impl<A: Aggregate> Unsaved for &mut Vec<A> {
    fn collect<C: Codec>(
        &self,
        codec: &C,
        metadata: &Metadata,
        out: &mut Vec<NewEvent>,
    ) -> Result<(), Error> {
        for aggregate in self.iter() {
            encode_pending(aggregate, codec, metadata, out)?;
        }
        Ok(())
    }

    fn mark_saved(&mut self) {
        for aggregate in self.iter_mut() {
            aggregate.meta_mut().clear_pending();
        }
    }
}

fn encode_pending<A: Aggregate, C: Codec>(
    aggregate: &A,
    codec: &C,
    metadata: &Metadata,
    out: &mut Vec<NewEvent>,
) -> Result<(), Error> {
    let meta = aggregate.meta();
    out.reserve(meta.pending().len());
    for recorded in meta.pending() {
        let event = &recorded.event;
        let payload = event.encode(codec).map_err(|source| Error::Encode {
            stream_id: meta.id(),
            event_type: event.name().to_owned(),
            source,
        })?;
        out.push(NewEvent {
            stream_id: meta.id(),
            version: recorded.version,
            event_type: event.name().into(),
            schema_version: event.schema_version(),
            timestamp: recorded.timestamp,
            payload,
            metadata: metadata.clone(),
        });
    }
    Ok(())
}

macro_rules! tuple_unsaved {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Unsaved),+> Unsaved for ($($name,)+) {
            fn collect<C: Codec>(
                &self,
                codec: &C,
                metadata: &Metadata,
                out: &mut Vec<NewEvent>,
            ) -> Result<(), Error> {
                $(self.$idx.collect(codec, metadata, out)?;)+
                Ok(())
            }

            fn mark_saved(&mut self) {
                $(self.$idx.mark_saved();)+
            }
        }
    };
}

tuple_unsaved!(T0 0, T1 1);
tuple_unsaved!(T0 0, T1 1, T2 2);
tuple_unsaved!(T0 0, T1 1, T2 2, T3 3);

impl<S: EventStore> Application<S, JsonCodec> {
    /// An application on `store` with the JSON codec.
    pub fn new(store: S) -> Self {
        Self::with_codec(store, JsonCodec)
    }
}

impl<S: EventStore, C: Codec> Application<S, C> {
    /// An application on `store` with another codec.
    pub fn with_codec(store: S, codec: C) -> Self {
        Application {
            inner: Arc::new(Inner { store, codec }),
        }
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    /// Loads aggregates: `app.repository().get::<Widget>(id)`.
    pub fn repository(&self) -> Repository<'_, S, C> {
        Repository { app: self }
    }

    /// Saves the pending events of one or several aggregates in one atomic write.
    ///
    /// `app.save(&mut a)`, `app.save((&mut a, &mut b))`, `app.save(&mut vec_of_a)`. If another
    /// save reached any of the streams first, this fails with [`Error::Conflict`], writes nothing,
    /// and leaves the pending events in place.
    pub async fn save<U: Unsaved>(&self, aggregates: U) -> Result<(), Error> {
        self.save_with_metadata(aggregates, &Metadata::default())
            .await
    }

    /// Like [`save`](Self::save), attaching `metadata` to every event written.
    pub async fn save_with_metadata<U: Unsaved>(
        &self,
        mut aggregates: U,
        metadata: &Metadata,
    ) -> Result<(), Error> {
        let mut events = Vec::new();
        aggregates.collect(&self.inner.codec, metadata, &mut events)?;
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len();
        self.inner.store.append(events).await?;
        tracing::trace!(events = count, "saved");
        aggregates.mark_saved();
        Ok(())
    }

    /// Saves a newly created aggregate and gives it back (the seed's `create_aggregate`).
    pub async fn create<A: Aggregate>(&self, mut aggregate: A) -> Result<A, Error> {
        self.save(&mut aggregate).await?;
        Ok(aggregate)
    }

    /// Loads an aggregate, runs a command on it and saves the events it recorded (the seed's
    /// `update_aggregate`). A command error is returned as [`Error::Command`] and nothing is saved.
    pub async fn update<A, F, E>(&self, id: Uuid, command: F) -> Result<A, Error>
    where
        A: Aggregate,
        F: FnOnce(&mut A) -> Result<(), E>,
        E: Into<BoxError>,
    {
        let mut aggregate: A = self.repository().get(id).await?;
        command(&mut aggregate).map_err(|e| Error::Command(e.into()))?;
        self.save(&mut aggregate).await?;
        Ok(aggregate)
    }

    /// Like [`update`](Self::update), but when a concurrent save wins it reloads and runs the
    /// command again, up to `retry` attempts in all.
    pub async fn update_with_retry<A, F, E>(
        &self,
        id: Uuid,
        retry: Retry,
        mut command: F,
    ) -> Result<A, Error>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<(), E>,
        E: Into<BoxError>,
    {
        let mut attempt = 1;
        loop {
            let mut aggregate: A = self.repository().get(id).await?;
            command(&mut aggregate).map_err(|e| Error::Command(e.into()))?;
            match self.save(&mut aggregate).await {
                Ok(()) => return Ok(aggregate),
                Err(err) if err.is_conflict() && attempt < retry.attempts => {
                    tracing::debug!(%id, attempt, "conflict, retrying");
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Loads aggregates from an application's store.
pub struct Repository<'a, S, C> {
    app: &'a Application<S, C>,
}

impl<S, C> fmt::Debug for Repository<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository").finish_non_exhaustive()
    }
}

impl<S: EventStore, C: Codec> Repository<'_, S, C> {
    /// The aggregate's current state; [`Error::NotFound`] if it has no events.
    pub async fn get<A: Aggregate>(&self, id: Uuid) -> Result<A, Error> {
        self.load(id, None).await
    }

    /// The aggregate's state at `version`; [`Error::NotFound`] if it never reached it.
    pub async fn get_at<A: Aggregate>(&self, id: Uuid, version: u64) -> Result<A, Error> {
        self.load(id, Some(version)).await
    }

    /// Whether the aggregate has any events. False only when it does not exist; every other
    /// failure is returned as an error.
    pub async fn exists(&self, id: Uuid) -> Result<bool, Error> {
        Ok(self.app.inner.store.stream_version(id).await? > 0)
    }

    async fn load<A: Aggregate>(&self, id: Uuid, version: Option<u64>) -> Result<A, Error> {
        let events = self.app.inner.store.load(id, 0, version).await?;
        let aggregate = replay::<A, C>(&self.app.inner.codec, id, None, events)?;
        match aggregate {
            Some(a) if version.is_none_or(|v| a.version() == v) => Ok(a),
            _ => Err(Error::NotFound { id, version }),
        }
    }
}
