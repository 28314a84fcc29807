//! Running the real `eventsourcing-admin` binary against a store: SQLite on a temporary file,
//! PostgreSQL on a fresh schema of the test server. The child gets only the variables a test
//! gives it (the environment is cleared), so a developer's settings never leak in.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::process::Command;

use eventsourcing_postgres::testing::{self, TestSchema};
use tempfile::TempDir;

/// What one run printed and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// What ran (the store, if any, and the arguments), for assertion messages.
    pub label: String,
}

impl Run {
    /// Both streams, for assertion messages and searches.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Fails, naming the run and showing both streams, unless it exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{}: exit code\n{}", self.label, self.all());
        self
    }

    /// Fails, naming the run and showing both streams, unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout(&self, needle: &str) -> &Self {
        self.assert_in("stdout", &self.stdout, needle)
    }

    /// Fails, naming the run and showing both streams, unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr(&self, needle: &str) -> &Self {
        self.assert_in("stderr", &self.stderr, needle)
    }

    #[track_caller]
    fn assert_in(&self, stream: &str, text: &str, needle: &str) -> &Self {
        assert!(
            text.contains(needle),
            "{}: no {needle:?} on {stream}\n{}",
            self.label,
            self.all()
        );
        self
    }

    /// The stdout parsed as JSON (panics with the output if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", self.label, self.all()))
    }
}

/// Runs the binary with exactly `vars` in its environment.
pub fn admin_with(args: &[&str], vars: &[(&str, String)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_eventsourcing-admin"))
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        label: args.join(" "),
    }
}

/// A store the binary is pointed at by environment variables.
pub enum Target {
    Sqlite { dir: TempDir, path: String },
    Postgres { schema: Box<TestSchema> },
}

/// The store's kind (`sqlite`, `postgres`), for assertion messages.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Target {
    /// A SQLite file that does not exist yet, in a directory deleted afterwards.
    pub fn sqlite() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.db").to_string_lossy().into_owned();
        Target::Sqlite { dir, path }
    }

    /// A fresh schema (not created yet) on the test server, dropped afterwards.
    pub async fn postgres() -> Target {
        Target::Postgres {
            schema: Box::new(TestSchema::new().await),
        }
    }

    /// Both kinds, for tests that run the same steps on each.
    pub async fn both() -> Vec<Target> {
        vec![Target::sqlite(), Target::postgres().await]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Sqlite { .. } => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    /// The variables that point the binary at this store.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::Sqlite { path, .. } => vec![
                ("PERSISTENCE_MODULE", "eventsourcing.sqlite".to_owned()),
                ("SQLITE_DBNAME", path.clone()),
            ],
            Target::Postgres { schema } => vec![
                ("PERSISTENCE_MODULE", "eventsourcing.postgres".to_owned()),
                ("DATABASE_URL", testing::url()),
                ("POSTGRES_SCHEMA", schema.name().to_owned()),
            ],
        }
    }

    /// Runs the binary on this store.
    pub fn admin(&self, args: &[&str]) -> Run {
        self.admin_env(args, &[])
    }

    /// Runs the binary on this store with `extra` variables too.
    pub fn admin_env(&self, args: &[&str], extra: &[(&'static str, String)]) -> Run {
        let mut vars = self.vars();
        vars.extend(extra.iter().cloned());
        let mut run = admin_with(args, &vars);
        run.label = format!("{}: {}", self.name(), run.label);
        run
    }
}

use eventsourcing::{
    sqlite::{SqliteConfig, SqliteStore},
    AnyStore, EventStore, NewEvent, Snapshot, Uuid,
};

impl Target {
    /// The store opened in this process (migrated), to seed it through the store's own API.
    pub async fn open(&self) -> AnyStore {
        match self {
            Target::Sqlite { path, .. } => AnyStore::Sqlite(
                SqliteStore::open(SqliteConfig::new(path.clone()))
                    .await
                    .unwrap(),
            ),
            Target::Postgres { schema } => AnyStore::Postgres(schema.store().await),
        }
    }

    /// A new stream of `count` events, appended through the store's own API, which is closed
    /// again before the test runs the binary; returns its id.
    pub async fn with_stream(&self, count: u64) -> Uuid {
        let (_, [stream]) = self.with_streams([count]).await;
        stream
    }

    /// The store opened in this process with a new stream of each of `counts` events; returns
    /// it and the streams' ids.
    pub async fn with_streams<const N: usize>(&self, counts: [u64; N]) -> (AnyStore, [Uuid; N]) {
        let store = self.open().await;
        let mut ids = [Uuid::nil(); N];
        for (id, count) in ids.iter_mut().zip(counts) {
            *id = new_stream(&store, count).await;
        }
        (store, ids)
    }

    /// The store migrated by the binary (`migrate` exits 0), then opened in this process.
    pub async fn migrated(&self) -> AnyStore {
        self.admin(&["migrate"]).assert_code(0);
        self.open().await
    }

    /// Runs raw SQL (the store's tables unqualified): for corrupting rows on purpose.
    pub async fn sql(&self, sql: &str) {
        match self {
            Target::Sqlite { path, .. } => {
                let conn = eventsourcing::sqlite::rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Target::Postgres { schema } => {
                let client = schema.client().await.unwrap();
                client
                    .batch_execute(&format!("SET search_path TO \"{}\"; {sql}", schema.name()))
                    .await
                    .unwrap();
            }
        }
    }

    /// A literal for a stream id in this store's SQL.
    pub fn id_literal(&self, id: Uuid) -> String {
        match self {
            Target::Sqlite { .. } => format!("x'{}'", id.simple()),
            Target::Postgres { .. } => format!("'{id}'"),
        }
    }

    /// The SQL to insert an event row with the given stream, version, type, payload
    /// (an expression) and metadata (an expression or NULL).
    pub fn insert_event(
        &self,
        id: Uuid,
        version: i64,
        event_type: &str,
        payload: &str,
        metadata: &str,
    ) -> String {
        let id = self.id_literal(id);
        match self {
            Target::Sqlite { .. } => format!(
                "INSERT INTO events (stream_id, version, timestamp, event_type, schema_version, \
                 payload, metadata) VALUES ({id}, {version}, 0, '{event_type}', 1, {payload}, \
                 {metadata});"
            ),
            Target::Postgres { .. } => format!(
                "INSERT INTO events (stream_id, version, timestamp, event_type, schema_version, \
                 payload, metadata) VALUES ({id}, {version}, now(), '{event_type}', 1, \
                 {payload}, {metadata});"
            ),
        }
    }

    /// The SQL to insert a snapshot row.
    pub fn insert_snapshot(&self, id: Uuid, version: i64) -> String {
        let id = self.id_literal(id);
        let (time, payload) = match self {
            Target::Sqlite { .. } => ("0", "x'7b7d'"),
            Target::Postgres { .. } => ("now()", "'\\x7b7d'::bytea"),
        };
        format!(
            "INSERT INTO snapshots (stream_id, version, timestamp, state_type, fingerprint, \
             payload) VALUES ({id}, {version}, {time}, 'Widget', 1, {payload});"
        )
    }

    /// A payload expression: these bytes.
    pub fn bytes(&self, text: &str) -> String {
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        match self {
            Target::Sqlite { .. } => format!("x'{hex}'"),
            Target::Postgres { .. } => format!("'\\x{hex}'::bytea"),
        }
    }
}

/// A new stream of `count` events, in one save; returns its id.
pub async fn new_stream(store: &AnyStore, count: u64) -> Uuid {
    let stream = Uuid::new_v4();
    let events = (1..=count)
        .map(|v| NewEvent::new(stream, v, "Updated", format!("{{\"n\":{v}}}").into_bytes()))
        .collect();
    store.append(events).await.unwrap();
    stream
}

/// A snapshot of `stream` at each of `versions`.
pub async fn snapshots(store: &AnyStore, stream: Uuid, versions: impl IntoIterator<Item = u64>) {
    for version in versions {
        let snapshot = Snapshot {
            stream_id: stream,
            version,
            state_type: "Widget".into(),
            fingerprint: 1,
            timestamp: eventsourcing::chrono::Utc::now(),
            payload: b"{}".to_vec(),
        };
        store.save_snapshot(snapshot, None).await.unwrap();
    }
}
