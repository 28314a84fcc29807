//! The timing loops of the figures both stores measure alike: concurrent writers, loads (ours
//! and raw alternating load by load), snapshot loads, and catch-up (ours and raw alternating
//! round by round).

use std::time::{Duration, Instant};

use eventsourcing::{prelude::*, Position, Snapshotting, Subscription};

use super::{
    counter::{counter_with, saved_in_batches, Counter, NOTE},
    fold::Folded,
    stats::{median, median_ms, per_second, report},
    BoxError,
};

/// The `load_N` figures and their N.
pub(crate) const LOAD_FIGURES: [(&str, usize); 3] =
    [("load_10", 10), ("load_1000", 1000), ("load_10000", 10_000)];
/// The snapshot interval of the `load_snap_N` figures.
pub(crate) const SNAPSHOT_EVERY: u64 = 100;
/// Events read by `catchup`, and the page size of the catch-up figures.
pub(crate) const CATCHUP_EVENTS: usize = 100_000;
pub(crate) const PAGE: usize = 500;
/// Counted rounds of each catch-up figure (ours and raw alternate; the median rate is reported).
pub(crate) const CATCHUP_ROUNDS: usize = 5;

/// `writers` tasks, each appending `saves` single events to its own counter; the time until all
/// are done.
pub(crate) async fn ours_writers<S: EventStore>(
    writers: usize,
    app: &Application<S>,
    saves: usize,
) -> Result<Duration, BoxError> {
    let mut counters = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut counter = counter_with(1);
        app.save(&mut counter).await?;
        counters.push(counter);
    }
    let start = Instant::now();
    let tasks: Vec<_> = counters
        .into_iter()
        .map(|mut counter| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..saves {
                    counter.add(i as i64, NOTE.to_owned());
                    app.save(&mut counter).await?;
                }
                Ok::<_, eventsourcing::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// The rates of the 8-writer figures both stores measure, round by round.
#[derive(Default)]
pub(crate) struct WriterRates {
    ours: Vec<f64>,
    raw: Vec<f64>,
    live_sub: Vec<f64>,
}

impl WriterRates {
    /// One round, `writers` writers each appending `per_writer` single events: ours alone, then
    /// `raw`, then ours while a `Subscription` follows the log live from its end (`log_end`),
    /// woken by every save and reading each new event.
    pub(crate) async fn round<S: EventStore + Clone>(
        &mut self,
        app: &Application<S>,
        writers: usize,
        per_writer: usize,
        raw: impl AsyncFnOnce() -> Result<Duration, BoxError>,
        log_end: impl AsyncFnOnce() -> Result<Position, BoxError>,
    ) -> Result<(), BoxError> {
        let total = per_writer * writers;
        let elapsed = ours_writers(writers, app, per_writer).await?;
        self.ours.push(per_second(total, elapsed));
        self.raw.push(per_second(total, raw().await?));

        let mut subscription = Subscription::new(app.store().clone(), log_end().await?);
        let follower = tokio::spawn(async move {
            while let Ok(event) = subscription.next().await {
                std::hint::black_box(event);
            }
        });
        let elapsed = ours_writers(writers, app, per_writer).await;
        follower.abort();
        self.live_sub.push(per_second(total, elapsed?));
        Ok(())
    }

    /// Prints `append_8_writers` and `append_8_writers_live_sub`, and returns the raw median
    /// rate (what any other 8-writer figure is compared with).
    pub(crate) fn report(self) -> f64 {
        let raw = median(self.raw);
        report("append_8_writers", median(self.ours), raw, "events/s");
        report(
            "append_8_writers_live_sub",
            median(self.live_sub),
            raw,
            "events/s",
        );
        raw
    }
}

/// Saves a new counter of `events` events in one save; its id.
pub(crate) async fn ours_saved<S: EventStore>(
    app: &Application<S>,
    events: usize,
) -> Result<Uuid, BoxError> {
    let mut counter = counter_with(events);
    app.save(&mut counter).await?;
    Ok(counter.id())
}

/// One load figure: a warm-up load of each side, checked to agree (and, with `events`, to
/// have that version), then `loads` loads of ours and raw alternating; the median times.
pub(crate) async fn compare_loads(
    figure: &str,
    loads: usize,
    events: Option<u64>,
    mut ours: impl AsyncFnMut() -> Result<Counter, BoxError>,
    mut raw: impl AsyncFnMut() -> Result<Folded, BoxError>,
) -> Result<(), BoxError> {
    let loaded = ours().await?;
    let folded = raw().await?;
    if (loaded.version(), loaded.total) != (folded.version, folded.total)
        || events.is_some_and(|n| loaded.version() != n)
    {
        return Err(format!("{figure}: ours and raw disagree").into());
    }
    let (mut ours_ms, mut raw_ms) = (Vec::with_capacity(loads), Vec::with_capacity(loads));
    for _ in 0..loads {
        let start = Instant::now();
        ours().await?;
        ours_ms.push(start.elapsed());
        let start = Instant::now();
        raw().await?;
        raw_ms.push(start.elapsed());
    }
    report(figure, median_ms(ours_ms), median_ms(raw_ms), "ms");
    Ok(())
}

/// The `load_snap_N` figures: an aggregate of N events saved [`SNAPSHOT_EVERY`] at a time by an
/// application snapshotting every [`SNAPSHOT_EVERY`] events, loaded by `Repository::get` and
/// by `raw` (a hand-written snapshot load of the same rows).
pub(crate) async fn load_snap<S: EventStore>(
    app: &Application<S>,
    loads: usize,
    mut raw: impl AsyncFnMut(Uuid) -> Result<Folded, BoxError>,
) -> Result<(), BoxError> {
    let app = app
        .clone()
        .with_snapshotting(Snapshotting::every(SNAPSHOT_EVERY));
    for (figure, events) in [
        ("load_snap_10", 10),
        ("load_snap_10000", 10_000),
        ("load_snap_100000", 100_000),
    ] {
        let id = saved_in_batches(&app, events, SNAPSHOT_EVERY).await?;
        compare_loads(
            figure,
            loads,
            Some(events as u64),
            async || Ok(app.repository().get(id).await?),
            async || raw(id).await,
        )
        .await?;
    }
    Ok(())
}

/// The `catchup` figure: the first [`CATCHUP_EVENTS`] events of the log read from the start
/// through a `Subscription` (pages of [`PAGE`]), against `raw` reading the same and returning
/// the last one's position. A first round warms both and is not counted.
pub(crate) async fn catchup<S: EventStore + Clone>(
    store: &S,
    mut raw: impl AsyncFnMut() -> Result<Position, BoxError>,
) -> Result<(), BoxError> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=CATCHUP_ROUNDS {
        let start = Instant::now();
        let mut subscription = Subscription::new(store.clone(), Position::START).page_size(PAGE);
        let mut last = Position::START;
        for _ in 0..CATCHUP_EVENTS {
            let event = subscription.next().await?;
            last = std::hint::black_box(event).position;
        }
        let elapsed = start.elapsed();
        let start = Instant::now();
        let raw_last = raw().await?;
        let raw_elapsed = start.elapsed();
        if raw_last != last {
            return Err("catchup: ours and raw disagree".into());
        }
        if round > 0 {
            ours.push(per_second(CATCHUP_EVENTS, elapsed));
            theirs.push(per_second(CATCHUP_EVENTS, raw_elapsed));
        }
    }
    report("catchup", median(ours), median(theirs), "events/s");
    Ok(())
}
