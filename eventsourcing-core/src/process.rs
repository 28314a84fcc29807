use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    application::{Application, Collector, Unsaved},
    codec::Codec,
    error::{BoxError, Error},
    event::{Metadata, NewEvent, Position, StoredEvent, Tracking},
    snapshot::Snapshotting,
    store::EventStore,
    subscription::Subscription,
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

    /// Reacts to one upstream event. Returning an error stops the process with
    /// [`Error::Handler`] naming the event; the event is not skipped, and a restart tries it
    /// again.
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
        let mut collector =
            Collector::new(self.app.codec(), &self.metadata, Snapshotting::disabled());
        aggregates.collect(&mut collector)?;
        self.events.extend(collector.into_events());
        aggregates.mark_saved();
        Ok(())
    }
}

/// How a process runner reads and retries.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Events read per query.
    pub page_size: usize,
    /// How long to wait for a wake-up before reading again anyway.
    pub poll_interval: Duration,
    /// Attempts for one event when a concurrent save conflicts or the store fails.
    pub attempts: u32,
    /// The first backoff after a store failure; it doubles up to 5 s.
    pub backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            page_size: 500,
            poll_interval: Duration::from_secs(1),
            attempts: 10,
            backoff: Duration::from_millis(50),
        }
    }
}

/// A running projection or process application.
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
    position: PositionCell,
}

/// The handle of a running process application.
pub type ProcessHandle = RunnerHandle;

/// Tells a runner to stop between two events.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once a stop was asked for (at once if it already was).
    pub async fn stopped(&mut self) {
        // An error means the handle is gone: nobody can ask any more, so never resolve.
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// Where a runner has got to, shared with its handle.
#[derive(Debug, Clone, Default)]
pub struct PositionCell(Arc<Mutex<Position>>);

impl PositionCell {
    /// The position of the last event fully processed.
    pub fn get(&self) -> Position {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records progress.
    pub fn set(&self, position: Position) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = position;
    }
}

impl RunnerHandle {
    /// Spawns a runner: `run` gets the stop signal to watch between events and the cell to
    /// record its progress in.
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(StopSignal, PositionCell) -> Fut,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let position = PositionCell::default();
        let task = tokio::spawn(run(StopSignal(stop_rx), position.clone()));
        RunnerHandle {
            stop,
            task,
            position,
        }
    }

    /// The position of the last event fully processed.
    pub fn position(&self) -> Position {
        self.position.get()
    }

    /// Whether the runner has ended (by [`stop`](Self::stop) or an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops after the event in hand, and returns how the runner ended.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for the runner to end by itself (an error), without asking it to stop.
    pub async fn join(self) -> Result<(), Error> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::store(format!("runner task failed: {e}"))),
        }
    }

    /// Aborts the runner wherever it is. Safe: each event's effects and its tracking position
    /// commit together, so a restart neither loses nor repeats anything.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts `process`, reading `upstream`'s log and saving into `downstream`.
pub fn spawn_process<P, U, S, C>(
    process: P,
    upstream: U,
    downstream: Application<S, C>,
    options: RunOptions,
) -> RunnerHandle
where
    P: Process,
    U: EventStore + Clone,
    S: EventStore,
    C: Codec,
{
    RunnerHandle::spawn(move |stop, position| {
        run(process, upstream, downstream, options, stop, position)
    })
}

async fn run<P, U, S, C>(
    mut process: P,
    upstream: U,
    downstream: Application<S, C>,
    options: RunOptions,
    mut stop: StopSignal,
    shared_position: PositionCell,
) -> Result<(), Error>
where
    P: Process,
    U: EventStore,
    S: EventStore,
    C: Codec,
{
    let name = process.name().to_owned();
    let start = downstream
        .store()
        .tracking_position(&name)
        .await?
        .unwrap_or(Position::START);
    shared_position.set(start);
    let mut subscription = Subscription::new(upstream, start)
        .page_size(options.page_size)
        .poll_interval(options.poll_interval);
    if let Some(types) = process.event_types() {
        subscription = subscription.event_types(types);
    }
    let mut failures = 0u32;
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.stopped() => return Ok(()),
            next = subscription.next() => next,
        };
        let event = match next {
            Ok(event) => {
                failures = 0;
                event
            }
            Err(e) if failures + 1 < options.attempts => {
                failures += 1;
                tracing::warn!(process = %name, error = %e, "reading the log failed; retrying");
                tokio::time::sleep(backoff(options.backoff, failures)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        handle_one(&mut process, &name, &event, &downstream, options).await?;
        shared_position.set(event.position);
    }
}

async fn handle_one<P: Process, S: EventStore, C: Codec>(
    process: &mut P,
    name: &str,
    event: &StoredEvent,
    downstream: &Application<S, C>,
    options: RunOptions,
) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut out = Outbox::new(downstream, event);
        process
            .handle(event, &mut out)
            .await
            .map_err(|source| Error::Handler {
                name: name.to_owned(),
                stream_id: event.stream_id,
                version: event.version,
                event_type: event.event_type.clone(),
                position: event.position,
                source,
            })?;
        let tracking = Tracking {
            name: name.to_owned(),
            position: event.position,
        };
        match downstream
            .store()
            .append_tracked(out.events, tracking)
            .await
        {
            Ok(()) => return Ok(()),
            // Another instance recorded it first: it is done, exactly once.
            Err(Error::AlreadyProcessed { .. }) => return Ok(()),
            // A concurrent save changed an aggregate the handler used: run it again on fresh state.
            Err(e) if e.is_conflict() && attempt < options.attempts => {}
            Err(Error::Store(e)) if attempt < options.attempts => {
                tracing::warn!(process = %name, error = %e, "saving failed; retrying");
                tokio::time::sleep(backoff(options.backoff, attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The wait before retry `attempt` (1, 2, ...): `first`, doubling, at most 5 s.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    first.saturating_mul(factor).min(Duration::from_secs(5))
}
