//! Settings from the environment, the builder and connection strings; the password never shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use eventsourcing_core::{Env, Error};
use eventsourcing_postgres::{
    testing::{join_all, TestSchema},
    PostgresConfig, PostgresConfigBuilder, PostgresStore, SslMode,
};

const SECRET: &str = "hunter2-Sup3r-s3cret";

fn base() -> Vec<(&'static str, String)> {
    vec![
        ("POSTGRES_HOST", "db.example".to_owned()),
        ("POSTGRES_USER", "app".to_owned()),
        ("POSTGRES_DBNAME", "widgets".to_owned()),
    ]
}

fn env_with(extra: &[(&'static str, &str)]) -> Env {
    let mut vars = base();
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Env::from_map(vars)
}

/// Every setting a config shows, to compare a config with what a case expects in one go.
#[derive(Debug, Clone, PartialEq)]
struct Seen<'a> {
    host: String,
    port: u16,
    user: Option<&'a str>,
    dbname: Option<&'a str>,
    has_password: bool,
    password: Option<&'a [u8]>,
    schema: &'a str,
    ssl_mode: SslMode,
    ssl_root_cert: Option<&'a Path>,
    pool_size: u32,
    max_overflow: u32,
    max_connections: u32,
    pool_timeout: Duration,
    connect_timeout: Option<Duration>,
    recycle: Option<Duration>,
    pre_ping: bool,
    max_waiting: Option<u32>,
    lock_timeout: Duration,
    idle_in_transaction_session_timeout: Duration,
    create_table: bool,
}

impl<'a> Seen<'a> {
    fn of(config: &'a PostgresConfig) -> Self {
        let pg = config.tokio_postgres_config();
        Seen {
            host: config.host(),
            port: config.port(),
            user: config.user(),
            dbname: config.dbname(),
            has_password: config.has_password(),
            password: pg.get_password(),
            schema: config.schema(),
            ssl_mode: config.ssl_mode(),
            ssl_root_cert: config.ssl_root_cert(),
            pool_size: config.pool_size(),
            max_overflow: config.max_overflow(),
            max_connections: config.max_connections(),
            pool_timeout: config.pool_timeout(),
            connect_timeout: pg.get_connect_timeout().copied(),
            recycle: config.recycle(),
            pre_ping: config.pre_ping(),
            max_waiting: config.max_waiting(),
            lock_timeout: config.lock_timeout(),
            idle_in_transaction_session_timeout: config.idle_in_transaction_session_timeout(),
            create_table: config.create_table(),
        }
    }

    /// The Python library's defaults, with [`base`]'s host, user and database.
    fn defaults() -> Self {
        Seen {
            host: "db.example".into(),
            port: 5432,
            user: Some("app"),
            dbname: Some("widgets"),
            has_password: false,
            password: None,
            schema: "public",
            ssl_mode: SslMode::Prefer,
            ssl_root_cert: None,
            pool_size: 5,
            max_overflow: 10,
            max_connections: 15,
            pool_timeout: Duration::from_secs(30),
            connect_timeout: Some(Duration::from_secs(30)),
            recycle: Some(Duration::from_secs(3600)),
            pre_ping: false,
            max_waiting: None,
            lock_timeout: Duration::ZERO,
            idle_in_transaction_session_timeout: Duration::from_secs(5),
            create_table: true,
        }
    }
}

/// Fails, naming `what`, unless the settings read from `env` are exactly `expected`.
#[track_caller]
fn assert_reads(env: &Env, expected: &Seen<'_>, what: &str) {
    let config = PostgresConfig::from_env(env).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(Seen::of(&config), *expected, "{what}");
}

/// What setting one Python name sets.
type Sets = fn(&mut Seen<'static>);

/// Each Python name and what it sets: read alone (on top of [`base`]) and all at once.
#[test]
fn every_python_name_is_read_alone_and_together() {
    let names: [(&str, &str, Sets); 17] = [
        ("POSTGRES_HOST", "h1", |s| s.host = "h1".into()),
        ("POSTGRES_PORT", "6432", |s| s.port = 6432),
        ("POSTGRES_USER", "u1", |s| s.user = Some("u1")),
        ("POSTGRES_PASSWORD", SECRET, |s| {
            s.has_password = true;
            s.password = Some(SECRET.as_bytes());
        }),
        ("POSTGRES_DBNAME", "d1", |s| s.dbname = Some("d1")),
        ("POSTGRES_SCHEMA", "events_here", |s| {
            s.schema = "events_here"
        }),
        ("POSTGRES_POOL_SIZE", "20", |s| {
            s.pool_size = 20;
            s.max_connections = 20 + s.max_overflow;
        }),
        ("POSTGRES_MAX_OVERFLOW", "7", |s| {
            s.max_overflow = 7;
            s.max_connections = s.pool_size + 7;
        }),
        ("POSTGRES_CONNECT_TIMEOUT", "2.5", |s| {
            s.pool_timeout = Duration::from_millis(2500);
            s.connect_timeout = Some(Duration::from_millis(2500));
        }),
        ("POSTGRES_CONN_MAX_AGE", "60", |s| {
            s.recycle = Some(Duration::from_secs(60))
        }),
        ("POSTGRES_PRE_PING", "y", |s| s.pre_ping = true),
        ("POSTGRES_MAX_WAITING", "3", |s| s.max_waiting = Some(3)),
        ("POSTGRES_LOCK_TIMEOUT", "1.5", |s| {
            s.lock_timeout = Duration::from_millis(1500)
        }),
        ("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "0", |s| {
            s.idle_in_transaction_session_timeout = Duration::ZERO
        }),
        ("POSTGRES_SSLMODE", "verify-full", |s| {
            s.ssl_mode = SslMode::VerifyFull
        }),
        ("POSTGRES_SSLROOTCERT", "/certs/ca.pem", |s| {
            s.ssl_root_cert = Some(Path::new("/certs/ca.pem"))
        }),
        ("CREATE_TABLE", "n", |s| s.create_table = false),
    ];
    let mut together = Seen::defaults();
    for (var, value, sets) in names {
        let mut alone = Seen::defaults();
        sets(&mut alone);
        assert_reads(
            &env_with(&[(var, value)]),
            &alone,
            &format!("{var}={value} alone"),
        );
        sets(&mut together);
    }
    let all: Vec<_> = names.iter().map(|(var, value, _)| (*var, *value)).collect();
    assert_reads(&env_with(&all), &together, "every name at once");
    assert_eq!(together.max_connections, 27);
}

/// The settings read from each environment: aliases, prefixes, URL.
#[test]
fn settings_are_read_from_the_environment() {
    let defaults = Seen::defaults();
    let required = Seen {
        host: "h".into(),
        user: Some("u"),
        ..defaults.clone()
    };
    let cases = [
        (
            "only the required: the Python library's defaults",
            env_with(&[]),
            defaults.clone(),
        ),
        (
            "the seed's aliases (POOL_RECYCLE=0: never recycle)",
            Env::from_map([
                ("POSTGRES_HOST", "h"),
                ("POSTGRES_USER", "u"),
                ("POSTGRES_DB", "widget_service"),
                ("POOL_SIZE", "20"),
                ("POOL_MAX_OVERFLOW", "10"),
                ("POOL_TIMEOUT", "30"),
                ("POOL_RECYCLE", "0"),
                ("POOL_PRE_PING", "yes"),
            ]),
            Seen {
                dbname: Some("widget_service"),
                pool_size: 20,
                max_connections: 30,
                recycle: None,
                pre_ping: true,
                ..required.clone()
            },
        ),
        (
            "the Python name wins over the seed's alias (POSTGRES_DBNAME over POSTGRES_DB)",
            env_with(&[
                ("POSTGRES_POOL_SIZE", "9"),
                ("POOL_SIZE", "7"),
                ("POSTGRES_DB", "other"),
            ]),
            Seen {
                pool_size: 9,
                max_connections: 19,
                ..defaults.clone()
            },
        ),
        (
            "the application prefix wins for every name and alias (a prefixed alias beats an \
             unprefixed name)",
            Env::from_map([
                ("POSTGRES_HOST", "plain"),
                ("WIDGETS_POSTGRES_HOST", "prefixed"),
                ("POSTGRES_USER", "u"),
                ("POSTGRES_DB", "plain_db"),
                ("WIDGETS_POSTGRES_DB", "prefixed_db"),
                ("POSTGRES_POOL_SIZE", "3"),
                ("WIDGETS_POOL_SIZE", "11"),
                ("POSTGRES_SCHEMA", "plain_schema"),
                ("WIDGETS_POSTGRES_SCHEMA", "widgets"),
                ("CREATE_TABLE", "y"),
                ("WIDGETS_CREATE_TABLE", "n"),
            ])
            .with_app_name("widgets"),
            Seen {
                host: "prefixed".into(),
                dbname: Some("prefixed_db"),
                pool_size: 11,
                max_connections: 21,
                schema: "widgets",
                create_table: false,
                ..required.clone()
            },
        ),
        (
            "DATABASE_URL gives what it contains and variables fill the rest",
            Env::from_map([
                (
                    "DATABASE_URL",
                    "postgresql://url_user:url%20pw@url-host:7777/url_db?sslmode=require",
                ),
                ("POSTGRES_HOST", "ignored-host"),
                ("POSTGRES_SCHEMA", "from_var"),
                ("POOL_SIZE", "2"),
            ]),
            Seen {
                host: "url-host".into(),
                port: 7777,
                user: Some("url_user"),
                dbname: Some("url_db"),
                has_password: true,
                password: Some(b"url pw"),
                ssl_mode: SslMode::Require,
                schema: "from_var",
                pool_size: 2,
                max_connections: 12,
                ..defaults.clone()
            },
        ),
        (
            "a DATABASE_URL without user and database takes them from the variables",
            Env::from_map([
                ("DATABASE_URL", "postgres://only-host"),
                ("POSTGRES_USER", "var_user"),
                ("POSTGRES_DB", "var_db"),
                ("POSTGRES_PASSWORD", SECRET),
            ]),
            Seen {
                host: "only-host".into(),
                user: Some("var_user"),
                dbname: Some("var_db"),
                has_password: true,
                password: Some(SECRET.as_bytes()),
                ..defaults.clone()
            },
        ),
    ];
    for (what, env, expected) in cases {
        assert_reads(&env, &expected, what);
    }
}

/// A leftover `POSTGRES_SSLMODE` never weakens (or changes) the URL's `sslmode`, in either
/// direction, and the URL's `sslrootcert` wins too; without one in the URL the variable applies.
#[test]
fn the_url_sslmode_wins_over_a_leftover_variable() {
    for (url_mode, var_mode, expected) in [
        ("verify-full", "prefer", SslMode::VerifyFull),
        ("verify-full", "disable", SslMode::VerifyFull),
        ("require", "verify-ca", SslMode::Require),
        ("disable", "require", SslMode::Disable),
    ] {
        let env = Env::from_map([
            (
                "DATABASE_URL".to_owned(),
                format!("postgresql://u:pw@db.example/d?sslmode={url_mode}&sslrootcert=%2Furl.pem"),
            ),
            ("POSTGRES_SSLMODE".to_owned(), var_mode.to_owned()),
            ("POSTGRES_SSLROOTCERT".to_owned(), "/var.pem".to_owned()),
        ]);
        let config = PostgresConfig::from_env(&env).unwrap();
        assert_eq!(config.ssl_mode(), expected, "{url_mode} vs {var_mode}");
        assert_eq!(
            config.ssl_root_cert(),
            Some(std::path::Path::new("/url.pem"))
        );
    }
    let env = Env::from_map([
        ("DATABASE_URL", "postgresql://u:pw@db.example/d"),
        ("POSTGRES_SSLMODE", "verify-full"),
        ("POSTGRES_SSLROOTCERT", "/var.pem"),
    ]);
    let config = PostgresConfig::from_env(&env).unwrap();
    assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(
        config.ssl_root_cert(),
        Some(std::path::Path::new("/var.pem"))
    );
}

#[test]
fn password_file_is_read_and_its_newline_dropped() {
    let path = std::env::temp_dir().join(format!("es-pw-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let env = env_with(&[("POSTGRES_PASSWORD_FILE", path.to_str().unwrap())]);
    let config = PostgresConfig::from_env(&env).unwrap();
    assert_eq!(
        config.tokio_postgres_config().get_password(),
        Some(SECRET.as_bytes())
    );

    // Both at the same level: an error naming both, showing neither value.
    let env = env_with(&[
        ("POSTGRES_PASSWORD_FILE", path.to_str().unwrap()),
        ("POSTGRES_PASSWORD", SECRET),
    ]);
    let err = PostgresConfig::from_env(&env).unwrap_err();
    assert!(err.to_string().contains("POSTGRES_PASSWORD_FILE"), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");

    // A prefixed one wins over a plain one.
    let env = env_with(&[
        ("POSTGRES_PASSWORD", "plain"),
        ("APP_POSTGRES_PASSWORD_FILE", path.to_str().unwrap()),
    ])
    .with_app_name("app");
    let config = PostgresConfig::from_env(&env).unwrap();
    assert_eq!(
        config.tokio_postgres_config().get_password(),
        Some(SECRET.as_bytes())
    );
    std::fs::remove_file(&path).unwrap();

    let env = env_with(&[("POSTGRES_PASSWORD_FILE", "/nonexistent/es-password")]);
    let err = PostgresConfig::from_env(&env).unwrap_err();
    assert_eq!(err.var, "POSTGRES_PASSWORD_FILE");
    assert!(
        err.to_string().contains("/nonexistent/es-password"),
        "{err}"
    );
}

#[test]
fn missing_and_malformed_values_name_the_variable() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("POSTGRES_USER", "u"), ("POSTGRES_DB", "d")],
            "POSTGRES_HOST",
        ),
        (
            vec![("POSTGRES_HOST", "h"), ("POSTGRES_DB", "d")],
            "POSTGRES_USER",
        ),
        (
            vec![("POSTGRES_HOST", "h"), ("POSTGRES_USER", "u")],
            "POSTGRES_DBNAME",
        ),
    ];
    for (vars, expected) in cases {
        let err = PostgresConfig::from_env(&Env::from_map(vars)).unwrap_err();
        assert_eq!(err.var, expected, "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    let malformed = [
        ("POSTGRES_PORT", "54x"),
        ("POOL_SIZE", "many"),
        ("POSTGRES_MAX_OVERFLOW", "-1"),
        ("POOL_TIMEOUT", "soon"),
        ("POOL_TIMEOUT", "0"),
        ("POSTGRES_CONN_MAX_AGE", "-5"),
        ("POOL_PRE_PING", "perhaps"),
        ("POSTGRES_MAX_WAITING", "lots"),
        ("POSTGRES_LOCK_TIMEOUT", "1s"),
        ("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "x"),
        ("POSTGRES_SSLMODE", "allow-ish"),
        ("CREATE_TABLE", "maybe"),
        ("DATABASE_URL", "postgresql://u@h:notaport/d"),
    ];
    for (var, value) in malformed {
        let err = PostgresConfig::from_env(&env_with(&[(var, value)])).unwrap_err();
        assert_eq!(err.var, var, "{var}={value}: {err}");
        assert!(err.to_string().contains(var), "{err}");
    }
    // With a prefix, the error names the variable as found.
    let env = env_with(&[("WIDGETS_POOL_TIMEOUT", "later")]).with_app_name("widgets");
    let err = PostgresConfig::from_env(&env).unwrap_err();
    assert_eq!(err.var, "WIDGETS_POOL_TIMEOUT");
    // A pool of no connections.
    let err =
        PostgresConfig::from_env(&env_with(&[("POOL_SIZE", "0"), ("POOL_MAX_OVERFLOW", "0")]))
            .unwrap_err();
    assert_eq!(err.var, "POOL_SIZE");
}

/// A builder with the required settings: host `h`, user `u`, database `d`.
fn complete() -> PostgresConfigBuilder {
    PostgresConfig::builder().host("h").user("u").dbname("d")
}

#[test]
fn the_builder_checks_required_settings() {
    for (var, builder) in [
        ("host", PostgresConfig::builder().user("u").dbname("d")),
        ("user", PostgresConfig::builder().host("h").dbname("d")),
        ("pool_timeout", complete().pool_timeout(Duration::ZERO)),
        ("schema", complete().schema("")),
    ] {
        assert_eq!(builder.build().unwrap_err().var, var);
    }
    let config = complete()
        .pool_size(1)
        .max_overflow(0)
        .recycle(None)
        .max_waiting(Some(0))
        .build()
        .unwrap();
    assert_eq!(config.max_connections(), 1);
    assert_eq!(config.recycle(), None);
}

#[test]
fn connection_strings_in_both_syntaxes() {
    let a: PostgresConfig = "host=h port=1234 user=u dbname=d sslmode=disable"
        .parse()
        .unwrap();
    let b: PostgresConfig = "postgres://u@h:1234/d?sslmode=disable".parse().unwrap();
    for c in [&a, &b] {
        assert_eq!(
            (c.host(), c.port(), c.user(), c.dbname(), c.ssl_mode()),
            ("h".to_owned(), 1234, Some("u"), Some("d"), SslMode::Disable)
        );
    }
    // The builder's host and port replace what the string gave (tokio-postgres' own setters
    // would append a second host or port).
    let c = b
        .to_builder()
        .host("other,backup")
        .port(99)
        .build()
        .unwrap();
    assert_eq!((c.host(), c.port()), ("other,backup".to_owned(), 99));
    assert_eq!(c.tokio_postgres_config().get_ports(), &[99]);
    assert_eq!(c.ssl_mode(), SslMode::Disable, "everything else is kept");
    let err = "host=h user=u dbname=d sslmode=sometimes"
        .parse::<PostgresConfig>()
        .unwrap_err();
    assert!(err.to_string().contains("sslmode"), "{err}");
}

#[test]
fn the_password_never_appears_in_debug() {
    let from_env = PostgresConfig::from_env(&env_with(&[("POSTGRES_PASSWORD", SECRET)])).unwrap();
    let from_builder = complete().password(SECRET).build().unwrap();
    let from_url: PostgresConfig = format!("postgresql://u:{SECRET}@h/d").parse().unwrap();
    for config in [from_env, from_builder, from_url] {
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        let builder = format!("{:?}", config.to_builder());
        assert!(!builder.contains(SECRET), "{builder}");
    }
}

fn server() -> PostgresConfig {
    eventsourcing_postgres::testing::server_config()
}

#[tokio::test]
async fn the_password_never_appears_in_connection_errors() {
    // Nothing listens on port 1.
    let refused = server()
        .to_builder()
        .port(1)
        .password(SECRET)
        .pool_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // A role that does not exist on the real server.
    let unknown_role = server()
        .to_builder()
        .user("es_no_such_role")
        .password(SECRET)
        .build()
        .unwrap();
    for config in [refused, unknown_role] {
        let err = PostgresStore::connect(config).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, Error::Store(_)), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("cannot connect to PostgreSQL at"), "{shown}");
        eprintln!("{err}");
    }
}

#[tokio::test]
async fn the_password_never_appears_in_the_stores_debug() {
    let schema = TestSchema::new().await;
    // The test server trusts local connections, so a password is accepted and ignored.
    let store = schema.store_with(|b| b.password(SECRET)).await;
    let shown = format!("{store:?} {store:#?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("PostgresStore"), "{shown}");
}

#[tokio::test]
async fn session_timeouts_are_set_on_every_connection() {
    let schema = TestSchema::new().await;
    let store = schema
        .store_with(|b| {
            b.lock_timeout(Duration::from_millis(1500))
                .idle_in_transaction_session_timeout(Duration::from_secs(7))
        })
        .await;
    let shown = eventsourcing_postgres::testing::session_timeouts(&store).await;
    assert_eq!(shown, ("1500ms".to_owned(), "7s".to_owned()));
}

#[tokio::test]
async fn max_waiting_fails_fast_when_every_connection_is_taken() {
    use eventsourcing_core::EventStore;
    let schema = TestSchema::new().await;
    let store = schema
        .store_with(|b| {
            b.pool_size(1)
                .max_overflow(0)
                .max_waiting(Some(0))
                .pool_timeout(Duration::from_secs(2))
        })
        .await;
    // Fifty calls at once on one connection with no one allowed to wait: some fail at once.
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.stream_version(uuid::Uuid::new_v4()).await })
        })
        .collect();
    let mut refused = 0;
    for called in join_all(calls, Duration::from_secs(60), "the fifty calls").await {
        if let Err(e) = called {
            assert!(e.to_string().contains("POSTGRES_MAX_WAITING"), "{e}");
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "with one connection and no waiting allowed, some calls fail fast"
    );
}
