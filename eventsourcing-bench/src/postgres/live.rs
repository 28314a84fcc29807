//! Catch-up and live latency on PostgreSQL: `catchup`, `live_latency_median` and
//! `live_latency_p99`.

use eventsourcing::{postgres::PostgresStore, prelude::*};
use tokio_postgres::{Client, Statement};

use super::{
    raw::{connect, Prepared},
    reader::{log_end, Reader},
};
use crate::common::{
    live::{ours_latency, raw_latency, report_latency, stopwatch_subscription, NewRows},
    timing::{self, CATCHUP_EVENTS, PAGE},
    BoxError,
};

/// The `catchup` figure; raw pages through the store's table with `reader`.
pub(crate) async fn catchup(store: &PostgresStore, reader: &Reader) -> Result<(), BoxError> {
    timing::catchup(store, async || reader.read_log(CATCHUP_EVENTS, PAGE).await).await
}

/// The live latency figures: ours to a running `Subscription`, raw to a task woken in process
/// that reads the raw table (in `raw_schema`) on its own connection.
pub(crate) async fn live_latency(
    app: &Application<PostgresStore>,
    raw: &Prepared,
    raw_config: &tokio_postgres::Config,
    raw_schema: &str,
) -> Result<(), BoxError> {
    let end = log_end(app.store()).await?;
    let (follower, mut seen) = stopwatch_subscription(app.store(), end);
    let samples = ours_latency(app, &mut seen, "subscription").await?;
    follower.abort();

    let (rows, after) = RawRows::on(connect(raw_config).await?, raw_schema).await?;
    let raw_samples = raw_latency(rows, after, async || raw.save_stream(1).await).await?;
    report_latency("live_latency", &samples, &raw_samples);
    Ok(())
}

/// The raw listener's connection and its prepared `SELECT` of the new rows.
pub(super) struct RawRows {
    client: Client,
    select: Statement,
}

impl RawRows {
    /// The reader of the raw table in `raw_schema` on `client` (with an index on `position`
    /// created for the live figures), and the newest position now.
    pub(super) async fn on(client: Client, raw_schema: &str) -> Result<(Self, i64), BoxError> {
        let table = format!("\"{raw_schema}\".events");
        client
            .batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS raw_events_position ON {table} (position)"
            ))
            .await?;
        let after: i64 = client
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
        Ok((RawRows { client, select }, after))
    }
}

impl NewRows for RawRows {
    async fn after(&mut self, position: i64) -> Result<Vec<(i64, Uuid)>, String> {
        let rows = self
            .client
            .query(&self.select, &[&position])
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| e.to_string())
    }
}
