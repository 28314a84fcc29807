//! `live_other_median`, `live_other_p99`: the live latency across store instances (another
//! process's subscriber, heard of through `LISTEN`/`NOTIFY`).
//!
//! Ours: a second `PostgresStore` on the same schema (its own pool, notifier and listener, as
//! another process has) runs a `Subscription`; the first one saves. Raw: the saving side
//! commits its `INSERT`, then sends `SELECT pg_notify(…)` on a second connection (outside the
//! writing transaction, as ours does); a task `LISTEN`ing on a connection of its own reads the
//! new row when the notification arrives. Both: from `save` (the `INSERT`) returning to the
//! follower having the event, one new aggregate of one event at a time.

use std::{sync::Arc, time::Duration};

use eventsourcing::{postgres::PostgresStore, prelude::*};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{live::RawRows, raw::Prepared, reader::log_end};
use crate::common::{
    live::{ours_latency, raw_latency_woken, report_latency, stopwatch_subscription},
    BoxError,
};

/// The channel of the raw figure.
const RAW_CHANNEL: &str = "es_bench_raw_live";

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
    let notifier = super::raw::connect(raw_config).await?;
    let notify = notifier.prepare("SELECT pg_notify($1, '')").await?;

    let (client, mut connection) = raw_config.connect(NoTls).await?;
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => woken.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("raw listener: {e}");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {RAW_CHANNEL}"))
        .await?;
    let (rows, after) = RawRows::on(client, raw_schema).await?;
    let samples = raw_latency_woken(
        rows,
        after,
        wake,
        async || raw.save_stream(1).await,
        async || {
            notifier.execute(&notify, &[&RAW_CHANNEL]).await?;
            Ok(())
        },
    )
    .await;
    driver.abort();
    samples
}
