//! The consumers of the log under test, all reading at once: subscriptions, projection runners
//! and a process application. Each reports, once caught up, the events it saw in the order it
//! saw them.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use eventsourcing_core::{
    spawn_process, Application, BoxError, EventStore, Position, ProjectionOptions, RunnerHandle,
    StoredEvent, Subscription,
};
use eventsourcing_postgres::{
    spawn_projection, tokio_postgres::Transaction, PostgresProjection, PostgresStore,
};
use tokio::task::JoinHandle;

use crate::{
    copy::{Copied, Copier},
    seed::{Deadline, Seed},
    workload::{key, Key},
};

/// What a reader saw, in its order.
pub(crate) type Seen = Vec<(Position, Key)>;

/// One consumer of the log.
pub(crate) enum Reader {
    Subscription {
        name: String,
        seen: Arc<Mutex<Seen>>,
        task: JoinHandle<()>,
    },
    Projection {
        name: String,
        runner: RunnerHandle,
        table: String,
    },
    Process {
        runner: RunnerHandle,
        downstream: PostgresStore,
    },
}

impl Reader {
    /// A [`Subscription`] from the start, reading `page` events per query.
    pub(crate) fn subscription(store: &PostgresStore, page: usize, seed: Seed) -> Reader {
        let name = format!("subscription (page {page})");
        let seen = Arc::<Mutex<Seen>>::default();
        let task = tokio::spawn({
            let (seen, name) = (Arc::clone(&seen), name.clone());
            let mut subscription = Subscription::new(store.clone(), Position::START)
                .page_size(page)
                .poll_interval(Duration::from_millis(200));
            async move {
                loop {
                    let event = subscription
                        .next()
                        .await
                        .unwrap_or_else(|e| panic!("{name}: {e}; {seed}"));
                    seen.lock().unwrap().push((event.position, key(&event)));
                }
            }
        });
        Reader::Subscription { name, seen, task }
    }

    /// A projection runner named `name`, recording each event in a table of its own in
    /// `schema`, keyed by the position: an event handled twice breaks the key.
    pub(crate) fn projection(
        store: &PostgresStore,
        schema: &str,
        name: &str,
        page: usize,
    ) -> Reader {
        let table = format!("\"{schema}\".{name}");
        let options = ProjectionOptions {
            page_size: page,
            poll_interval: Duration::from_millis(200),
            // A broken key fails the same way every time: end soon, with the error.
            attempts: 3,
            ..ProjectionOptions::default()
        };
        let projection = Recorder {
            name: name.to_owned(),
            table: table.clone(),
        };
        let runner = spawn_projection(store.clone(), projection, options);
        Reader::Projection {
            name: name.to_owned(),
            runner,
            table,
        }
    }

    /// The process application, copying each event of `store` into `downstream`.
    pub(crate) fn process(store: &PostgresStore, downstream: PostgresStore) -> Reader {
        let options = ProjectionOptions {
            poll_interval: Duration::from_millis(200),
            ..ProjectionOptions::default()
        };
        let app = Application::new(downstream.clone());
        let runner = spawn_process(Copier, store.clone(), app, options);
        Reader::Process { runner, downstream }
    }

    /// Its name, for messages.
    pub(crate) fn name(&self) -> &str {
        match self {
            Reader::Subscription { name, .. } | Reader::Projection { name, .. } => name,
            Reader::Process { .. } => "process `copier`",
        }
    }

    /// How far it got.
    pub(crate) fn position(&self) -> Position {
        match self {
            Reader::Subscription { seen, .. } => {
                seen.lock().unwrap().last().map_or(Position::START, |s| s.0)
            }
            Reader::Projection { runner, .. } | Reader::Process { runner, .. } => runner.position(),
        }
    }

    /// Whether it ended (it never should by itself).
    pub(crate) fn ended(&self) -> bool {
        match self {
            Reader::Subscription { task, .. } => task.is_finished(),
            Reader::Projection { runner, .. } | Reader::Process { runner, .. } => {
                runner.is_finished()
            }
        }
    }

    /// Waits until it has got to `end`, failing if it ends or the deadline passes.
    pub(crate) async fn catch_up(&self, end: Position, deadline: Deadline) {
        while self.position() < end {
            deadline.check(|| {
                format!(
                    "{} to reach {end:?} (it is at {:?})",
                    self.name(),
                    self.position()
                )
            });
            assert!(
                !self.ended(),
                "{} ended at {:?}, before {end:?}",
                self.name(),
                self.position()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops it and returns what it saw, in its order. `store` is on the server where the
    /// projections keep their tables; `count` is how many events it must have seen (the process's copies may
    /// take a moment to become readable downstream).
    pub(crate) async fn finish(
        self,
        store: &PostgresStore,
        count: usize,
        deadline: Deadline,
    ) -> Seen {
        let seed = deadline.seed();
        match self {
            Reader::Subscription { seen, task, .. } => {
                task.abort();
                let seen = seen.lock().unwrap().clone();
                seen
            }
            Reader::Projection {
                name,
                runner,
                table,
            } => {
                if let Err(e) = runner.stop().await {
                    panic!("projection `{name}` failed: {e}; {seed}");
                }
                let client = store.dedicated_client().await.unwrap();
                let sql = format!(
                    "SELECT position_commit, position_seq, stream_id, version, save \
                     FROM {table} ORDER BY handled"
                );
                let rows = client.query(&sql, &[]).await.unwrap();
                rows.iter()
                    .map(|r| {
                        let position = Position {
                            commit: r.get::<_, i64>(0) as u64,
                            seq: r.get::<_, i64>(1) as u64,
                        };
                        let key = (
                            r.get(2),
                            r.get::<_, i64>(3) as u64,
                            r.get::<_, i64>(4) as u64,
                        );
                        (position, key)
                    })
                    .collect()
            }
            Reader::Process { runner, downstream } => {
                if let Err(e) = runner.stop().await {
                    panic!("the process failed: {e}; {seed}");
                }
                let copies = read_all(&downstream, count, deadline, "the downstream log").await;
                copies
                    .iter()
                    .map(|e| {
                        eventsourcing_core::serde_json::from_slice::<Copied>(&e.payload)
                            .unwrap()
                            .source()
                    })
                    .collect()
            }
        }
    }
}

/// Reads `store`'s whole log from the start, page by page, until it holds `count` events (a
/// transaction open elsewhere may hold committed ones back for a while), then once more to
/// find nothing past them.
pub(crate) async fn read_all(
    store: &PostgresStore,
    count: usize,
    deadline: Deadline,
    what: &str,
) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_log(after, 1000).await.unwrap();
        match page.last() {
            Some(last) => after = last.position,
            None if events.len() >= count => return events,
            None => {
                let have = events.len();
                deadline.check(|| format!("{what} to hold {count} events (it has {have})"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        events.extend(page);
    }
}

/// The projection: one row per event, keyed by its position, numbered in the order handled.
struct Recorder {
    name: String,
    table: String,
}

impl PostgresProjection for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               handled bigint GENERATED ALWAYS AS IDENTITY, \
               position_commit bigint, position_seq bigint, \
               stream_id uuid, version bigint, save bigint, \
               PRIMARY KEY (position_commit, position_seq))",
            self.table
        );
        tx.batch_execute(&sql).await?;
        Ok(())
    }

    async fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        let (stream_id, version, save) = key(event);
        let sql = format!(
            "INSERT INTO {} (position_commit, position_seq, stream_id, version, save) \
             VALUES ($1, $2, $3, $4, $5)",
            self.table
        );
        let position = (event.position.commit as i64, event.position.seq as i64);
        tx.execute(
            &sql,
            &[
                &position.0,
                &position.1,
                &stream_id,
                &(version as i64),
                &(save as i64),
            ],
        )
        .await?;
        Ok(())
    }
}
