//! What the backup tests share: the stores' row counts and a synced export, a store
//! filled with widgets, snapshots, two projections' positions, a parked event and metadata,
//! and the decoded, store-independent content of a backup file.

#[path = "../common/wait.rs"]
pub(crate) mod wait;

use std::{future::Future, io::BufWriter, path::Path};

use eventsourcing::chrono::Utc;
use eventsourcing::{
    backup::{BackupError, BackupReader, Counts, Record},
    prelude::*,
    Archive, Backup, EventStore, Metadata, ParkedEvent, Position, Snapshotting, StoredEvent,
    Tracking,
};
use eventsourcing_postgres::PostgresStore;
use eventsourcing_sqlite::SqliteStore;

use crate::widget::WidgetRegistryEndpoint as Widget;
use eventsourcing_postgres::testing::log_holding;

/// A store of the backup tests: the library's `Backup` and `Archive` (both stores implement
/// them), the rows of the store's four tables, and an export into a synced file.
pub(crate) trait BackupStore: Backup + Archive + Clone {
    /// Rows of events, snapshots, tracking, parked_events.
    fn table_rows(&self) -> impl Future<Output = [i64; 4]>;

    /// Exports the store into a new file at `path`, synced.
    async fn export_file(&self, path: &Path) -> Result<Counts, BackupError> {
        let file = BufWriter::new(std::fs::File::create(path)?);
        let (out, counts) = self.export(file).await?;
        out.into_inner().unwrap().sync_all().unwrap();
        Ok(counts)
    }
}

impl BackupStore for PostgresStore {
    fn table_rows(&self) -> impl Future<Output = [i64; 4]> {
        postgres_rows(self)
    }
}

impl BackupStore for SqliteStore {
    fn table_rows(&self) -> impl Future<Output = [i64; 4]> {
        sqlite_rows(self)
    }
}

/// The tables [`BackupStore::table_rows`] counts, in its order.
const TABLES: [&str; 4] = ["events", "snapshots", "tracking", "parked_events"];

async fn postgres_rows(store: &PostgresStore) -> [i64; 4] {
    let client = store.dedicated_client().await.unwrap();
    let schema = store.config().schema();
    let mut out = [0; 4];
    for (count, table) in out.iter_mut().zip(TABLES) {
        let sql = format!("SELECT count(*) FROM \"{schema}\".{table}");
        *count = client.query_one(&sql, &[]).await.unwrap().get(0);
    }
    out
}

async fn sqlite_rows(store: &SqliteStore) -> [i64; 4] {
    store
        .query(|tx| {
            let mut out = [0; 4];
            for (count, table) in out.iter_mut().zip(TABLES) {
                let sql = format!("SELECT count(*) FROM {table}");
                *count = tx.query_row(&sql, [], |r| r.get(0))?;
            }
            Ok(out)
        })
        .await
        .unwrap()
}

/// `#[tokio::test]`s that run `$check` (an `async fn` taking a `&impl Backup`) on a fresh
/// PostgreSQL schema (the test `$postgres`) and on a fresh SQLite file (`$sqlite`).
macro_rules! on_both_stores {
    ($check:ident: $postgres:ident, $sqlite:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let schema = eventsourcing_postgres::testing::TestSchema::new().await;
            $check(&schema.store().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let (store, _guard) = eventsourcing_sqlite::testing::temp_file_store();
            $check(&store).await;
        }
    };
}
pub(crate) use on_both_stores;

/// An application that reads snapshots for every type and writes none by itself.
pub(crate) fn app<S: EventStore + Clone>(store: &S) -> Application<S> {
    Application::new(store.clone()).with_snapshotting(Snapshotting::every(1_000_000))
}

/// Every event of the store's log, in order, once the log holds as many events as the table
/// (PostgreSQL's log holds back committed events while an older transaction runs anywhere on
/// the server, and other tests share it).
pub(crate) async fn log<S: BackupStore>(store: &S) -> Vec<StoredEvent> {
    log_holding(store, store.table_rows().await[0] as usize).await
}

/// Fills `store` with `n` widgets (0 to 6 renames each, metadata on every third save, a
/// snapshot of every other one), two projections' positions (one halfway, one at the end), a
/// parked event, and returns the widget ids.
pub(crate) async fn fill<S: BackupStore>(store: &S, n: usize) -> Vec<Uuid> {
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
