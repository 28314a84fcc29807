//! [`move_tenant`]: one tenant moved to another shard through the backup format, with only
//! that tenant paused.

use std::{
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{AsShards, Shards};
use crate::{
    backup::{no_progress, sync_file, Backup, BackupError, Counts, Progress},
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
    /// Whether the old shard's copy was fenced ([`TenantStores::fence`]): every write to it
    /// from any process fails from the moment of the export. Without a fence only this
    /// registry's requests were held.
    pub fenced: bool,
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
    /// The registry's tenants are on one server: there is no other shard to move to.
    #[error("the tenants are not sharded (set TENANT_SHARDS and TENANT_DIRECTORY)")]
    NotSharded,
    /// The tenant's shard does not hold it (it was never created).
    #[error("tenant `{tenant}` does not exist on its shard `{shard}`")]
    NoTenant {
        /// The tenant.
        tenant: String,
        /// The shard the directory places it on.
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
///    requests for it wait meanwhile, other tenants go on), and fences its store on the old
///    shard ([`TenantStores::fence`]: writes from other processes fail from then on, once the
///    ones under way have committed);
/// 2. exports its store on the old shard to a file in `work_dir` (synced), creates the
///    tenant on the new shard (applying the migrations) and imports the file there (all or
///    nothing, checked whole first), and checks the counts;
/// 3. writes the directory (atomically), then lets requests in again: they open the tenant
///    on its new shard.
///
/// Nothing is lost: the tenant takes no write between the export and the switch, and on any
/// failure the directory still names the old shard (and the fence is lifted). The old shard's
/// copy is kept, fenced; remove it once the new one is checked. The file in `work_dir` is
/// removed at the end.
///
/// Other processes serving the tenant get an error for each write to the fenced copy until
/// they reload the directory ([`ShardDirectory::reload`](super::ShardDirectory::reload)) and
/// reopen the tenant ([`Tenants::close_idle`]). On stores that cannot fence (the default of
/// [`TenantStores::fence`]; SQLite files) stop the other processes' writes first.
///
/// What a move copies is what export copies: events, snapshots, consumers' tracking positions
/// and parked events, not the tables projections write their read models to. Copy those
/// too, or rebuild the projections on the new shard (from a cleared tracking position).
pub async fn move_tenant<S, C>(
    tenants: &Tenants<S, C>,
    tenant: &TenantId,
    to: &str,
    work_dir: &Path,
) -> Result<TenantMoved, MoveError>
where
    S: AsShards,
    <S::Shard as TenantStores>::Store: Backup,
    C: Codec,
{
    move_tenant_with_progress(tenants, tenant, to, work_dir, no_progress()).await
}

/// [`move_tenant`], calling `progress` every [`PROGRESS_EVERY`](crate::backup::PROGRESS_EVERY)
/// records: with `(done, 0)` while exporting from the old shard, then `(done, total)` while
/// importing into the new one.
pub async fn move_tenant_with_progress<S, C>(
    tenants: &Tenants<S, C>,
    tenant: &TenantId,
    to: &str,
    work_dir: &Path,
    progress: Progress,
) -> Result<TenantMoved, MoveError>
where
    S: AsShards,
    <S::Shard as TenantStores>::Store: Backup,
    C: Codec,
{
    let shards = tenants.stores().as_shards().ok_or(MoveError::NotSharded)?;
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
    if !source.list().await?.contains(tenant) {
        return Err(MoveError::NoTenant {
            tenant: tenant.to_string(),
            shard: from,
        });
    }
    let paused = tenants.pause(tenant).await?;
    let fenced = source.fence(tenant).await?;
    if !fenced {
        tracing::warn!(
            %tenant,
            "these tenant stores cannot fence a tenant: only this registry's requests are held \
             while it moves"
        );
    }
    tracing::info!(%tenant, from = %from, to, fenced, "moving a tenant");
    let places = Places {
        work_dir,
        from: &from,
        to,
    };
    match copy(shards, tenant, source, target, places, progress).await {
        Ok(counts) => {
            drop(paused);
            tracing::info!(%tenant, from = %from, to, events = counts.events, "moved a tenant");
            Ok(TenantMoved {
                tenant: tenant.clone(),
                from,
                to: to.to_owned(),
                counts,
                fenced,
            })
        }
        Err(e) => {
            if fenced {
                if let Err(unfence) = source.unfence(tenant).await {
                    tracing::error!(
                        %tenant,
                        error = %unfence,
                        "a move failed and the tenant's writes stay fenced on its shard: \
                         lift the fence (TenantStores::unfence) once the cause is fixed"
                    );
                }
            }
            Err(e)
        }
    }
}

/// The copy of a move: export, create, import, check, and the directory written.
/// Where a move goes: its work directory and the two shards' names.
#[derive(Clone, Copy)]
struct Places<'a> {
    work_dir: &'a Path,
    from: &'a str,
    to: &'a str,
}

async fn copy<T>(
    shards: &Shards<T>,
    tenant: &TenantId,
    source: &T,
    target: &T,
    Places { work_dir, from, to }: Places<'_>,
    progress: Progress,
) -> Result<Counts, MoveError>
where
    T: TenantStores,
    T::Store: Backup,
{
    let copy_failed = |source: BackupError| MoveError::Copy {
        tenant: tenant.to_string(),
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    };
    let connections = shards.min_connections();
    let file = TempFile(work_dir.join(format!(".{tenant}.move-{from}-to-{to}.backup")));

    let store = source.open(tenant, connections).await?;
    // One callback for both passes.
    let progress = Arc::new(Mutex::new(progress));
    let pass = || -> Progress {
        let progress = Arc::clone(&progress);
        Box::new(move |done, total| {
            if let Ok(mut call) = progress.lock() {
                call(done, total);
            }
        })
    };
    let exported = export(&store, &file.0, pass()).await;
    source.close(store).await;
    let exported = exported.map_err(copy_failed)?;

    target.create(tenant).await?;
    let store = target.open(tenant, connections).await?;
    let imported = store.import_with_progress(&file.0, pass()).await;
    target.close(store).await;
    let imported = imported.map_err(copy_failed)?;
    if imported != exported {
        return Err(copy_failed(BackupError::Counts {
            expected: exported,
            found: imported,
        }));
    }
    shards.directory().place(tenant, to)?;
    Ok(exported)
}

/// Exports `store` to a new file at `path`, synced.
async fn export<S: Backup>(
    store: &S,
    path: &Path,
    progress: Progress,
) -> Result<Counts, BackupError> {
    let out = BufWriter::new(std::fs::File::create(path)?);
    let (out, counts) = store.export_with_progress(out, progress).await?;
    sync_file(out, path)?;
    Ok(counts)
}
