//! What the backup tests share: one trait over both stores' export/import/archive, a store
//! filled with widgets, snapshots, two projections' positions, a parked event and metadata,
//! and the decoded, store-independent content of a backup file.

use std::{future::Future, io::BufWriter, path::Path};

use eventsourcing::chrono::{DateTime, Utc};
use eventsourcing::{
    backup::{ArchiveReport, BackupError, BackupReader, Counts, Record},
    prelude::*,
    Archive as _, Backup as _, EventStore, Metadata, ParkedEvent, Position, Snapshotting,
    StoredEvent, Tracking,
};
use eventsourcing_postgres::PostgresStore;
use eventsourcing_sqlite::SqliteStore;

use crate::widget::WidgetRegistryEndpoint as Widget;

/// Both stores' backup operations under one name, and their row counts.
pub(crate) trait Backup: EventStore + Clone {
    fn export_file(&self, path: &Path) -> impl Future<Output = Result<Counts, BackupError>>;
    fn import_file(&self, path: &Path) -> impl Future<Output = Result<Counts, BackupError>>;
    fn archive_to(
        &self,
        before: DateTime<Utc>,
        path: &Path,
        force: bool,
    ) -> impl Future<Output = Result<ArchiveReport, BackupError>>;
    fn restore_from(&self, path: &Path) -> impl Future<Output = Result<Counts, BackupError>>;
    /// Rows of events, snapshots, tracking, parked_events.
    fn table_rows(&self) -> impl Future<Output = [i64; 4]>;
}

fn sync(out: BufWriter<std::fs::File>) {
    out.into_inner().unwrap().sync_all().unwrap();
}

impl Backup for PostgresStore {
    async fn export_file(&self, path: &Path) -> Result<Counts, BackupError> {
        let file = BufWriter::new(std::fs::File::create(path)?);
        let (out, counts) = self.export(file).await?;
        sync(out);
        Ok(counts)
    }
    async fn import_file(&self, path: &Path) -> Result<Counts, BackupError> {
        self.import(path).await
    }
    async fn archive_to(
        &self,
        before: DateTime<Utc>,
        path: &Path,
        force: bool,
    ) -> Result<ArchiveReport, BackupError> {
        self.archive(before, path, force).await
    }
    async fn restore_from(&self, path: &Path) -> Result<Counts, BackupError> {
        self.restore_archive(path).await
    }
    async fn table_rows(&self) -> [i64; 4] {
        let client = self.dedicated_client().await.unwrap();
        let schema = &self.config().schema();
        let mut out = [0; 4];
        for (i, table) in ["events", "snapshots", "tracking", "parked_events"]
            .iter()
            .enumerate()
        {
            let row = client
                .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
                .await
                .unwrap();
            out[i] = row.get(0);
        }
        out
    }
}

impl Backup for SqliteStore {
    async fn export_file(&self, path: &Path) -> Result<Counts, BackupError> {
        let file = BufWriter::new(std::fs::File::create(path)?);
        let (out, counts) = self.export(file).await?;
        sync(out);
        Ok(counts)
    }
    async fn import_file(&self, path: &Path) -> Result<Counts, BackupError> {
        self.import(path).await
    }
    async fn archive_to(
        &self,
        before: DateTime<Utc>,
        path: &Path,
        force: bool,
    ) -> Result<ArchiveReport, BackupError> {
        self.archive(before, path, force).await
    }
    async fn restore_from(&self, path: &Path) -> Result<Counts, BackupError> {
        self.restore_archive(path).await
    }
    async fn table_rows(&self) -> [i64; 4] {
        self.query(|tx| {
            let mut out = [0; 4];
            for (i, table) in ["events", "snapshots", "tracking", "parked_events"]
                .iter()
                .enumerate()
            {
                out[i] =
                    tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            }
            Ok(out)
        })
        .await
        .unwrap()
    }
}

/// An application that reads snapshots for every type and writes none by itself.
pub(crate) fn app<S: EventStore + Clone>(store: &S) -> Application<S> {
    Application::new(store.clone()).with_snapshotting(Snapshotting::every(1_000_000))
}

/// Every event of the store's log, in order. PostgreSQL's log holds back committed events
/// while an older transaction runs anywhere on the server (other tests share it), so this reads
/// until the log holds as many events as the table, for at most a minute.
pub(crate) async fn log<S: Backup>(store: &S) -> Vec<StoredEvent> {
    let rows = store.table_rows().await[0] as usize;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log = store.read_log(Position::START, 1_000_000).await.unwrap();
        if log.len() >= rows || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Fills `store` with `n` widgets (0 to 6 renames each, metadata on every third save, a
/// snapshot of every other one), two projections' positions (one halfway, one at the end), a
/// parked event, and returns the widget ids.
pub(crate) async fn fill<S: Backup>(store: &S, n: usize) -> Vec<Uuid> {
    let app = app(store);
    let mut ids = Vec::new();
    for i in 0..n {
        let mut w = Widget::create(format!("https://w/{i}"), format!("w{i}"), "t".into());
        for r in 0..(i % 7) {
            w.rename(&format!("w{i}-{r}")).unwrap();
        }
        if i % 3 == 0 {
            let meta = Metadata::default()
                .with_correlation_id(Uuid::new_v4())
                .with("user", format!("u{i}"));
            app.save_with_metadata(&mut w, &meta).await.unwrap();
        } else {
            app.save(&mut w).await.unwrap();
        }
        if i % 2 == 0 {
            app.take_snapshot::<Widget>(w.id(), None).await.unwrap();
        }
        ids.push(w.id());
    }
    let events = log(store).await;
    let half = events[events.len() / 2].position;
    let last = events[events.len() - 1].position;
    let track = |name: &str, position| Tracking {
        name: name.into(),
        position,
    };
    store
        .append_tracked(vec![], track("halfway", half))
        .await
        .unwrap();
    store
        .append_tracked(vec![], track("caught_up", last))
        .await
        .unwrap();
    let parked = &events[3];
    store
        .park(ParkedEvent {
            name: "parking".into(),
            position: parked.position,
            stream_id: parked.stream_id,
            version: parked.version,
            event_type: parked.event_type.clone(),
            error: "handler said no".into(),
            parked_at: Utc::now(),
        })
        .await
        .unwrap();
    ids
}

/// Every widget of `ids`, loaded.
pub(crate) async fn widgets<S: EventStore + Clone>(store: &S, ids: &[Uuid]) -> Vec<Widget> {
    let app = app(store);
    let mut out = Vec::new();
    for id in ids {
        out.push(app.repository().get::<Widget>(*id).await.unwrap());
    }
    out
}

/// A backup's records with store-specific positions replaced by what they mean: an event's
/// place in the file, and for tracking and parked records the place of the last event at or
/// before their position (`None`: before every event).
pub(crate) fn content(path: &Path) -> Vec<String> {
    let mut reader = BackupReader::open(path).unwrap();
    let mut positions = Vec::new();
    let mut out = Vec::new();
    let place = |positions: &[Position], p: Position| positions.partition_point(|e| *e <= p);
    while let Some(record) = reader.next_record().unwrap() {
        let line = match record {
            Record::Event(mut e) => {
                positions.push(e.position);
                e.position = Position::START;
                format!("{e:?} #{}", positions.len())
            }
            Record::Tracking(mut t) => {
                let at = place(&positions, t.position);
                t.position = Position::START;
                format!("{t:?} after #{at}")
            }
            Record::Parked(mut p) => {
                let at = place(&positions, p.position);
                p.position = Position::START;
                format!("{p:?} after #{at}")
            }
            other => format!("{other:?}"),
        };
        out.push(line);
    }
    out
}
