use std::{fmt, sync::Arc, time::Instant};

use tracing::Instrument;
use uuid::Uuid;

use crate::{
    aggregate::{Aggregate, DomainEvent},
    codec::{Codec, EncodeContext, InContext, JsonCodec, PayloadKind},
    error::{BoxError, Error},
    event::{Metadata, NewEvent, Snapshot},
    metrics::{self, SaveSummary, SnapshotUse},
    replay::replay,
    replay::{EventView, Replayer},
    snapshot::{self, Snapshotting},
    store::EventStore,
};

/// Saves aggregates to an event store and loads them back.
///
/// Cheap to clone: clones share the store and codec.
pub struct Application<S, C = JsonCodec> {
    inner: Arc<Inner<S, C>>,
    snapshotting: Snapshotting,
    on_saved: Option<SavedHook>,
}

/// A function called after each successful save with the events it wrote.
pub type SavedHook = Arc<dyn Fn(&[NewEvent]) -> Result<(), BoxError> + Send + Sync>;

struct Inner<S, C> {
    store: S,
    // Shared with the `InContext` codecs that encode each aggregate's events.
    codec: Arc<C>,
}

impl<S, C> Clone for Application<S, C> {
    fn clone(&self) -> Self {
        Application {
            inner: Arc::clone(&self.inner),
            snapshotting: self.snapshotting,
            on_saved: self.on_saved.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Application<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("store", &self.inner.store)
            .field("codec", &self.inner.codec)
            .field("snapshotting", &self.snapshotting)
            .field("on_saved", &self.on_saved.is_some())
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

/// What a save gathers from its aggregates: the events to append and the snapshots due.
#[derive(Debug)]
pub struct Collector<'a, C> {
    codec: &'a Arc<C>,
    metadata: &'a Metadata,
    snapshotting: Snapshotting,
    events: Vec<NewEvent>,
    snapshots: Vec<Snapshot>,
    summary: SaveSummary,
}

impl<'a, C: Codec> Collector<'a, C> {
    pub(crate) fn new(
        codec: &'a Arc<C>,
        metadata: &'a Metadata,
        snapshotting: Snapshotting,
    ) -> Self {
        Collector {
            codec,
            metadata,
            snapshotting,
            events: Vec::new(),
            snapshots: Vec::new(),
            summary: SaveSummary::default(),
        }
    }

    pub(crate) fn into_events(self) -> Vec<NewEvent> {
        self.events
    }

    /// Encodes an aggregate's pending events, and its snapshot if one is due.
    pub fn add<A: Aggregate>(&mut self, aggregate: &A) -> Result<(), Error> {
        let meta = aggregate.meta();
        let pending = meta.pending();
        if pending.is_empty() {
            return Ok(());
        }
        self.events.reserve(pending.len());
        let codec = InContext::new(
            Arc::clone(self.codec),
            EncodeContext::new(meta.id(), A::TYPE_NAME, PayloadKind::Event),
        );
        self.summary.add(A::TYPE_NAME, meta.id(), pending.len());
        for recorded in pending {
            let event = &recorded.event;
            let payload = event.encode(&codec).map_err(|source| {
                Error::encode_failed(meta.id(), event.name().to_owned(), source)
            })?;
            self.events.push(NewEvent {
                stream_id: meta.id(),
                version: recorded.version,
                event_type: event.name().into(),
                // Said once per stream, on the event that creates it: loads check it there, and
                // the other rows stay as small and cheap to read as before.
                stream_type: if EventView::records_stream_type(recorded.version) {
                    A::TYPE_NAME.into()
                } else {
                    "".into()
                },
                schema_version: event.schema_version(),
                timestamp: recorded.timestamp,
                payload,
                metadata: self.metadata.clone(),
            });
        }
        if self
            .snapshotting
            .due::<A>(meta.saved_version(), meta.version())
        {
            match snapshot::take(&**self.codec, aggregate) {
                Ok(s) => self.snapshots.push(s),
                // The events still save; only the shortcut for later loads is lost.
                Err(e) => {
                    tracing::warn!(id = %meta.id(), aggregate = A::TYPE_NAME, error = %e, "cannot encode snapshot")
                }
            }
        }
        Ok(())
    }
}

/// Aggregates that can be saved together in one atomic write: `&mut A`, `&mut [A]`,
/// `&mut Vec<A>`, and tuples of up to four of these (of different aggregate types).
pub trait Unsaved {
    /// Hands the aggregates to the collector.
    fn collect<C: Codec>(&self, collector: &mut Collector<'_, C>) -> Result<(), Error>;

    /// Forgets the pending events once they are stored.
    fn mark_saved(&mut self);
}

impl<A: Aggregate> Unsaved for &mut A {
    fn collect<C: Codec>(&self, collector: &mut Collector<'_, C>) -> Result<(), Error> {
        collector.add(&**self)
    }

    fn mark_saved(&mut self) {
        self.meta_mut().clear_pending();
    }
}

impl<A: Aggregate> Unsaved for &mut [A] {
    fn collect<C: Codec>(&self, collector: &mut Collector<'_, C>) -> Result<(), Error> {
        self.iter().try_for_each(|a| collector.add(a))
    }

    fn mark_saved(&mut self) {
        for aggregate in self.iter_mut() {
            aggregate.meta_mut().clear_pending();
        }
    }
}

impl<A: Aggregate> Unsaved for &mut Vec<A> {
    fn collect<C: Codec>(&self, collector: &mut Collector<'_, C>) -> Result<(), Error> {
        self.iter().try_for_each(|a| collector.add(a))
    }

    fn mark_saved(&mut self) {
        for aggregate in self.iter_mut() {
            aggregate.meta_mut().clear_pending();
        }
    }
}

macro_rules! tuple_unsaved {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Unsaved),+> Unsaved for ($($name,)+) {
            fn collect<C: Codec>(&self, collector: &mut Collector<'_, C>) -> Result<(), Error> {
                $(self.$idx.collect(collector)?;)+
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
            inner: Arc::new(Inner {
                store,
                codec: Arc::new(codec),
            }),
            snapshotting: Snapshotting::default(),
            on_saved: None,
        }
    }

    /// Sets when snapshots are taken and kept (see [`Snapshotting`]; by default each type's
    /// `#[aggregate(snapshot_every = N)]`).
    pub fn with_snapshotting(mut self, snapshotting: Snapshotting) -> Self {
        self.snapshotting = snapshotting;
        self
    }

    /// Calls `hook` after each successful save with the events it wrote: the seed's in-process
    /// notifier, done safely. A hook's error or panic is logged through `tracing` and never fails
    /// the save; the events are stored either way, and durable consumers (subscriptions, process
    /// applications) still receive them from the log.
    pub fn on_saved(
        mut self,
        hook: impl Fn(&[NewEvent]) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.on_saved = Some(Arc::new(hook));
        self
    }

    /// The snapshot policy in force.
    pub fn snapshotting(&self) -> Snapshotting {
        self.snapshotting
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    pub(crate) fn shared_codec(&self) -> &Arc<C> {
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
        let mut collector = Collector::new(&self.inner.codec, metadata, self.snapshotting);
        aggregates.collect(&mut collector)?;
        let Collector {
            events,
            snapshots,
            summary,
            ..
        } = collector;
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len();
        // Only a registered hook pays for the copy.
        let for_hook = self.on_saved.as_ref().map(|_| events.clone());
        let (span, started) = (summary.span(count), Instant::now());
        let appended = self
            .inner
            .store
            .append(events)
            .instrument(span.clone())
            .await;
        summary.record(self.inner.store.store_kind(), started, &appended);
        appended?;
        tracing::trace!(events = count, "saved");
        aggregates.mark_saved();
        if let (Some(hook), Some(events)) = (&self.on_saved, for_hook) {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&events)));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, events = count, "on_saved hook failed; the save stands")
                }
                Err(_) => {
                    tracing::error!(events = count, "on_saved hook panicked; the save stands")
                }
            }
        }
        for snapshot in snapshots {
            self.write_snapshot(snapshot).instrument(span.clone()).await;
        }
        Ok(())
    }

    /// Writes a snapshot after its events are stored; a failure is logged, never returned,
    /// because the save it belongs to has already succeeded.
    async fn write_snapshot(&self, snapshot: Snapshot) {
        let (id, version) = (snapshot.stream_id, snapshot.version);
        let state_type = snapshot.state_type.clone();
        let store = &self.inner.store;
        match store
            .save_snapshot(snapshot, self.snapshotting.kept())
            .await
        {
            Ok(()) => metrics::record_snapshot_written(store.store_kind(), &state_type),
            Err(e) => tracing::warn!(%id, version, error = %e, "cannot write snapshot"),
        }
    }

    /// Writes a snapshot of an aggregate at `version` (its current version when `None`) and
    /// returns the version it was taken at, like the Python library's `take_snapshot`. Loads use
    /// it when the type snapshots automatically or `IS_SNAPSHOTTING_ENABLED=y`.
    pub async fn take_snapshot<A: Aggregate>(
        &self,
        id: Uuid,
        version: Option<u64>,
    ) -> Result<u64, Error> {
        let aggregate: A = self.repository().load(id, version).await?;
        let snapshot = snapshot::take(&*self.inner.codec, &aggregate).map_err(|source| {
            Error::encode_failed(id, format!("snapshot of {}", A::TYPE_NAME), source)
        })?;
        self.inner
            .store
            .save_snapshot(snapshot, self.snapshotting.kept())
            .await?;
        metrics::record_snapshot_written(self.inner.store.store_kind(), A::TYPE_NAME);
        Ok(aggregate.version())
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
        let started = Instant::now();
        let mut snapshot = SnapshotUse::None;
        let span = metrics::load_span(A::TYPE_NAME, id);
        let loaded = self.rebuild(id, version, &mut snapshot);
        let aggregate = loaded.instrument(span.clone()).await?;
        let store = self.app.inner.store.store_kind();
        metrics::record_load(&span, store, A::TYPE_NAME, snapshot, started);
        Ok(aggregate)
    }

    /// Loads and replays; says in `used` whether it started from a snapshot.
    async fn rebuild<A: Aggregate>(
        &self,
        id: Uuid,
        version: Option<u64>,
        used: &mut SnapshotUse,
    ) -> Result<A, Error> {
        let app = self.app;
        let store = &app.inner.store;
        let mut base: Option<A> = None;
        let mut stale = false;
        let events = if app.snapshotting.reads_for::<A>() {
            *used = SnapshotUse::Miss;
            // The snapshot and the events after it, in one round trip where the store can.
            let (snap, events) = store.load_from_snapshot(id, version).await?;
            match snap.map(|snap| (snapshot::restore::<A, C>(&*app.inner.codec, &snap), snap)) {
                None => events,
                Some((Ok(a), _)) => {
                    base = Some(a);
                    *used = SnapshotUse::Hit;
                    events
                }
                Some((Err(why), snap)) => {
                    tracing::info!(%id, version = snap.version, aggregate = A::TYPE_NAME, "ignoring snapshot: {why}");
                    stale = true;
                    store.load_for_replay(id, 0, version).await?
                }
            }
        } else {
            // Event by event, from the store's rows where it can.
            let replayer = Replayer::<A, C>::new(&*app.inner.codec, id, None);
            let aggregate = store.replay_into(id, 0, version, replayer).await?;
            return match aggregate.into_aggregate() {
                Some(a) if version.is_none_or(|v| a.version() == v) => Ok(a),
                _ => Err(Error::NotFound { id, version }),
            };
        };
        for event in &events {
            event.check_defect()?;
            EventView::check_type::<A>(id, event.version, &event.stream_type)?;
        }
        let aggregate = replay::<A, C>(&*app.inner.codec, id, base, events)?;
        let aggregate = match aggregate {
            Some(a) if version.is_none_or(|v| a.version() == v) => a,
            _ => return Err(Error::NotFound { id, version }),
        };
        if stale {
            // Replace the snapshot this code cannot read with one it can.
            match snapshot::take(&*app.inner.codec, &aggregate) {
                Ok(s) => app.write_snapshot(s).await,
                Err(e) => tracing::warn!(%id, error = %e, "cannot encode snapshot"),
            }
        }
        Ok(aggregate)
    }
}
