//! Settings from the environment: defaults, prefixes, and errors that name the variable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsourcing_core::{Env, Error};
use eventsourcing_sqlite::{SqliteConfig, SqliteStore, Synchronous, DEFAULT_DBNAME};

/// Every setting a config shows, to compare a config with what a case expects in one go.
#[derive(Debug, Clone, PartialEq)]
struct Seen<'a> {
    dbname: &'a str,
    lock_timeout: Duration,
    synchronous: Synchronous,
    create_table: bool,
    readers: usize,
    wal_size_limit: Option<u64>,
    memory: bool,
}

impl<'a> Seen<'a> {
    fn of(config: &'a SqliteConfig) -> Self {
        Seen {
            dbname: config.dbname(),
            lock_timeout: config.lock_timeout(),
            synchronous: config.synchronous(),
            create_table: config.create_table(),
            readers: config.readers(),
            wal_size_limit: config.wal_size_limit(),
            memory: config.is_memory(),
        }
    }
}

/// The settings read from each environment: defaults, every variable, prefixes.
#[test]
fn settings_are_read_from_the_environment() {
    let defaults = Seen {
        dbname: DEFAULT_DBNAME,
        lock_timeout: Duration::from_secs(5),
        synchronous: Synchronous::Full,
        create_table: true,
        readers: 4,
        wal_size_limit: Some(64 << 20),
        memory: false,
    };
    let cases = [
        (
            "nothing set: the defaults",
            Env::from_map([("UNRELATED", "x")]),
            defaults.clone(),
        ),
        (
            "every variable is read",
            Env::from_map([
                ("SQLITE_DBNAME", ":memory:"),
                ("SQLITE_LOCK_TIMEOUT", "2.5"),
                ("SQLITE_SYNCHRONOUS", "Normal"),
                ("CREATE_TABLE", "no"),
            ]),
            Seen {
                dbname: ":memory:",
                lock_timeout: Duration::from_millis(2500),
                synchronous: Synchronous::Normal,
                create_table: false,
                memory: true,
                ..defaults.clone()
            },
        ),
        (
            "the application prefix wins",
            Env::from_map([
                ("SQLITE_DBNAME", "plain.db"),
                ("WIDGETS_SQLITE_DBNAME", "widgets.db"),
                ("CREATE_TABLE", "y"),
                ("WIDGETS_CREATE_TABLE", "n"),
            ])
            .with_app_name("widgets"),
            Seen {
                dbname: "widgets.db",
                create_table: false,
                ..defaults.clone()
            },
        ),
    ];
    for (what, env, expected) in cases {
        let config = SqliteConfig::from_env(&env).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(Seen::of(&config), expected, "{what}");
    }
}

#[test]
fn malformed_values_name_the_variable() {
    for (var, value) in [
        ("SQLITE_LOCK_TIMEOUT", "soon"),
        ("SQLITE_LOCK_TIMEOUT", "-1"),
        ("SQLITE_SYNCHRONOUS", "off"),
        ("CREATE_TABLE", "maybe"),
    ] {
        let err = SqliteConfig::from_env(&Env::from_map([(var, value)])).unwrap_err();
        assert_eq!(err.var, var);
        let message = err.to_string();
        assert!(
            message.contains(var) && message.contains(value),
            "{message}"
        );
    }
    // With a prefix, the error names the variable that was actually read.
    let env = Env::from_map([("SHOP_SQLITE_LOCK_TIMEOUT", "5s")]).with_app_name("shop");
    let err = SqliteConfig::from_env(&env).unwrap_err();
    assert_eq!(err.var, "SHOP_SQLITE_LOCK_TIMEOUT");
}

#[tokio::test]
async fn from_env_reports_a_bad_setting_as_a_config_error() {
    let env = Env::from_map([("SQLITE_DBNAME", ":memory:"), ("CREATE_TABLE", "perhaps")]);
    match SqliteStore::from_env(&env).await {
        Err(Error::Config(err)) => assert_eq!(err.var, "CREATE_TABLE"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn memory_names() {
    for name in [
        ":memory:",
        "",
        "file::memory:",
        "file:db1?mode=memory&cache=shared",
    ] {
        assert!(SqliteConfig::new(name).is_memory(), "{name}");
    }
    for name in [
        "events.db",
        "file:events.db",
        "file:/tmp/x.db?mode=rwc",
        "memory.db",
    ] {
        assert!(!SqliteConfig::new(name).is_memory(), "{name}");
    }
}

#[test]
fn synchronous_parses_and_displays() {
    for level in [Synchronous::Full, Synchronous::Normal, Synchronous::Extra] {
        assert_eq!(level.to_string().parse::<Synchronous>().unwrap(), level);
    }
    assert!("OFF".parse::<Synchronous>().is_err());
}

#[tokio::test]
async fn file_uris_are_accepted() {
    let guard = eventsourcing_sqlite::testing::TempGuard::new();
    let uri = format!("file:{}?mode=rwc", guard.dbname());
    let store = SqliteStore::open(SqliteConfig::new(uri)).await.unwrap();
    drop(store);
    assert!(guard.path().exists());
}
