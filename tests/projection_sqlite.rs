//! The projection suite on the embedded SQLite store: in memory, and on a file (where a second
//! store instance on the same file plays a second process); on a file, child processes killed
//! mid-batch too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod projection;

use eventsourcing::{
    sqlite::{
        rusqlite::{self, OptionalExtension, Transaction},
        spawn_projection,
        testing::{memory_store, temp_file_store, TempGuard},
        SqliteConfig, SqliteProjection, SqliteStore,
    },
    BoxError, Position, ProjectionOptions, RunnerHandle, StoredEvent, Uuid,
};
use projection::{kill::Reopen, Harness, Model, Tally};

/// A store, and the temporary file it lives in (none in memory).
struct Sqlite {
    store: SqliteStore,
    file: Option<TempGuard>,
}

async fn memory() -> Sqlite {
    Sqlite {
        store: memory_store(),
        file: None,
    }
}

async fn file() -> Sqlite {
    let (store, guard) = temp_file_store();
    Sqlite {
        store,
        file: Some(guard),
    }
}

projection::projection_tests!(in_memory: memory);
projection::projection_tests!(on_file: file);

projection::kill::kill_tests!(file, Sqlite);

/// Where a child finds the database file.
const DB: &str = "EVENTSOURCING_KILL_SQLITE_DB";

impl Reopen for Sqlite {
    fn location(&self) -> Vec<(&'static str, String)> {
        let guard = self
            .file
            .as_ref()
            .expect("only a file is shared with a child");
        vec![(DB, guard.dbname())]
    }

    async fn reopen() -> Self {
        let db = std::env::var(DB).unwrap();
        Sqlite {
            store: SqliteStore::open(SqliteConfig::new(db)).await.unwrap(),
            file: None,
        }
    }
}

/// The tally's tables, beside the store's.
struct SqliteTally(Tally);

impl SqliteProjection for SqliteTally {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn event_types(&self) -> Option<Vec<String>> {
        self.0.types.clone()
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        if self.0.broken_setup {
            tx.execute_batch("CREATE TABLE nonsense (")?;
        }
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS tally_events (
                 projection      TEXT    NOT NULL,
                 position_commit INTEGER NOT NULL,
                 position_seq    INTEGER NOT NULL,
                 stream_id       BLOB    NOT NULL,
                 version         INTEGER NOT NULL,
                 PRIMARY KEY (projection, position_commit, position_seq)
             );
             CREATE TABLE IF NOT EXISTS tally_streams (
                 projection TEXT    NOT NULL,
                 stream_id  BLOB    NOT NULL,
                 events     INTEGER NOT NULL,
                 PRIMARY KEY (projection, stream_id)
             );",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        // On the writer thread: this holds up every save, which is what makes catch-up slow.
        std::thread::sleep(self.0.delay);
        tx.execute(
            "INSERT INTO tally_events VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                self.0.name,
                event.position.commit as i64,
                event.position.seq as i64,
                event.stream_id.as_bytes(),
                event.version as i64
            ],
        )?;
        self.0.check(event)?;
        tx.execute(
            "INSERT INTO tally_streams VALUES (?1, ?2, 1) \
             ON CONFLICT (projection, stream_id) DO UPDATE SET events = events + 1",
            rusqlite::params![self.0.name, event.stream_id.as_bytes()],
        )?;
        self.0.count();
        Ok(())
    }
}

fn position(commit: i64, seq: i64) -> Position {
    Position {
        commit: commit as u64,
        seq: seq as u64,
    }
}

/// The tally's rows and the tracking row, in the read transaction `query` runs in.
fn read_tally(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<(Option<Position>, Model)> {
    let recorded = tx
        .query_row(
            "SELECT position_commit, position_seq FROM tracking WHERE name = ?1",
            [name],
            |r| Ok(position(r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut model = Model::default();
    let tables: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name IN ('tally_events', 'tally_streams')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok((recorded, model));
    }
    model.events = tx
        .prepare(
            "SELECT position_commit, position_seq, stream_id, version FROM tally_events \
             WHERE projection = ?1 ORDER BY position_commit, position_seq",
        )?
        .query_map([name], |r| {
            let at = position(r.get(0)?, r.get(1)?);
            Ok((at, Uuid::from_bytes(r.get(2)?), r.get::<_, i64>(3)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    model.streams = tx
        .prepare("SELECT stream_id, events FROM tally_streams WHERE projection = ?1")?
        .query_map([name], |r| {
            Ok((Uuid::from_bytes(r.get(0)?), r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok((recorded, model))
}

/// Overwrites one event's metadata from a projection's setup, which runs in a committed write
/// transaction on the store's own connection: the one way into a private in-memory database.
struct CorruptMetadata {
    stream_id: Uuid,
    version: i64,
}

impl SqliteProjection for CorruptMetadata {
    fn name(&self) -> &str {
        "corrupt-metadata"
    }

    fn event_types(&self) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let updated = tx.execute(
            r#"UPDATE events SET metadata = '{"correlation_id": 5}'
               WHERE stream_id = ?1 AND version = ?2"#,
            rusqlite::params![self.stream_id.as_bytes(), self.version],
        )?;
        match updated {
            1 => Ok(()),
            n => Err(format!("updated {n} rows").into()),
        }
    }

    fn handle(&mut self, _: &Transaction<'_>, _: &StoredEvent) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Harness for Sqlite {
    type Store = SqliteStore;

    fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn another_store(&self) -> SqliteStore {
        match &self.file {
            Some(guard) => SqliteStore::open(guard.config()).await.unwrap(),
            None => self.store.clone(),
        }
    }

    fn spawn_on(
        &self,
        store: &SqliteStore,
        tally: Tally,
        options: ProjectionOptions,
    ) -> RunnerHandle {
        spawn_projection(store.clone(), SqliteTally(tally), options)
    }

    async fn corrupt_metadata(&self, stream_id: Uuid, version: u64) {
        let corrupt = CorruptMetadata {
            stream_id,
            version: version as i64,
        };
        // The setup runs (and commits) before the runner looks at a stop; the runner may also
        // have read the page with the row just corrupted and stopped on it (a bad row is not
        // filtered out by type). A failed setup is another error.
        let ended = spawn_projection(self.store.clone(), corrupt, ProjectionOptions::default())
            .stop()
            .await;
        match ended {
            Ok(()) | Err(eventsourcing::Error::Handler { .. }) => {}
            Err(e) => panic!("corrupting the metadata: {e}"),
        }
    }

    async fn tracked_model(&self, name: &str) -> (Option<Position>, Model) {
        let name = name.to_owned();
        self.store
            .query(move |tx| read_tally(tx, &name))
            .await
            .unwrap()
    }
}
