//! `-- postgres-replicas`: read replicas on a throwaway primary with one streaming
//! (asynchronous) standby that this mode starts itself (`cluster::TestCluster`, the PostgreSQL
//! server binaries of this machine), beside the raw tokio-postgres doing the same reads on its
//! own table, in the same run. Both servers and the benchmark share the machine's cores.
//!
//! - `loads_8_primary`, `loads_8_standby`, `loads_8_spread`: loads per second, 8 tasks each
//!   loading aggregates of 10 events (200 of them, in turn) through one store whose loads go to
//!   the primary (no replicas), to the standby (`replica` = the standby), or to both in turn
//!   (the primary listed as a replica too). Raw: 8 connections doing the prepared `SELECT` and
//!   fold of `load_N`, on the primary, on the standby, or four on each.
//! - `load_after_save_primary`, `load_after_save_standby`: median milliseconds of a load right
//!   after a save of one event to the same aggregate, through a store without replicas and
//!   through one reading from the standby (read-your-writes: it waits until the standby has
//!   replayed the save). Raw: the `SELECT` on the primary; or, on the standby, what
//!   read-your-writes costs by hand: `pg_current_wal_insert_lsn()` on the primary, polling
//!   `pg_last_wal_replay_lsn()` on the standby until it has reached it, then the `SELECT`.
//! - `replica_lag_8_writers_median`, `replica_lag_8_writers_p99`: milliseconds from reading the
//!   primary's `pg_current_wal_lsn()` until the standby's `pg_last_wal_replay_lsn()` reached it
//!   (sampled every 10 ms, polled every millisecond; with the most WAL bytes the primary's
//!   `pg_stat_replication` showed not yet replayed), while 8 writers save single events through
//!   the store (ours) or the raw `INSERT` (raw). `append_8_writers_with_standby`: those writers'
//!   events per second.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use eventsourcing::{
    postgres::{cluster::TestCluster, PostgresStore},
    prelude::*,
};
use tokio_postgres::{Client, Statement};

use super::{
    append::{raw_writers, WRITERS},
    raw::{connect_prepared, raw_ddl, Prepared},
};
use crate::common::{
    counter::{Counter, NOTE},
    stats::{median, median_ms, per_second, quantile_ms, report},
    timing::{ours_saved, ours_writers},
    BoxError,
};

/// Aggregates of 10 events loaded in turn by the load figures (on each side).
const AGGREGATES: usize = 200;
/// Loads per task per round.
const LOADS_PER_TASK: usize = 1500;
/// Rounds of each load figure (ours and raw alternate); the median rate is reported.
const ROUNDS: usize = 3;
/// Loads after a save, per side.
const AFTER_SAVE: usize = 101;
/// Saves per writer in the lag figures.
const LAG_SAVES: usize = 2000;

pub(crate) async fn run() -> Result<(), BoxError> {
    let primary = TestCluster::new().await;
    let standby = primary.standby(false).await;
    println!(
        "# postgres-replicas: a throwaway primary (port {}) and one asynchronous streaming \
         standby (port {}) on this machine, no TLS",
        primary.port(),
        standby.port()
    );
    let store = async |replicas: &[u16]| -> Result<Application<PostgresStore>, BoxError> {
        let mut config = primary
            .config("bench_ours")
            .to_builder()
            .pool_size(WRITERS as u32)
            .max_overflow(2);
        for port in replicas {
            config = config.replica("127.0.0.1", *port);
        }
        Ok(Application::new(
            PostgresStore::connect(config.build()?).await?,
        ))
    };
    let on_primary = store(&[]).await?;
    let raw_config = |cluster: &TestCluster| cluster.conninfo().parse::<tokio_postgres::Config>();
    primary
        .admin_client()
        .await
        .batch_execute(&raw_ddl("bench_raw"))
        .await?;
    let raw_primary = raws(&raw_config(&primary)?).await?;
    let mut ours_ids = Vec::with_capacity(AGGREGATES);
    let mut raw_ids = Vec::with_capacity(AGGREGATES);
    for _ in 0..AGGREGATES {
        ours_ids.push(ours_saved(&on_primary, 10).await?);
        raw_ids.push(raw_primary[0].save_stream(10).await?);
    }
    standby.catch_up_with(&primary).await;
    let raw_standby = raws(&raw_config(&standby)?).await?;
    let on_standby = store(&[standby.port()]).await?;
    let spread = store(&[primary.port(), standby.port()]).await?;
    let (ours_ids, raw_ids) = (Arc::new(ours_ids), Arc::new(raw_ids));

    let half: Vec<Arc<Prepared>> = raw_primary[..WRITERS / 2]
        .iter()
        .chain(&raw_standby[..WRITERS / 2])
        .cloned()
        .collect();
    for (figure, app, raw) in [
        ("loads_8_primary", &on_primary, &raw_primary),
        ("loads_8_standby", &on_standby, &raw_standby),
        ("loads_8_spread", &spread, &half),
    ] {
        let (mut ours, mut raws) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(ours_loads(app, &ours_ids).await?);
            raws.push(raw_loads(raw, &raw_ids).await?);
        }
        report(figure, median(ours), median(raws), "loads/s");
    }
    let routing = spread.store().read_routing();
    println!(
        "# loads_8_spread: {} reads served by a replica of the list (the primary or the \
         standby), {} by the primary in a standby's place",
        routing.standby_reads, routing.primary_reads
    );

    let lsn = Lsn::connect(&raw_config(&primary)?, &raw_config(&standby)?).await?;
    let ours = ours_after_save(&on_primary).await?;
    let raw = raw_after_save(&raw_primary[0], &raw_primary[0], None).await?;
    report("load_after_save_primary", ours, raw, "ms");
    let before = on_standby.store().read_routing();
    let ours = ours_after_save(&on_standby).await?;
    let raw = raw_after_save(&raw_primary[0], &raw_standby[0], Some(&lsn)).await?;
    report("load_after_save_standby", ours, raw, "ms");
    let after = on_standby.store().read_routing();
    println!(
        "# load_after_save_standby: {} of {AFTER_SAVE} loads after a save served by the standby \
         once it had replayed the save, {} by the primary after the read-your-writes timeout",
        after.standby_reads - before.standby_reads,
        after.primary_reads - before.primary_reads
    );

    let lsn = Arc::new(lsn);
    let (ours_lag, ours_rate) =
        lagging(&lsn, ours_writers(WRITERS, &on_primary, LAG_SAVES)).await?;
    let (raw_lag, raw_rate) = lagging(&lsn, raw_writers(&raw_primary, LAG_SAVES)).await?;
    let (ours_bytes, raw_bytes) = (max_bytes(&ours_lag), max_bytes(&raw_lag));
    let ours_lag: Vec<Duration> = ours_lag.into_iter().map(|s| s.0).collect();
    let raw_lag: Vec<Duration> = raw_lag.into_iter().map(|s| s.0).collect();
    report(
        "replica_lag_8_writers_median",
        median_ms(ours_lag.clone()),
        median_ms(raw_lag.clone()),
        "ms",
    );
    report(
        "replica_lag_8_writers_p99",
        quantile_ms(&ours_lag, 0.99),
        quantile_ms(&raw_lag, 0.99),
        "ms",
    );
    report(
        "append_8_writers_with_standby",
        ours_rate,
        raw_rate,
        "events/s",
    );
    println!(
        "# replica lag: {} samples (ours), {} (raw); at most {ours_bytes} bytes (ours) and \
         {raw_bytes} (raw) of WAL written on the primary and not yet replayed (pg_stat_replication)",
        ours_lag.len(),
        raw_lag.len()
    );
    Ok(())
}

/// [`WRITERS`] raw connections on the raw table.
async fn raws(config: &tokio_postgres::Config) -> Result<Vec<Arc<Prepared>>, BoxError> {
    let mut raws = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        raws.push(Arc::new(Prepared::connect(config, "bench_raw").await?));
    }
    Ok(raws)
}

/// [`WRITERS`] tasks each loading [`LOADS_PER_TASK`] of `ids` in turn; loads per second.
async fn ours_loads(
    app: &Application<PostgresStore>,
    ids: &Arc<Vec<Uuid>>,
) -> Result<f64, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|task| {
            let (app, ids) = (app.clone(), Arc::clone(ids));
            tokio::spawn(async move {
                for i in 0..LOADS_PER_TASK {
                    let id = ids[(task * LOADS_PER_TASK + i) % ids.len()];
                    let counter: Counter = app.repository().get(id).await?;
                    std::hint::black_box(counter);
                }
                Ok::<_, eventsourcing::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(per_second(WRITERS * LOADS_PER_TASK, start.elapsed()))
}

/// The raw side of [`ours_loads`]: one task per connection of `raws`.
async fn raw_loads(raws: &[Arc<Prepared>], ids: &Arc<Vec<Uuid>>) -> Result<f64, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = raws
        .iter()
        .enumerate()
        .map(|(task, raw)| {
            let (raw, ids) = (Arc::clone(raw), Arc::clone(ids));
            tokio::spawn(async move {
                for i in 0..LOADS_PER_TASK {
                    let id = ids[(task * LOADS_PER_TASK + i) % ids.len()];
                    let folded = raw.load(id).await.map_err(|e| e.to_string())?;
                    std::hint::black_box(folded);
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(per_second(raws.len() * LOADS_PER_TASK, start.elapsed()))
}

/// Median milliseconds of a load right after a save of one event to the same counter.
async fn ours_after_save(app: &Application<PostgresStore>) -> Result<f64, BoxError> {
    let mut counter = Counter::open("after save".to_owned());
    app.save(&mut counter).await?;
    let mut times = Vec::with_capacity(AFTER_SAVE);
    for i in 0..AFTER_SAVE {
        counter.add(i as i64, NOTE.to_owned());
        app.save(&mut counter).await?;
        let start = Instant::now();
        let loaded: Counter = app.repository().get(counter.id()).await?;
        times.push(start.elapsed());
        if loaded.version() != counter.version() {
            return Err("a load after a save returned an older version".into());
        }
    }
    Ok(median_ms(times))
}

/// The raw side: a single-event `INSERT` on `writer` (the primary), then the load on `reader`,
/// after waiting for the standby to replay the insert when `lsn` is given.
async fn raw_after_save(
    writer: &Prepared,
    reader: &Prepared,
    lsn: Option<&Lsn>,
) -> Result<f64, BoxError> {
    let mut stream = writer.new_stream().await?;
    let mut times = Vec::with_capacity(AFTER_SAVE);
    for _ in 0..AFTER_SAVE {
        writer.append_next(&mut stream, 1).await?;
        let start = Instant::now();
        if let Some(lsn) = lsn {
            let written = lsn.primary_insert().await?;
            while !lsn.replayed(&written).await? {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let folded = reader.load(stream.id()).await?;
        times.push(start.elapsed());
        if folded.version != stream.version() {
            return Err("the raw load after a save returned an older version".into());
        }
    }
    Ok(median_ms(times))
}

/// Raw sessions for the WAL positions of both servers, each query prepared once.
struct Lsn {
    primary: Client,
    standby: Client,
    /// On the primary: `pg_current_wal_insert_lsn()`, `pg_current_wal_lsn()`, and the bytes
    /// of WAL written but not yet replayed by the standby (as it last reported).
    insert: Statement,
    written: Statement,
    unreplayed: Statement,
    /// On the standby: whether it has replayed up to `$1`.
    replayed: Statement,
}

impl Lsn {
    async fn connect(
        primary: &tokio_postgres::Config,
        standby: &tokio_postgres::Config,
    ) -> Result<Self, BoxError> {
        let (primary, [insert, written, unreplayed]) = connect_prepared(
            primary,
            [
                "SELECT pg_current_wal_insert_lsn()::text".to_owned(),
                "SELECT pg_current_wal_lsn()::text".to_owned(),
                "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::int8 \
                 FROM pg_stat_replication"
                    .to_owned(),
            ],
        )
        .await?;
        let (standby, [replayed]) = connect_prepared(
            standby,
            ["SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)".to_owned()],
        )
        .await?;
        Ok(Lsn {
            primary,
            standby,
            insert,
            written,
            unreplayed,
            replayed,
        })
    }

    async fn primary_insert(&self) -> Result<String, tokio_postgres::Error> {
        Ok(self.primary.query_one(&self.insert, &[]).await?.get(0))
    }

    async fn primary_written(&self) -> Result<String, tokio_postgres::Error> {
        Ok(self.primary.query_one(&self.written, &[]).await?.get(0))
    }

    async fn unreplayed(&self) -> Result<i64, tokio_postgres::Error> {
        Ok(self.primary.query_one(&self.unreplayed, &[]).await?.get(0))
    }

    async fn replayed(&self, lsn: &str) -> Result<bool, tokio_postgres::Error> {
        Ok(self
            .standby
            .query_one(&self.replayed, &[&lsn])
            .await?
            .get(0))
    }
}

/// Runs `writers` (returning how long they took for [`WRITERS`] × [`LAG_SAVES`] events) while
/// sampling the replica's lag every 10 ms: (how long until replayed, bytes of WAL the standby
/// had not replayed by its last report) per sample, and the writers' events per second.
async fn lagging(
    lsn: &Arc<Lsn>,
    writers: impl std::future::Future<Output = Result<Duration, BoxError>>,
) -> Result<(Vec<(Duration, i64)>, f64), BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (lsn, stop) = (Arc::clone(lsn), Arc::clone(&stop));
        async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let start = Instant::now();
                let written = lsn.primary_written().await?;
                let bytes = lsn.unreplayed().await?;
                while !lsn.replayed(&written).await? {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                samples.push((start.elapsed(), bytes));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, tokio_postgres::Error>(samples)
        }
    });
    let elapsed = writers.await;
    stop.store(true, Ordering::Release);
    let samples = sampler.await??;
    Ok((samples, per_second(WRITERS * LAG_SAVES, elapsed?)))
}

fn max_bytes(samples: &[(Duration, i64)]) -> i64 {
    samples.iter().map(|s| s.1).max().unwrap_or(0)
}
