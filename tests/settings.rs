//! Every environment variable the library reads, each with several bad values: each is a
//! `ConfigError` naming the variable, none a panic, and no error shows a password. Large but
//! valid values are accepted and stay valid where they end up (PostgreSQL's `SET`, SQLite's
//! busy timeout).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{panic::AssertUnwindSafe, time::Duration};

use eventsourcing::postgres::PostgresConfig;
use eventsourcing::sqlite::SqliteConfig;
use eventsourcing::{AnyStore, ConfigError, Env, Error, Snapshotting, StoreKind};

/// A password that must never appear in an error or its `Debug`.
const SECRET: &str = "hunter2-s3cret-pw";

/// The application name of the prefixed rows.
const APP: &str = "widgets";

/// The PostgreSQL settings every PostgreSQL row starts from (so that only the bad one fails).
const PG_BASE: &[(&str, &str)] = &[
    ("POSTGRES_HOST", "db.example"),
    ("POSTGRES_USER", "app"),
    ("POSTGRES_DBNAME", "widgets"),
];

/// Which constructor reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Store,
    Postgres,
    Sqlite,
    Snapshots,
}

fn readers_of(var: &str) -> &'static [Reader] {
    let prefix = format!("{}_", APP.to_ascii_uppercase());
    match var.strip_prefix(&prefix).unwrap_or(var) {
        "PERSISTENCE_MODULE" => &[Reader::Store],
        "CREATE_TABLE" => &[Reader::Postgres, Reader::Sqlite],
        "IS_SNAPSHOTTING_ENABLED" | "SNAPSHOT_INTERVAL" | "MAX_SNAPSHOTS" => &[Reader::Snapshots],
        v if v.starts_with("SQLITE_") => &[Reader::Sqlite],
        _ => &[Reader::Postgres],
    }
}

/// Reads `var=value` (with whatever else that constructor needs) through the public
/// constructor of each reader of `var`.
fn read(var: &str, value: &str) -> Vec<Result<(), ConfigError>> {
    let prefix = format!("{}_", APP.to_ascii_uppercase());
    let plain = var.strip_prefix(&prefix).unwrap_or(var);
    let env_of = |base: &[(&str, &str)]| {
        let mut vars: Vec<(String, String)> = base
            .iter()
            // The row's value replaces the base one; POSTGRES_DBNAME would beat the alias
            // POSTGRES_DB under test, so it goes too.
            .filter(|(k, _)| *k != plain && !(plain == "POSTGRES_DB" && *k == "POSTGRES_DBNAME"))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.push((var.to_owned(), value.to_owned()));
        let env = Env::from_map(vars);
        if plain == var {
            env
        } else {
            env.with_app_name(APP)
        }
    };
    readers_of(var)
        .iter()
        .map(|reader| match reader {
            Reader::Store => StoreKind::from_env(&env_of(&[])).map(drop),
            Reader::Postgres => PostgresConfig::from_env(&env_of(PG_BASE)).map(drop),
            Reader::Sqlite => SqliteConfig::from_env(&env_of(&[])).map(drop),
            Reader::Snapshots => Snapshotting::from_env(&env_of(&[])).map(drop),
        })
        .collect()
}

fn rows() -> Vec<(&'static str, String)> {
    let long = "9".repeat(10_000);
    let long_word = "x".repeat(100_000);
    let nul = "5\0".to_owned();
    let s = |v: &str| v.to_owned();
    let mut rows: Vec<(&'static str, String)> = vec![
        // The store.
        ("PERSISTENCE_MODULE", s("eventsourcing.mongo")),
        ("PERSISTENCE_MODULE", s("sqlite3")),
        ("PERSISTENCE_MODULE", s("postgres\0")),
        ("PERSISTENCE_MODULE", long_word.clone()),
        // PostgreSQL: required values given empty or blank count as missing.
        ("POSTGRES_HOST", s("")),
        ("POSTGRES_HOST", s("   ")),
        ("POSTGRES_HOST", s("db\0.example")),
        ("POSTGRES_HOST", s("db1,,db2")),
        ("POSTGRES_HOST", s(",")),
        ("POSTGRES_PORT", s("0")),
        ("POSTGRES_PORT", s("-1")),
        ("POSTGRES_PORT", s("65536")),
        ("POSTGRES_PORT", s("54x")),
        ("POSTGRES_PORT", s("5432.5")),
        ("POSTGRES_PORT", s("NaN")),
        ("POSTGRES_USER", s("")),
        ("POSTGRES_USER", s("\t")),
        ("POSTGRES_USER", s("app\0")),
        ("POSTGRES_PASSWORD", format!("{SECRET}\0")),
        ("POSTGRES_PASSWORD_FILE", s("/nonexistent/es-password")),
        ("POSTGRES_PASSWORD_FILE", s("/tmp\0/pw")),
        ("POSTGRES_DBNAME", s("")),
        ("POSTGRES_DBNAME", s("  ")),
        ("POSTGRES_DBNAME", s("wid\0gets")),
        ("POSTGRES_DB", s("")),
        ("POSTGRES_DB", s("\0")),
        ("POSTGRES_SCHEMA", s("a\0b")),
        ("POSTGRES_SCHEMA", "s".repeat(64)),
        ("POSTGRES_SSLMODE", s("allow-ish")),
        ("POSTGRES_SSLMODE", s("verify full")),
        ("POSTGRES_SSLMODE", s("1")),
        ("POSTGRES_SSLMODE", long_word.clone()),
        ("POSTGRES_SSLROOTCERT", s("/etc/ca\0.pem")),
        ("POSTGRES_POOL_SIZE", s("-1")),
        ("POSTGRES_POOL_SIZE", s("many")),
        ("POSTGRES_POOL_SIZE", s("2.5")),
        ("POSTGRES_POOL_SIZE", s("99999999999999999999")),
        ("POSTGRES_POOL_SIZE", s("4294967295")),
        ("POOL_SIZE", s("1e20")),
        ("POOL_SIZE", s("inf")),
        ("POOL_SIZE", long.clone()),
        ("POOL_SIZE", nul.clone()),
        ("POSTGRES_MAX_OVERFLOW", s("-10")),
        ("POOL_MAX_OVERFLOW", s("ten")),
        ("POOL_MAX_OVERFLOW", s("4294967295")),
        ("POSTGRES_CONNECT_TIMEOUT", s("0")),
        ("POSTGRES_CONNECT_TIMEOUT", s("-1")),
        ("POOL_TIMEOUT", s("NaN")),
        ("POOL_TIMEOUT", s("inf")),
        ("POOL_TIMEOUT", s("1e20")),
        ("POOL_TIMEOUT", s("30s")),
        ("POSTGRES_CONN_MAX_AGE", s("-5")),
        ("POOL_RECYCLE", s("99999999999999999999")),
        ("POOL_RECYCLE", s("an hour")),
        ("POSTGRES_PRE_PING", s("perhaps")),
        ("POOL_PRE_PING", s("2")),
        ("POOL_PRE_PING", s("y\0")),
        ("POSTGRES_MAX_WAITING", s("-1")),
        ("POSTGRES_MAX_WAITING", s("lots")),
        ("POSTGRES_MAX_WAITING", s("1.5")),
        ("POSTGRES_LOCK_TIMEOUT", s("31536000")), // a year: past PostgreSQL's INT_MAX ms
        ("POSTGRES_LOCK_TIMEOUT", s("2147484")),
        ("POSTGRES_LOCK_TIMEOUT", s("-0.5")),
        ("POSTGRES_LOCK_TIMEOUT", s("1s")),
        ("POSTGRES_LOCK_TIMEOUT", s("NaN")),
        (
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
            s("31536000"),
        ),
        ("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", s("-inf")),
        ("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", s("x")),
        ("CREATE_TABLE", s("maybe")),
        ("CREATE_TABLE", s("yess")),
        ("CREATE_TABLE", s("-1")),
        // A malformed URL with a password in it: the password must never show.
        (
            "DATABASE_URL",
            format!("postgresql://app:{SECRET}@db:notaport/d"),
        ),
        (
            "DATABASE_URL",
            format!("postgresql://app:{SECRET}@db:99999/d"),
        ),
        (
            "DATABASE_URL",
            format!("postgresql://app:{SECRET}@db/d?sslmode=sometimes"),
        ),
        (
            "DATABASE_URL",
            format!("postgresql://app:{SECRET}@db/d?{SECRET}&x=1"),
        ),
        ("DATABASE_URL", format!("postgresql://app:{SECRET}@[db/d")),
        (
            "DATABASE_URL",
            format!("host=db password={SECRET} port=nope"),
        ),
        ("DATABASE_URL", format!("host=db password {SECRET}")),
        ("DATABASE_URL", format!("host=db password='{SECRET}")),
        (
            "DATABASE_URL",
            format!("postgresql://app:{SECRET}@db/d?sslrootcert=%FF"),
        ),
        ("DATABASE_URL", format!("postgresql://app%00:{SECRET}@db/d")),
        // SQLite.
        ("SQLITE_DBNAME", s("widgets\0.db")),
        ("SQLITE_DBNAME", s("\0")),
        ("SQLITE_LOCK_TIMEOUT", s("-1")),
        ("SQLITE_LOCK_TIMEOUT", s("31536000")), // a year: past SQLite's INT_MAX ms
        ("SQLITE_LOCK_TIMEOUT", s("inf")),
        ("SQLITE_LOCK_TIMEOUT", s("five")),
        ("SQLITE_SYNCHRONOUS", s("off")),
        ("SQLITE_SYNCHRONOUS", s("0")),
        ("SQLITE_SYNCHRONOUS", s("fullest")),
        ("SQLITE_WAL_SIZE_LIMIT", s("-1")),
        ("SQLITE_WAL_SIZE_LIMIT", s("64MB")),
        ("SQLITE_WAL_SIZE_LIMIT", s("1.5")),
        ("SQLITE_WAL_SIZE_LIMIT", s("99999999999999999999")),
        ("SQLITE_WAL_SIZE_LIMIT", s("9223372036854775808")),
        // Snapshots.
        ("IS_SNAPSHOTTING_ENABLED", s("sometimes")),
        ("IS_SNAPSHOTTING_ENABLED", s("2")),
        ("SNAPSHOT_INTERVAL", s("0")),
        ("SNAPSHOT_INTERVAL", s("-10")),
        ("SNAPSHOT_INTERVAL", s("2.5")),
        ("SNAPSHOT_INTERVAL", s("1e20")),
        ("SNAPSHOT_INTERVAL", s("99999999999999999999")),
        ("MAX_SNAPSHOTS", s("0")),
        ("MAX_SNAPSHOTS", s("NaN")),
        ("MAX_SNAPSHOTS", s("five")),
        // The application-prefixed forms name the prefixed variable.
        ("WIDGETS_PERSISTENCE_MODULE", s("mongo")),
        ("WIDGETS_POSTGRES_HOST", s("h\0")),
        ("WIDGETS_POOL_SIZE", s("-1")),
        ("WIDGETS_POSTGRES_LOCK_TIMEOUT", s("31536000")),
        ("WIDGETS_SQLITE_LOCK_TIMEOUT", s("1e20")),
        ("WIDGETS_SQLITE_WAL_SIZE_LIMIT", s("lots")),
        ("WIDGETS_CREATE_TABLE", s("maybe")),
        ("WIDGETS_SNAPSHOT_INTERVAL", s("0")),
    ];
    rows.sort_by_key(|(var, _)| *var);
    rows
}

/// What each row did, when it did not give the wanted error.
fn problems() -> Vec<String> {
    let mut problems = Vec::new();
    for (var, value) in rows() {
        let cut: String = value.chars().take(40).collect();
        let shown = format!("{var}={cut:?}");
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| read(var, &value)));
        let Ok(results) = outcome else {
            problems.push(format!("{shown}: PANICKED"));
            continue;
        };
        for result in results {
            match result {
                Ok(()) => problems.push(format!("{shown}: accepted")),
                Err(err) => {
                    let text = err.to_string();
                    let debug = format!("{err:?}");
                    if err.var != var && !text.contains(var) {
                        problems.push(format!("{shown}: the error does not name it: {text}"));
                    }
                    if text.contains(SECRET) || debug.contains(SECRET) {
                        problems.push(format!("{shown}: the error shows the password: {debug}"));
                    }
                    if text.len() > 1_000 {
                        problems.push(format!("{shown}: a {}-byte error", text.len()));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn every_bad_setting_is_a_config_error_naming_its_variable() {
    let rows = rows();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    let problems = problems();
    assert!(
        problems.is_empty(),
        "{} of {} rows:\n{}",
        problems.len(),
        rows.len(),
        problems.join("\n")
    );
}

/// Empty values count as unset: an optional setting keeps its default (Docker's `FOO=` and
/// an `.env` line without a value mean "not set").
#[test]
fn empty_optional_values_mean_the_default() {
    let mut vars: Vec<(&str, &str)> = PG_BASE.to_vec();
    for var in [
        "POSTGRES_PORT",
        "POSTGRES_POOL_SIZE",
        "POOL_TIMEOUT",
        "POSTGRES_LOCK_TIMEOUT",
        "POSTGRES_SSLMODE",
        "CREATE_TABLE",
        "SQLITE_LOCK_TIMEOUT",
        "SQLITE_WAL_SIZE_LIMIT",
        "SNAPSHOT_INTERVAL",
        "PERSISTENCE_MODULE",
    ] {
        vars.push((var, " "));
    }
    let env = Env::from_map(vars);
    let pg = PostgresConfig::from_env(&env).unwrap();
    assert_eq!(pg.port(), 5432);
    assert_eq!(pg.pool_size(), 5);
    assert_eq!(pg.lock_timeout(), Duration::ZERO);
    let sqlite = SqliteConfig::from_env(&env).unwrap();
    assert_eq!(sqlite, SqliteConfig::default());
    assert_eq!(
        Snapshotting::from_env(&env).unwrap(),
        Snapshotting::default()
    );
    assert_eq!(StoreKind::from_env(&env).unwrap(), StoreKind::Sqlite);
}

/// PostgreSQL takes `lock_timeout` and `idle_in_transaction_session_timeout` in milliseconds
/// up to INT_MAX (about 24.8 days): the largest is accepted, anything longer is an error
/// naming the variable, never a connection that fails on every `SET`.
#[test]
fn session_timeouts_stop_at_postgresqls_limit() {
    let max = Duration::from_millis(i32::MAX as u64);
    for var in [
        "POSTGRES_LOCK_TIMEOUT",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
    ] {
        let mut vars = PG_BASE.to_vec();
        vars.push((var, "2147483.647"));
        let config = PostgresConfig::from_env(&Env::from_map(vars)).unwrap();
        let got = if var == "POSTGRES_LOCK_TIMEOUT" {
            config.lock_timeout()
        } else {
            config.idle_in_transaction_session_timeout()
        };
        assert_eq!(got, max, "{var}");
        for over in ["2147483.648", "2147484", "31536000"] {
            let mut vars = PG_BASE.to_vec();
            vars.push((var, over));
            let err = PostgresConfig::from_env(&Env::from_map(vars)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().contains(over), "{err}");
        }
    }
    // The builder says the same, naming the setting.
    let base = PostgresConfig::builder().host("h").user("u").dbname("d");
    let err = base
        .clone()
        .lock_timeout(max + Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert_eq!(err.var, "lock_timeout");
    let err = base
        .clone()
        .idle_in_transaction_session_timeout(Duration::from_secs(365 * 24 * 3600))
        .build()
        .unwrap_err();
    assert_eq!(err.var, "idle_in_transaction_session_timeout");
    base.lock_timeout(max).build().unwrap();
}

/// The longest accepted timeouts are ones the server takes.
#[tokio::test]
async fn the_server_accepts_the_longest_session_timeouts() {
    let (_, schema) = eventsourcing::postgres::testing::fresh().await;
    let max = Duration::from_millis(i32::MAX as u64);
    let config = schema
        .config()
        .to_builder()
        .lock_timeout(max)
        .idle_in_transaction_session_timeout(max - Duration::from_nanos(1))
        .build()
        .unwrap();
    let store = eventsourcing::postgres::PostgresStore::connect(config)
        .await
        .unwrap();
    let shown = eventsourcing::postgres::testing::session_timeouts(&store).await;
    let max = "2147483647ms".to_owned();
    assert_eq!(shown, (max.clone(), max));
}

/// SQLite's busy timeout is an `int` of milliseconds too: the builder keeps a longer one at
/// that limit instead of letting the open panic, and the variable refuses it.
#[test]
fn sqlite_lock_timeouts_stop_at_sqlites_limit() {
    let max = Duration::from_millis(i32::MAX as u64);
    let config =
        SqliteConfig::from_env(&Env::from_map([("SQLITE_LOCK_TIMEOUT", "2147483.647")])).unwrap();
    assert_eq!(config.lock_timeout(), max);
    let config = SqliteConfig::builder()
        .dbname(":memory:")
        .lock_timeout(Duration::from_secs(365 * 24 * 3600))
        .build();
    assert_eq!(config.lock_timeout(), max);
    let opened =
        std::panic::catch_unwind(|| eventsourcing::sqlite::SqliteStore::open_blocking(config));
    assert!(
        matches!(opened, Ok(Ok(_))),
        "a year-long lock timeout: {opened:?}"
    );
}

/// The store chosen from the environment fails before opening anything, with the setting's
/// error.
#[tokio::test]
async fn any_store_reports_the_settings_error() {
    for vars in [
        vec![("PERSISTENCE_MODULE", "mongo")],
        vec![
            ("PERSISTENCE_MODULE", "sqlite"),
            ("SQLITE_LOCK_TIMEOUT", "1e20"),
        ],
        vec![("PERSISTENCE_MODULE", "postgres"), ("POSTGRES_HOST", "")],
        vec![
            ("PERSISTENCE_MODULE", "postgres"),
            ("DATABASE_URL", "postgresql://u:hunter2-s3cret-pw@h:x/d"),
        ],
    ] {
        let var = vars.last().unwrap().0;
        match AnyStore::from_env(&Env::from_map(vars.clone())).await {
            Err(Error::Config(err)) => {
                assert_eq!(err.var, var, "{err}");
                assert!(!format!("{err} {err:?}").contains(SECRET), "{err:?}");
            }
            other => panic!("{vars:?}: {other:?}"),
        }
    }
}
