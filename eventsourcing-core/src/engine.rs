//! The one projection engine, for store crates. The one runner of projections and process applications: it reads the log after the
//! consumer's tracking position, hands it to the store in batches, retries transient failures
//! with a backoff, applies the failure policy ([`OnError`]), follows the log live, and stops
//! between batches.
//!
//! A store supplies only what is its own, as a [`BatchTarget`]: the consumer's setup, and one
//! attempt at a batch in one transaction (lock and read the tracking row, apply the
//! [`Plan`]'s steps, record the position, commit), and which of its errors
//! are transient.

use std::{error::Error as StdError, future::Future, sync::Arc, time::Instant};

use tracing::Instrument;

pub use crate::batch::{
    catch_panic, catch_panic_async, error_chain, Batch, Known, Outcome, Plan, Step,
};

use crate::{
    batch::wanted,
    changes::Changes,
    error::{BoxError, Error},
    event::{Position, StoredEvent},
    metrics::ProjectionMetrics,
    projection::{OnError, ProjectionOptions},
    runner::{backoff, PositionCell, RunnerHandle, StopSignal},
    store::EventStore,
};

/// A store's side of a projection or process-application runner.
pub trait BatchTarget: Send + 'static {
    /// Prepares the consumer (its read model's tables), in a transaction of its own. Called
    /// once each time a runner starts, and again after a transient failure.
    fn setup(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// The position the consumer has recorded, if any.
    fn tracking_position(&mut self)
        -> impl Future<Output = Result<Option<Position>, Error>> + Send;

    /// One attempt at `batch` in one transaction: lock the consumer's tracking row (so no other
    /// runner of it applies these events meanwhile) and read it, then do what
    /// [`Batch::plan`] says for that position and `known`: run the steps, and on the first
    /// handler failure roll back and return [`Outcome::Failed`]; otherwise write the plan's
    /// position, if any, and commit.
    fn attempt(
        &mut self,
        batch: &Arc<Batch>,
        known: &Known,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send;

    /// Whether `error` (one link of a handler's error chain) is a store failure worth retrying,
    /// such as a busy database or a lost connection. [`Error::is_transient`] errors are
    /// recognised without it.
    fn is_transient(&self, error: &(dyn StdError + 'static)) -> bool;
}

/// Who a runner runs for.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The name the consumer's tracking position (and its parked events) are recorded under.
    pub name: String,
    /// The event types the consumer handles; `None` for all. Other events only move its
    /// position on.
    pub types: Option<Vec<String>>,
}

impl Consumer {
    /// A consumer named `name` handling `types` (`None`: all).
    pub fn new(name: &str, types: Option<Vec<String>>) -> Self {
        Consumer {
            name: name.to_owned(),
            types,
        }
    }
}

/// Starts a runner that reads `source`'s log and applies it through `target` for `consumer`.
/// Must be called within a Tokio runtime.
pub fn spawn_runner<S, T>(
    source: S,
    consumer: Consumer,
    target: T,
    options: ProjectionOptions,
) -> RunnerHandle
where
    S: EventStore,
    T: BatchTarget,
{
    // Subscribed before the runner starts, so a save right after this call wakes it.
    let changes = source.changes();
    let metrics = ProjectionMetrics::new(&consumer.name, source.store_kind());
    RunnerHandle::spawn(move |stop, cell| async move {
        let mut runner = Runner::new(consumer, target, options, stop, metrics);
        let result = runner.run(&source, changes, cell).await;
        if result.is_err() {
            runner.metrics.stopped();
        }
        result
    })
}

/// What a batch left behind.
struct Applied {
    /// The tracking position after the batch, if known.
    position: Option<Position>,
    failure: Option<Failure>,
}

enum Failure {
    /// Worth retrying after a backoff.
    Transient(Error),
    /// Ends the runner.
    Fatal(Error),
}

impl Failure {
    fn of(error: Error) -> Self {
        if error.is_transient() {
            Failure::Transient(error)
        } else {
            Failure::Fatal(error)
        }
    }
}

/// A transient failure as the runner's error: a store's own [`Error`] as it is, anything else
/// (a driver error a handler returned) wrapped as [`Error::Transient`].
fn transient(error: BoxError) -> Error {
    match error.downcast::<Error>() {
        Ok(error) => *error,
        Err(error) => Error::Transient(error),
    }
}

struct Runner<T> {
    target: T,
    name: String,
    types: Option<Arc<[String]>>,
    options: ProjectionOptions,
    stop: StopSignal,
    /// Consecutive transient failures.
    failures: u32,
    metrics: ProjectionMetrics,
}

impl<T: BatchTarget> Runner<T> {
    fn new(
        consumer: Consumer,
        target: T,
        options: ProjectionOptions,
        stop: StopSignal,
        metrics: ProjectionMetrics,
    ) -> Self {
        Runner {
            metrics,
            name: consumer.name,
            types: consumer.types.map(Into::into),
            target,
            options,
            stop,
            failures: 0,
        }
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        wanted(self.types.as_deref(), event)
    }

    /// Whether any link of the chain is worth retrying.
    fn transient(&self, error: &(dyn StdError + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.downcast_ref::<Error>().is_some_and(Error::is_transient)
                || self.target.is_transient(e)
            {
                return true;
            }
            next = e.source();
        }
        false
    }

    /// Waits before the next attempt: `Ok(true)` to go on, `Ok(false)` if a stop came first,
    /// the error itself once the attempts are used up.
    async fn pause(&mut self, error: Error) -> Result<bool, Error> {
        self.failures += 1;
        if self.failures >= self.options.attempts.max(1) {
            return Err(error);
        }
        tracing::warn!(
            consumer = %self.name,
            attempt = self.failures,
            error = %error,
            "transient failure; retrying"
        );
        let wait = backoff(self.options.backoff, self.failures);
        tokio::select! {
            biased;
            _ = self.stop.stopped() => Ok(false),
            _ = tokio::time::sleep(wait) => Ok(true),
        }
    }

    /// The consumer's setup, retried while it fails transiently. `Ok(false)`: stopped first.
    async fn setup(&mut self) -> Result<bool, Error> {
        loop {
            let error = match self.target.setup().await {
                Ok(()) => return Ok(true),
                Err(e) => e,
            };
            if !self.transient(&*error) {
                return Err(Error::store(format!(
                    "the setup of `{}` failed: {}",
                    self.name,
                    error_chain(&*error)
                )));
            }
            if !self.pause(transient(error)).await? {
                return Ok(false);
            }
        }
    }

    async fn start_position(&mut self) -> Result<Option<Position>, Error> {
        loop {
            match self.target.tracking_position().await {
                Ok(position) => return Ok(Some(position.unwrap_or(Position::START))),
                Err(e) if e.is_transient() => {
                    if !self.pause(e).await? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies a batch: attempts it, and after a handler failure attempts it again knowing the
    /// failure (stopping before the event, or parking it), until an attempt commits. The first
    /// attempt needs no savepoints, so a batch that fails nowhere costs none.
    async fn apply(&mut self, batch: &Arc<Batch>) -> Applied {
        // Rows that could not be read fail like a handler would, without calling it.
        let (mut known, mut stopped_by) = batch.defects(self.options.on_error == OnError::Park);
        loop {
            let (index, error, recorded) = match self.target.attempt(batch, &known).await {
                Ok(Outcome::Done { position, stopped }) => {
                    self.metrics.parked(known.parked.len());
                    let failure = match stopped_by.take() {
                        Some((index, source)) if stopped => {
                            Some(Failure::Fatal(self.handler_error(batch, index, source)))
                        }
                        // Another runner got past the failing event meanwhile.
                        _ => None,
                    };
                    return Applied { position, failure };
                }
                Ok(Outcome::Failed {
                    index,
                    error,
                    recorded,
                }) => (index, error, recorded),
                Err(e) => {
                    return Applied {
                        position: None,
                        failure: Some(Failure::of(e)),
                    }
                }
            };
            if self.transient(&*error) {
                return Applied {
                    position: recorded,
                    failure: Some(Failure::Transient(transient(error))),
                };
            }
            let repeated =
                known.stop == Some(index) || known.parked.iter().any(|(i, _)| *i == index);
            if repeated || index >= batch.events.len() {
                // A target that reports a failure where the plan had no handler call: stop
                // rather than loop.
                return Applied {
                    position: recorded,
                    failure: Some(Failure::Fatal(self.handler_error(batch, index, error))),
                };
            }
            match self.options.on_error {
                OnError::Stop => {
                    known.stop = Some(index);
                    stopped_by = Some((index, error));
                }
                OnError::Park => {
                    let event = &batch.events[index];
                    let error = error_chain(&*error);
                    tracing::warn!(
                        consumer = %self.name,
                        stream_id = %event.stream_id,
                        version = event.version,
                        event_type = %event.event_type,
                        position = ?event.position,
                        error = %error,
                        "parked an event the handler cannot handle"
                    );
                    known.parked.push((index, error));
                }
            }
        }
    }

    fn handler_error(&self, batch: &Batch, index: usize, source: BoxError) -> Error {
        match batch.events.get(index) {
            Some(event) => Error::Handler {
                name: self.name.clone(),
                stream_id: event.stream_id,
                version: event.version,
                event_type: event.event_type.clone(),
                position: event.position,
                source,
            },
            None => Error::store(format!(
                "`{}`: the store reported a failure at event {index} of a batch of {}: {}",
                self.name,
                batch.events.len(),
                error_chain(&*source)
            )),
        }
    }

    /// Records the position the runner has skipped to over filtered-out events, so that the
    /// lag reads right.
    async fn record_skipped(&mut self, after: Position) -> Applied {
        let batch = Arc::new(Batch {
            events: Vec::new(),
            end: after,
            types: self.types.clone(),
        });
        self.apply(&batch).await
    }

    async fn run<S: EventStore>(
        &mut self,
        source: &S,
        mut changes: Changes,
        cell: PositionCell,
    ) -> Result<(), Error> {
        if !self.setup().await? {
            return Ok(());
        }
        let Some(mut after) = self.start_position().await? else {
            return Ok(());
        };
        self.failures = 0;
        cell.set(after);
        let page = self.options.page_size.max(1);
        // What the tracking row holds; `after` runs ahead of it over events filtered out.
        let mut recorded = after;
        let mut unrecorded = 0usize;
        // The last read returned less than a page: until woken (or polled), nothing new is known.
        let mut caught_up = false;

        while !self.stop.is_stopped() {
            let events = if caught_up && changes.is_live() && !changes.has_changed() {
                // Nothing was saved since the last read: skip reading (one read per save, not
                // two).
                Vec::new()
            } else {
                // Before reading: a save committing during the read then wakes the wait below.
                changes.mark_seen();
                match source.read_log(after, page).await {
                    Ok(events) => events,
                    Err(e) if e.is_transient() => {
                        if !self.pause(e).await? {
                            break;
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            caught_up = events.len() < page;
            let Some(last) = events.last() else {
                self.metrics.lag(true, None);
                if recorded < after {
                    // Caught up with events it skipped: record them now, once, so that the lag
                    // of an idle consumer reads zero.
                    match self.record_skipped(after).await.failure {
                        None => {
                            recorded = after;
                            unrecorded = 0;
                        }
                        Some(Failure::Transient(e)) => {
                            tracing::warn!(consumer = %self.name, error = %e, "cannot record skipped events yet");
                        }
                        Some(Failure::Fatal(e)) => return Err(e),
                    }
                }
                tokio::select! {
                    biased;
                    _ = self.stop.stopped() => break,
                    _ = changes.wait(self.options.poll_interval) => {
                        caught_up = false;
                        continue;
                    }
                }
            };
            let end = last.position;
            if !events.iter().any(|e| self.wants(e)) && unrecorded + events.len() < page {
                // Nothing to handle: move on without a transaction; the position is recorded
                // with a later batch, after a page of such events, once caught up, or at stop.
                unrecorded += events.len();
                after = end;
                cell.set(after);
                continue;
            }
            let last_at = last.timestamp;
            let batch = Arc::new(Batch {
                events,
                end,
                types: self.types.clone(),
            });
            let (span, started) = (self.metrics.batch_span(batch.events.len()), Instant::now());
            let applied = self.apply(&batch).instrument(span).await;
            let committed = match applied.position {
                Some(p) if p > recorded => batch.events.iter().filter(|e| e.position <= p).count(),
                _ => 0,
            };
            self.metrics.batch(started, committed);
            if applied.failure.is_none() {
                self.metrics.lag(caught_up, Some(last_at));
            }
            if let Some(position) = applied.position {
                if position > recorded {
                    recorded = position;
                    unrecorded = 0;
                }
                if position > after {
                    after = position;
                    cell.set(after);
                }
            }
            match applied.failure {
                None => self.failures = 0,
                Some(Failure::Transient(e)) => {
                    // Read the same events again.
                    caught_up = false;
                    if !self.pause(e).await? {
                        break;
                    }
                }
                Some(Failure::Fatal(e)) => return Err(e),
            }
        }

        if recorded < after {
            match self.record_skipped(after).await.failure {
                None => {}
                // A restart reads those events again and skips them again: nothing is lost.
                Some(Failure::Transient(e)) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot record the position at stop");
                }
                Some(Failure::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }
}
