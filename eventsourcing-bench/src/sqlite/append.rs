//! The append figures on SQLite: `append_1` and `append_10` (ours and raw alternating save by
//! save), `append_1_snapshot_10`, and the `append_8_writers` family.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use eventsourcing::{
    prelude::*,
    sqlite::{spawn_projection, ProjectionOptions, SqliteStore, Synchronous},
    Position, Snapshotting, Tracking,
};

use super::{projection::NoOp, raw::Raw};
use crate::common::{
    counter::{counter_with, Counter, NOTE},
    stats::{median, per_second, report},
    timing::{ours_writers, WriterRates},
    BoxError,
};

/// Concurrent writers of the `append_8_writers` figures, and their rounds.
const WRITERS: usize = 8;
const WRITER_ROUNDS: usize = 3;

/// `append_1` and `append_10`: `saves` new aggregates of 1 or 10 events each side.
pub(crate) async fn append_new(
    app: &Application<SqliteStore>,
    raw: &mut Raw,
    saves: usize,
) -> Result<(), BoxError> {
    for (figure, events) in [("append_1", 1), ("append_10", 10)] {
        // Warm both paths (statement caches, file growth) before measuring.
        let mut warm: Vec<Counter> = (0..saves / 10).map(|_| counter_with(events)).collect();
        for counter in &mut warm {
            app.save(counter).await?;
            raw.save_stream(events)?;
        }
        // One save of ours, one raw, and so on: drift in the disk's sync latency hits both alike.
        let mut counters: Vec<Counter> = (0..saves).map(|_| counter_with(events)).collect();
        let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
        for counter in &mut counters {
            let start = Instant::now();
            app.save(counter).await?;
            ours += start.elapsed();
            let start = Instant::now();
            raw.save_stream(events)?;
            theirs += start.elapsed();
        }
        report(
            figure,
            per_second(saves * events, ours),
            per_second(saves * events, theirs),
            "events/s",
        );
    }
    Ok(())
}

/// What snapshots cost the save path: one-event saves that go on one aggregate, so that every
/// tenth save also writes a snapshot (after its events commit). Here `raw` is not a driver
/// baseline but the same saves of ours without snapshots, so the ratio is the cost itself.
pub(crate) async fn append_1_snapshot_10(
    app: &Application<SqliteStore>,
    saves: usize,
) -> Result<(), BoxError> {
    let with = app.clone().with_snapshotting(Snapshotting::every(10));
    let without = app.clone().with_snapshotting(Snapshotting::disabled());
    let (mut a, mut b) = (counter_with(1), counter_with(1));
    with.save(&mut a).await?;
    without.save(&mut b).await?;
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..saves {
        a.add(1, NOTE.to_owned());
        let start = Instant::now();
        with.save(&mut a).await?;
        ours += start.elapsed();
        b.add(1, NOTE.to_owned());
        let start = Instant::now();
        without.save(&mut b).await?;
        theirs += start.elapsed();
    }
    if with.store().load_snapshot(a.id(), None).await?.is_none() {
        return Err("append_1_snapshot_10 wrote no snapshot".into());
    }
    report(
        "append_1_snapshot_10",
        per_second(saves, ours),
        per_second(saves, theirs),
        "events/s",
    );
    Ok(())
}

/// `append_8_writers`, `append_8_writers_live_sub` and `append_8_writers_live_projection`:
/// per round ours, raw (on its own connection to `dbname`), ours with a live subscription, ours
/// with a live projection.
pub(crate) async fn append_8_writers(
    app: &Application<SqliteStore>,
    dbname: &str,
    synchronous: Synchronous,
    saves: usize,
) -> Result<(), BoxError> {
    let per_writer = (saves / WRITERS).max(1);
    let total = per_writer * WRITERS;
    let raw = Arc::new(Mutex::new(Raw::open(dbname, synchronous)?));
    let store = app.store().clone();
    ours_writers(WRITERS, app, per_writer / 5).await?;
    raw_writers(&raw, per_writer / 5).await?;
    let (mut rates, mut with_projection) = (WriterRates::default(), Vec::new());
    for round in 0..WRITER_ROUNDS {
        rates
            .round(
                app,
                WRITERS,
                per_writer,
                async || raw_writers(&raw, per_writer).await,
                async || log_end(&store).await,
            )
            .await?;

        let name = format!("bench-8-writers-{round}");
        let end = log_end(&store).await?;
        store
            .append_tracked(
                Vec::new(),
                Tracking {
                    name: name.clone(),
                    position: end,
                },
            )
            .await?;
        let runner = spawn_projection(store.clone(), NoOp(name), ProjectionOptions::default());
        with_projection.push(per_second(
            total,
            ours_writers(WRITERS, app, per_writer).await?,
        ));
        runner.stop().await?;
    }
    let theirs = rates.report();
    report(
        "append_8_writers_live_projection",
        median(with_projection),
        theirs,
        "events/s",
    );
    Ok(())
}

/// The position of the newest event.
async fn log_end(store: &SqliteStore) -> Result<Position, BoxError> {
    let last: i64 = store
        .query(|tx| {
            tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get(0)
            })
        })
        .await?;
    let last = u64::try_from(last)?;
    Ok(Position {
        commit: last,
        seq: last,
    })
}

/// `WRITERS` threads sharing one connection, each appending `saves` single events to its own
/// new stream.
async fn raw_writers(raw: &Arc<Mutex<Raw>>, saves: usize) -> Result<Duration, BoxError> {
    let raw = Arc::clone(raw);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut streams = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let stream = raw
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .save_stream(1)
                .map_err(|e| e.to_string())?;
            streams.push(stream);
        }
        let start = Instant::now();
        std::thread::scope(|scope| {
            let threads: Vec<_> = streams
                .into_iter()
                .map(|stream| {
                    let raw = &raw;
                    scope.spawn(move || -> Result<(), String> {
                        for i in 0..saves {
                            raw.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .append_one(stream, i as u64 + 2)
                                .map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().map_err(|_| "a raw writer panicked".to_owned())?)
        })?;
        Ok::<_, String>(start.elapsed())
    })
    .await?;
    Ok(outcome?)
}
