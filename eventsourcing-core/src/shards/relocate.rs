//! [`move_tenant`]: one tenant moved to another shard through the backup format, with only
//! that tenant paused.

use std::{
    io::BufWriter,
    path::{Path, PathBuf},
};

use super::Shards;
use crate::{
    backup::{sync_file, Backup, BackupError, Counts},
    codec::Codec,
    error::Error,
    tenant_id::TenantId,
    tenants::{TenantStores, Tenants},
};

/// What [`move_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantMoved {
    /// The tenant moved.
    pub tenant: TenantId,
    /// The shard it was on (its store there is kept, unchanged).
    pub from: String,
    /// The shard it is on now.
    pub to: String,
    /// What was copied.
    pub counts: Counts,
}

/// Why a move did not happen. After any of these the tenant is still on its old shard, which
/// holds everything it held, and requests for it go there again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoveError {
    /// The tenant is already on the shard named.
    #[error("tenant `{tenant}` is already on shard `{shard}`")]
    AlreadyThere {
        /// The tenant.
        tenant: String,
        /// Its shard.
        shard: String,
    },
    /// No shard has that name.
    #[error("no shard `{shard}`")]
    UnknownShard {
        /// The name given.
        shard: String,
    },
    /// The export from the old shard or the import into the new one failed; the import writes
    /// all or nothing, and into an empty store only ([`BackupError::NotEmpty`] if the tenant
    /// already has data on the new shard: an earlier move there, say; remove it first).
    #[error("moving tenant `{tenant}` from `{from}` to `{to}`: {source}")]
    Copy {
        /// The tenant.
        tenant: String,
        /// The old shard.
        from: String,
        /// The new shard.
        to: String,
        /// What failed.
        #[source]
        source: BackupError,
    },
    /// Pausing the tenant, opening, creating or closing a store, or writing the directory
    /// failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Removes the move's file however the move ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Moves `tenant` to shard `to`:
///
/// 1. pauses it ([`Tenants::pause`]: waits until no request uses it and closes its store;
///    requests for it wait meanwhile, other tenants go on);
/// 2. exports its store on the old shard to a file in `work_dir` (synced), creates the
///    tenant on the new shard (applying the migrations) and imports the file there (all or
///    nothing, checked whole first), and checks the counts;
/// 3. writes the directory (atomically), then lets requests in again: they open the tenant
///    on its new shard.
///
/// Nothing is lost: the tenant takes no write between the export and the switch, and on any
/// failure the directory still names the old shard. The old shard's copy is kept; remove it
/// once the new one is checked. The file in `work_dir` is removed at the end.
///
/// The pause holds for this registry only: stop other processes' writes to the tenant first
/// (or run them on this registry).
pub async fn move_tenant<T, C>(
    tenants: &Tenants<Shards<T>, C>,
    tenant: &TenantId,
    to: &str,
    work_dir: &Path,
) -> Result<TenantMoved, MoveError>
where
    T: TenantStores,
    T::Store: Backup,
    C: Codec,
{
    let shards = tenants.stores();
    let target = shards.shard(to).ok_or_else(|| MoveError::UnknownShard {
        shard: to.to_owned(),
    })?;
    let from = shards.directory().shard_of(tenant);
    if from == to {
        return Err(MoveError::AlreadyThere {
            tenant: tenant.to_string(),
            shard: from,
        });
    }
    let source = shards.of(tenant);
    let copy_failed = |source: BackupError| MoveError::Copy {
        tenant: tenant.to_string(),
        from: from.clone(),
        to: to.to_owned(),
        source,
    };
    let paused = tenants.pause(tenant).await?;
    tracing::info!(%tenant, from = %from, to, "moving a tenant");
    let connections = shards.min_connections();
    let file = TempFile(work_dir.join(format!(".{tenant}.move-{from}-to-{to}.backup")));

    let store = source.open(tenant, connections).await?;
    let exported = export(&store, &file.0).await;
    source.close(store).await;
    let exported = exported.map_err(copy_failed)?;

    target.create(tenant).await?;
    let store = target.open(tenant, connections).await?;
    let imported = store.import(&file.0).await;
    target.close(store).await;
    let imported = imported.map_err(copy_failed)?;
    if imported != exported {
        return Err(copy_failed(BackupError::Counts {
            expected: exported,
            found: imported,
        }));
    }

    shards.directory().place(tenant, to)?;
    drop(paused);
    tracing::info!(%tenant, from = %from, to, events = exported.events, "moved a tenant");
    Ok(TenantMoved {
        tenant: tenant.clone(),
        from,
        to: to.to_owned(),
        counts: exported,
    })
}

/// Exports `store` to a new file at `path`, synced.
async fn export<S: Backup>(store: &S, path: &Path) -> Result<Counts, BackupError> {
    let out = BufWriter::new(std::fs::File::create(path)?);
    let (out, counts) = store.export(out).await?;
    sync_file(out, path)?;
    Ok(counts)
}
