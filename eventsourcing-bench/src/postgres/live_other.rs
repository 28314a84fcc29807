//! `live_other_median`, `live_other_p99`: the live latency across store instances (another
//! process's subscriber, heard of through `LISTEN`/`NOTIFY`).
//!
//! Ours: a second `PostgresStore` on the same schema (its own pool, notifier and listener, as
//! another process has) runs a `Subscription`; the first one saves. Raw: the saving connection
//! commits its `INSERT`, then sends `SELECT pg_notify(…)` (outside the writing transaction, as
//! ours does); a task `LISTEN`ing on a connection of its own reads the new row when the
//! notification arrives. Both: from `save` (the `INSERT`) returning to the follower having the
//! event, one new aggregate of one event at a time.

use std::time::{Duration, Instant};

use eventsourcing::{postgres::PostgresStore, prelude::*};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{raw::Prepared, reader::log_end};
use crate::common::{
    live::{ours_latency, report_latency, stopwatch_subscription, LIVE_SAMPLES},
    BoxError,
};

/// The channel of the raw figure.
const RAW_CHANNEL: &str = "es_bench_raw_live";
/// How long the raw follower may take to see one saved row before the figure fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Both sides of the figure; `other` is a second instance of the store `app` saves through.
pub(crate) async fn live_other(
    app: &Application<PostgresStore>,
    other: &PostgresStore,
    raw: &Prepared,
    raw_config: &tokio_postgres::Config,
    raw_schema: &str,
) -> Result<(), BoxError> {
    let end = log_end(app.store()).await?;
    let (follower, mut seen) = stopwatch_subscription(other, end);
    let samples = ours_latency(app, &mut seen, "other instance's subscription").await;
    follower.abort();
    let raw_samples = raw_other(raw, raw_config, raw_schema).await?;
    report_latency("live_other", &samples?, &raw_samples);
    Ok(())
}

/// The raw side: `INSERT`, `pg_notify` on a second connection of the writer, and a listener.
async fn raw_other(
    raw: &Prepared,
    raw_config: &tokio_postgres::Config,
    raw_schema: &str,
) -> Result<Vec<Duration>, BoxError> {
    let table = format!("\"{raw_schema}\".events");
    let notifier = super::raw::connect(raw_config).await?;
    let notify = notifier.prepare("SELECT pg_notify($1, '')").await?;

    let (client, mut connection) = raw_config.connect(NoTls).await?;
    let (wake_tx, mut wake) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if wake_tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("raw listener: {e}");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS raw_events_position ON {table} (position); \
             LISTEN {RAW_CHANNEL}"
        ))
        .await?;
    let mut after: i64 = client
        .query_one(
            &format!("SELECT coalesce(max(position), 0) FROM {table}"),
            &[],
        )
        .await?
        .try_get(0)?;
    let select = client
        .prepare(&format!(
            "SELECT position, stream_id FROM {table} WHERE position > $1 ORDER BY position"
        ))
        .await?;

    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Result<(Uuid, Instant), String>>();
    let follower = tokio::spawn(async move {
        while wake.recv().await.is_some() {
            let rows = match client.query(&select, &[&after]).await {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = seen_tx.send(Err(e.to_string()));
                    return;
                }
            };
            for row in rows {
                let read = row
                    .try_get::<_, i64>(0)
                    .and_then(|p| Ok((p, row.try_get::<_, Uuid>(1)?)));
                let sent = match read {
                    Ok((position, id)) => {
                        after = position;
                        seen_tx.send(Ok((id, Instant::now())))
                    }
                    Err(e) => seen_tx.send(Err(e.to_string())),
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    });

    let mut samples = Vec::with_capacity(LIVE_SAMPLES);
    let outcome = async {
        for _ in 0..LIVE_SAMPLES {
            let id = raw.save_stream(1).await?;
            let saved = Instant::now();
            notifier.execute(&notify, &[&RAW_CHANNEL]).await?;
            let (seen_id, at) = tokio::time::timeout(PATIENCE, seen.recv())
                .await?
                .ok_or("the raw listener stopped")??;
            if seen_id != id {
                return Err::<(), BoxError>(
                    "live_other raw: saw another row than the one saved".into(),
                );
            }
            samples.push(at.saturating_duration_since(saved));
        }
        Ok(())
    }
    .await;
    follower.abort();
    driver.abort();
    outcome.map(|()| samples)
}
