//! `tenants create|migrate|list`, `grants print|apply` and `append-only on|off|status`, run
//! through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{admin_with, Target};
use eventsourcing::{
    postgres::{testing, tokio_postgres::error::SqlState, PostgresConfig, PostgresTenants},
    TenantStores, Uuid,
};

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Drops the tenant schemas of `pattern` when dropped.
struct Cleanup(PostgresTenants);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stores = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for tenant in stores.list().await.unwrap_or_default() {
                    let _ = stores.drop_tenant(&tenant).await;
                }
            })
        })
        .join();
    }
}

#[tokio::test]
async fn tenants_create_list_and_migrate_with_progress_and_refuse_bad_ids() {
    let pattern = format!("{}_{{id}}", unique("es_adm"));
    let config: PostgresConfig = testing::url().parse().unwrap();
    let stores =
        PostgresTenants::schema(config.to_builder().schema(pattern.clone()).build().unwrap())
            .unwrap();
    let _cleanup = Cleanup(stores.clone());
    let vars = vec![
        ("DATABASE_URL", testing::url()),
        ("TENANT_LAYOUT", "schema".to_owned()),
        ("POSTGRES_SCHEMA", pattern),
    ];

    let run = admin_with(&["tenants", "create", "acme", "globex"], &vars);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("tenant acme: ready (5 migrations"),
        "{}",
        run.all()
    );

    // One bad id: refused before anything is created.
    let run = admin_with(&["tenants", "create", "initech", "a b"], &vars);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("invalid tenant id \"a b\""),
        "{}",
        run.all()
    );
    for bad in ["..", "pg_x", "postgres", &"x".repeat(200)] {
        assert_eq!(
            admin_with(&["tenants", "create", bad], &vars).code,
            2,
            "{bad}"
        );
    }

    let json = admin_with(&["tenants", "list", "--json"], &vars).json();
    assert_eq!(json, serde_json::json!(["acme", "globex"]));
    assert_eq!(stores.list().await.unwrap().len(), 2);

    let run = admin_with(&["tenants", "migrate"], &vars);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("2 tenants migrated"), "{}", run.all());
    assert!(run.stderr.contains("tenants 1/2: acme"), "{}", run.all());
    assert!(run.stderr.contains("tenants 2/2: globex"), "{}", run.all());

    let run = admin_with(
        &["tenants", "list"],
        &[("TENANT_LAYOUT", "cloud".to_owned())],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("TENANT_LAYOUT"), "{}", run.all());
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
    let run = admin_with(&["tenants", "create", "b", "a"], &vars);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(dir.path().join("t_a.db").exists());
    assert_eq!(admin_with(&["tenants", "list"], &vars).stdout, "a\nb\n");
    assert_eq!(admin_with(&["tenants", "create", "../x"], &vars).code, 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[tokio::test]
async fn grants_print_and_apply_give_the_role_no_right_to_change_events() {
    let target = Target::postgres().await;
    assert_eq!(target.admin(&["migrate"]).code, 0);
    let Target::Postgres { schema } = &target else {
        unreachable!()
    };
    let role = unique("es_admrole");
    let owner = schema.client().await.unwrap();
    owner
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();

    let run = target.admin(&["grants", "print", &role]);
    assert_eq!(run.code, 0, "{}", run.all());
    let events = format!("\"{}\".events", schema.name());
    assert!(
        run.stdout
            .contains(&format!("GRANT SELECT, INSERT ON {events} TO \"{role}\";")),
        "{}",
        run.all()
    );

    let run = target.admin(&["grants", "apply", &role]);
    assert_eq!(run.code, 0, "{}", run.all());
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
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn append_only_on_refuses_the_owner_and_off_lifts_it() {
    let target = Target::postgres().await;
    assert_eq!(target.admin(&["migrate"]).code, 0);
    let Target::Postgres { schema } = &target else {
        unreachable!()
    };
    let owner = schema.client().await.unwrap();
    let events = format!("\"{}\".events", schema.name());

    for _ in 0..2 {
        let run = target.admin(&["append-only", "on"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(run.stdout.contains("append-only on"), "{}", run.all());
    }
    let err = owner
        .batch_execute(&format!("DELETE FROM {events}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let json = target.admin(&["append-only", "status", "--json"]).json();
    assert_eq!(json[0]["append_only"], true, "{json}");

    let run = target.admin(&["append-only", "off"]);
    assert_eq!(run.code, 0, "{}", run.all());
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

    let pattern = format!("{}_{{id}}", unique("es_admg"));
    let config: PostgresConfig = testing::url().parse().unwrap();
    let stores =
        PostgresTenants::schema(config.to_builder().schema(pattern.clone()).build().unwrap())
            .unwrap();
    let _cleanup = Cleanup(stores.clone());
    let vars = vec![
        ("DATABASE_URL", testing::url()),
        ("TENANT_LAYOUT", "schema".to_owned()),
        ("POSTGRES_SCHEMA", pattern.clone()),
    ];
    assert_eq!(
        admin_with(&["tenants", "create", "acme", "globex"], &vars).code,
        0
    );
    let role = unique("es_admrole");
    let owner = testing::TestSchema::new().await.client().await.unwrap();
    owner
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();

    let run = admin_with(&["grants", "apply", &role, "--tenants"], &vars);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("-- applied tenant acme"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("-- applied tenant globex"),
        "{}",
        run.all()
    );
    let run = admin_with(&["append-only", "on", "--tenants"], &vars);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.stdout.matches("append-only on").count(),
        2,
        "{}",
        run.all()
    );

    // The application: the role, CREATE_TABLE=n, a registry over the same tenants.
    let app = PostgresTenants::schema(
        config
            .to_builder()
            .user(role.clone())
            .schema(pattern)
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
    drop(tenants);
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}
