//! The server's side of a [`TestCluster`](super::TestCluster): its directory, the server
//! commands (`initdb`, `pg_ctl`, run as `postgres` when we are root), free ports and where the
//! binaries are.

use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use super::{StopMode, BIN_VAR, PG_CTL_WAIT};

/// A cluster's directory and server.
#[derive(Debug)]
pub(super) struct Inner {
    /// The temporary directory: the data directory, the socket and the server log are in it.
    pub(super) dir: PathBuf,
    pub(super) bin: PathBuf,
    pub(super) port: u16,
    /// Whether server commands run through `runuser -u postgres --` (we are root).
    pub(super) as_postgres: bool,
    pub(super) running: AtomicBool,
}

impl Inner {
    /// A new primary: `initdb`, the test settings, started on a free port.
    pub(super) fn create() -> Inner {
        let (mut inner, mut cleanup) = Inner::new_dir();
        let data = inner.data_dir();
        let initdb = inner.bin.join("initdb");
        inner.run_server_command(&initdb, |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync", "--no-instructions"]);
        });
        // `initdb`'s pg_hba.conf already lets 127.0.0.1 connect for replication (trust), and
        // `wal_level = replica` is the default: a primary can take standbys as it is.
        let conf = format!(
            "\n# eventsourcing TestCluster\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 50\n\
             max_wal_senders = 10\n",
            inner.dir.display()
        );
        append_to(&data.join("postgresql.conf"), &conf);
        inner.start_on_free_port();
        cleanup.0 = None;
        inner
    }

    /// A new temporary directory owned by the server's user, and the guard deleting it unless
    /// the caller keeps it (once the server runs and a `TestCluster` owns it).
    pub(super) fn new_dir() -> (Inner, RemoveUnlessKept) {
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
        let cleanup = RemoveUnlessKept(Some(dir.clone()));
        let inner = Inner {
            dir,
            bin,
            port: 0,
            as_postgres,
            running: AtomicBool::new(false),
        };
        if as_postgres {
            inner.run("chown", |c| {
                c.args(["postgres:", &inner.dir.to_string_lossy()]);
            });
        }
        (inner, cleanup)
    }

    /// Starts the server on a port nobody listens on. Another process may take the port
    /// between our probe and the server's bind: tries a few.
    pub(super) fn start_on_free_port(&mut self) {
        let mut last = String::new();
        for _ in 0..5 {
            self.port = free_port();
            match self.pg_ctl(&["start"]) {
                Ok(()) => {
                    self.running.store(true, Ordering::Release);
                    return;
                }
                Err(e) => last = e,
            }
        }
        panic!("the test cluster did not start: {last}");
    }

    pub(super) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub(super) fn stop(&self, mode: StopMode) {
        self.pg_ctl(&["stop", "-m", mode.flag()])
            .unwrap_or_else(|e| panic!("stopping the test cluster ({}): {e}", mode.flag()));
        self.running.store(false, Ordering::Release);
    }

    pub(super) fn start(&self) {
        self.pg_ctl(&["start"])
            .unwrap_or_else(|e| panic!("starting the test cluster again: {e}"));
        self.running.store(true, Ordering::Release);
    }

    /// `pg_ctl <action> -D data -w -t 60`, plus the port and log file for `start`.
    pub(super) fn pg_ctl(&self, action: &[&str]) -> Result<(), String> {
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

    pub(super) fn log_tail(&self) -> String {
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

    pub(super) fn run_server_command(&self, program: &Path, args: impl FnOnce(&mut Command)) {
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
pub(super) struct RemoveUnlessKept(pub(super) Option<PathBuf>);

impl Drop for RemoveUnlessKept {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(super) fn append_to(path: &Path, text: &str) {
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
