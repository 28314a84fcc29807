//! A throwaway PostgreSQL cluster for tests that stop, crash, restart or cut off the server:
//! `initdb` into a temporary directory, started on a free local port, stopped and deleted when
//! the guard is dropped, even when the test panics. Enabled by the `testing` feature; for test
//! suites only (Unix).
//!
//! Never stop, restart or kill the connections of a shared server: other tests use it in
//! parallel. Faults go to a cluster of one's own:
//!
//! ```no_run
//! use eventsourcing_postgres::{cluster::{StopMode, TestCluster}, PostgresStore};
//!
//! # async fn example() -> Result<(), eventsourcing_core::Error> {
//! let cluster = TestCluster::new().await;
//! let store = PostgresStore::connect(cluster.config("faults")).await?;
//! cluster.terminate_backends(TestCluster::APPLICATION_NAME).await; // kill the pool's sessions
//! cluster.restart(StopMode::Immediate).await; // a crash and a start
//! # let _ = store;
//! # Ok(()) }
//! ```
//!
//! How it runs the server: the binaries come from `EVENTSOURCING_TEST_PG_BIN` if set, else
//! the newest `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`), else
//! `pg_config --bindir`. `initdb` refuses to run as root, so as root every server command runs
//! as the `postgres` user (`runuser -u postgres --`) in a directory that user owns. Trust
//! authentication, TCP on `127.0.0.1` only, the Unix socket in the temporary directory.
//! `fsync = off` and `full_page_writes = off`: the tests crash the server, never the machine,
//! and a crashed server loses nothing that reached the operating system; `synchronous_commit`
//! stays on, so an acknowledged commit is in the WAL the restart replays. If the binaries or the `postgres`
//! user are missing the constructor panics saying what to install: a test never skips silently.
//!
//! The server commands block; the methods run them on Tokio's blocking threads, so writers on
//! the runtime keep running while the server stops and starts.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a fixture's failures are test failures

use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::config::PostgresConfig;

/// The variable naming the directory of `initdb` and `pg_ctl`, when they are not where
/// Debian puts them.
pub const BIN_VAR: &str = "EVENTSOURCING_TEST_PG_BIN";

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT: Duration = Duration::from_secs(60);

/// How to stop the server ([`pg_ctl -m`](https://www.postgresql.org/docs/15/app-pg-ctl.html)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: sessions are terminated (SQLSTATE 57P01), running transactions roll back,
    /// a checkpoint is written: a clean restart.
    Fast,
    /// `-m immediate`: every server process quits at once, no checkpoint; the next start
    /// recovers from the WAL: a crash.
    Immediate,
}

impl StopMode {
    fn flag(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of the test's own, on a free port of `127.0.0.1`, stopped and deleted
/// when dropped. See the [module docs](self).
#[derive(Debug)]
pub struct TestCluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The temporary directory: the data directory, the socket and the server log are in it.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Whether server commands run through `runuser -u postgres --` (we are root).
    as_postgres: bool,
    running: AtomicBool,
}

impl TestCluster {
    /// The `application_name` of [`config`](Self::config)'s sessions, for
    /// [`terminate_backends`](Self::terminate_backends).
    pub const APPLICATION_NAME: &'static str = "eventsourcing-test-store";

    /// Creates a cluster in a new temporary directory and starts it. Takes a few seconds.
    /// Panics, saying what is needed, if the server binaries or the `postgres` user are
    /// missing or the server does not start.
    pub async fn new() -> Self {
        let inner = tokio::task::spawn_blocking(Inner::create)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        TestCluster {
            inner: Arc::new(inner),
        }
    }

    /// The port the server listens on (on `127.0.0.1`); it keeps it across restarts.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The temporary directory: `data/` (the cluster), `server.log`, and the Unix socket.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether the server was started and not stopped since (by this guard).
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Acquire)
    }

    /// A libpq connection string for the superuser `postgres` on database `postgres`, over TCP,
    /// without TLS (the cluster has no certificate).
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            self.inner.port
        )
    }

    /// Store settings for `schema` on this cluster: [`conninfo`](Self::conninfo), sessions
    /// named [`APPLICATION_NAME`](Self::APPLICATION_NAME), and a `pool_timeout` of 5 s (so
    /// that an operation waiting through an outage fails within a test's patience). Adjust with
    /// [`PostgresConfig::to_builder`].
    pub fn config(&self, schema: &str) -> PostgresConfig {
        format!(
            "{} application_name={}",
            self.conninfo(),
            Self::APPLICATION_NAME
        )
        .parse::<PostgresConfig>()
        .expect("the cluster's connection string parses")
        .to_builder()
        .schema(schema)
        .pool_timeout(Duration::from_secs(5))
        .build()
        .expect("the cluster's settings are valid")
    }

    /// A new session outside any pool (application name `eventsourcing-test-admin`), for
    /// inspecting the cluster or killing other sessions. Panics if the server does not answer.
    pub async fn admin_client(&self) -> tokio_postgres::Client {
        let conninfo = format!(
            "{} application_name=eventsourcing-test-admin",
            self.conninfo()
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test cluster on port {}: {e}",
                    self.port()
                )
            });
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// `pg_terminate_backend` on every session of this cluster whose `application_name` is
    /// `application_name` (the calling session aside); returns how many were terminated.
    /// Opens a session of its own for it. Panics if the server does not answer.
    pub async fn terminate_backends(&self, application_name: &str) -> u64 {
        let admin = self.admin_client().await;
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&application_name],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_terminate_backend on the test cluster: {e}"));
        row.get::<_, i64>(0).max(0) as u64
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate`, waiting until it has). Panics if
    /// `pg_ctl` fails.
    pub async fn stop(&self, mode: StopMode) {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.stop(mode)).await;
    }

    /// Starts the server again on its port, waiting until it accepts connections. Panics
    /// (with the server log's tail) if it does not start.
    pub async fn start(&self) {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.start()).await;
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    pub async fn restart(&self, mode: StopMode) {
        self.stop(mode).await;
        self.start().await;
    }
}

/// Runs `work` on a blocking thread; its panic is the caller's.
async fn blocking(work: impl FnOnce() + Send + 'static) {
    if let Err(e) = tokio::task::spawn_blocking(work).await {
        std::panic::resume_unwind(e.into_panic());
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Crash it rather than shut it down cleanly: nothing in it is worth a checkpoint.
        if self.inner.running.load(Ordering::Acquire) {
            if let Err(e) = self.inner.pg_ctl(&["stop", "-m", "immediate"]) {
                eprintln!(
                    "warning: could not stop the test cluster in {}: {e}",
                    self.inner.dir.display()
                );
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.inner.dir) {
            eprintln!(
                "warning: could not delete the test cluster in {}: {e}",
                self.inner.dir.display()
            );
        }
    }
}

impl Inner {
    fn create() -> Inner {
        let bin = server_bin();
        let as_postgres = running_as_root();
        if as_postgres && !command_ok(Command::new("id").args(["-u", "postgres"])) {
            panic!(
                "the test cluster runs initdb as the `postgres` user (initdb refuses to run as \
                 root), but there is no such user: install the PostgreSQL server package \
                 (Debian: `apt-get install postgresql-15`) or run the tests as a user of your own"
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "eventsourcing-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("creating {} for a test cluster: {e}", dir.display()));
        // From here on the directory is ours to delete, whatever fails.
        let mut inner = Inner {
            dir,
            bin,
            port: 0,
            as_postgres,
            running: AtomicBool::new(false),
        };
        let mut cleanup = RemoveUnlessKept(Some(inner.dir.clone()));
        if as_postgres {
            inner.run("chown", |c| {
                c.args(["postgres:", &inner.dir.to_string_lossy()]);
            });
        }
        let data = inner.data_dir();
        let initdb = inner.bin.join("initdb");
        inner.run_server_command(&initdb, |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync", "--no-instructions"]);
        });
        let conf = format!(
            "\n# eventsourcing TestCluster\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 50\n",
            inner.dir.display()
        );
        append_to(&data.join("postgresql.conf"), &conf);
        // Another process may take the port between our probe and the server's bind: try a
        // few.
        let mut last = String::new();
        for _ in 0..5 {
            inner.port = free_port();
            match inner.pg_ctl(&["start"]) {
                Ok(()) => {
                    inner.running.store(true, Ordering::Release);
                    cleanup.0 = None;
                    return inner;
                }
                Err(e) => last = e,
            }
        }
        panic!("the test cluster did not start: {last}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn stop(&self, mode: StopMode) {
        self.pg_ctl(&["stop", "-m", mode.flag()])
            .unwrap_or_else(|e| panic!("stopping the test cluster ({}): {e}", mode.flag()));
        self.running.store(false, Ordering::Release);
    }

    fn start(&self) {
        self.pg_ctl(&["start"])
            .unwrap_or_else(|e| panic!("starting the test cluster again: {e}"));
        self.running.store(true, Ordering::Release);
    }

    /// `pg_ctl <action> -D data -w -t 60`, plus the port and log file for `start`.
    fn pg_ctl(&self, action: &[&str]) -> Result<(), String> {
        let mut command = self.server_command(&self.bin.join("pg_ctl"));
        command.args(action).arg("-D").arg(self.data_dir()).args([
            "-w",
            "-t",
            &PG_CTL_WAIT.as_secs().to_string(),
        ]);
        if action.first() == Some(&"start") {
            command
                .arg("-l")
                .arg(self.log_file())
                .args(["-o", &format!("-p {}", self.port)]);
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl {} failed ({}): {}{}\n--- server log (tail) ---\n{}",
            action.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A server command, as `postgres` when we are root, in the cluster's directory (the
    /// server must be able to read its working directory).
    fn server_command(&self, program: &Path) -> Command {
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.current_dir(&self.dir);
        command
    }

    fn run_server_command(&self, program: &Path, args: impl FnOnce(&mut Command)) {
        let mut command = self.server_command(program);
        args(&mut command);
        check(&mut command, &program.display().to_string());
    }

    fn run(&self, program: &str, args: impl FnOnce(&mut Command)) {
        let mut command = Command::new(program);
        args(&mut command);
        check(&mut command, program);
    }
}

/// Runs a command, panicking with its output if it fails.
fn check(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn command_ok(command: &mut Command) -> bool {
    command.output().is_ok_and(|o| o.status.success())
}

/// Deletes a half-made cluster's directory when creating it panics (set to `None` once the
/// cluster runs and its guard owns the directory).
struct RemoveUnlessKept(Option<PathBuf>);

impl Drop for RemoveUnlessKept {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn append_to(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A port nobody listens on now: the one the system hands out for port 0.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free local port: {e}"))
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The directory holding `initdb` and `pg_ctl`.
fn server_bin() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(BIN_VAR).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return dir;
        }
        panic!(
            "{BIN_VAR}={} holds no initdb and pg_ctl: point it at the bin directory of a \
             PostgreSQL server installation",
            dir.display()
        );
    }
    // Debian: /usr/lib/postgresql/<major>/bin; the newest major first.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match from_pg_config {
        Some(dir) if has_tools(&dir) => dir,
        _ => panic!(
            "the fault tests need the PostgreSQL server binaries (initdb, pg_ctl) to run a \
             throwaway cluster, and found none in /usr/lib/postgresql/*/bin or \
             `pg_config --bindir`: install the server package (Debian/Ubuntu: \
             `apt-get install postgresql-15`) or set {BIN_VAR} to the directory holding them"
        ),
    }
}
