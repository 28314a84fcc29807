//! Versioned SQL migrations: the bookkeeping every store shares.
//!
//! A store embeds its migrations as a [`Migrations`] list and implements [`Migrator`] (async) or
//! [`BlockingMigrator`] (for a store whose connections live on their own threads) with only what
//! its database does: take a lock, make sure the bookkeeping table exists, list the applied
//! migrations, apply one, release the lock. Everything else is decided here, once for every
//! store: which migrations are pending, whether the applied ones are unchanged (their
//! checksums), and whether the database was migrated by a newer release than this code. The
//! split follows sqlx, whose drivers implement `Migrate` and whose `Migrator` runs them.

use std::{borrow::Cow, fmt::Write as _, future::Future};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// One versioned migration: SQL applied once, in version order, and recorded with its checksum.
///
/// Never edit a released migration: add a new one. An edited one is refused
/// ([`MigrateError::ChecksumMismatch`]) by every database it was applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// The version: migrations are applied in ascending order of it.
    pub version: u32,
    /// A short description, recorded beside the version.
    pub description: &'static str,
    /// The SQL, as embedded (a store may fill placeholders in before running it; the checksum
    /// is of the text as embedded).
    pub sql: &'static str,
}

impl Migration {
    /// A migration; usually `Migration::new(1, "events", include_str!("../migrations/0001.sql"))`.
    pub const fn new(version: u32, description: &'static str, sql: &'static str) -> Self {
        Migration {
            version,
            description,
            sql,
        }
    }

    /// SHA-256 of the SQL with CRLF line endings turned into LF, so a checkout with Windows line
    /// endings records (and verifies) the same checksum as any other.
    pub fn checksum(&self) -> Vec<u8> {
        sha256(normalised(self.sql).as_bytes())
    }

    /// [`checksum`](Self::checksum) in lowercase hex, as operators and tests write it.
    pub fn checksum_hex(&self) -> String {
        self.checksum().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `recorded`, a checksum stored when this migration was applied, is this
    /// migration's.
    ///
    /// Besides [`checksum`](Self::checksum), it accepts the SHA-256 of the text with CRLF line
    /// endings: the first PostgreSQL release hashed the file's bytes as checked out, so a
    /// database migrated from a Windows checkout recorded that value.
    pub fn matches(&self, recorded: &[u8]) -> bool {
        recorded == self.checksum().as_slice()
            || recorded == sha256(normalised(self.sql).replace('\n', "\r\n").as_bytes())
    }
}

fn normalised(sql: &str) -> Cow<'_, str> {
    if sql.contains("\r\n") {
        Cow::Owned(sql.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(sql)
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One row of a store's migrations table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: u32,
    /// The description recorded with it.
    pub description: String,
    /// The checksum recorded with it.
    pub checksum: Vec<u8>,
    /// When it was applied.
    pub applied_at: DateTime<Utc>,
}

impl AppliedMigration {
    /// A row as a store read it.
    pub fn new(
        version: u32,
        description: impl Into<String>,
        checksum: Vec<u8>,
        applied_at: DateTime<Utc>,
    ) -> Self {
        AppliedMigration {
            version,
            description: description.into(),
            checksum,
            applied_at,
        }
    }
}

/// Where a migration stands in a database, as [`Migrations::status`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MigrationState {
    /// Applied, with the checksum of the migration in this code.
    Applied,
    /// Not applied yet.
    Pending,
    /// Applied, but with another checksum: the migration was edited since.
    ChecksumMismatch,
    /// Applied, but unknown to this code: the database was migrated by a newer release.
    Unknown,
}

/// One migration of the code or of the database, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The version.
    pub version: u32,
    /// The description (as recorded, for a migration this code does not know).
    pub description: String,
    /// Where it stands.
    pub state: MigrationState,
    /// When it was applied, unless it is pending.
    pub applied_at: Option<DateTime<Utc>>,
}

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The migrations this run applied, in order.
    pub applied: Vec<Migration>,
    /// The versions that were applied before this run.
    pub already_applied: Vec<u32>,
}

impl MigrationReport {
    /// The versions this run applied.
    pub fn applied_versions(&self) -> Vec<u32> {
        self.applied.iter().map(|m| m.version).collect()
    }
}

/// Why the applied migrations of a database do not fit the code: nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// An applied migration was edited since.
    #[error(
        "migration {version} ({description}) was applied with checksum {} but this code has \
         checksum {}: an applied migration must never change; restore the original migration \
         or migrate a fresh database",
        hex(recorded),
        hex(expected)
    )]
    ChecksumMismatch {
        /// The migration's version.
        version: u32,
        /// Its description.
        description: &'static str,
        /// The checksum recorded when it was applied.
        recorded: Vec<u8>,
        /// The checksum of the migration in this code.
        expected: Vec<u8>,
    },
    /// The database has a migration this code does not know.
    #[error(
        "migration {version} ({description}) is applied but unknown to this code: the database \
         was migrated by a newer release"
    )]
    NewerDatabase {
        /// The unknown version.
        version: u32,
        /// The description recorded with it.
        description: String,
    },
}

impl MigrateError {
    /// The version of the migration at fault.
    pub fn version(&self) -> u32 {
        match self {
            MigrateError::ChecksumMismatch { version, .. }
            | MigrateError::NewerDatabase { version, .. } => *version,
        }
    }

    /// As the runtime's error, naming what was migrated (`target`).
    pub fn into_error(self, target: &str) -> Error {
        Error::Schema(format!("{target}: {self}"))
    }
}

/// What a run will do, once the applied migrations are known to fit the code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationPlan {
    /// The migrations to apply, in ascending version order.
    pub pending: Vec<&'static Migration>,
    /// The versions applied already.
    pub already_applied: Vec<u32>,
}

/// The database side of a migration run, for an async store. The engine
/// ([`Migrations::run`]) calls [`lock`](Self::lock), then the others, and [`unlock`](Self::unlock)
/// whenever `lock` succeeded, even after a failure.
pub trait Migrator: Send {
    /// What is migrated, for errors and logs: "schema `events`", "SQLite database `app.db`".
    fn target(&self) -> &str;

    /// Keeps other migration runs out until [`unlock`](Self::unlock).
    fn lock(&mut self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Creates the migrations table (and what holds it) if it is missing.
    fn ensure_table(&mut self) -> impl Future<Output = Result<(), Error>> + Send;

    /// The rows of the migrations table.
    fn list_applied(&mut self)
        -> impl Future<Output = Result<Vec<AppliedMigration>, Error>> + Send;

    /// Runs one migration and records its version, description and
    /// [`checksum`](Migration::checksum), atomically: both or neither.
    fn apply(&mut self, migration: &Migration) -> impl Future<Output = Result<(), Error>> + Send;

    /// Lets other migration runs in.
    fn unlock(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// [`Migrator`] for a store that calls its database synchronously (on a thread of its own);
/// run by [`Migrations::run_blocking`].
pub trait BlockingMigrator {
    /// See [`Migrator::target`].
    fn target(&self) -> &str;
    /// See [`Migrator::lock`].
    fn lock(&mut self) -> Result<(), Error>;
    /// See [`Migrator::ensure_table`].
    fn ensure_table(&mut self) -> Result<(), Error>;
    /// See [`Migrator::list_applied`].
    fn list_applied(&mut self) -> Result<Vec<AppliedMigration>, Error>;
    /// See [`Migrator::apply`].
    fn apply(&mut self, migration: &Migration) -> Result<(), Error>;
    /// See [`Migrator::unlock`].
    fn unlock(&mut self) -> Result<(), Error>;
}

/// The migrations of a store, in ascending version order, and the engine that applies them.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    list: &'static [Migration],
}

impl Migrations {
    /// The migrations, in ascending version order (a store's unit test should check it).
    pub const fn new(list: &'static [Migration]) -> Self {
        Migrations { list }
    }

    /// The migrations, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Migration> {
        self.list.iter()
    }

    /// The migration with this version.
    pub fn get(&self, version: u32) -> Option<&'static Migration> {
        self.list.iter().find(|m| m.version == version)
    }

    /// Checks the applied migrations against the code and lists what is left to apply.
    ///
    /// Fails at the lowest version that does not fit: an applied migration whose checksum
    /// differs ([`MigrateError::ChecksumMismatch`]), or one this code does not know
    /// ([`MigrateError::NewerDatabase`]).
    pub fn plan(&self, applied: &[AppliedMigration]) -> Result<MigrationPlan, MigrateError> {
        let mut sorted: Vec<&AppliedMigration> = applied.iter().collect();
        sorted.sort_by_key(|a| a.version);
        for row in &sorted {
            match self.get(row.version) {
                None => {
                    return Err(MigrateError::NewerDatabase {
                        version: row.version,
                        description: row.description.clone(),
                    })
                }
                Some(m) if !m.matches(&row.checksum) => {
                    return Err(MigrateError::ChecksumMismatch {
                        version: m.version,
                        description: m.description,
                        recorded: row.checksum.clone(),
                        expected: m.checksum(),
                    })
                }
                Some(_) => {}
            }
        }
        let mut pending: Vec<&'static Migration> = self
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .collect();
        pending.sort_by_key(|m| m.version);
        Ok(MigrationPlan {
            pending,
            already_applied: sorted.iter().map(|a| a.version).collect(),
        })
    }

    /// Every migration of the code and of the database, by version, and where each stands.
    pub fn status(&self, applied: &[AppliedMigration]) -> Vec<MigrationStatus> {
        let mut statuses: Vec<MigrationStatus> = self
            .iter()
            .map(|m| {
                let row = applied.iter().find(|a| a.version == m.version);
                let state = match row {
                    None => MigrationState::Pending,
                    Some(row) if m.matches(&row.checksum) => MigrationState::Applied,
                    Some(_) => MigrationState::ChecksumMismatch,
                };
                MigrationStatus {
                    version: m.version,
                    description: m.description.to_owned(),
                    state,
                    applied_at: row.map(|r| r.applied_at),
                }
            })
            .collect();
        statuses.extend(
            applied
                .iter()
                .filter(|a| self.get(a.version).is_none())
                .map(|a| MigrationStatus {
                    version: a.version,
                    description: a.description.clone(),
                    state: MigrationState::Unknown,
                    applied_at: Some(a.applied_at),
                }),
        );
        statuses.sort_by_key(|s| s.version);
        statuses
    }

    /// Applies the pending migrations in order, under the migrator's lock. Fails with
    /// [`Error::Schema`] (from a [`MigrateError`]) before applying anything if the applied
    /// migrations do not fit the code. A migration that fails stops the run; those applied
    /// before it stay applied.
    pub async fn run<M: Migrator>(&self, migrator: &mut M) -> Result<MigrationReport, Error> {
        migrator.lock().await?;
        let result = self.run_locked(migrator).await;
        let unlocked = migrator.unlock().await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    /// [`run`](Self::run) for a [`BlockingMigrator`].
    pub fn run_blocking<M: BlockingMigrator>(
        &self,
        migrator: &mut M,
    ) -> Result<MigrationReport, Error> {
        migrator.lock()?;
        let result = self.run_locked_blocking(migrator);
        let unlocked = migrator.unlock();
        let report = result?;
        unlocked?;
        Ok(report)
    }

    async fn run_locked<M: Migrator>(&self, migrator: &mut M) -> Result<MigrationReport, Error> {
        migrator.ensure_table().await?;
        let applied = migrator.list_applied().await?;
        let plan = self.checked_plan(&applied, migrator.target())?;
        let mut report = report_of(&plan);
        for migration in plan.pending {
            migrator.apply(migration).await?;
            applied_one(&mut report, migration, migrator.target());
        }
        Ok(report)
    }

    fn run_locked_blocking<M: BlockingMigrator>(
        &self,
        migrator: &mut M,
    ) -> Result<MigrationReport, Error> {
        migrator.ensure_table()?;
        let applied = migrator.list_applied()?;
        let plan = self.checked_plan(&applied, migrator.target())?;
        let mut report = report_of(&plan);
        for migration in plan.pending {
            migrator.apply(migration)?;
            applied_one(&mut report, migration, migrator.target());
        }
        Ok(report)
    }

    fn checked_plan(
        &self,
        applied: &[AppliedMigration],
        target: &str,
    ) -> Result<MigrationPlan, Error> {
        self.plan(applied).map_err(|e| e.into_error(target))
    }
}

fn report_of(plan: &MigrationPlan) -> MigrationReport {
    MigrationReport {
        applied: Vec::with_capacity(plan.pending.len()),
        already_applied: plan.already_applied.clone(),
    }
}

fn applied_one(report: &mut MigrationReport, migration: &Migration, target: &str) {
    tracing::info!(
        database = target,
        version = migration.version,
        description = migration.description,
        "applied migration"
    );
    report.applied.push(*migration);
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
