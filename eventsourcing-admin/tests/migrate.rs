//! `migrate` / `init_event_store` and `status` on both stores, `--app`, and bad settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{admin_with, Target};

#[tokio::test]
async fn migrate_creates_the_tables_once_and_status_shows_them() {
    for target in Target::both().await {
        let name = target.name();
        target
            .admin(&["init_event_store"])
            .assert_code(0)
            .assert_stdout("applied migration 1 (");
        target
            .admin(&["migrate"])
            .assert_code(0)
            .assert_stdout("up to date (");

        let run = target.admin(&["status"]);
        run.assert_code(0).assert_stdout("checksum ok");
        assert!(!run.stdout.contains("pending"), "{name}: {}", run.all());

        let json = target.admin(&["status", "--json"]).json();
        assert_eq!(json["pending"], 0, "{name}: {json}");
        assert!(
            json["migrations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["state"] == "applied"),
            "{name}: {json}"
        );
    }
}

#[tokio::test]
async fn postgres_status_before_migrate_lists_pending_migrations_and_the_log_horizon() {
    let target = Target::postgres().await;
    target
        .admin(&["status"])
        .assert_code(0)
        .assert_stdout("pending     1  events")
        .assert_stdout("eventsourcing-admin migrate");

    target.admin(&["migrate"]);
    let json = target.admin(&["status", "--json"]).json();
    assert_eq!(json["log_horizon"]["held_back"], false, "{json}");
}

#[test]
fn sqlite_status_on_a_missing_file_is_a_setting_error_and_creates_nothing() {
    let target = Target::sqlite();
    target
        .admin(&["status"])
        .assert_code(2)
        .assert_stderr("SQLITE_DBNAME");
    let Target::Sqlite { path, .. } = &target else {
        unreachable!()
    };
    assert!(!std::path::Path::new(path).exists());
}

#[tokio::test]
async fn the_app_prefix_wins_over_the_plain_variables() {
    let Target::Postgres { schema } = Target::postgres().await else {
        unreachable!()
    };
    let other = Target::postgres().await;
    // The plain POSTGRES_SCHEMA names `other`; the prefixed one wins with --app.
    other
        .admin_env(
            &["--app", "widgets", "migrate"],
            &[("WIDGETS_POSTGRES_SCHEMA", schema.name().to_owned())],
        )
        .assert_code(0)
        .assert_stdout(schema.name());
    let plain = other.admin(&["status", "--json"]).json();
    assert_eq!(
        plain["pending"],
        eventsourcing::postgres::MIGRATIONS.iter().count(),
        "the plain schema was not migrated: {plain}"
    );
}

#[test]
fn sqlite_reads_the_app_prefix_too() {
    let target = Target::sqlite();
    let Target::Sqlite { dir, .. } = &target else {
        unreachable!()
    };
    let prefixed = dir.path().join("widgets.db").to_string_lossy().into_owned();
    target
        .admin_env(
            &["--app", "widgets", "migrate"],
            &[("WIDGETS_SQLITE_DBNAME", prefixed.clone())],
        )
        .assert_code(0)
        .assert_stdout(&prefixed);
    assert!(std::path::Path::new(&prefixed).exists());
    // The plain SQLITE_DBNAME's file was not created.
    assert_eq!(target.admin(&["status"]).code, 2);
}

#[tokio::test]
async fn bad_settings_exit_2_naming_the_variable() {
    let target = Target::postgres().await;
    target
        .admin_env(
            &["status"],
            &[
                ("DATABASE_URL", String::new()),
                ("POSTGRES_HOST", "127.0.0.1".to_owned()),
                ("POSTGRES_PORT", "x".to_owned()),
            ],
        )
        .assert_code(2)
        .assert_stderr("POSTGRES_PORT");

    admin_with(
        &["status"],
        &[("PERSISTENCE_MODULE", "eventsourcing.mongo".to_owned())],
    )
    .assert_code(2)
    .assert_stderr("PERSISTENCE_MODULE");

    // PostgreSQL settings without PERSISTENCE_MODULE: not a silent SQLite file.
    let dir = tempfile::tempdir().unwrap();
    admin_with(
        &["migrate"],
        &[
            ("DATABASE_URL", eventsourcing_postgres::testing::url()),
            (
                "SQLITE_DBNAME",
                dir.path().join("stray.db").to_string_lossy().into_owned(),
            ),
        ],
    )
    .assert_code(2)
    .assert_stderr("PERSISTENCE_MODULE")
    .assert_stderr("DATABASE_URL");
    assert!(!dir.path().join("stray.db").exists());

    admin_with(&["status"], &[("PERSISTENCE_MODULE", "memory".to_owned())])
        .assert_code(2)
        .assert_stderr("PERSISTENCE_MODULE");
}

#[test]
fn an_unknown_command_exits_2_with_usage_and_help_lists_the_commands() {
    admin_with(&["frobnicate"], &[])
        .assert_code(2)
        .assert_stderr("Usage");

    let run = admin_with(&["--help"], &[]);
    run.assert_code(0);
    for word in ["migrate", "init_event_store", "status", "Exit codes"] {
        run.assert_stdout(word);
    }
    admin_with(&["migrate", "--help"], &[])
        .assert_code(0)
        .assert_stdout("Example");
}

#[test]
fn an_unreachable_postgres_is_an_error_naming_host_and_port() {
    let run = admin_with(
        &["status"],
        &[
            ("PERSISTENCE_MODULE", "eventsourcing.postgres".to_owned()),
            ("POSTGRES_HOST", "127.0.0.1".to_owned()),
            ("POSTGRES_PORT", "1".to_owned()),
            ("POSTGRES_USER", "nobody".to_owned()),
            ("POSTGRES_PASSWORD", "s3cret-pw".to_owned()),
            ("POSTGRES_DBNAME", "nothing".to_owned()),
        ],
    );
    run.assert_code(1).assert_stderr("127.0.0.1:1");
    assert!(!run.all().contains("s3cret-pw"), "{}", run.all());
    assert!(!run.all().contains("panicked"), "{}", run.all());
}
