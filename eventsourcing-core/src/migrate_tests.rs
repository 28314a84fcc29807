//! Unit tests of the migration engine (`migrate.rs`).
#![allow(clippy::unwrap_used)]
use super::*;

const LIST: &[Migration] = &[
    Migration::new(1, "events", "CREATE TABLE events (x INTEGER);\n"),
    Migration::new(2, "snapshots", "CREATE TABLE snapshots (x INTEGER);\n"),
    Migration::new(3, "tracking", "CREATE TABLE tracking (x INTEGER);\n"),
];
const MIGRATIONS: Migrations = Migrations::new(LIST);

fn row(version: u32, checksum: Vec<u8>) -> AppliedMigration {
    AppliedMigration::new(version, "", checksum, DateTime::UNIX_EPOCH)
}

fn applied(versions: &[u32]) -> Vec<AppliedMigration> {
    versions
        .iter()
        .map(|v| row(*v, MIGRATIONS.get(*v).unwrap().checksum()))
        .collect()
}

fn versions(plan: &MigrationPlan) -> Vec<u32> {
    plan.pending.iter().map(|m| m.version).collect()
}

#[test]
fn pending_are_the_unapplied_ones_in_order() {
    assert_eq!(versions(&MIGRATIONS.plan(&[]).unwrap()), [1, 2, 3]);
    let plan = MIGRATIONS.plan(&applied(&[2, 1])).unwrap();
    assert_eq!(versions(&plan), [3]);
    assert_eq!(plan.already_applied, [1, 2]);
    // A gap (applied out of order by an older release) is filled.
    assert_eq!(versions(&MIGRATIONS.plan(&applied(&[1, 3])).unwrap()), [2]);
    assert!(MIGRATIONS
        .plan(&applied(&[1, 2, 3]))
        .unwrap()
        .pending
        .is_empty());
}

#[test]
fn a_changed_migration_is_refused_naming_its_version() {
    let mut rows = applied(&[1, 2]);
    rows[1].checksum = vec![0x00, 0xff];
    let err = MIGRATIONS.plan(&rows).unwrap_err();
    assert_eq!(err.version(), 2);
    assert!(matches!(
        &err,
        MigrateError::ChecksumMismatch { recorded, .. } if recorded == &[0x00, 0xff]
    ));
    let message = err.into_error("schema `x`").to_string();
    assert!(
        message.starts_with("schema `x`: migration 2 (snapshots)"),
        "{message}"
    );
    assert!(message.contains("checksum 00ff"), "{message}");
    let status = MIGRATIONS.status(&rows);
    assert_eq!(status[1].state, MigrationState::ChecksumMismatch);
}

#[test]
fn a_database_newer_than_the_code_is_refused() {
    let mut rows = applied(&[1, 2, 3]);
    rows.push(AppliedMigration::new(
        9,
        "future",
        vec![0],
        DateTime::UNIX_EPOCH,
    ));
    let err = MIGRATIONS.plan(&rows).unwrap_err();
    assert_eq!(
        err,
        MigrateError::NewerDatabase {
            version: 9,
            description: "future".into()
        }
    );
    assert!(err.to_string().contains("newer release"));
    let status = MIGRATIONS.status(&rows);
    assert_eq!(status.len(), 4);
    assert_eq!(status[3].state, MigrationState::Unknown);
    assert_eq!(status[3].description, "future");
}

#[test]
fn the_lowest_misfit_is_reported_first() {
    let mut rows = applied(&[1, 2]);
    rows.push(row(9, vec![0]));
    rows[0].checksum = vec![1];
    assert_eq!(MIGRATIONS.plan(&rows).unwrap_err().version(), 1);
}

#[test]
fn crlf_line_endings_do_not_change_the_checksum() {
    let unix = Migration::new(1, "", "CREATE TABLE t (x INTEGER);\nSELECT 1;\n");
    let dos = Migration::new(1, "", "CREATE TABLE t (x INTEGER);\r\nSELECT 1;\r\n");
    assert_eq!(unix.checksum(), dos.checksum());
    assert_eq!(unix.checksum().len(), 32);
    // What releases before this engine recorded: PostgreSQL the SHA-256 of the text as
    // checked out, SQLite of the text without carriage returns. Both still verify, from
    // either kind of checkout.
    let raw_lf = Sha256::digest(unix.sql.as_bytes()).to_vec();
    let raw_crlf = Sha256::digest(dos.sql.as_bytes()).to_vec();
    for m in [unix, dos] {
        assert!(m.matches(&raw_lf));
        assert!(m.matches(&raw_crlf));
        assert!(!m.matches(&[0; 32]));
    }
    assert_eq!(unix.checksum(), raw_lf);
}

/// Records what the engine asked for.
#[derive(Default)]
struct Fake {
    rows: Vec<AppliedMigration>,
    calls: Vec<String>,
    fail_at: Option<u32>,
}

impl BlockingMigrator for Fake {
    fn target(&self) -> &str {
        "fake"
    }
    fn lock(&mut self) -> Result<(), Error> {
        self.calls.push("lock".into());
        Ok(())
    }
    fn ensure_table(&mut self) -> Result<(), Error> {
        self.calls.push("ensure".into());
        Ok(())
    }
    fn list_applied(&mut self) -> Result<Vec<AppliedMigration>, Error> {
        self.calls.push("list".into());
        Ok(self.rows.clone())
    }
    fn apply(&mut self, m: &Migration) -> Result<(), Error> {
        self.calls.push(format!("apply {}", m.version));
        if self.fail_at == Some(m.version) {
            return Err(Error::store("boom"));
        }
        self.rows.push(row(m.version, m.checksum()));
        Ok(())
    }
    fn unlock(&mut self) -> Result<(), Error> {
        self.calls.push("unlock".into());
        Ok(())
    }
}

impl Migrator for Fake {
    fn target(&self) -> &str {
        "fake"
    }
    async fn lock(&mut self) -> Result<(), Error> {
        BlockingMigrator::lock(self)
    }
    async fn ensure_table(&mut self) -> Result<(), Error> {
        BlockingMigrator::ensure_table(self)
    }
    async fn list_applied(&mut self) -> Result<Vec<AppliedMigration>, Error> {
        BlockingMigrator::list_applied(self)
    }
    async fn apply(&mut self, m: &Migration) -> Result<(), Error> {
        BlockingMigrator::apply(self, m)
    }
    async fn unlock(&mut self) -> Result<(), Error> {
        BlockingMigrator::unlock(self)
    }
}

#[test]
fn a_run_applies_the_pending_under_the_lock_and_unlocks_after_a_failure() {
    let mut fake = Fake {
        rows: applied(&[1]),
        ..Fake::default()
    };
    let report = MIGRATIONS.run_blocking(&mut fake).unwrap();
    assert_eq!(report.applied_versions(), [2, 3]);
    assert_eq!(report.already_applied, [1]);
    assert_eq!(
        fake.calls,
        ["lock", "ensure", "list", "apply 2", "apply 3", "unlock"]
    );
    assert_eq!(
        MIGRATIONS.run_blocking(&mut fake).unwrap(),
        MigrationReport {
            applied: vec![],
            already_applied: vec![1, 2, 3]
        }
    );

    let mut failing = Fake {
        fail_at: Some(2),
        ..Fake::default()
    };
    assert!(MIGRATIONS.run_blocking(&mut failing).is_err());
    assert_eq!(failing.calls.last().unwrap(), "unlock");
    assert_eq!(failing.rows.len(), 1, "migration 1 stays applied");

    let mut edited = Fake {
        rows: vec![row(1, vec![7])],
        ..Fake::default()
    };
    let err = MIGRATIONS.run_blocking(&mut edited).unwrap_err();
    assert!(matches!(&err, Error::Schema(m) if m.starts_with("fake: migration 1")));
    assert_eq!(edited.calls, ["lock", "ensure", "list", "unlock"]);
}

#[tokio::test]
async fn the_async_run_does_the_same() {
    let mut fake = Fake::default();
    let report = MIGRATIONS.run(&mut fake).await.unwrap();
    assert_eq!(report.applied_versions(), [1, 2, 3]);
    assert_eq!(fake.calls.first().unwrap(), "lock");
    assert_eq!(fake.calls.last().unwrap(), "unlock");
    let mut failing = Fake {
        fail_at: Some(1),
        ..Fake::default()
    };
    assert!(MIGRATIONS.run(&mut failing).await.is_err());
    assert_eq!(failing.calls.last().unwrap(), "unlock");
}
