//! `tenants move`: one tenant moved to another shard of `TENANT_SHARDS`.

use std::path::PathBuf;

use eventsourcing::{
    backup::Counts, move_tenant_with_progress, tenants_from_env, MoveError, TenantId,
};
use serde::Serialize;

use super::failure;
use crate::{
    commands::export::{all, finish, shown},
    output::Failure,
    store::Context,
};

/// Move a tenant to another shard: pause it (in this process), fence its copy on the old
/// shard (writes from any process fail there from then on), export it, create and import it on
/// the new shard, check the counts and write the directory (`TENANT_DIRECTORY`).
///
/// On any failure nothing changes: the tenant stays on its old shard, unfenced, and the
/// directory is untouched. After a move, the old shard keeps its copy, fenced: check the new
/// one, then drop the old one. Other processes serving the tenant get errors for its writes
/// until they reload the directory and reopen the tenant. Projections' read-model tables are
/// not copied: rebuild them on the new shard.
///
/// Example: `TENANT_LAYOUT=schema TENANT_SHARDS=eu1,eu2 TENANT_DIRECTORY=/etc/app/tenants
/// EU2_POSTGRES_HOST=db2 eventsourcing-admin tenants move acme --to eu2`
#[derive(Debug, clap::Args)]
pub(crate) struct MoveArgs {
    /// The tenant id.
    #[arg(value_name = "ID")]
    id: String,
    /// The shard to move it to (one of TENANT_SHARDS).
    #[arg(long, value_name = "SHARD")]
    to: String,
    /// Where the tenant's export is written while it moves (removed afterwards); it needs room
    /// for the whole tenant, compressed. Default: the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Moved {
    tenant: String,
    from: String,
    to: String,
    counts: Counts,
    fenced: bool,
}

pub(crate) async fn run(args: MoveArgs, ctx: &Context) -> Result<(), Failure> {
    let tenant = TenantId::new(&args.id).map_err(|e| failure(e.into()))?;
    let work_dir = args.work_dir.unwrap_or_else(std::env::temp_dir);
    if !work_dir.is_dir() {
        return Err(Failure::Usage(format!(
            "--work-dir `{}` is not a directory",
            work_dir.display()
        )));
    }
    let tenants = tenants_from_env(&ctx.env())?;
    let (progress, display) = shown("moving");
    let moved = move_tenant_with_progress(&tenants, &tenant, &args.to, &work_dir, progress).await;
    finish(&display);
    let moved = moved.map_err(|e| match e {
        MoveError::NotSharded
        | MoveError::UnknownShard { .. }
        | MoveError::AlreadyThere { .. }
        | MoveError::NoTenant { .. } => Failure::Usage(e.to_string()),
        MoveError::Store(e) => failure(e),
        other => Failure::Failed(other.to_string()),
    })?;
    let report = Moved {
        tenant: moved.tenant.to_string(),
        from: moved.from,
        to: moved.to,
        counts: moved.counts,
        fenced: moved.fenced,
    };
    ctx.out.report(&report, |m| {
        format!(
            "tenant {}: moved from shard {} to shard {} ({})\n\
             the copy on {} is kept{}: check the new one, then drop the old one\n",
            m.tenant,
            m.from,
            m.to,
            all(&m.counts),
            m.from,
            if m.fenced {
                ", fenced (writes to it fail)"
            } else {
                ""
            },
        )
    })
}
