//! The live-latency harness both stores share: the time from a save returning to the event
//! being seen by a follower, for ours (a `Subscription` or a projection, in its own task) and for
//! the raw hand-off (commit, then a `tokio::sync::Notify` to a task that reads the new row on its
//! own connection: the cheapest in-process wake-up by hand).

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use eventsourcing::{prelude::*, Position, Subscription};
use tokio::{
    sync::{
        mpsc::{self, UnboundedReceiver},
        Notify,
    },
    task::JoinHandle,
};

use super::{
    counter::counter_with,
    stats::{quantile_ms, report},
    BoxError,
};

/// Saves timed by each live latency figure.
pub(crate) const LIVE_SAMPLES: usize = 500;
/// How long a follower may take to see one saved event before the figure fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// The followers' poll interval: long enough that only wake-ups by saves count.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// The stream id of each event a follower sees, and when it saw it.
pub(crate) type Seen = UnboundedReceiver<(Uuid, Instant)>;

/// A `Subscription` from `after`, in its own task, sending each event it delivers to the
/// returned receiver; abort the task to stop it.
pub(crate) fn stopwatch_subscription<S: EventStore + Clone>(
    store: &S,
    after: Position,
) -> (JoinHandle<()>, Seen) {
    let (tx, seen) = mpsc::unbounded_channel();
    let mut subscription = Subscription::new(store.clone(), after).poll_interval(HOUR);
    let follower = tokio::spawn(async move {
        while let Ok(event) = subscription.next().await {
            if tx.send((event.stream_id, Instant::now())).is_err() {
                break;
            }
        }
    });
    (follower, seen)
}

/// Saves one new aggregate of one event at a time, [`LIVE_SAMPLES`] times, and times how long
/// after `save` returns its event is seen on `seen` (`stopped` names the follower if it ends).
pub(crate) async fn ours_latency<S: EventStore>(
    app: &Application<S>,
    seen: &mut Seen,
    stopped: &str,
) -> Result<Vec<Duration>, BoxError> {
    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    for _ in 0..LIVE_SAMPLES {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        let saved = Instant::now();
        let (id, at) = tokio::time::timeout(PATIENCE, seen.recv())
            .await?
            .ok_or_else(|| format!("the {stopped} stopped"))?;
        if id != counter.id() {
            return Err("live_latency: saw another event than the one saved".into());
        }
        // The follower may see it before `save` has returned to its caller: that counts as 0.
        samples.push(at.saturating_duration_since(saved));
    }
    Ok(samples)
}

/// How the raw listener reads the rows of the raw table after a position, on its own
/// connection: `(position, stream id)` in position order.
pub(crate) trait NewRows: Send + 'static {
    /// The rows after `position`.
    fn after(
        &mut self,
        position: i64,
    ) -> impl Future<Output = Result<Vec<(i64, Uuid)>, String>> + Send;
}

/// The raw hand-off, [`LIVE_SAMPLES`] times: `save` commits a new stream of one event and
/// returns its id, then a `Notify` wakes a task that reads the rows after `after` with `rows`;
/// the time from `save` returning to that task having the row.
pub(crate) async fn raw_latency<R: NewRows>(
    rows: R,
    after: i64,
    save: impl AsyncFnMut() -> Result<Uuid, BoxError>,
) -> Result<Vec<Duration>, BoxError> {
    let wake = Arc::new(Notify::new());
    let announce = Arc::clone(&wake);
    raw_latency_woken(rows, after, wake, save, async || {
        announce.notify_one();
        Ok(())
    })
    .await
}

/// [`raw_latency`] with another wake-up: after each `save` returns, `announce` runs (inside
/// the time measured), and whatever it sets off must notify `wake` for the reading task.
pub(crate) async fn raw_latency_woken<R: NewRows>(
    mut rows: R,
    after: i64,
    wake: Arc<Notify>,
    mut save: impl AsyncFnMut() -> Result<Uuid, BoxError>,
    mut announce: impl AsyncFnMut() -> Result<(), BoxError>,
) -> Result<Vec<Duration>, BoxError> {
    let (tx, mut seen) = mpsc::unbounded_channel::<Result<(Uuid, Instant), String>>();
    let listener = tokio::spawn(async move {
        let mut after = after;
        loop {
            wake.notified().await;
            let sent = match rows.after(after).await {
                Ok(new) => new.into_iter().all(|(position, id)| {
                    after = position;
                    tx.send(Ok((id, Instant::now()))).is_ok()
                }),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    false
                }
            };
            if !sent {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    let measured = async {
        for _ in 0..LIVE_SAMPLES {
            let id = save().await?;
            let saved = Instant::now();
            announce().await?;
            let (seen_id, at) = tokio::time::timeout(PATIENCE, seen.recv())
                .await?
                .ok_or("the raw listener stopped")??;
            if seen_id != id {
                return Err::<(), BoxError>(
                    "live_latency raw: saw another row than the one saved".into(),
                );
            }
            samples.push(at.saturating_duration_since(saved));
        }
        Ok(())
    }
    .await;
    listener.abort();
    measured.map(|()| samples)
}

/// Prints `<figure>_median` and `<figure>_p99` of ours against raw, in milliseconds.
pub(crate) fn report_latency(figure: &str, ours: &[Duration], raw: &[Duration]) {
    for (suffix, q) in [("median", 0.5), ("p99", 0.99)] {
        report(
            &format!("{figure}_{suffix}"),
            quantile_ms(ours, q),
            quantile_ms(raw, q),
            "ms",
        );
    }
}
