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

/// Every bad value of every variable, one row each, sorted by variable.
fn rows() -> Vec<(&'static str, String)> {
    let long = "9".repeat(10_000);
    let long_word = "x".repeat(100_000);
    let mut rows: Vec<(&'static str, String)> = Vec::new();
    let mut bad = |var: &'static str, values: &[&str]| {
        rows.extend(values.iter().map(|value| (var, (*value).to_owned())));
    };
    // The store.
    bad(
        "PERSISTENCE_MODULE",
        &["eventsourcing.mongo", "sqlite3", "postgres\0", &long_word],
    );
    // PostgreSQL: required values given empty or blank count as missing.
    bad(
        "POSTGRES_HOST",
        &["", "   ", "db\0.example", "db1,,db2", ","],
    );
    bad(
        "POSTGRES_PORT",
        &["0", "-1", "65536", "54x", "5432.5", "NaN"],
    );
    bad("POSTGRES_USER", &["", "\t", "app\0"]);
    bad("POSTGRES_PASSWORD", &[&format!("{SECRET}\0")]);
    bad(
        "POSTGRES_PASSWORD_FILE",
        &["/nonexistent/es-password", "/tmp\0/pw"],
    );
    bad("POSTGRES_DBNAME", &["", "  ", "wid\0gets"]);
    bad("POSTGRES_DB", &["", "\0"]);
    bad("POSTGRES_SCHEMA", &["a\0b", &"s".repeat(64)]);
    bad(
        "POSTGRES_SSLMODE",
        &["allow-ish", "verify full", "1", &long_word],
    );
    bad("POSTGRES_SSLROOTCERT", &["/etc/ca\0.pem"]);
    bad(
        "POSTGRES_POOL_SIZE",
        &["-1", "many", "2.5", "99999999999999999999", "4294967295"],
    );
    bad("POOL_SIZE", &["1e20", "inf", &long, "5\0"]);
    bad("POSTGRES_MAX_OVERFLOW", &["-10"]);
    bad("POOL_MAX_OVERFLOW", &["ten", "4294967295"]);
    bad("POSTGRES_CONNECT_TIMEOUT", &["0", "-1"]);
    bad("POOL_TIMEOUT", &["NaN", "inf", "1e20", "30s"]);
    bad("POSTGRES_CONN_MAX_AGE", &["-5"]);
    bad("POOL_RECYCLE", &["99999999999999999999", "an hour"]);
    bad("POSTGRES_PRE_PING", &["perhaps"]);
    bad("POOL_PRE_PING", &["2", "y\0"]);
    bad("POSTGRES_MAX_WAITING", &["-1", "lots", "1.5"]);
    // 31536000 s, a year: past PostgreSQL's INT_MAX milliseconds.
    bad(
        "POSTGRES_LOCK_TIMEOUT",
        &["31536000", "2147484", "-0.5", "1s", "NaN"],
    );
    bad(
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        &["31536000", "-inf", "x"],
    );
    bad("CREATE_TABLE", &["maybe", "yess", "-1"]);
    // A malformed URL with a password in it: the password must never show.
    let urls = [
        format!("postgresql://app:{SECRET}@db:notaport/d"),
        format!("postgresql://app:{SECRET}@db:99999/d"),
        format!("postgresql://app:{SECRET}@db/d?sslmode=sometimes"),
        format!("postgresql://app:{SECRET}@db/d?{SECRET}&x=1"),
        format!("postgresql://app:{SECRET}@[db/d"),
        format!("host=db password={SECRET} port=nope"),
        format!("host=db password {SECRET}"),
        format!("host=db password='{SECRET}"),
        format!("postgresql://app:{SECRET}@db/d?sslrootcert=%FF"),
        format!("postgresql://app%00:{SECRET}@db/d"),
    ];
    bad("DATABASE_URL", &urls.each_ref().map(String::as_str));
    // SQLite; 31536000 s (a year) is past SQLite's INT_MAX milliseconds too.
    bad("SQLITE_DBNAME", &["widgets\0.db", "\0"]);
    bad("SQLITE_LOCK_TIMEOUT", &["-1", "31536000", "inf", "five"]);
    bad("SQLITE_SYNCHRONOUS", &["off", "0", "fullest"]);
    bad(
        "SQLITE_WAL_SIZE_LIMIT",
        &[
            "-1",
            "64MB",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
        ],
    );
    // Snapshots.
    bad("IS_SNAPSHOTTING_ENABLED", &["sometimes", "2"]);
    bad(
        "SNAPSHOT_INTERVAL",
        &["0", "-10", "2.5", "1e20", "99999999999999999999"],
    );
    bad("MAX_SNAPSHOTS", &["0", "NaN", "five"]);
    // The application-prefixed forms name the prefixed variable.
    bad("WIDGETS_PERSISTENCE_MODULE", &["mongo"]);
    bad("WIDGETS_POSTGRES_HOST", &["h\0"]);
    bad("WIDGETS_POOL_SIZE", &["-1"]);
    bad("WIDGETS_POSTGRES_LOCK_TIMEOUT", &["31536000"]);
    bad("WIDGETS_SQLITE_LOCK_TIMEOUT", &["1e20"]);
    bad("WIDGETS_SQLITE_WAL_SIZE_LIMIT", &["lots"]);
    bad("WIDGETS_CREATE_TABLE", &["maybe"]);
    bad("WIDGETS_SNAPSHOT_INTERVAL", &["0"]);
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
