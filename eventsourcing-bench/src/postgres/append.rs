//! The append figures on PostgreSQL: `append_1`, `append_10`, `append_1_next`,
//! `append_8_writers` and `append_8_writers_live_sub`, ours and raw alternating round by round.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use eventsourcing::{postgres::PostgresStore, prelude::*};

use super::{raw::Prepared, reader::log_end};
use crate::common::{
    counter::{counter_with, Counter, NOTE},
    stats::{median, per_second, report},
    timing::{ours_writers, WriterRates},
    BoxError,
};

/// Concurrent writers of the `append_8_writers` figures (and raw connections).
pub(crate) const WRITERS: usize = 8;
/// Rounds of each append figure; the median rate is reported.
const ROUNDS: usize = 5;

/// All the append figures, in their printed order; `raws` holds [`WRITERS`] raw connections.
pub(crate) async fn figures(
    app: &Application<PostgresStore>,
    raws: &[Arc<Prepared>],
    saves: usize,
) -> Result<(), BoxError> {
    let raw = &raws[0];
    let per_round = (saves / ROUNDS).max(1);

    for (figure, events) in [("append_1", 1), ("append_10", 10)] {
        // Warm both paths (prepared statements, pool, table growth) before measuring.
        ours_append_new(app, events, saves / 10).await?;
        raw.append_new(events, saves / 10).await?;
        let (ours, theirs) = median_rates(
            per_round * events,
            async || ours_append_new(app, events, per_round).await,
            async || raw.append_new(events, per_round).await,
        )
        .await?;
        report(figure, ours, theirs, "events/s");
    }

    let mut counter = counter_with(1);
    app.save(&mut counter).await?;
    let mut stream = raw.new_stream().await?;
    ours_append_next(app, &mut counter, saves / 10).await?;
    raw.append_next(&mut stream, saves / 10).await?;
    let (ours, theirs) = median_rates(
        per_round,
        async || ours_append_next(app, &mut counter, per_round).await,
        async || raw.append_next(&mut stream, per_round).await,
    )
    .await?;
    report("append_1_next", ours, theirs, "events/s");

    append_8_writers(app, raws, per_round).await
}

/// [`ROUNDS`] rounds of `ours` then `raw`, each writing `events` events: the median rates.
async fn median_rates(
    events: usize,
    mut ours: impl AsyncFnMut() -> Result<Duration, BoxError>,
    mut raw: impl AsyncFnMut() -> Result<Duration, BoxError>,
) -> Result<(f64, f64), BoxError> {
    let (mut ours_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours_rates.push(per_second(events, ours().await?));
        raw_rates.push(per_second(events, raw().await?));
    }
    Ok((median(ours_rates), median(raw_rates)))
}

/// Each writer appends `per_writer` single events per round to its own aggregate: ours, raw,
/// then ours again with a subscription following the log live from its end.
async fn append_8_writers(
    app: &Application<PostgresStore>,
    raws: &[Arc<Prepared>],
    per_writer: usize,
) -> Result<(), BoxError> {
    ours_writers(WRITERS, app, per_writer / 5).await?;
    raw_writers(raws, per_writer / 5).await?;
    let mut rates = WriterRates::default();
    for _ in 0..ROUNDS {
        rates
            .round(
                app,
                WRITERS,
                per_writer,
                async || raw_writers(raws, per_writer).await,
                async || log_end(app.store()).await,
            )
            .await?;
    }
    rates.report();
    Ok(())
}

/// Saves `saves` new counters of `events` events each, one save at a time.
async fn ours_append_new(
    app: &Application<PostgresStore>,
    events: usize,
    saves: usize,
) -> Result<Duration, BoxError> {
    let mut counters: Vec<Counter> = (0..saves).map(|_| counter_with(events)).collect();
    let start = Instant::now();
    for counter in &mut counters {
        app.save(counter).await?;
    }
    Ok(start.elapsed())
}

/// Appends `saves` single events to an existing counter, one save each.
async fn ours_append_next(
    app: &Application<PostgresStore>,
    counter: &mut Counter,
    saves: usize,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    for i in 0..saves {
        counter.add(i as i64, NOTE.to_owned());
        app.save(&mut *counter).await?;
    }
    Ok(start.elapsed())
}

/// [`WRITERS`] tasks, each on its own raw connection appending `saves` single events to its own
/// new stream; the time until all are done.
pub(crate) async fn raw_writers(
    raws: &[Arc<Prepared>],
    saves: usize,
) -> Result<Duration, BoxError> {
    let mut streams = Vec::with_capacity(WRITERS);
    for raw in raws.iter().take(WRITERS) {
        streams.push((Arc::clone(raw), raw.new_stream().await?));
    }
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(raw, mut stream)| {
            tokio::spawn(async move {
                match raw.append_next(&mut stream, saves).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}
