//! A throwaway PostgreSQL cluster for tests that stop, crash, restart, cut off or replicate the
//! server: `initdb` into a temporary directory, started on a free local port, stopped and
//! deleted when the guard is dropped, even when the test panics. Enabled by the `testing`
//! feature; for test suites only (Unix).
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
//! Standbys (`replication.rs`): [`TestCluster::standby`] makes a hot standby of a cluster by
//! `pg_basebackup -R`, in a directory and on a port of its own, streaming under an
//! `application_name` of its own; `standby(true)` also names it in the primary's
//! `synchronous_standby_names`, so that a commit returns only once the standby has it.
//! [`pause_replay`](TestCluster::pause_replay) makes a lagging replica,
//! [`catch_up_with`](TestCluster::catch_up_with) waits for it, and
//! [`promote`](TestCluster::promote) fails over:
//!
//! ```no_run
//! use eventsourcing_postgres::cluster::{StopMode, TestCluster};
//!
//! # async fn example() {
//! let primary = TestCluster::new().await;
//! let standby = primary.standby(true).await; // synchronous
//! standby.pause_replay().await; // reads on it now see the past
//! standby.resume_replay().await;
//! standby.catch_up_with(&primary).await;
//! primary.stop(StopMode::Immediate).await; // the primary crashes
//! standby.promote().await; // and the standby takes over
//! # }
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

mod replication;
mod server;

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use crate::config::PostgresConfig;
use server::Inner;

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
    /// The `application_name` of the standbys whose commits this server waits for
    /// (`synchronous_standby_names`).
    sync_standbys: Mutex<Vec<String>>,
    /// As a standby: the `application_name` it connects to its primary with.
    standby_name: Option<String>,
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
        TestCluster::of(inner, None)
    }

    fn of(inner: Inner, standby_name: Option<String>) -> Self {
        TestCluster {
            inner: Arc::new(inner),
            sync_standbys: Mutex::default(),
            standby_name,
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
