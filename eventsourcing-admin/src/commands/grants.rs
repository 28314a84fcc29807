//! `grants print|apply ROLE`: the exact rights an application role needs on a PostgreSQL
//! store, and nothing that changes or removes an event (see the `roles` module of
//! `eventsourcing-postgres`).

use eventsourcing::postgres::{roles, PostgresConfig, PostgresStore, PostgresTenants};
use serde::Serialize;

use crate::{output::Failure, store::Context};

/// Print or apply the grants of an application role (PostgreSQL).
///
/// The role may read and append events, write snapshots, tracking positions and parked
/// events, and read the migrations table; never UPDATE, DELETE or TRUNCATE events, never
/// create anything. Run the application as it with `CREATE_TABLE=n`; run `migrate` and
/// `grants apply` as the owner.
///
/// Example: `eventsourcing-admin grants print app_role`, `eventsourcing-admin grants apply app_role --tenants`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Args {
    Print(RoleArgs),
    Apply(RoleArgs),
}

/// The role, and where.
#[derive(Debug, clap::Args)]
pub(crate) struct RoleArgs {
    /// The application role (used as given, quoted).
    #[arg(value_name = "ROLE")]
    role: String,
    /// For every tenant of TENANT_LAYOUT (database or schema) instead of the one store.
    #[arg(long)]
    tenants: bool,
}

#[derive(Debug, Serialize)]
struct Target {
    target: String,
    statements: Vec<String>,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let (apply, role) = match args {
        Args::Print(r) => (false, r),
        Args::Apply(r) => (true, r),
    };
    if role.role.trim().is_empty() || role.role.contains('\0') {
        return Err(Failure::Usage(
            "the role name is empty or holds a NUL".into(),
        ));
    }
    let mut report = Vec::new();
    for (target, config) in postgres_targets(ctx, role.tenants).await? {
        let statements = roles::grant_statements(
            config.dbname().unwrap_or_default(),
            config.schema(),
            &role.role,
        );
        if apply {
            let store = PostgresStore::connect_pool_only(config).await?;
            store.apply_grants(&role.role).await?;
        }
        report.push(Target { target, statements });
    }
    ctx.out.report(&report, |targets| {
        targets
            .iter()
            .map(|t| {
                let verb = if apply { "applied" } else { "for" };
                let lines: String = t.statements.iter().map(|s| format!("{s};\n")).collect();
                format!("-- {verb} {}\n{lines}", t.target)
            })
            .collect()
    })
}

/// The PostgreSQL stores to work on: the one the environment names, or with `tenants` every
/// tenant of `TENANT_LAYOUT`; each with a one-connection pool that issues no DDL.
pub(crate) async fn postgres_targets(
    ctx: &Context,
    tenants: bool,
) -> Result<Vec<(String, PostgresConfig)>, Failure> {
    use eventsourcing::{AnyTenantStores, TenantStores};
    let env = ctx.env();
    let one = |c: PostgresConfig| -> Result<PostgresConfig, Failure> {
        Ok(c.to_builder()
            .create_table(false)
            .pool_size(0)
            .max_overflow(1)
            .build()?)
    };
    if !tenants {
        let config = one(PostgresConfig::from_env(&env)?)?;
        let target = format!(
            "{} schema {}",
            config.dbname().unwrap_or("?"),
            config.schema()
        );
        return Ok(vec![(target, config)]);
    }
    // Every tenant on every server, the copies a move left on its old shard included.
    let any = AnyTenantStores::from_env(&env)?;
    let servers: Vec<(String, &PostgresTenants)> = match &any {
        AnyTenantStores::Postgres(stores) => vec![(String::new(), &**stores)],
        AnyTenantStores::PostgresShards(shards) => shards
            .directory()
            .shards()
            .iter()
            .filter_map(|name| Some((format!(" on shard {name}"), shards.shard(name)?)))
            .collect(),
        _ => {
            return Err(Failure::Usage(
                "--tenants needs TENANT_LAYOUT=database or schema (PostgreSQL)".into(),
            ))
        }
    };
    let mut targets = Vec::new();
    for (shard, stores) in servers {
        for tenant in stores.list().await? {
            let config = one(stores.tenant_config(&tenant, 1)?)?;
            targets.push((format!("tenant {tenant}{shard}"), config));
        }
    }
    Ok(targets)
}
