//! The real server for the tests: the built `widget-service` binary, on a free port of
//! 127.0.0.1, on a SQLite file of its own or a PostgreSQL schema of its own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use eventsourcing_postgres::{
    cluster::TestCluster,
    testing::{self, TestSchema},
};
use serde_json::Value;

/// Where a test's data lives; dropped (file or schema removed) after the servers using it.
pub(crate) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Box<TestSchema>),
    /// The memory store: nothing outlives the process.
    Memory,
    /// A throwaway PostgreSQL cluster of the test's own, to stop and start (schema `widgets`,
    /// a pool timeout of 2 s so that requests during an outage fail soon).
    Cluster(Box<TestCluster>),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    pub(crate) async fn postgres() -> Self {
        Backend::Postgres(Box::new(TestSchema::new().await))
    }

    /// Both stores, for the tests that run on each.
    pub(crate) async fn each() -> Vec<Backend> {
        vec![Backend::sqlite(), Backend::postgres().await]
    }

    /// Both durable stores and the memory store, for the tests that need no restart.
    pub(crate) async fn each_with_memory() -> Vec<Backend> {
        let mut all = Backend::each().await;
        all.push(Backend::Memory);
        all
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
            Backend::Memory => "memory",
            Backend::Cluster(_) => "postgres (own cluster)",
        }
    }

    fn configure(&self, command: &mut Command) {
        for var in [
            "PERSISTENCE_MODULE",
            "WIDGETS_PERSISTENCE_MODULE",
            "SQLITE_DBNAME",
            "DATABASE_URL",
            "POSTGRES_SCHEMA",
            "WIDGETS_LISTEN",
        ] {
            command.env_remove(var);
        }
        match self {
            Backend::Sqlite(dir) => {
                command
                    .env("PERSISTENCE_MODULE", "eventsourcing.sqlite")
                    .env("SQLITE_DBNAME", dir.path().join("widgets.db"));
            }
            Backend::Postgres(schema) => {
                command
                    .env("PERSISTENCE_MODULE", "eventsourcing.postgres")
                    .env("DATABASE_URL", testing::url())
                    .env("POSTGRES_SCHEMA", schema.name());
            }
            Backend::Memory => {
                command.env("PERSISTENCE_MODULE", "eventsourcing.popo");
            }
            Backend::Cluster(cluster) => {
                command
                    .env("PERSISTENCE_MODULE", "eventsourcing.postgres")
                    .env("DATABASE_URL", cluster.conninfo())
                    .env("POSTGRES_SCHEMA", "widgets")
                    .env("POOL_TIMEOUT", "2");
            }
        }
    }

    /// Starts the server on this backend and waits for its address.
    pub(crate) fn start(&self) -> Server {
        Server::start(self)
    }

    /// Starts the server and registers one endpoint named `name` (of a tenant of its own);
    /// returns the server and the endpoint's path, `/endpoints/{id}`.
    pub(crate) async fn start_with_endpoint(&self, name: &str) -> (Server, String) {
        let server = self.start();
        let url = format!("https://example.com/{name}");
        let path = server.create_path(&url, name, &tenant()).await;
        (server, path)
    }
}

/// A running `widget-service` process, killed when dropped (if still running), and a client
/// of it.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// The tests' client (reqwest's defaults, a generous timeout).
    pub(crate) http: reqwest::Client,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    fn start(backend: &Backend) -> Self {
        let log_dir = tempfile::tempdir().expect("a temporary directory");
        let log = log_dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_widget-service"));
        backend.configure(&mut command);
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("the widget-service binary starts");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading its stdout");
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not start ({}): {}",
                backend.name(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Server {
            child,
            base: base.to_owned(),
            http: client(),
            log,
            _log_dir: log_dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill`, to keep `unsafe` out).
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to end by itself, with a generous deadline.
    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Deadline::after(Duration::from_secs(60));
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            let log = self.log();
            deadline
                .pause(|| format!("the server did not exit within 60 s of SIGTERM:\n{log}"))
                .await;
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the tests (no pooling surprises: reqwest's defaults).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

/// The requests the tests make; each fails the test on a transport error.
impl Server {
    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        let url = self.url(path);
        self.http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// `GET path`, its body read as JSON (panics if it is not).
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not a JSON body: {e}"))
    }

    /// `PATCH path` renaming to `name`, with `If-Match: if_match` if given.
    pub(crate) async fn rename(
        &self,
        path: &str,
        if_match: Option<&str>,
        name: &str,
    ) -> reqwest::Response {
        rename(&self.http, &self.url(path), if_match, name).await
    }

    /// Registers an endpoint (201 expected); returns its JSON.
    pub(crate) async fn create(&self, url: &str, name: &str, tenant: &str) -> Value {
        let response = self
            .http
            .post(self.url("/endpoints"))
            .json(&serde_json::json!({ "url": url, "name": name, "tenant_id": tenant }))
            .send()
            .await
            .expect("POST /endpoints");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("a JSON body")
    }

    /// Registers an endpoint (201 expected); returns its path, `/endpoints/{id}`.
    pub(crate) async fn create_path(&self, url: &str, name: &str, tenant: &str) -> String {
        let created = self.create(url, name, tenant).await;
        format!("/endpoints/{}", created["id"].as_str().expect("an id"))
    }
}

/// `PATCH url` renaming to `name`, with `If-Match: if_match` if given (for tasks that hold
/// only a client and the URL).
pub(crate) async fn rename(
    http: &reqwest::Client,
    url: &str,
    if_match: Option<&str>,
    name: &str,
) -> reqwest::Response {
    let mut request = http.patch(url).json(&serde_json::json!({ "name": name }));
    if let Some(tags) = if_match {
        request = request.header("if-match", tags);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("PATCH {url}: {e}"))
}

/// A generous deadline for a condition that is polled: the waiting is bounded, nothing is
/// timed.
pub(crate) struct Deadline(Instant);

impl Deadline {
    pub(crate) fn after(within: Duration) -> Self {
        Deadline(Instant::now() + within)
    }

    /// Before polling again: fails with `what` once the deadline has passed, else pauses
    /// briefly.
    #[track_caller]
    pub(crate) fn pause(&self, what: impl FnOnce() -> String) -> tokio::time::Sleep {
        assert!(Instant::now() < self.0, "{}", what());
        tokio::time::sleep(Duration::from_millis(20))
    }
}

/// The `ETag` header's value.
pub(crate) fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag header")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// A tenant name no other test uses.
pub(crate) fn tenant() -> String {
    format!(
        "tenant-{}",
        &eventsourcing::new_id().simple().to_string()[..12]
    )
}
