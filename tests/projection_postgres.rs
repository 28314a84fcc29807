//! The projection suite on PostgreSQL: each test on a fresh schema of the server named by
//! `EVENTSOURCING_TEST_POSTGRES_URL` (default `postgresql://root@127.0.0.1:5432/test`), dropped
//! afterwards; a second store instance on the schema (its own pool) plays a second process, and
//! child processes on the schema are killed mid-batch.
#![allow(clippy::unwrap_used)]

mod projection;

use eventsourcing::{
    postgres::{
        spawn_projection,
        testing::{server_config, TestSchema},
        tokio_postgres::{IsolationLevel, Row, Transaction},
        PostgresConfig, PostgresProjection, PostgresStore,
    },
    BoxError, Position, ProjectionOptions, RunnerHandle, StoredEvent, Uuid,
};
use projection::{kill::Reopen, Harness, Model, Tally};

/// A store on a schema: a fresh one, dropped with the guard after the store; or, in a child
/// process of the kill tests, the parent's (no guard).
struct Postgres {
    store: PostgresStore,
    name: String,
    config: PostgresConfig,
    _schema: Option<TestSchema>,
}

impl Postgres {
    /// The schema's name, quoted for SQL: the tally's tables live beside the store's.
    fn qualified(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

async fn fresh() -> Postgres {
    let schema = TestSchema::new().await;
    Postgres {
        store: schema.store().await,
        name: schema.name().to_owned(),
        config: schema.config(),
        _schema: Some(schema),
    }
}

projection::projection_tests!(on_postgres: fresh);

projection::kill::kill_tests!(fresh, Postgres);

/// Which schema a child uses.
const SCHEMA: &str = "EVENTSOURCING_KILL_POSTGRES_SCHEMA";

impl Reopen for Postgres {
    fn location(&self) -> Vec<(&'static str, String)> {
        vec![(SCHEMA, self.name.clone())]
    }

    async fn reopen() -> Self {
        let name = std::env::var(SCHEMA).unwrap();
        let config = server_config()
            .to_builder()
            .schema(name.clone())
            .build()
            .unwrap();
        Postgres {
            store: PostgresStore::connect(config.clone()).await.unwrap(),
            name,
            config,
            _schema: None,
        }
    }
}

struct PostgresTally {
    tally: Tally,
    /// The test's schema, quoted.
    schema: String,
}

impl PostgresProjection for PostgresTally {
    fn name(&self) -> &str {
        &self.tally.name
    }

    fn event_types(&self) -> Option<Vec<String>> {
        self.tally.types.clone()
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        if self.tally.broken_setup {
            tx.batch_execute("CREATE TABLE nonsense (").await?;
        }
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.tally_events (
                 projection      text   NOT NULL,
                 position_commit bigint NOT NULL,
                 position_seq    bigint NOT NULL,
                 stream_id       uuid   NOT NULL,
                 version         bigint NOT NULL,
                 PRIMARY KEY (projection, position_commit, position_seq)
             );
             CREATE TABLE IF NOT EXISTS {schema}.tally_streams (
                 projection text   NOT NULL,
                 stream_id  uuid   NOT NULL,
                 events     bigint NOT NULL,
                 PRIMARY KEY (projection, stream_id)
             );"
        ))
        .await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        // Inside the batch's transaction, which is what makes catch-up slow.
        tokio::time::sleep(self.tally.delay).await;
        let schema = &self.schema;
        tx.execute(
            &format!("INSERT INTO {schema}.tally_events VALUES ($1, $2, $3, $4, $5)"),
            &[
                &self.tally.name,
                &(event.position.commit as i64),
                &(event.position.seq as i64),
                &event.stream_id,
                &(event.version as i64),
            ],
        )
        .await?;
        self.tally.check(event)?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.tally_streams VALUES ($1, $2, 1) \
                 ON CONFLICT (projection, stream_id) \
                 DO UPDATE SET events = tally_streams.events + 1"
            ),
            &[&self.tally.name, &event.stream_id],
        )
        .await?;
        self.tally.count();
        Ok(())
    }
}

fn position(row: &Row) -> Position {
    Position {
        commit: row.get::<_, i64>(0) as u64,
        seq: row.get::<_, i64>(1) as u64,
    }
}

impl Harness for Postgres {
    type Store = PostgresStore;

    fn store(&self) -> &PostgresStore {
        &self.store
    }

    async fn another_store(&self) -> PostgresStore {
        PostgresStore::connect(self.config.clone()).await.unwrap()
    }

    fn spawn_on(
        &self,
        store: &PostgresStore,
        tally: Tally,
        options: ProjectionOptions,
    ) -> RunnerHandle {
        let schema = self.qualified();
        spawn_projection(store.clone(), PostgresTally { tally, schema }, options)
    }

    async fn corrupt_metadata(&self, stream_id: Uuid, version: u64) {
        let client = self.store.dedicated_client().await.unwrap();
        let s = self.qualified();
        let updated = client
            .execute(
                &format!(
                    "UPDATE {s}.events SET metadata = '{{\"correlation_id\": 5}}' \
                     WHERE stream_id = $1 AND version = $2"
                ),
                &[&stream_id, &(version as i64)],
            )
            .await
            .unwrap();
        assert_eq!(updated, 1);
    }

    async fn tracked_model(&self, name: &str) -> (Option<Position>, Model) {
        let mut client = self.store.dedicated_client().await.unwrap();
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .unwrap();
        let s = self.qualified();
        let recorded = tx
            .query_opt(
                &format!("SELECT position_commit, position_seq FROM {s}.tracking WHERE name = $1"),
                &[&name],
            )
            .await
            .unwrap()
            .map(|r| position(&r));
        let mut model = Model::default();
        let tables: bool = tx
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                &[&format!("{s}.tally_events"), &format!("{s}.tally_streams")],
            )
            .await
            .unwrap()
            .get(0);
        if !tables {
            return (recorded, model);
        }
        let events = format!(
            "SELECT position_commit, position_seq, stream_id, version FROM {s}.tally_events \
             WHERE projection = $1 ORDER BY position_commit, position_seq"
        );
        model.events = tx
            .query(&events, &[&name])
            .await
            .unwrap()
            .iter()
            .map(|r| (position(r), r.get(2), r.get::<_, i64>(3) as u64))
            .collect();
        let streams =
            format!("SELECT stream_id, events FROM {s}.tally_streams WHERE projection = $1");
        model.streams = tx
            .query(&streams, &[&name])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        (recorded, model)
    }
}
