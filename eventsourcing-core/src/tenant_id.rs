//! Tenant ids and the names made from them: checked before any of them reaches a database,
//! schema or file name, so a tenant id can never name another object, escape a directory or
//! pick a name the server reserves.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use crate::config::ConfigError;

/// The longest tenant id, and the longest name made from one: PostgreSQL's limit for names
/// (`NAMEDATALEN - 1` bytes). A longer name would be silently truncated by the server, and
/// two tenants could share one database.
pub const MAX_TENANT_NAME: usize = 63;

/// Names a tenant id or a name made from one may not be (PostgreSQL's own databases and
/// schemas, and the two directory entries).
pub const RESERVED_TENANT_NAMES: &[&str] = &[
    "postgres",
    "template0",
    "template1",
    "public",
    "information_schema",
    ".",
    "..",
];

/// A tenant id: 1 to 63 characters of `a`–`z`, `0`–`9`, `_` and `-`, not starting with `pg_`
/// (PostgreSQL reserves that prefix for its own schemas and roles) and not one of
/// [`RESERVED_TENANT_NAMES`].
///
/// Cheap to clone. `TenantId::new` (or `str::parse`) is the only way to make one, so a value
/// of this type is always safe to put into a database, schema or file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Checks `id`; the error names it (escaped, at most 64 characters shown) and says why.
    pub fn new(id: &str) -> Result<Self, TenantError> {
        check_id(id).map_err(|reason| TenantError::invalid(id, reason))?;
        Ok(TenantId(Arc::from(id)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, TenantError> {
        TenantId::new(s)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > MAX_TENANT_NAME {
        return Err("it is longer than 63 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("it may contain only `a`-`z`, `0`-`9`, `_` and `-`");
    }
    check_reserved(id)
}

fn check_reserved(name: &str) -> Result<(), &'static str> {
    if name.starts_with("pg_") {
        return Err("names starting with `pg_` are reserved by PostgreSQL");
    }
    if RESERVED_TENANT_NAMES.contains(&name) {
        return Err("it is a reserved name");
    }
    Ok(())
}

/// What can go wrong with a tenant before its store is reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// The tenant id, or the name made from it, is not allowed; nothing was created.
    #[error("invalid tenant id {id}: {reason}")]
    InvalidId {
        /// The id as given, escaped and quoted (at most 64 characters of it).
        id: String,
        /// Why it was refused.
        reason: String,
    },
    /// Every one of the tenants that may be open at once was in use for as long as a request
    /// may wait: nothing could be closed to make room.
    #[error(
        "no room to open tenant `{tenant}` within {waited:?}: all {max_open} tenants that may \
         be open at once are in use"
    )]
    Busy {
        /// The tenant asked for.
        tenant: String,
        /// The most tenants open at once.
        max_open: u32,
        /// How long the request waited.
        waited: Duration,
    },
    /// The tenant was paused ([`Tenants::pause`](crate::Tenants::pause): being moved to
    /// another server, say) for as long as a request may wait. Nothing was read or written;
    /// try again later.
    #[error(
        "tenant `{tenant}` is paused (being moved?) and stayed so for {waited:?}; try again later"
    )]
    Paused {
        /// The tenant asked for.
        tenant: String,
        /// How long the request waited.
        waited: Duration,
    },
    /// The tenant stayed in use (a request or a running projection held it), or paused by
    /// another caller, for as long as [`Tenants::pause`](crate::Tenants::pause) waits: it was
    /// not paused.
    #[error("tenant `{tenant}` stayed in use for {waited:?} and could not be paused")]
    InUse {
        /// The tenant.
        tenant: String,
        /// How long the pause waited.
        waited: Duration,
    },
    /// The tenant's database, schema or file does not exist, and this registry does not
    /// create tenants (create it with the admin tool first).
    #[error("tenant `{tenant}` does not exist ({name}); create it first")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// The database, schema or file it would use.
        name: String,
    },
}

impl TenantError {
    pub(crate) fn invalid(id: &str, reason: impl Into<String>) -> Self {
        TenantError::InvalidId {
            id: escaped(id),
            reason: reason.into(),
        }
    }
}

/// `id` quoted, with every character outside printable ASCII escaped, cut at 64 characters.
fn escaped(id: &str) -> String {
    let shown: String = id.chars().take(64).collect();
    let more = if shown.len() < id.len() { "…" } else { "" };
    format!("{:?}{more}", shown)
}

/// A name pattern with one `{id}` in it (`tenant_{id}`, `{id}_events`, `tenant_{id}.sqlite`):
/// the database, schema or file name of each tenant.
///
/// The text around `{id}` may hold `a`–`z`, `0`–`9`, `_`, `-` and `.`; a name made from it is
/// at most [`MAX_TENANT_NAME`] bytes, does not start with `pg_` and is none of
/// [`RESERVED_TENANT_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPattern {
    prefix: String,
    suffix: String,
}

/// The placeholder of a [`TenantPattern`].
pub const TENANT_PLACEHOLDER: &str = "{id}";

impl TenantPattern {
    /// Parses `pattern`; `setting` names it in the error (an environment variable or a builder
    /// method).
    pub fn parse(setting: &str, pattern: &str) -> Result<Self, ConfigError> {
        let Some((prefix, suffix)) = pattern.split_once(TENANT_PLACEHOLDER) else {
            return Err(ConfigError::new(
                setting,
                format!("the tenant name pattern {pattern:?} has no `{{id}}`"),
            ));
        };
        if suffix.contains(TENANT_PLACEHOLDER) {
            return Err(ConfigError::new(
                setting,
                format!("the tenant name pattern {pattern:?} has more than one `{{id}}`"),
            ));
        }
        let allowed =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.');
        if !prefix.bytes().chain(suffix.bytes()).all(allowed) {
            return Err(ConfigError::new(
                setting,
                format!(
                    "the tenant name pattern {pattern:?} may contain, besides `{{id}}`, only \
                     `a`-`z`, `0`-`9`, `_`, `-` and `.`"
                ),
            ));
        }
        if prefix.len() + suffix.len() >= MAX_TENANT_NAME {
            return Err(ConfigError::new(
                setting,
                format!("the tenant name pattern {pattern:?} leaves no room for an id"),
            ));
        }
        Ok(TenantPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The name of `tenant`'s database, schema or file.
    pub fn name(&self, tenant: &TenantId) -> Result<String, TenantError> {
        let name = format!("{}{}{}", self.prefix, tenant.as_str(), self.suffix);
        if name.len() > MAX_TENANT_NAME {
            return Err(TenantError::invalid(
                tenant.as_str(),
                format!("the name made from it, {name:?}, is longer than {MAX_TENANT_NAME} bytes"),
            ));
        }
        check_reserved(&name).map_err(|reason| {
            TenantError::invalid(tenant.as_str(), format!("the name {name:?}: {reason}"))
        })?;
        Ok(name)
    }

    /// The tenant whose name `name` is, if it matches the pattern and holds a valid id.
    pub fn tenant_of(&self, name: &str) -> Option<TenantId> {
        let id = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        let tenant = TenantId::new(id).ok()?;
        // Only names this pattern would make (a name must round-trip).
        (self.name(&tenant).ok()? == name).then_some(tenant)
    }

    /// The tenants among `names` (of databases, schemas or files): those this pattern makes,
    /// sorted. What a store's [`TenantStores::list`](crate::TenantStores::list) returns.
    pub fn tenants_among(&self, names: impl IntoIterator<Item = String>) -> Vec<TenantId> {
        let mut tenants: Vec<TenantId> = names
            .into_iter()
            .filter_map(|name| self.tenant_of(&name))
            .collect();
        tenants.sort();
        tenants
    }
}

impl fmt::Display for TenantPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{TENANT_PLACEHOLDER}{}", self.prefix, self.suffix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_issue_are_refused_with_the_id_named() {
        let long = "a".repeat(200);
        for bad in [
            "/",
            "..",
            ".",
            "a/b",
            "it's",
            "\"x\"",
            "a b",
            " ",
            "",
            &long,
            "postgres",
            "template0",
            "template1",
            "public",
            "information_schema",
            "pg_catalog",
            "Acme",
            "a\0b",
            "tenant;drop",
        ] {
            match TenantId::new(bad) {
                Err(TenantError::InvalidId { id, reason }) => {
                    assert!(id.starts_with('"'), "{id}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let Err(TenantError::InvalidId { id, .. }) = TenantId::new("a\nb") else {
            panic!("accepted a newline")
        };
        assert_eq!(id, "\"a\\nb\"");
        let Err(TenantError::InvalidId { id, .. }) = TenantId::new(&long) else {
            panic!("accepted 200 characters")
        };
        assert_eq!(id, format!("{:?}…", "a".repeat(64)));
    }

    #[test]
    fn plain_ids_are_accepted() {
        for good in [
            "acme",
            "tenant-123",
            "a",
            "x_1",
            &"z".repeat(63),
            "pg",
            "pgx",
        ] {
            assert_eq!(
                TenantId::new(good).map(|t| t.to_string()),
                Ok(good.to_owned())
            );
        }
    }

    #[test]
    fn patterns_make_checked_names_and_read_them_back() {
        let p = TenantPattern::parse("POSTGRES_DBNAME", "tenant_{id}").unwrap();
        let acme = TenantId::new("acme").unwrap();
        assert_eq!(p.name(&acme).unwrap(), "tenant_acme");
        assert_eq!(p.tenant_of("tenant_acme"), Some(acme));
        assert_eq!(p.tenant_of("tenant_"), None);
        assert_eq!(p.tenant_of("other_acme"), None);
        let long = TenantId::new(&"a".repeat(60)).unwrap();
        assert!(matches!(p.name(&long), Err(TenantError::InvalidId { .. })));
        let bare = TenantPattern::parse("x", "{id}").unwrap();
        assert_eq!(bare.name(&TenantId::new("acme").unwrap()).unwrap(), "acme");
        let pg = TenantPattern::parse("x", "pg_{id}").unwrap();
        assert!(pg.name(&TenantId::new("acme").unwrap()).is_err());
        let file = TenantPattern::parse("x", "t_{id}.sqlite").unwrap();
        assert_eq!(file.tenant_of("t_b.sqlite").unwrap().as_str(), "b");
    }

    #[test]
    fn bad_patterns_name_the_setting() {
        for bad in [
            "tenant",
            "{id}{id}",
            "Tenant_{id}",
            "a/{id}",
            "{id} x",
            &"a".repeat(63),
        ] {
            let pattern = format!("{bad}{}", if bad.contains("{id}") { "" } else { "{id}" });
            let pattern = if bad == "tenant" {
                bad.to_owned()
            } else {
                pattern
            };
            let err = TenantPattern::parse("POSTGRES_DBNAME", &pattern).unwrap_err();
            assert!(err.to_string().contains("POSTGRES_DBNAME"), "{err}");
        }
    }
}
