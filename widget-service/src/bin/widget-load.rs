//! A bounded load on the widget service, beside the library doing the same saves in-process,
//! in the same run, on the same store:
//!
//! `cargo run --release -p widget-service --bin widget-load -- [--clients 16] [--requests 2000] [--runs 3]`
//!
//! Starts the service in this process on a free port of 127.0.0.1 (the same router, layers and
//! Prometheus recorder as the `widget-service` binary), on the store the environment names
//! like the service (SQLite by default: a file in a fresh temporary directory unless
//! `SQLITE_DBNAME` is set). Each run measures, with `--clients` concurrent tasks sharing
//! `--requests` operations:
//!
//! - `append_1`: the library's own save of a new endpoint (one event), one task, one save after
//!   another, as `eventsourcing-bench` measures it;
//! - `create_lib`, `rename_lib`: `Application::create` / `update_with_retry` in-process,
//!   concurrently;
//! - `create_http`, `rename_http`: `POST /endpoints` / `PATCH /endpoints/{id}` over HTTP/1.1
//!   (reqwest, keep-alive), concurrently.
//!
//! Renames go to endpoints created in the same run, each client renaming its own, so they
//! measure the rename path, not conflicts. The projection of the tenant read model runs
//! throughout (as in the service) and is caught up before each phase; the in-process and HTTP
//! phases alternate which goes first from run to run. Prints one line per figure and run,
//! then the median of the runs and the spread of the rates.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use eventsourcing::{prelude::Aggregate, AnyApplication, Env, Retry, Uuid};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use widget_service::{AppState, Config, DURATION_BUCKETS};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[path = "../../../examples/common/widget.rs"]
mod widget;
use widget::WidgetRegistryEndpoint;

struct Options {
    clients: usize,
    requests: usize,
    runs: usize,
}

fn options() -> Result<Options, BoxError> {
    let mut o = Options {
        clients: 16,
        requests: 2000,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<usize, BoxError> {
            let v = args.next().ok_or(format!("{arg} needs a number"))?;
            let n: usize = v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?;
            if n == 0 {
                return Err(format!("{arg} must be at least 1").into());
            }
            Ok(n)
        };
        match arg.as_str() {
            "--clients" => o.clients = value()?,
            "--requests" => o.requests = value()?,
            "--runs" => o.runs = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

/// One figure of one run.
#[derive(Debug, Clone, Copy)]
struct Figure {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Figure {
    fn of(total: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        let at = |q: usize| {
            let i = (latencies.len() * q / 100).min(latencies.len().saturating_sub(1));
            latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Figure {
            per_second: latencies.len() as f64 / total.as_secs_f64().max(f64::EPSILON),
            p50_ms: at(50),
            p99_ms: at(99),
        }
    }
}

/// Runs `op(client, i)` for `requests` operations split over `clients` concurrent tasks.
async fn measure<F, Fut>(clients: usize, requests: usize, op: F) -> Result<Figure, BoxError>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = Arc::clone(&op);
            let mine = requests / clients + usize::from(c < requests % clients);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine);
                for i in 0..mine {
                    let t = Instant::now();
                    op(c, i).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, BoxError>(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(Figure::of(started.elapsed(), all))
}

fn endpoint(tag: &str, c: usize, i: usize) -> WidgetRegistryEndpoint {
    WidgetRegistryEndpoint::create(
        format!("https://load.example/{tag}/{c}/{i}"),
        format!("endpoint {c} {i}"),
        format!("tenant-{}", c % 4),
    )
}

/// Waits until the projection has caught up, so that no phase pays for the one before it
/// (the projection's batches share SQLite's one writer with the saves).
async fn settle(state: &AppState) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let health = state.projection_health().await;
        if !health.running {
            return Err("the projection stopped".into());
        }
        if health.lag == Some(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the projection did not catch up within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ids created by each client, the rename targets.
type Targets = Arc<Vec<Vec<Uuid>>>;

/// `append_1`: one save after another, as eventsourcing-bench measures it.
async fn append_1(app: &AnyApplication, o: &Options, run: usize) -> Result<Figure, BoxError> {
    let mut latencies = Vec::with_capacity(o.requests);
    let started = Instant::now();
    for i in 0..o.requests {
        let t = Instant::now();
        app.create(endpoint(&format!("seq{run}"), 0, i)).await?;
        latencies.push(t.elapsed());
    }
    Ok(Figure::of(started.elapsed(), latencies))
}

/// `create_lib`: in-process creates, concurrently; returns the ids, per client.
async fn create_lib(
    app: &AnyApplication,
    o: &Options,
    run: usize,
) -> Result<(Figure, Targets), BoxError> {
    let created: Arc<Vec<std::sync::Mutex<Vec<Uuid>>>> = Arc::new(
        (0..o.clients)
            .map(|_| std::sync::Mutex::default())
            .collect(),
    );
    let (a, ids) = (app.clone(), Arc::clone(&created));
    let tag = format!("lib{run}");
    let figure = measure(o.clients, o.requests, move |c, i| {
        let (a, ids, e) = (a.clone(), Arc::clone(&ids), endpoint(&tag, c, i));
        async move {
            let saved = a.create(e).await?;
            if let Some(list) = ids.get(c) {
                list.lock().map_err(|_| "poisoned")?.push(saved.id());
            }
            Ok(())
        }
    })
    .await?;
    let targets = created
        .iter()
        .map(|m| m.lock().map(|v| v.clone()).unwrap_or_default())
        .collect();
    Ok((figure, Arc::new(targets)))
}

/// `rename_lib`: in-process renames (`update_with_retry`), concurrently.
async fn rename_lib(
    app: &AnyApplication,
    o: &Options,
    targets: &Targets,
) -> Result<Figure, BoxError> {
    let (a, t) = (app.clone(), Arc::clone(targets));
    measure(o.clients, o.requests, move |c, i| {
        let (a, t) = (a.clone(), Arc::clone(&t));
        async move {
            let id = pick(&t, c, i)?;
            a.update_with_retry(id, Retry::attempts(64), |e: &mut WidgetRegistryEndpoint| {
                e.rename(&format!("lib rename {i}"))
            })
            .await?;
            Ok(())
        }
    })
    .await
}

/// Sends `request` and reads the whole body; a status other than `expected` is an error
/// naming `what`.
async fn send_expecting(
    request: reqwest::RequestBuilder,
    expected: u16,
    what: &str,
) -> Result<(), BoxError> {
    let response = request.send().await?;
    if response.status() != expected {
        return Err(format!("{what}: {}", response.status()).into());
    }
    response.bytes().await?;
    Ok(())
}

/// `create_http`: `POST /endpoints`, concurrently.
async fn create_http(
    http: &reqwest::Client,
    base: &str,
    o: &Options,
    run: usize,
) -> Result<Figure, BoxError> {
    let (h, url, tag) = (
        http.clone(),
        format!("{base}/endpoints"),
        format!("http{run}"),
    );
    measure(o.clients, o.requests, move |c, i| {
        let (h, url) = (h.clone(), url.clone());
        let body = serde_json::json!({
            "url": format!("https://load.example/{tag}/{c}/{i}"),
            "name": format!("endpoint {c} {i}"),
            "tenant_id": format!("tenant-{}", c % 4),
        });
        async move { send_expecting(h.post(&url).json(&body), 201, "POST /endpoints").await }
    })
    .await
}

/// `rename_http`: `PATCH /endpoints/{id}` without `If-Match`, concurrently.
async fn rename_http(
    http: &reqwest::Client,
    base: &str,
    o: &Options,
    targets: &Targets,
) -> Result<Figure, BoxError> {
    let (h, base, t) = (http.clone(), base.to_owned(), Arc::clone(targets));
    measure(o.clients, o.requests, move |c, i| {
        let (h, base, t) = (h.clone(), base.clone(), Arc::clone(&t));
        async move {
            let id = pick(&t, c, i)?;
            let request = h
                .patch(format!("{base}/endpoints/{id}"))
                .json(&serde_json::json!({ "name": format!("http rename {i}") }));
            send_expecting(request, 200, "PATCH /endpoints").await
        }
    })
    .await
}

/// One run: `append_1`, then the creates, then the renames, the in-process one first in even
/// runs and the HTTP one first in odd runs; the projection caught up before each phase.
async fn run_once(
    state: &AppState,
    base: &str,
    http: &reqwest::Client,
    o: &Options,
    run: usize,
) -> Result<Vec<(&'static str, Figure)>, BoxError> {
    let app = state.app();
    let lib_first = run % 2 == 0;
    let mut figures = Vec::new();
    settle(state).await?;
    figures.push(("append_1", append_1(app, o, run).await?));
    settle(state).await?;
    if !lib_first {
        figures.push(("create_http", create_http(http, base, o, run).await?));
        settle(state).await?;
    }
    let (figure, targets) = create_lib(app, o, run).await?;
    figures.push(("create_lib", figure));
    settle(state).await?;
    if lib_first {
        figures.push(("create_http", create_http(http, base, o, run).await?));
        settle(state).await?;
        figures.push(("rename_lib", rename_lib(app, o, &targets).await?));
        settle(state).await?;
        figures.push(("rename_http", rename_http(http, base, o, &targets).await?));
    } else {
        figures.push(("rename_http", rename_http(http, base, o, &targets).await?));
        settle(state).await?;
        figures.push(("rename_lib", rename_lib(app, o, &targets).await?));
    }
    Ok(figures)
}

/// Client `c`'s `i`-th rename target: its own endpoints in turn.
fn pick(targets: &[Vec<Uuid>], c: usize, i: usize) -> Result<Uuid, BoxError> {
    let mine = targets
        .get(c)
        .filter(|v| !v.is_empty())
        .ok_or("no endpoints to rename")?;
    Ok(mine[i % mine.len()])
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("widget-load: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let o = options()?;
    let dir = tempfile_dir()?;
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if std::env::var_os("SQLITE_DBNAME").is_none()
        && std::env::var_os("WIDGETS_SQLITE_DBNAME").is_none()
    {
        vars.push((
            "SQLITE_DBNAME".into(),
            dir.join("widgets.db").display().to_string(),
        ));
    }
    let env = Env::from_map(vars);
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        ..Config::from_env(&env)?
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)?
        .install_recorder()?;
    let state = AppState::open(&env, config, Some(metrics)).await?;
    let app = state.app().clone();
    let shared = state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(widget_service::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients)
        .build()?;
    println!(
        "store={:?} clients={} requests={} runs={}",
        app.store().kind(),
        o.clients,
        o.requests,
        o.runs
    );
    let mut all: Vec<(&'static str, Vec<Figure>)> = Vec::new();
    for run in 0..o.runs {
        for (name, f) in run_once(&shared, &base, &http, &o, run).await? {
            println!(
                "run={run} {name} per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
                f.per_second, f.p50_ms, f.p99_ms
            );
            match all.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(f),
                None => all.push((name, vec![f])),
            }
        }
    }
    println!("median of {} runs:", o.runs);
    for (name, figures) in &all {
        let rate: Vec<f64> = figures.iter().map(|f| f.per_second).collect();
        let (lo, hi) = (
            rate.iter().copied().fold(f64::INFINITY, f64::min),
            rate.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{name} per_s={:.0} (spread {lo:.0}-{hi:.0}) p50_ms={:.3} p99_ms={:.3}",
            median(rate),
            median(figures.iter().map(|f| f.p50_ms).collect()),
            median(figures.iter().map(|f| f.p99_ms).collect()),
        );
    }
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf, BoxError> {
    let dir =
        std::env::temp_dir().join(format!("widget-load-{}", eventsourcing::new_id().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
