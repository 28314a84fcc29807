//! The widget service: `cargo run -p widget-service` (SQLite file `eventsourcing.db` in the
//! working directory unless `PERSISTENCE_MODULE` / `SQLITE_DBNAME` say otherwise). Prints
//! `listening on http://ADDR` on stdout once it accepts connections; logs go to stderr.

use eventsourcing::Env;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;
use widget_service::{config::USAGE, AppState, Config, DURATION_BUCKETS};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => {}
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("widget-service: {e}");
            std::process::exit(2);
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let env = Env::from_process();
    let Some(config) = Config::from_env(&env)?.with_args(std::env::args().skip(1))? else {
        print!("{USAGE}");
        return Ok(());
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)?
        .install_recorder()?;
    // The library's own metrics (saves, loads, snapshots, projection lag, pool), described.
    eventsourcing::metrics::describe();
    let listen = config.listen;
    let state = AppState::open(&env, config, Some(metrics)).await?;
    tracing::info!(store = ?state.app().store().kind(), "store open, projection running");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    // The one line on stdout: tests and scripts read the address from it.
    println!("listening on http://{bound}");
    tracing::info!(%bound, "listening");
    widget_service::serve(listener, state, widget_service::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
