//! `tenants create|migrate|list|move`: the tenants of `TENANT_LAYOUT` (a PostgreSQL database or
//! schema each, or a SQLite file each), over the servers of `TENANT_SHARDS`.

use eventsourcing::{migrate_tenants, AnyTenantStores, Error, TenantError, TenantId, TenantStores};
use serde::Serialize;

use crate::{output::Failure, progress::Progress, store::Context};

mod relocate;

/// Create, migrate and list tenants.
///
/// The tenants come from `TENANT_LAYOUT` (`database`, `schema` or `file`) and the name
/// pattern in the store's own variable: `POSTGRES_DBNAME=tenant_{id}` (a database each),
/// `POSTGRES_SCHEMA=tenant_{id}` (a schema each in `POSTGRES_DBNAME`), or
/// `SQLITE_DBNAME=/var/lib/app/tenant_{id}.sqlite` (a file each). The database layout creates
/// and lists databases from `TENANT_ADMIN_DBNAME` (default `postgres`). Run it as the owner
/// role. With `TENANT_SHARDS=eu1,eu2` and `TENANT_DIRECTORY=FILE` the tenants are spread over
/// several servers, each configured by its own `EU2_POSTGRES_*` variables (falling back to
/// `POSTGRES_*`), and `tenants move` moves one.
///
/// Example: `TENANT_LAYOUT=database POSTGRES_DBNAME='tenant_{id}' eventsourcing-admin tenants create acme`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Args {
    Create(CreateArgs),
    Migrate(MigrateArgs),
    List(ListArgs),
    Move(relocate::MoveArgs),
}

/// Create tenants (their database, schema or file) and apply the migrations; a tenant that
/// exists is only migrated.
///
/// A tenant id is 1 to 63 characters of a-z, 0-9, `_` and `-`, not starting with `pg_` and
/// not a reserved name (`postgres`, `template0`, `template1`, `public`,
/// `information_schema`); a bad id is refused (exit 2) before anything is created.
///
/// Example: `eventsourcing-admin tenants create acme globex`
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The tenant ids.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
}

/// Apply the pending migrations to every tenant, one at a time, with progress on stderr.
///
/// A tenant that fails is reported and the others are still migrated; the exit code is then 1.
///
/// Example: `eventsourcing-admin tenants migrate`
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {}

/// List the tenants that exist.
///
/// Example: `eventsourcing-admin tenants list --json`
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    if let Args::Move(args) = args {
        return relocate::run(args, ctx).await;
    }
    let stores = AnyTenantStores::from_env(&ctx.env())?;
    match args {
        Args::Move(_) => Ok(()),
        Args::Create(args) => create(&stores, args, ctx).await,
        Args::Migrate(_) => migrate(&stores, ctx).await,
        Args::List(_) => list(&stores, ctx).await,
    }
}

/// A tenant failure as the tool reports it: a bad id is a usage error (exit 2).
pub(crate) fn failure(e: Error) -> Failure {
    match e {
        Error::Tenant(e @ TenantError::InvalidId { .. }) => Failure::Usage(e.to_string()),
        other => Failure::from(other),
    }
}

#[derive(Debug, Serialize)]
struct Created {
    tenant: String,
    applied: Vec<u32>,
}

async fn create(stores: &AnyTenantStores, args: CreateArgs, ctx: &Context) -> Result<(), Failure> {
    // Every id is checked before anything is created.
    let ids = args
        .ids
        .iter()
        .map(|id| TenantId::new(id).map_err(|e| failure(e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut created = Vec::new();
    for tenant in ids {
        let report = stores.create(&tenant).await.map_err(failure)?;
        created.push(Created {
            tenant: tenant.to_string(),
            applied: report.applied_versions(),
        });
    }
    ctx.out.report(&created, |created| {
        created
            .iter()
            .map(|c| {
                format!(
                    "tenant {}: ready ({} migrations applied now)\n",
                    c.tenant,
                    c.applied.len()
                )
            })
            .collect()
    })
}

#[derive(Debug, Serialize)]
struct Migrated {
    migrated: Vec<String>,
    failed: Vec<(String, String)>,
}

async fn migrate(stores: &AnyTenantStores, ctx: &Context) -> Result<(), Failure> {
    let mut progress: Option<Progress> = None;
    let report = migrate_tenants(stores, |p| {
        let bar = progress.get_or_insert_with(|| Progress::new("tenants", p.total as u64));
        if let Err(e) = p.result {
            eprintln!("tenant {}: {e}", p.tenant);
        }
        bar.step(p.done - 1, p.total, p.tenant.as_str());
        bar.set(p.done as u64, p.total as u64);
    })
    .await
    .map_err(failure)?;
    if let Some(bar) = progress {
        bar.finish();
    }
    let report = Migrated {
        migrated: report.migrated.iter().map(ToString::to_string).collect(),
        failed: report
            .failed
            .iter()
            .map(|(t, e)| (t.to_string(), e.to_string()))
            .collect(),
    };
    ctx.out.report(&report, |r| {
        let mut text = format!("{} tenants migrated", r.migrated.len());
        if !r.failed.is_empty() {
            text.push_str(&format!(", {} failed", r.failed.len()));
        }
        text
    })?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Problems(format!(
            "the migration of {} tenants failed",
            report.failed.len()
        )))
    }
}

async fn list(stores: &AnyTenantStores, ctx: &Context) -> Result<(), Failure> {
    let tenants: Vec<String> = stores
        .list()
        .await
        .map_err(failure)?
        .iter()
        .map(ToString::to_string)
        .collect();
    ctx.out.report(&tenants, |t| {
        t.iter().map(|id| format!("{id}\n")).collect::<String>()
    })
}
