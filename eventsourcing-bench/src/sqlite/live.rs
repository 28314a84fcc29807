//! Catch-up and live latency on SQLite: `catchup`, `catchup_projection`, `live_latency_*` (to a
//! projection) and `live_latency_sub_*` (to a `Subscription`).

use std::time::{Duration, Instant};

use eventsourcing::{
    prelude::*,
    sqlite::{spawn_projection, ProjectionOptions, SqliteStore},
    Position, Tracking,
};
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::{
    projection::{NoOp, Stopwatch},
    raw::Raw,
};
use crate::common::{
    live::{ours_latency, raw_latency, report_latency, stopwatch_subscription, NewRows, HOUR},
    stats::{median, per_second, report},
    timing::{self, CATCHUP_EVENTS, CATCHUP_ROUNDS, PAGE},
    BoxError,
};

/// The `catchup` figure; raw pages through the store's table with `raw`.
pub(crate) async fn catchup(store: &SqliteStore, raw: &Raw) -> Result<(), BoxError> {
    let total = store.read_log(Position::START, usize::MAX).await?.len();
    if total < CATCHUP_EVENTS {
        return Err(format!("catchup: the log has only {total} events").into());
    }
    timing::catchup(store, async || raw.read_log(CATCHUP_EVENTS, PAGE)).await
}

/// The `catchup_projection` figure: a new no-op projection per round through the whole log,
/// against the hand-written projection loop. A first round warms both and is not counted.
pub(crate) async fn catchup_projection(store: &SqliteStore, raw: &mut Raw) -> Result<(), BoxError> {
    let log = store.read_log(Position::START, usize::MAX).await?;
    let (total, end) = (
        log.len(),
        log.last().map_or(Position::START, |e| e.position),
    );
    drop(log);
    let options = ProjectionOptions {
        page_size: PAGE,
        ..ProjectionOptions::default()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=CATCHUP_ROUNDS {
        let name = format!("bench-catchup-{round}");
        let start = Instant::now();
        let runner = spawn_projection(store.clone(), NoOp(name.clone()), options);
        while runner.position() < end {
            if runner.is_finished() {
                return Err(format!("catchup_projection: {:?}", runner.join().await).into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = start.elapsed();
        runner.stop().await?;
        let start = Instant::now();
        raw.project(&name, PAGE)?;
        let raw_elapsed = start.elapsed();
        if round > 0 {
            ours.push(per_second(total, elapsed));
            theirs.push(per_second(total, raw_elapsed));
        }
    }
    report(
        "catchup_projection",
        median(ours),
        median(theirs),
        "events/s",
    );
    Ok(())
}

/// The live latency figures: ours to a running projection, then to a running `Subscription`;
/// raw (for both) to a task woken in process that reads the raw table on its own connection to
/// `dbname`.
pub(crate) async fn live_latency(
    app: &Application<SqliteStore>,
    dbname: &str,
    raw: &mut Raw,
) -> Result<(), BoxError> {
    let store = app.store().clone();
    let end = store
        .read_log(Position::START, usize::MAX)
        .await?
        .last()
        .map_or(Position::START, |e| e.position);

    // The projection starts at the end of the log, and is woken by saves only.
    store
        .append_tracked(
            Vec::new(),
            Tracking {
                name: "bench-live".to_owned(),
                position: end,
            },
        )
        .await?;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let runner = spawn_projection(
        store.clone(),
        Stopwatch(tx),
        ProjectionOptions {
            poll_interval: HOUR,
            ..ProjectionOptions::default()
        },
    );
    let projection = ours_latency(app, &mut seen, "live handler").await?;
    runner.stop().await?;

    // A subscription from the (new) end of the log, in its own task.
    let end = store
        .read_log(end, usize::MAX)
        .await?
        .last()
        .map_or(end, |e| e.position);
    let (follower, mut seen) = stopwatch_subscription(&store, end);
    let subscription = ours_latency(app, &mut seen, "live handler").await?;
    follower.abort();

    let reader = Connection::open(dbname)?;
    let after: i64 = reader.query_row(
        "SELECT coalesce(max(position), 0) FROM raw_events",
        [],
        |r| r.get(0),
    )?;
    let raw_samples = raw_latency(RawRows(reader), after, async || raw.save_stream(1)).await?;
    report_latency("live_latency", &projection, &raw_samples);
    report_latency("live_latency_sub", &subscription, &raw_samples);
    Ok(())
}

/// The raw listener's own connection.
struct RawRows(Connection);

impl NewRows for RawRows {
    async fn after(&mut self, position: i64) -> Result<Vec<(i64, Uuid)>, String> {
        let rows = self
            .0
            .prepare_cached(
                "SELECT position, stream_id FROM raw_events WHERE position > ?1 \
                 ORDER BY position",
            )
            .and_then(|mut stmt| {
                stmt.query_map([position], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, [u8; 16]>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|(position, id)| (position, Uuid::from_bytes(id)))
            .collect())
    }
}
