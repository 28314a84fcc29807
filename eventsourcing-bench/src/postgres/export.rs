//! `eventsourcing-bench export-postgres`: `PostgresStore::export` of one million events
//! against a raw `COPY (SELECT ...) TO STDOUT` of the same rows through tokio-postgres
//! `copy_out`, three runs each, alternating; rate and peak RSS of each run.
//!
//! The store's schema is filled by one `INSERT ... SELECT generate_series` (10,000 streams of 100
//! events, a JSON payload of about 60 bytes, metadata on every tenth event). Ours writes the
//! gzip backup to a file in the temporary directory (not synced); raw reads the text COPY
//! stream and drops it, counting its bytes. Peak RSS: the process's `VmHWM` from
//! `/proc/self/status`, reset before each run by writing `5` to `/proc/self/clear_refs`.
//! `EVENTSOURCING_BENCH_EXPORT_EVENTS` changes the number of events (default 1,000,000).

use std::{io::BufWriter, time::Instant};

use eventsourcing::postgres::{Backup as _, PostgresStore};
use futures_util::StreamExt;

use super::server::Server;
use crate::common::BoxError;

/// Peak resident memory since the last reset, in MiB.
fn peak_rss_mib() -> Result<f64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

fn reset_peak_rss() -> Result<(), BoxError> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) async fn run(server: &Server) -> Result<(), BoxError> {
    let events: u64 = match std::env::var("EVENTSOURCING_BENCH_EXPORT_EVENTS") {
        Ok(value) => value.parse()?,
        Err(_) => 1_000_000,
    };
    let schema = format!("es_bench_export_{}", std::process::id());
    let admin = &server.admin;
    let figures = async {
        let store = PostgresStore::connect(server.store_config(&schema).build()?).await?;
        let fill = Instant::now();
        admin
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".events (stream_id, version, timestamp, event_type, \
                     schema_version, payload, metadata, stream_type) \
                 SELECT md5(((g - 1) / 100)::text)::uuid, (g - 1) % 100 + 1, \
                        now() + g * interval '1 millisecond', 'NameUpdated', 1, \
                        convert_to('{{\"name\":\"widget ' || g || '\",\"url\":\"https://example.com/' || g || '\"}}', 'UTF8'), \
                        CASE WHEN g % 10 = 0 THEN '{{\"values\":{{\"user\":\"bench\"}}}}'::jsonb END, \
                        CASE WHEN (g - 1) % 100 = 0 THEN 'widget' ELSE '' END \
                 FROM generate_series(1, {events}) AS g; \
                 ANALYZE \"{schema}\".events"
            ))
            .await?;
        println!(
            "# export-postgres: {events} events in schema {schema} (filled in {:.1} s)",
            fill.elapsed().as_secs_f64()
        );
        let copy = format!(
            "COPY (SELECT stream_id, version, tx_id, position, event_type, schema_version, \
             timestamp, payload, metadata, stream_type FROM \"{schema}\".events \
             ORDER BY tx_id, position) TO STDOUT"
        );
        let dir = std::env::temp_dir();
        let (mut ours_rates, mut raw_rates, mut ours_rss, mut raw_rss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=3 {
            let path = dir.join(format!("es_bench_export_{}_{run}.esb", std::process::id()));
            reset_peak_rss()?;
            let start = Instant::now();
            let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
            let (_, counts) = store.export(file).await?;
            let secs = start.elapsed().as_secs_f64();
            let rss = peak_rss_mib()?;
            let size = std::fs::metadata(&path)?.len();
            std::fs::remove_file(&path)?;
            if counts.events != events {
                return Err(format!("exported {} events of {events}", counts.events).into());
            }
            ours_rates.push(events as f64 / secs);
            ours_rss.push(rss);
            println!(
                "run {run} ours: {:.2} s, {:.0} events/s, peak RSS {rss:.1} MiB, file {:.1} MiB",
                secs,
                events as f64 / secs,
                size as f64 / 1048576.0
            );

            reset_peak_rss()?;
            let start = Instant::now();
            let stream = admin.copy_out(copy.as_str()).await?;
            let mut stream = std::pin::pin!(stream);
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                bytes += chunk?.len() as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            let rss = peak_rss_mib()?;
            raw_rates.push(events as f64 / secs);
            raw_rss.push(rss);
            println!(
                "run {run} raw:  {:.2} s, {:.0} events/s, peak RSS {rss:.1} MiB, COPY text {:.1} MiB",
                secs,
                events as f64 / secs,
                bytes as f64 / 1048576.0
            );
        }
        let spread = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{lo:.0}..{hi:.0}")
        };
        let (ours, raw) = (
            median(&mut ours_rates.clone()),
            median(&mut raw_rates.clone()),
        );
        println!(
            "export_1m ours={ours:.0} raw={raw:.0} ratio={:.3} unit=events/s (spread ours {} raw {})",
            ours / raw,
            spread(&ours_rates),
            spread(&raw_rates)
        );
        let (ours, raw) = (median(&mut ours_rss), median(&mut raw_rss));
        println!(
            "export_1m_peak_rss ours={ours:.1} raw={raw:.1} ratio={:.3} unit=MiB",
            ours / raw
        );
        Ok(())
    };
    server.dropping(&[&schema], figures).await
}
