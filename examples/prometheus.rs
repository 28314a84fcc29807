//! The library's metrics served to Prometheus: installs `metrics-exporter-prometheus` with its
//! HTTP listener, runs a small workload of widgets (register, rename, reload, with snapshots)
//! once a second, and serves `/metrics` (any path answers) until stopped with Ctrl-C.
//!
//! Run with: `cargo run --example prometheus`, then `curl -s localhost:9000/metrics`.
//!
//! Reads `EVENTSOURCING_METRICS_PORT` (default 9000; the listener is on 127.0.0.1),
//! `EVENTSOURCING_METRICS_ROUNDS` (stop after that many rounds and print what the listener
//! serves; default: run until stopped), then the store like the widget service does
//! (`PERSISTENCE_MODULE`, `SQLITE_DBNAME`, `POSTGRES_HOST`, …, each first as `WIDGETS_<NAME>`).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use eventsourcing::{prelude::*, Codec, Snapshotting};
use metrics_exporter_prometheus::PrometheusBuilder;

#[path = "common/widget.rs"]
mod widget;

use widget::WidgetRegistryEndpoint;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("prometheus: {e}");
        std::process::exit(1);
    }
}

fn setting<T: std::str::FromStr>(name: &str) -> Result<Option<T>, BoxError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => match value.trim().parse() {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(format!("{name}: `{value}` is not a valid value").into()),
        },
        _ => Ok(None),
    }
}

async fn run() -> Result<(), BoxError> {
    let port: u16 = setting("EVENTSOURCING_METRICS_PORT")?.unwrap_or(9000);
    let rounds: Option<u64> = setting("EVENTSOURCING_METRICS_ROUNDS")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    // The recorder first, then the stores: the library records into whatever is installed.
    PrometheusBuilder::new()
        .with_http_listener(addr)
        // Histograms as buckets (from 100 µs to 10 s), so that Prometheus can compute p95/p99
        // across instances with `histogram_quantile`.
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ])?
        .install()?;
    eventsourcing::metrics::describe();
    println!("serving metrics on http://{addr}/metrics");

    let app = eventsourcing::application_from_env(Some("widgets"))
        .await?
        .with_snapshotting(Snapshotting::every(5));
    println!("store: {:?}", app.store().kind());

    let mut round = 0u64;
    loop {
        round += 1;
        workload(&app, round).await?;
        if rounds.is_some_and(|r| round >= r) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A bounded run shows what a scrape gets.
    let scraped = tokio::task::spawn_blocking(move || scrape(addr)).await??;
    let samples = scraped.lines().filter(|l| l.starts_with("eventsourcing_"));
    for line in samples.filter(|l| !l.contains("_bucket{")) {
        println!("{line}");
    }
    Ok(())
}

/// One round: a new widget, three renames of it (the fifth version crosses the snapshot
/// interval on the second round's reload), a reload, and a page of the log.
async fn workload<S: EventStore, C: Codec>(
    app: &Application<S, C>,
    round: u64,
) -> Result<(), BoxError> {
    let widget = WidgetRegistryEndpoint::create(
        format!("https://example.com/{round}"),
        format!("Widget {round}"),
        "tenant-123".to_owned(),
    );
    let widget = app.create(widget).await?;
    for n in 1..=4 {
        app.update(widget.id(), |w: &mut WidgetRegistryEndpoint| {
            w.rename(&format!("Widget {round}.{n}"))
        })
        .await?;
    }
    let _: WidgetRegistryEndpoint = app.repository().get(widget.id()).await?;
    app.store()
        .read_log(eventsourcing::Position::START, 100)
        .await?;
    Ok(())
}

/// `GET /metrics` on the listener, with the standard library (HTTP/1.0: the answer ends when
/// the connection closes).
fn scrape(addr: SocketAddr) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_owned())
        }
        _ => Err(format!(
            "the listener answered: {}",
            answer.lines().next().unwrap_or("")
        )
        .into()),
    }
}
