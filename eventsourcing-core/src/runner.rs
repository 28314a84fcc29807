//! A spawned runner (projection or process application) and how it is stopped and watched.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use crate::{error::Error, event::Position};

/// A running projection or process application.
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
    position: PositionCell,
}

/// The handle of a running process application.
pub type ProcessHandle = RunnerHandle;

/// Tells a runner to stop between two batches.
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
    /// Spawns a runner: `run` gets the stop signal to watch between batches and the cell to
    /// record its progress in. Must be called within a Tokio runtime.
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

    /// Stops after the batch in hand, and returns how the runner ended.
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

    /// Aborts the runner wherever it is. Safe: each batch's effects and its tracking position
    /// commit together, so a restart neither loses nor repeats anything.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// The wait before retry `attempt` (1, 2, ...): `first`, doubling, at most 5 s.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    first.saturating_mul(factor).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_five_seconds() {
        let first = Duration::from_millis(50);
        assert_eq!(backoff(first, 1), Duration::from_millis(100));
        assert_eq!(backoff(first, 2), Duration::from_millis(200));
        assert_eq!(backoff(first, 6), Duration::from_millis(3200));
        assert_eq!(backoff(first, 7), Duration::from_secs(5));
        assert_eq!(backoff(first, u32::MAX), Duration::from_secs(5));
        assert_eq!(backoff(Duration::MAX, 3), Duration::from_secs(5));
    }
}
