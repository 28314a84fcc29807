use std::{error::Error as StdError, future::Future, sync::Arc};

use crate::{
    application::{Application, Collector, Unsaved},
    batch::{catch_panic_async, Batch, Known, Outcome, Step},
    codec::Codec,
    engine::{spawn_runner, BatchTarget, Consumer},
    error::{BoxError, Error},
    event::{Metadata, NewEvent, Position, StoredEvent, Tracking},
    projection::{ParkedEvent, ProjectionOptions},
    runner::RunnerHandle,
    snapshot::Snapshotting,
    store::EventStore,
};

/// A process application (the Python library's policy): reacts to one application's events by
/// saving events in another, exactly once.
///
/// For each upstream event the runner calls [`handle`](Self::handle); what the handler saves
/// through the [`Outbox`] is written together with the process's tracking position in one atomic
/// append to the downstream store. A crash between two events loses nothing and repeats nothing:
/// a restart resumes after the last recorded position.
pub trait Process: Send + 'static {
    /// The name the tracking position is recorded under. Keep it stable.
    fn name(&self) -> &str;

    /// The event types it reacts to; `None` (the default) for all. Other events only move its
    /// position on, which matters when it reads a log that it also writes to.
    fn event_types(&self) -> Option<Vec<String>> {
        None
    }

    /// Reacts to one upstream event. An error (or a panic) is a failure of this event, and
    /// [`ProjectionOptions::on_error`] decides what happens: under
    /// [`OnError::Stop`](crate::OnError::Stop) the process stops with [`Error::Handler`] naming
    /// the event (a restart tries it again); under [`OnError::Park`](crate::OnError::Park) the
    /// event is recorded with [`EventStore::park`] in the downstream store and the process goes
    /// on.
    fn handle<S: EventStore, C: Codec>(
        &mut self,
        event: &StoredEvent,
        out: &mut Outbox<'_, S, C>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What a [`Process`] saves while handling one event.
#[derive(Debug)]
pub struct Outbox<'a, S, C> {
    app: &'a Application<S, C>,
    metadata: Metadata,
    events: Vec<NewEvent>,
}

impl<'a, S: EventStore, C: Codec> Outbox<'a, S, C> {
    fn new(app: &'a Application<S, C>, cause: &StoredEvent) -> Self {
        let mut metadata = Metadata {
            correlation_id: cause.metadata.correlation_id,
            ..Metadata::default()
        }
        .with("cause", format!("{}@{}", cause.stream_id, cause.version));
        if metadata.correlation_id.is_none() {
            metadata.correlation_id = Some(cause.stream_id);
        }
        Outbox {
            app,
            metadata,
            events: Vec::new(),
        }
    }

    /// The downstream application, to load aggregates from.
    pub fn app(&self) -> &'a Application<S, C> {
        self.app
    }

    /// Queues the pending events of aggregates; they are written with the tracking position.
    pub fn save<U: Unsaved>(&mut self, mut aggregates: U) -> Result<(), Error> {
        let mut collector = Collector::new(
            self.app.shared_codec(),
            &self.metadata,
            Snapshotting::disabled(),
        );
        aggregates.collect(&mut collector)?;
        self.events.extend(collector.into_events());
        aggregates.mark_saved();
        Ok(())
    }
}

/// Starts `process`, reading `upstream`'s log and saving into `downstream`.
///
/// It runs on the same engine as the stores' projections: it reads pages of
/// [`page_size`](ProjectionOptions::page_size) events, retries transient store failures with a
/// backoff up to [`attempts`](ProjectionOptions::attempts) times, and follows the log live. Each
/// handled event is one [`EventStore::append_tracked`]; a save that conflicts with a concurrent
/// one runs the handler again on fresh state, up to `attempts` times. Two instances of one
/// process may run at once: the tracked append lets only one record each event.
pub fn spawn_process<P, U, S, C>(
    process: P,
    upstream: U,
    downstream: Application<S, C>,
    options: ProjectionOptions,
) -> RunnerHandle
where
    P: Process,
    U: EventStore,
    S: EventStore,
    C: Codec,
{
    let consumer = Consumer {
        name: process.name().to_owned(),
        types: process.event_types(),
    };
    let target = ProcessTarget {
        name: consumer.name.clone(),
        process,
        downstream,
        attempts: options.attempts.max(1),
    };
    spawn_runner(upstream, consumer, target, options)
}

/// The downstream side of a process application.
struct ProcessTarget<P, S, C> {
    name: String,
    process: P,
    downstream: Application<S, C>,
    attempts: u32,
}

/// How handling one event failed.
enum Failed {
    Handler(BoxError),
    Store(Error),
}

impl<P: Process, S: EventStore, C: Codec> ProcessTarget<P, S, C> {
    fn tracking(&self, position: Position) -> Tracking {
        Tracking {
            name: self.name.clone(),
            position,
        }
    }

    /// Handles one event and saves what it produced with the event's position; on a conflict
    /// with a concurrent save, handles it again on fresh state.
    async fn handle(&mut self, event: &StoredEvent) -> Result<(), Failed> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut out = Outbox::new(&self.downstream, event);
            catch_panic_async(self.process.handle(event, &mut out))
                .await
                .map_err(Failed::Handler)?;
            let events = out.events;
            match self
                .downstream
                .store()
                .append_tracked(events, self.tracking(event.position))
                .await
            {
                // Another instance recorded it first: it is done, exactly once.
                Ok(()) | Err(Error::AlreadyProcessed { .. }) => return Ok(()),
                Err(e) if e.is_conflict() && attempt < self.attempts => {}
                Err(e) => return Err(Failed::Store(e)),
            }
        }
    }
}

/// Parks `event` for process `name` in the downstream store (its position moves past it).
async fn park<S: EventStore>(
    store: &S,
    name: &str,
    event: &StoredEvent,
    error: &str,
) -> Result<(), Error> {
    match store.park(ParkedEvent::new(name, event, error)).await {
        Ok(()) | Err(Error::AlreadyProcessed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl<P: Process, S: EventStore, C: Codec> BatchTarget for ProcessTarget<P, S, C> {
    async fn setup(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    fn tracking_position(
        &mut self,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        self.downstream.store().tracking_position(&self.name)
    }

    /// Each event commits on its own (its saves with its position), so a failure keeps the
    /// events before it; the next attempt reads the new position and skips them.
    async fn attempt(&mut self, batch: &Arc<Batch>, known: &Known) -> Result<Outcome, Error> {
        let recorded = self
            .downstream
            .store()
            .tracking_position(&self.name)
            .await?;
        let plan = batch.plan(recorded, known);
        let mut position = recorded;
        for step in plan.steps {
            match step {
                Step::Handle { index, event } => match self.handle(event).await {
                    Ok(()) => {}
                    Err(Failed::Handler(error)) => {
                        return Ok(Outcome::Failed {
                            index,
                            error,
                            recorded: position,
                        })
                    }
                    Err(Failed::Store(e)) => return Err(e),
                },
                Step::Park { event, error } => {
                    park(self.downstream.store(), &self.name, event, error).await?
                }
            }
            position = Some(event_position(&step));
        }
        if let Some(end) = plan.record.filter(|end| position.is_none_or(|p| p < *end)) {
            // The batch ends with events it does not handle: record that it is past them.
            match self
                .downstream
                .store()
                .append_tracked(Vec::new(), self.tracking(end))
                .await
            {
                Ok(()) | Err(Error::AlreadyProcessed { .. }) => position = Some(end),
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Done {
            position,
            stopped: plan.stopped,
        })
    }

    fn is_transient(&self, _: &(dyn StdError + 'static)) -> bool {
        // Store errors say so themselves (`Error::is_transient`); a handler's own errors are
        // its failures.
        false
    }
}

fn event_position(step: &Step<'_>) -> Position {
    match step {
        Step::Handle { event, .. } | Step::Park { event, .. } => event.position,
    }
}
