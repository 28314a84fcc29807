//! Settings from the environment: defaults, prefixes, and errors that name the variable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsourcing_core::{Env, Error};
use eventsourcing_sqlite::{SqliteConfig, SqliteStore, Synchronous, DEFAULT_DBNAME};

#[test]
fn defaults_with_nothing_set() {
    let config = SqliteConfig::from_env(&Env::from_map([("UNRELATED", "x")])).unwrap();
    assert_eq!(config.dbname(), DEFAULT_DBNAME);
    assert_eq!(config.lock_timeout(), Duration::from_secs(5));
    assert_eq!(config.synchronous(), Synchronous::Full);
    assert!(config.create_table());
    assert!(!config.is_memory());
}

#[test]
fn every_variable_is_read() {
    let env = Env::from_map([
        ("SQLITE_DBNAME", ":memory:"),
        ("SQLITE_LOCK_TIMEOUT", "2.5"),
        ("SQLITE_SYNCHRONOUS", "Normal"),
        ("CREATE_TABLE", "no"),
    ]);
    let config = SqliteConfig::from_env(&env).unwrap();
    assert!(config.is_memory());
    assert_eq!(config.lock_timeout(), Duration::from_millis(2500));
    assert_eq!(config.synchronous(), Synchronous::Normal);
    assert!(!config.create_table());
}

#[test]
fn the_application_prefix_wins() {
    let env = Env::from_map([
        ("SQLITE_DBNAME", "plain.db"),
        ("WIDGETS_SQLITE_DBNAME", "widgets.db"),
        ("CREATE_TABLE", "y"),
        ("WIDGETS_CREATE_TABLE", "n"),
    ])
    .with_app_name("widgets");
    let config = SqliteConfig::from_env(&env).unwrap();
    assert_eq!(config.dbname(), "widgets.db");
    assert!(!config.create_table());
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
