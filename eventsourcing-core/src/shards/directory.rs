//! [`ShardDirectory`]: which shard (server) holds which tenant, in a file the operator edits.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use crate::{error::Error, tenant_id::TenantId, ConfigError};

/// The variable naming the directory file.
pub const TENANT_DIRECTORY: &str = "TENANT_DIRECTORY";

/// Which shard holds each tenant: the tenants the file lists go to the shard it names, every
/// other tenant to the default shard (the first one).
///
/// The file (`TENANT_DIRECTORY`) holds one `tenant = shard` line per tenant placed off the
/// default shard; `#` starts a comment. For example:
///
/// ```text
/// # tenants on the second server
/// acme = eu2
/// globex = eu2
/// ```
///
/// A missing file is an empty directory. The file is read when the directory is loaded and
/// again by [`reload`](Self::reload) (after an operator edited it); [`move_tenant`](super::move_tenant)
/// rewrites it, atomically (a new file renamed over the old one), before the moved tenant is
/// let in again.
#[derive(Debug)]
pub struct ShardDirectory {
    path: Option<PathBuf>,
    shards: Vec<String>,
    placed: Mutex<BTreeMap<TenantId, String>>,
}

impl ShardDirectory {
    /// A directory kept in memory only: every tenant on `shards[0]` until placed elsewhere.
    pub fn in_memory(shards: Vec<String>) -> Result<Self, Error> {
        check_names(&shards)?;
        Ok(ShardDirectory {
            path: None,
            shards,
            placed: Mutex::default(),
        })
    }

    /// The directory in the file at `path` (missing: empty) over the shards `shards` (the
    /// first is the default). A line that is not `tenant = shard`, a bad tenant id, a shard
    /// not in `shards` or a tenant listed twice is an error naming the file and line.
    pub fn load(path: impl Into<PathBuf>, shards: Vec<String>) -> Result<Self, Error> {
        check_names(&shards)?;
        let path = path.into();
        let placed = read(&path, &shards)?;
        Ok(ShardDirectory {
            path: Some(path),
            shards,
            placed: Mutex::new(placed),
        })
    }

    /// Reads the file again (after an operator edited it). Tenants already open stay where
    /// they are until they are closed; on an error the directory is unchanged.
    pub fn reload(&self) -> Result<(), Error> {
        if let Some(path) = &self.path {
            let placed = read(path, &self.shards)?;
            *self.lock() = placed;
        }
        Ok(())
    }

    /// The shards' names, the default first.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The shard holding `tenant`.
    pub fn shard_of(&self, tenant: &TenantId) -> String {
        self.lock()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.shards[0].clone())
    }

    /// The tenants placed off the default shard, and where.
    pub fn placed(&self) -> BTreeMap<TenantId, String> {
        self.lock().clone()
    }

    /// Places `tenant` on `shard`, writing the file first (on an error nothing changes).
    pub(crate) fn place(&self, tenant: &TenantId, shard: &str) -> Result<(), Error> {
        if !self.shards.iter().any(|s| s == shard) {
            return Err(unknown_shard(shard, &self.shards));
        }
        let mut placed = self.lock();
        let mut next = placed.clone();
        if shard == self.shards[0] {
            next.remove(tenant);
        } else {
            next.insert(tenant.clone(), shard.to_owned());
        }
        if let Some(path) = &self.path {
            write(path, &next)?;
        }
        *placed = next;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<TenantId, String>> {
        self.placed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check_names(shards: &[String]) -> Result<(), Error> {
    if shards.is_empty() {
        return Err(ConfigError::new("TENANT_SHARDS", "names no shard").into());
    }
    for (i, name) in shards.iter().enumerate() {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(ConfigError::new(
                "TENANT_SHARDS",
                format!(
                    "shard name `{}`: use 1 to 63 of a-z, 0-9, `_` and `-`",
                    crate::config::shown(name)
                ),
            )
            .into());
        }
        if shards[..i].contains(name) {
            return Err(
                ConfigError::new("TENANT_SHARDS", format!("shard `{name}` named twice")).into(),
            );
        }
    }
    Ok(())
}

fn unknown_shard(shard: &str, shards: &[String]) -> Error {
    ConfigError::new(
        TENANT_DIRECTORY,
        format!(
            "no shard `{}` (the shards are {})",
            crate::config::shown(shard),
            shards.join(", ")
        ),
    )
    .into()
}

fn read(path: &Path, shards: &[String]) -> Result<BTreeMap<TenantId, String>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(Error::store(format!(
                "cannot read the tenant directory {}: {e}",
                path.display()
            )))
        }
    };
    let mut placed = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((tenant, shard)) = line.split_once('=') else {
            return Err(ConfigError::new(
                TENANT_DIRECTORY,
                format!("{}: not a `tenant = shard` line", at()),
            )
            .into());
        };
        let tenant = TenantId::new(tenant.trim())
            .map_err(|e| ConfigError::new(TENANT_DIRECTORY, format!("{}: {e}", at())))?;
        let shard = shard.trim();
        if !shards.iter().any(|s| s == shard) {
            return Err(ConfigError::new(
                TENANT_DIRECTORY,
                format!(
                    "{}: no shard `{}` (the shards are {})",
                    at(),
                    crate::config::shown(shard),
                    shards.join(", ")
                ),
            )
            .into());
        }
        if placed.insert(tenant.clone(), shard.to_owned()).is_some() {
            return Err(ConfigError::new(
                TENANT_DIRECTORY,
                format!("{}: tenant `{tenant}` is listed twice", at()),
            )
            .into());
        }
    }
    Ok(placed)
}

/// Writes `placed` to a new file beside `path`, syncs it, renames it over `path` and syncs the
/// folder: a crash leaves the old file or the new one, never a part.
fn write(path: &Path, placed: &BTreeMap<TenantId, String>) -> Result<(), Error> {
    let failed = |e: std::io::Error| {
        Error::store(format!(
            "cannot write the tenant directory {}: {e}",
            path.display()
        ))
    };
    let mut text = String::from(
        "# tenant = shard, for the tenants not on the default shard (written by move_tenant)\n",
    );
    for (tenant, shard) in placed {
        let _ = writeln!(text, "{tenant} = {shard}");
    }
    let mut new = path.as_os_str().to_owned();
    new.push(".new");
    let new = PathBuf::from(new);
    let mut file = std::fs::File::create(&new).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&new, path).map_err(failed)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shards() -> Vec<String> {
        vec!["one".into(), "two".into()]
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).unwrap()
    }

    #[test]
    fn a_missing_file_puts_every_tenant_on_the_first_shard_and_places_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants");
        let directory = ShardDirectory::load(&path, shards()).unwrap();
        assert_eq!(directory.shard_of(&tenant("acme")), "one");

        directory.place(&tenant("acme"), "two").unwrap();
        directory.place(&tenant("globex"), "two").unwrap();
        directory.place(&tenant("globex"), "one").unwrap();
        let again = ShardDirectory::load(&path, shards()).unwrap();
        assert_eq!(again.shard_of(&tenant("acme")), "two");
        assert_eq!(again.shard_of(&tenant("globex")), "one");
        assert_eq!(
            again.placed().len(),
            1,
            "the default shard is not written down"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");

        assert!(directory.place(&tenant("acme"), "three").is_err());
        assert_eq!(directory.shard_of(&tenant("acme")), "two");
    }

    #[test]
    fn an_operator_edit_is_read_on_reload_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants");
        std::fs::write(&path, "# comment\n\nacme = two  # moved\n").unwrap();
        let directory = ShardDirectory::load(&path, shards()).unwrap();
        assert_eq!(directory.shard_of(&tenant("acme")), "two");

        for (text, says) in [
            ("acme two\n", ":1: not a `tenant = shard` line"),
            (
                "acme = two\nacme = one\n",
                ":2: tenant `acme` is listed twice",
            ),
            (
                "acme = three\n",
                ":1: no shard `three` (the shards are one, two)",
            ),
            ("Bad/Id = two\n", ":1: invalid tenant id"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = directory.reload().unwrap_err().to_string();
            assert!(
                err.contains("TENANT_DIRECTORY") && err.contains(says),
                "{text:?}: {err}"
            );
            assert_eq!(
                directory.shard_of(&tenant("acme")),
                "two",
                "a failed reload changes nothing"
            );
        }
        std::fs::write(&path, "").unwrap();
        directory.reload().unwrap();
        assert_eq!(directory.shard_of(&tenant("acme")), "one");
    }

    #[test]
    fn shard_names_are_checked() {
        for names in [
            vec![],
            vec!["one".to_owned(), "one".to_owned()],
            vec!["Bad Name".to_owned()],
        ] {
            let err = ShardDirectory::in_memory(names.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains("TENANT_SHARDS"), "{names:?}: {err}");
        }
    }
}
