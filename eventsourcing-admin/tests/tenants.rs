//! `tenants create|migrate|list`, `grants print|apply` and `append-only on|off|status`, run
//! through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{admin_with, Target};
use eventsourcing::{
    postgres::{
        testing::{self, DropTenants, TestRole},
        tokio_postgres::{error::SqlState, Client},
        PostgresTenants,
    },
    TenantStores, Uuid,
};

/// Tenant schemas `<prefix>_<random>_{id}` on the test server, dropped afterwards: the
/// registry's stores and the variables that point the binary at them.
fn schema_tenants(prefix: &str) -> (DropTenants, Vec<(&'static str, String)>) {
    let pattern = format!("{}_{{id}}", testing::unique_name(prefix));
    let config = testing::server_config()
        .to_builder()
        .schema(pattern.clone())
        .build()
        .unwrap();
    let vars = vec![
        ("DATABASE_URL", testing::url()),
        ("TENANT_LAYOUT", "schema".to_owned()),
        ("POSTGRES_SCHEMA", pattern),
    ];
    (DropTenants(PostgresTenants::schema(config).unwrap()), vars)
}

#[tokio::test]
async fn tenants_create_list_and_migrate_with_progress_and_refuse_bad_ids() {
    let (tenants, vars) = schema_tenants("es_adm");

    admin_with(&["tenants", "create", "acme", "globex"], &vars)
        .assert_code(0)
        .assert_stdout(&format!(
            "tenant acme: ready ({} migrations",
            eventsourcing::postgres::MIGRATIONS.iter().count()
        ));

    // One bad id: refused before anything is created.
    admin_with(&["tenants", "create", "initech", "a b"], &vars)
        .assert_code(2)
        .assert_stderr("invalid tenant id \"a b\"");
    for bad in ["..", "pg_x", "postgres", &"x".repeat(200)] {
        admin_with(&["tenants", "create", bad], &vars).assert_code(2);
    }

    let json = admin_with(&["tenants", "list", "--json"], &vars).json();
    assert_eq!(json, serde_json::json!(["acme", "globex"]));
    assert_eq!(tenants.0.list().await.unwrap().len(), 2);

    admin_with(&["tenants", "migrate"], &vars)
        .assert_code(0)
        .assert_stdout("2 tenants migrated")
        .assert_stderr("tenants 1/2: acme")
        .assert_stderr("tenants 2/2: globex");

    let cloud = [("TENANT_LAYOUT", "cloud".to_owned())];
    admin_with(&["tenants", "list"], &cloud)
        .assert_code(2)
        .assert_stderr("TENANT_LAYOUT");
}

#[test]
fn tenant_files_are_created_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let vars = vec![
        ("TENANT_LAYOUT", "file".to_owned()),
        (
            "SQLITE_DBNAME",
            dir.path().join("t_{id}.db").to_string_lossy().into_owned(),
        ),
    ];
    admin_with(&["tenants", "create", "b", "a"], &vars).assert_code(0);
    assert!(dir.path().join("t_a.db").exists());
    assert_eq!(admin_with(&["tenants", "list"], &vars).stdout, "a\nb\n");
    admin_with(&["tenants", "create", "../x"], &vars).assert_code(2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// A PostgreSQL schema migrated by the binary, a client of its server (as the owner, the test's
/// login) and the schema's events table as SQL names it.
async fn migrated_postgres() -> (Target, Client, String) {
    let target = Target::postgres().await;
    target.admin(&["migrate"]).assert_code(0);
    let Target::Postgres { schema } = &target else {
        unreachable!()
    };
    let owner = schema.client().await.unwrap();
    let events = format!("\"{}\".events", schema.name());
    (target, owner, events)
}

#[tokio::test]
async fn grants_print_and_apply_give_the_role_no_right_to_change_events() {
    let (target, owner, events) = migrated_postgres().await;
    let guard = TestRole::new("es_admrole").await;
    let role = guard.name();

    target
        .admin(&["grants", "print", role])
        .assert_code(0)
        .assert_stdout(&format!("GRANT SELECT, INSERT ON {events} TO \"{role}\";"));

    target.admin(&["grants", "apply", role]).assert_code(0);
    let row = owner
        .query_one(
            "SELECT has_table_privilege($1, $2, 'INSERT'), has_table_privilege($1, $2, 'UPDATE'), \
                    has_table_privilege($1, $2, 'DELETE'), has_table_privilege($1, $2, 'TRUNCATE')",
            &[&role, &events],
        )
        .await
        .unwrap();
    let rights: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(rights, (true, false, false, false));
}

#[tokio::test]
async fn append_only_on_refuses_the_owner_and_off_lifts_it() {
    let (target, owner, events) = migrated_postgres().await;

    for _ in 0..2 {
        target
            .admin(&["append-only", "on"])
            .assert_code(0)
            .assert_stdout("append-only on");
    }
    let err = owner
        .batch_execute(&format!("DELETE FROM {events}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let json = target.admin(&["append-only", "status", "--json"]).json();
    assert_eq!(json[0]["append_only"], true, "{json}");

    target.admin(&["append-only", "off"]).assert_code(0);
    owner
        .batch_execute(&format!("DELETE FROM {events}"))
        .await
        .unwrap();
    let json = target.admin(&["append-only", "status", "--json"]).json();
    assert_eq!(json[0]["append_only"], false, "{json}");
}

#[tokio::test]
async fn grants_and_append_only_for_every_tenant_let_the_role_run_each_tenant() {
    use eventsourcing::{EventStore, NewEvent, TenantLimits, Tenants};

    let (tenants, vars) = schema_tenants("es_admg");
    admin_with(&["tenants", "create", "acme", "globex"], &vars).assert_code(0);
    let role = TestRole::new("es_admrole").await;

    admin_with(&["grants", "apply", role.name(), "--tenants"], &vars)
        .assert_code(0)
        .assert_stdout("-- applied tenant acme")
        .assert_stdout("-- applied tenant globex");
    let run = admin_with(&["append-only", "on", "--tenants"], &vars);
    run.assert_code(0);
    assert_eq!(
        run.stdout.matches("append-only on").count(),
        2,
        "{}",
        run.all()
    );

    // The application: the role, CREATE_TABLE=n, a registry over the same tenants.
    let app = PostgresTenants::schema(
        testing::server_config()
            .to_builder()
            .user(role.name())
            .schema(tenants.0.pattern().to_string())
            .create_table(false)
            .build()
            .unwrap(),
    )
    .unwrap();
    let tenants = Tenants::new(app, TenantLimits::default()).unwrap();
    for id in ["acme", "globex"] {
        let tenant = tenants.get(id).await.unwrap();
        let stream = Uuid::new_v4();
        tenant
            .store()
            .append(vec![NewEvent::new(stream, 1, "Made", b"{}".to_vec())])
            .await
            .unwrap();
        assert_eq!(tenant.store().load(stream, 0, None).await.unwrap().len(), 1);
        let client = tenant.store().dedicated_client().await.unwrap();
        let schema = tenant.store().config().schema().to_owned();
        let err = client
            .batch_execute(&format!("DELETE FROM \"{schema}\".events"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    }
}

#[tokio::test]
async fn tenants_move_copies_a_tenant_to_another_shard_fences_the_old_copy_and_refuses_bad_moves() {
    use eventsourcing::{EventStore, NewEvent, TenantLimits, Tenants};

    // Two shards: tenant schemas of two patterns, standing for two servers.
    let (eu1, mut vars) = schema_tenants("es_admsh1");
    let (eu2, eu2_vars) = schema_tenants("es_admsh2");
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("tenants");
    let plain = vars.clone();
    vars.push(("TENANT_SHARDS", "eu1,eu2".to_owned()));
    vars.push(("TENANT_DIRECTORY", directory.display().to_string()));
    vars.push(("EU2_POSTGRES_SCHEMA", eu2_vars[2].1.clone()));

    admin_with(&["tenants", "create", "acme", "globex"], &vars).assert_code(0);
    assert!(
        eu2.0.list().await.unwrap().is_empty(),
        "new tenants go to the first shard"
    );
    let on_eu1 = Tenants::new(eu1.0.clone(), TenantLimits::default()).unwrap();
    let stream = Uuid::new_v4();
    let events: Vec<NewEvent> = (1..=3)
        .map(|v| NewEvent::new(stream, v, "Made", format!("{{\"n\":{v}}}").into_bytes()))
        .collect();
    on_eu1
        .get("acme")
        .await
        .unwrap()
        .store()
        .append(events)
        .await
        .unwrap();
    on_eu1.close_idle().await;

    admin_with(&["tenants", "move", "acme", "--to", "eu2"], &vars)
        .assert_code(0)
        .assert_stdout("tenant acme: moved from shard eu1 to shard eu2 (3 events, 0 snapshots")
        .assert_stdout("fenced");
    let written = std::fs::read_to_string(&directory).unwrap();
    assert!(written.contains("acme = eu2"), "{written}");
    assert_eq!(
        admin_with(&["tenants", "list"], &vars).stdout,
        "acme\nglobex\n"
    );

    // The new shard holds the events; the old copy refuses writes.
    let on_eu2 = Tenants::new(eu2.0.clone(), TenantLimits::default()).unwrap();
    let moved = on_eu2.get("acme").await.unwrap();
    let loaded = moved.store().load(stream, 0, None).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(loaded[2].payload, b"{\"n\":3}");
    let old = on_eu1.get("acme").await.unwrap();
    let refused = old
        .store()
        .append(vec![NewEvent::new(
            Uuid::new_v4(),
            1,
            "Made",
            b"{}".to_vec(),
        )])
        .await;
    assert!(refused.is_err(), "the old copy still takes writes");
    drop((old, moved));

    // Refused moves change nothing.
    for (args, says) in [
        (&["acme", "--to", "eu2"][..], "already on shard `eu2`"),
        (&["globex", "--to", "eu3"], "no shard `eu3`"),
        (&["initech", "--to", "eu2"], "does not exist"),
        (&["../x", "--to", "eu2"], "invalid tenant id"),
    ] {
        let mut all = vec!["tenants", "move"];
        all.extend_from_slice(args);
        admin_with(&all, &vars).assert_code(2).assert_stderr(says);
    }
    assert_eq!(std::fs::read_to_string(&directory).unwrap(), written);
    assert_eq!(eu2.0.list().await.unwrap().len(), 1);
    admin_with(&["tenants", "move", "globex", "--to", "eu2"], &plain)
        .assert_code(2)
        .assert_stderr("not sharded");
    let mut no_directory = plain.clone();
    no_directory.push(("TENANT_SHARDS", "eu1,eu2".to_owned()));
    admin_with(&["tenants", "list"], &no_directory)
        .assert_code(2)
        .assert_stderr("TENANT_DIRECTORY");
}
