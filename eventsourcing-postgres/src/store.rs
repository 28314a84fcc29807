//! The store: pool, appends, loads and the log.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use eventsourcing_core::{
    Changes, Env, Error, EventStore, Metadata, NewEvent, Position, Snapshot, StoredEvent, Tracking,
};
use futures_util::TryStreamExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{
    error::SqlState,
    types::{Json, ToSql},
    Row,
};
use uuid::Uuid;

use crate::{
    config::PostgresConfig,
    error::{
        is_missing_table, missing_tables, out_of_range, pg_error, query_error, PoolTimeout,
        TooManyWaiting,
    },
    live::Live,
    migrate::{self, AppliedMigration, MigrationReport, MIGRATIONS},
    pool::{Connector, LogErrors, Manager, PgConn},
    sql::{self, quote_ident, Shape, Sql, Stmt},
    xid::Xid8,
};

/// How long `read_log` waits, at most, for the events that had committed when it was called but
/// are held back behind an older running transaction.
pub const LOG_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// The PostgreSQL event store: a bb8 pool of tokio-postgres connections, each with its
/// prepared statements.
///
/// Cheap to clone: clones share the pool. `Debug` shows the settings (without the password)
/// and the pool's state.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: bb8::Pool<Manager>,
    config: PostgresConfig,
    connector: Connector,
    sql: Sql,
    /// `POSTGRES_MAX_WAITING`: permits for the connections plus the callers allowed to wait.
    waiting: Option<Semaphore>,
    last_error: Arc<Mutex<Option<String>>>,
    /// Wakes this process's subscribers after each save through this store, and other
    /// processes' through `NOTIFY` (see `live.rs`).
    live: Live,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.pool.state();
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .finish()
    }
}

/// A checked-out connection (and, with `POSTGRES_MAX_WAITING`, its place in the queue).
pub(crate) struct Checkout<'a> {
    conn: bb8::PooledConnection<'a, Manager>,
    _permit: Option<SemaphorePermit<'a>>,
}

impl Deref for Checkout<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        &self.conn
    }
}

impl DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        &mut self.conn
    }
}

/// The state of a store's schema, as `eventsourcing-admin status` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// The schema.
    pub schema: String,
    /// The migrations recorded in the schema (empty if it has no migrations table).
    pub applied: Vec<AppliedMigration>,
    /// Migrations this code has that are not applied, as `(version, description)`.
    pub pending: Vec<(u32, &'static str)>,
    /// The number of events, if the events table exists.
    pub events: Option<i64>,
    /// True if the newest event's transaction id is not below the server's next transaction id:
    /// the events were copied from another cluster (dump/restore, logical replication) and the
    /// log order is broken until the server's transaction ids are moved past them (see the crate
    /// docs, "Dump and restore").
    pub log_ahead_of_server: bool,
}

impl PostgresStore {
    /// Opens the pool. With `create_table` (the default; `CREATE_TABLE=y`) it first applies
    /// the pending migrations; otherwise it issues no DDL, and a missing table is reported as
    /// [`Error::Schema`] by the first operation.
    ///
    /// One connection is opened at once, so a wrong host, port or password fails here with the
    /// server's reason (never showing the password); bb8 opens the others in the background.
    pub async fn connect(config: PostgresConfig) -> Result<Self, Error> {
        let connector = Connector::new(&config)?;
        let mut first = connector
            .connect()
            .await
            .map_err(|e| Error::Store(Box::new(e)))?;
        if config.create_table {
            migrate::migrate(&mut first, &config.schema).await?;
        }
        check_log_horizon(&first, &config.schema).await?;

        let last_error = Arc::new(Mutex::new(None));
        let manager = Manager {
            connector: connector.clone(),
            last_error: Arc::clone(&last_error),
        };
        let max_size = config.max_connections();
        let pool = bb8::Pool::builder()
            .max_size(max_size)
            .min_idle(Some(config.pool_size.min(max_size)))
            .connection_timeout(config.pool_timeout)
            .max_lifetime(config.recycle)
            .test_on_check_out(config.pre_ping)
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .error_sink(Box::new(LogErrors {
                last_error: Arc::clone(&last_error),
            }))
            .build_unchecked(manager);
        // Hand the connection we already have to the pool rather than dropping it.
        let _ = pool.add(PgConn::from_client(first));
        let waiting = config
            .max_waiting
            .map(|w| Semaphore::new((max_size as usize).saturating_add(w as usize)));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&config.schema),
                live: Live::new(&config, connector.clone()),
                config,
                connector,
                waiting,
                last_error,
            }),
        })
    }

    /// [`PostgresConfig::from_env`] then [`connect`](Self::connect).
    pub async fn from_env(env: &Env) -> Result<Self, Error> {
        Self::connect(PostgresConfig::from_env(env)?).await
    }

    /// The settings.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The pool's connections and their use.
    pub fn pool_state(&self) -> bb8::State {
        self.inner.pool.state()
    }

    /// Applies the pending migrations (creating the schema if needed), under an advisory lock
    /// so that concurrent callers apply each migration once. Safe to call any number of times.
    /// Fails with [`Error::Schema`] if an applied migration differs from the one embedded here.
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut client = self.dedicated_client().await?;
        migrate::migrate(&mut client, &self.inner.config.schema).await
    }

    /// The applied and pending migrations, the number of events and the log-order check.
    pub async fn status(&self) -> Result<SchemaStatus, Error> {
        let schema = &self.inner.config.schema;
        let conn = self.checkout().await?;
        let applied = migrate::applied(&conn.client, schema)
            .await?
            .unwrap_or_default();
        let pending = MIGRATIONS
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .map(|m| (m.version, m.description))
            .collect();
        let events = match conn
            .client
            .query_one(
                &format!("SELECT count(*) FROM {}.events", quote_ident(schema)),
                &[],
            )
            .await
        {
            Ok(row) => Some(row.get::<_, i64>(0)),
            Err(e) if is_missing_table(&e) => None,
            Err(e) => return Err(pg_error(e)),
        };
        let log_ahead_of_server = events.is_some() && log_ahead(&conn.client, schema).await?;
        Ok(SchemaStatus {
            schema: schema.clone(),
            applied,
            pending,
            events,
            log_ahead_of_server,
        })
    }

    /// `Ok` if every migration of this code is applied; otherwise [`Error::Schema`] saying to
    /// run `eventsourcing-admin migrate`. For start-up checks with `CREATE_TABLE=n`.
    pub async fn check_schema(&self) -> Result<(), Error> {
        let status = self.status().await?;
        if status.pending.is_empty() {
            return Ok(());
        }
        let pending: Vec<String> = status
            .pending
            .iter()
            .map(|(v, d)| format!("{v} ({d})"))
            .collect();
        Err(missing_tables(
            &status.schema,
            &format!("pending migrations: {}", pending.join(", ")),
        ))
    }

    /// A new connection outside the pool, with the same settings (TLS, session timeouts). For
    /// work that must own a session: `LISTEN`, long transactions, [`append_in`](Self::append_in).
    pub async fn dedicated_client(&self) -> Result<tokio_postgres::Client, Error> {
        self.inner
            .connector
            .connect()
            .await
            .map_err(|e| Error::Store(Box::new(e)))
    }

    /// Appends events inside the caller's transaction, with the same statement, checks and
    /// errors as [`EventStore::append`]; they commit (and join the log) when the transaction
    /// does. For writing events atomically with other rows (a projection's tracking position,
    /// an outbox).
    ///
    /// After a conflict the transaction is aborted (PostgreSQL's rule for a failed statement):
    /// roll it back.
    pub async fn append_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        events: Vec<NewEvent>,
    ) -> Result<(), Error> {
        let batch = match Batch::new(&events)? {
            Some(batch) => batch,
            None => return Ok(()),
        };
        let schema = &self.inner.config.schema;
        let shape = batch.shape();
        let result = tx
            .execute(&sql::append_text(schema, shape), &batch.params(shape))
            .await;
        let hint = match result {
            Ok(n) if n as usize == events.len() => return Ok(()),
            Ok(0) => None,
            Ok(n) => return Err(partial_insert(n, events.len())),
            Err(e) => match conflicting_stream(&e) {
                Some(hint) => hint,
                None => return Err(query_error(e, schema)),
            },
        };
        // The transaction is unusable after a failed statement: ask a pooled connection.
        let mut conn = self.checkout().await?;
        Err(self.conflict(&mut conn, &batch, hint).await)
    }

    /// Events recorded at `from <= timestamp < to`, in log order, after `after`, at most
    /// `limit`; like [`read_log`](EventStore::read_log) it only returns events that can no
    /// longer be preceded by a later commit. Served by the BRIN index on `timestamp`.
    ///
    /// The timestamp is when the event was recorded by the application, not when it
    /// committed; pass the last position seen as `after` to page through a window.
    pub async fn read_by_time(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        if limit == 0 || from >= to {
            return Ok(Vec::new());
        }
        self.caught_up(after, limit, || async {
            let conn = self.checkout().await?;
            let (commit, seq) = position_params(after);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            // Not a cached statement: PostgreSQL would soon switch a cached one to a generic
            // plan, which cannot weigh the window's width (BRIN range scan and sort, or the log
            // index in order); a statement used once is planned for its own parameters.
            let rows = conn
                .client
                .query(
                    self.inner.sql.get(Stmt::ReadByTime),
                    &[&from, &to, &commit, &seq, &limit],
                )
                .await
                .map_err(|e| self.error(e))?;
            rows.iter().map(row_to_event).collect()
        })
        .await
    }

    pub(crate) async fn checkout(&self) -> Result<Checkout<'_>, Error> {
        let permit = match &self.inner.waiting {
            Some(semaphore) => Some(semaphore.try_acquire().map_err(|_| {
                Error::Store(Box::new(TooManyWaiting {
                    max_waiting: self.inner.config.max_waiting.unwrap_or_default(),
                }))
            })?),
            None => None,
        };
        let conn = self.inner.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => Error::Store(Box::new(e)),
            bb8::RunError::TimedOut => Error::Store(Box::new(PoolTimeout {
                waited: self.inner.config.pool_timeout,
                last_error: self
                    .inner
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })),
        })?;
        Ok(Checkout {
            conn,
            _permit: permit,
        })
    }

    pub(crate) async fn statement(
        &self,
        conn: &mut PgConn,
        stmt: Stmt,
    ) -> Result<tokio_postgres::Statement, Error> {
        conn.statement(stmt, &self.inner.sql, &self.inner.config.schema)
            .await
    }

    pub(crate) fn error(&self, err: tokio_postgres::Error) -> Error {
        query_error(err, &self.inner.config.schema)
    }

    pub(crate) fn live(&self) -> &Live {
        &self.inner.live
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), Error> {
        let batch = match Batch::new(&events)? {
            Some(batch) => batch,
            None => return Ok(()),
        };
        let mut conn = self.checkout().await?;
        let shape = batch.shape();
        let stmt = self.statement(&mut conn, shape.stmt()).await?;
        let result = conn.client.execute(&stmt, &batch.params(shape)).await;
        let hint = match result {
            Ok(n) if n as usize == events.len() => {
                drop(conn);
                self.inner.live.appended();
                return Ok(());
            }
            // The contiguity guard held every row back.
            Ok(0) => None,
            Ok(n) => return Err(partial_insert(n, events.len())),
            Err(e) => match conflicting_stream(&e) {
                Some(hint) => hint,
                None => return Err(self.error(e)),
            },
        };
        Err(self.conflict(&mut conn, &batch, hint).await)
    }

    /// Builds the typed conflict after a rejected save: reads the current version of every
    /// stream of the save and names the first one whose first new version is not current + 1
    /// (preferring the stream the primary-key violation named).
    async fn conflict(&self, conn: &mut PgConn, batch: &Batch<'_>, hint: Option<Uuid>) -> Error {
        let ids: Vec<Uuid> = batch.streams.iter().map(|(id, _)| *id).collect();
        let current: HashMap<Uuid, u64> = match self.statement(conn, Stmt::StreamVersions).await {
            Ok(stmt) => match conn.client.query(&stmt, &[&ids]).await {
                Ok(rows) => rows
                    .iter()
                    .map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1).max(0) as u64))
                    .collect(),
                Err(e) => return self.error(e),
            },
            Err(e) => return e,
        };
        let stale = |(id, first): &(Uuid, u64)| {
            let actual = current.get(id).copied().unwrap_or(0);
            (actual + 1 != *first).then_some(Error::Conflict {
                stream_id: *id,
                expected: first.saturating_sub(1),
                actual,
            })
        };
        let named = hint.and_then(|h| batch.streams.iter().find(|(id, _)| *id == h));
        if let Some(conflict) = named.and_then(stale) {
            return conflict;
        }
        if let Some(conflict) = batch.streams.iter().find_map(stale) {
            return conflict;
        }
        // Every stream is now where the save expected it: a concurrent save committed between
        // our statement's snapshot and this check. Still a conflict (nothing was written); a
        // retry will succeed.
        let (id, first) = named.or(batch.streams.first()).copied().unwrap_or_default();
        Error::Conflict {
            stream_id: id,
            expected: first.saturating_sub(1),
            actual: current.get(&id).copied().unwrap_or(0),
        }
    }

    async fn load_events(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.query_stream(Stmt::Load, stream_id, after_version, up_to, |row, id| {
            decode_row(row, id, 0)
        })
        .await
    }

    /// `load` without the columns replay never reads (position, metadata): less to send, less
    /// to decode.
    async fn load_replay_events(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.query_stream(
            Stmt::LoadReplay,
            stream_id,
            after_version,
            up_to,
            decode_replay_row,
        )
        .await
    }

    /// Runs a `(stream_id, after, up_to)` query of one stream's events and decodes its rows.
    async fn query_stream(
        &self,
        stmt: Stmt,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        decode: fn(&Row, Uuid) -> Result<StoredEvent, Error>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let after = i64::try_from(after_version).unwrap_or(i64::MAX);
        let up_to = up_to.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        if after >= up_to {
            return Ok(Vec::new());
        }
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, stmt).await?;
        let params: [&(dyn ToSql + Sync); 3] = [&stream_id, &after, &up_to];
        // Decode rows as they arrive rather than after the last one: the connection task
        // reads the socket while this task converts.
        let rows = conn
            .client
            .query_raw(&stmt, params)
            .await
            .map_err(|e| self.error(e))?;
        let mut rows = std::pin::pin!(rows);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|e| self.error(e))? {
            events.push(decode(&row, stream_id)?);
        }
        Ok(events)
    }

    async fn append_with_tracking(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> Result<(), Error> {
        let batch = Batch::new(&events)?;
        let empty = Batch::empty();
        let batch = batch.as_ref().unwrap_or(&empty);
        let (commit, seq) = tracking_params(tracking.position);
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::AppendTracked).await?;
        let mut params = batch.params(Shape::ManyGuarded);
        params.extend([&tracking.name as &(dyn ToSql + Sync), &commit, &seq]);
        let hint = match conn.client.query_one(&stmt, &params).await {
            Ok(row) => {
                let ok: bool = row.try_get(0).map_err(pg_error)?;
                let tracked: i64 = row.try_get(1).map_err(pg_error)?;
                let inserted: i64 = row.try_get(2).map_err(pg_error)?;
                match (ok, tracked) {
                    (true, 1) if inserted as usize == events.len() => {
                        drop(conn);
                        if !events.is_empty() {
                            self.inner.live.appended();
                        }
                        return Ok(());
                    }
                    (true, 1) => return Err(partial_insert(inserted as u64, events.len())),
                    (true, _) => {
                        let recorded = self
                            .recorded_position(&mut conn, &tracking.name)
                            .await?
                            .unwrap_or(Position::START);
                        return Err(Error::AlreadyProcessed {
                            name: tracking.name,
                            recorded,
                            attempted: tracking.position,
                        });
                    }
                    (false, _) => None,
                }
            }
            Err(e) => match conflicting_stream(&e) {
                Some(hint) => hint,
                None => return Err(self.error(e)),
            },
        };
        Err(self.conflict(&mut conn, batch, hint).await)
    }

    async fn recorded_position(
        &self,
        conn: &mut PgConn,
        name: &str,
    ) -> Result<Option<Position>, Error> {
        let stmt = self.statement(conn, Stmt::TrackingPosition).await?;
        let row = conn
            .client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| self.error(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let commit: i64 = row.try_get(0).map_err(pg_error)?;
        let seq: i64 = row.try_get(1).map_err(pg_error)?;
        Ok(Some(Position {
            commit: commit.max(0) as u64,
            seq: seq.max(0) as u64,
        }))
    }

    async fn tracked_position(&self, name: &str) -> Result<Option<Position>, Error> {
        let mut conn = self.checkout().await?;
        self.recorded_position(&mut conn, name).await
    }

    async fn write_snapshot(&self, snapshot: Snapshot, keep: Option<u32>) -> Result<(), Error> {
        let version = version_param(snapshot.version)?;
        // The fingerprint is 64 opaque bits; bigint stores them as they are.
        let fingerprint = i64::from_ne_bytes(snapshot.fingerprint.to_ne_bytes());
        let keep: Option<i64> = keep.map(|k| i64::from(k.max(1)));
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::SaveSnapshot).await?;
        conn.client
            .execute(
                &stmt,
                &[
                    &snapshot.stream_id,
                    &version,
                    &snapshot.timestamp,
                    &snapshot.state_type,
                    &fingerprint,
                    &snapshot.payload,
                    &keep,
                ],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn newest_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> Result<Option<Snapshot>, Error> {
        let at_or_below = at_or_below.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::LoadSnapshot).await?;
        let row = conn
            .client
            .query_opt(&stmt, &[&stream_id, &at_or_below])
            .await
            .map_err(|e| self.error(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version: i64 = row.try_get(0).map_err(pg_error)?;
        let fingerprint: i64 = row.try_get(3).map_err(pg_error)?;
        Ok(Some(Snapshot {
            stream_id,
            version: u64::try_from(version).map_err(|_| {
                out_of_range(format!(
                    "snapshot of stream {stream_id} has version {version}"
                ))
            })?,
            timestamp: row.try_get(1).map_err(pg_error)?,
            state_type: row.try_get(2).map_err(pg_error)?,
            fingerprint: u64::from_ne_bytes(fingerprint.to_ne_bytes()),
            payload: row.try_get(4).map_err(pg_error)?,
        }))
    }

    async fn current_version(&self, stream_id: Uuid) -> Result<u64, Error> {
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::StreamVersion).await?;
        let row = conn
            .client
            .query_one(&stmt, &[&stream_id])
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.try_get::<_, i64>(0).map_err(pg_error)?.max(0) as u64)
    }

    /// The log after `after`.
    async fn log(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.caught_up(after, limit, || self.log_page(after, limit))
            .await
    }

    /// Runs a log query; a short page at the head of the log is completed, within
    /// [`LOG_CATCH_UP`], with the events that had committed when the call began but were held
    /// back behind an older transaction still running, so that a caller reads its own writes.
    async fn caught_up<F, Fut>(
        &self,
        after: Position,
        limit: usize,
        page: F,
    ) -> Result<Vec<StoredEvent>, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<StoredEvent>, Error>>,
    {
        let events = page().await?;
        if events.len() >= limit {
            return Ok(events);
        }
        // Events of transactions up to the newest committed one exist; if that one is beyond
        // what this page returns, its events were held back (or committed since the page was
        // read). Wait, without holding a connection, until no older transaction runs.
        let returned = events.last().map_or(after.commit, |e| e.position.commit);
        let (horizon, newest) = self.log_head().await?;
        let newest = match newest {
            Some(newest) if newest.0 > returned => newest,
            _ => return Ok(events),
        };
        if horizon > newest {
            return page().await;
        }
        let deadline = tokio::time::Instant::now() + LOG_CATCH_UP;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            tokio::time::sleep(pause).await;
            let (horizon, _) = self.log_head().await?;
            if horizon > newest {
                return page().await;
            }
            if tokio::time::Instant::now() + pause >= deadline {
                tracing::debug!(
                    horizon = horizon.0,
                    newest = newest.0,
                    "committed events are held back by an older running transaction"
                );
                // What is safe now: never past a running transaction.
                return page().await;
            }
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }

    async fn log_page(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, Error> {
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::ReadLog).await?;
        let (commit, seq) = position_params(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = conn
            .client
            .query(&stmt, &[&commit, &seq, &limit])
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(row_to_event).collect()
    }

    /// The horizon (oldest running transaction) and the newest committed event's transaction.
    async fn log_head(&self) -> Result<(Xid8, Option<Xid8>), Error> {
        let mut conn = self.checkout().await?;
        let stmt = self.statement(&mut conn, Stmt::LogHead).await?;
        let row = conn
            .client
            .query_one(&stmt, &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok((
            row.try_get(0).map_err(pg_error)?,
            row.try_get(1).map_err(pg_error)?,
        ))
    }
}

impl EventStore for PostgresStore {
    fn append(&self, events: Vec<NewEvent>) -> impl Future<Output = Result<(), Error>> + Send {
        self.append_events(events)
    }

    fn load(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        self.load_events(stream_id, after_version, up_to)
    }

    fn load_for_replay(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        self.load_replay_events(stream_id, after_version, up_to)
    }

    fn stream_version(&self, stream_id: Uuid) -> impl Future<Output = Result<u64, Error>> + Send {
        self.current_version(stream_id)
    }

    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        self.log(after, limit)
    }

    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        keep: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.write_snapshot(snapshot, keep)
    }

    fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send {
        self.newest_snapshot(stream_id, at_or_below)
    }

    fn append_tracked(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.append_with_tracking(events, tracking)
    }

    fn tracking_position(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        let name = name.to_owned();
        async move { self.tracked_position(&name).await }
    }

    /// Woken at once after every save made through this store (and its clones), and by
    /// `LISTEN` for saves by other store instances (started by the first call); see
    /// [Live notifications](crate#live-notifications).
    fn changes(&self) -> Changes {
        self.inner.live.changes()
    }
}

/// The columns of one save, ready to bind.
struct Batch<'a> {
    stream_ids: Vec<Uuid>,
    versions: Vec<i64>,
    timestamps: Vec<DateTime<Utc>>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a [u8]>,
    metadata: Vec<Option<Json<&'a Metadata>>>,
    /// Streams whose first new version is above 1: (stream, first version) for the guard.
    guard_ids: Vec<Uuid>,
    guard_versions: Vec<i64>,
    /// Every stream of the save with its first new version, in order of first appearance.
    streams: Vec<(Uuid, u64)>,
}

impl<'a> Batch<'a> {
    /// `None` for an empty save. A save whose versions are not contiguous within a stream is a
    /// conflict before anything is sent (as in `MemoryStore`).
    fn new(events: &'a [NewEvent]) -> Result<Option<Self>, Error> {
        if events.is_empty() {
            return Ok(None);
        }
        let n = events.len();
        let mut batch = Batch {
            stream_ids: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            guard_ids: Vec::new(),
            guard_versions: Vec::new(),
            streams: Vec::new(),
        };
        // Next expected version per stream; a save rarely holds more than a few streams.
        let mut next: Vec<(Uuid, u64)> = Vec::new();
        for event in events {
            match next.iter_mut().find(|(id, _)| *id == event.stream_id) {
                Some((_, expected)) => {
                    if event.version != *expected {
                        return Err(Error::Conflict {
                            stream_id: event.stream_id,
                            expected: *expected - 1,
                            actual: *expected - 1,
                        });
                    }
                    *expected += 1;
                }
                None => {
                    next.push((event.stream_id, event.version.saturating_add(1)));
                    batch.streams.push((event.stream_id, event.version));
                    if event.version != 1 {
                        batch.guard_ids.push(event.stream_id);
                        batch.guard_versions.push(version_param(event.version)?);
                    }
                }
            }
            batch.stream_ids.push(event.stream_id);
            batch.versions.push(version_param(event.version)?);
            batch.timestamps.push(event.timestamp);
            batch.event_types.push(&event.event_type);
            batch
                .schema_versions
                .push(i32::try_from(event.schema_version).map_err(|_| {
                    out_of_range(format!(
                        "schema version {} of `{}` is above PostgreSQL's integer range",
                        event.schema_version, event.event_type
                    ))
                })?);
            batch.payloads.push(&event.payload);
            batch
                .metadata
                .push((!event.metadata.is_empty()).then_some(Json(&event.metadata)));
        }
        Ok(Some(batch))
    }

    /// A save of no events (a tracked append that only moves a position).
    fn empty() -> Self {
        Batch {
            stream_ids: Vec::new(),
            versions: Vec::new(),
            timestamps: Vec::new(),
            event_types: Vec::new(),
            schema_versions: Vec::new(),
            payloads: Vec::new(),
            metadata: Vec::new(),
            guard_ids: Vec::new(),
            guard_versions: Vec::new(),
            streams: Vec::new(),
        }
    }

    fn shape(&self) -> Shape {
        match (self.versions.len(), self.guard_ids.is_empty()) {
            (1, true) => Shape::One,
            (1, false) => Shape::OneNext,
            (_, true) => Shape::Many,
            (_, false) => Shape::ManyGuarded,
        }
    }

    /// The parameters of the statement of `shape`: scalars for one event, arrays for several.
    fn params(&self, shape: Shape) -> Vec<&(dyn ToSql + Sync)> {
        match shape {
            Shape::One | Shape::OneNext => vec![
                &self.stream_ids[0],
                &self.versions[0],
                &self.timestamps[0],
                &self.event_types[0],
                &self.schema_versions[0],
                &self.payloads[0],
                &self.metadata[0],
            ],
            Shape::Many => vec![
                &self.stream_ids,
                &self.versions,
                &self.timestamps,
                &self.event_types,
                &self.schema_versions,
                &self.payloads,
                &self.metadata,
            ],
            Shape::ManyGuarded => vec![
                &self.stream_ids,
                &self.versions,
                &self.timestamps,
                &self.event_types,
                &self.schema_versions,
                &self.payloads,
                &self.metadata,
                &self.guard_ids,
                &self.guard_versions,
            ],
        }
    }
}

/// Version 0 goes to the guard as 0: version -1 never exists, so the save is held back and
/// reported as a conflict, like any other first version that is not current + 1.
fn version_param(version: u64) -> Result<i64, Error> {
    i64::try_from(version).map_err(|_| {
        out_of_range(format!(
            "version {version} is above PostgreSQL's bigint range"
        ))
    })
}

fn partial_insert(inserted: u64, expected: usize) -> Error {
    out_of_range(format!(
        "the save inserted {inserted} of {expected} events (a trigger or rule on the events table?)"
    ))
}

/// For a violation of the events primary key: `Some(stream named in the detail, if readable)`.
fn conflicting_stream(err: &tokio_postgres::Error) -> Option<Option<Uuid>> {
    let db = err.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION || db.constraint() != Some("events_pkey") {
        return None;
    }
    // "Key (stream_id, version)=(<uuid>, <version>) already exists." The word "Key" is
    // translated with lc_messages, the part after ")=(" is not.
    let named = db.detail().and_then(|detail| {
        let start = detail.find(")=(")? + 3;
        let rest = &detail[start..];
        let end = rest.find(',')?;
        Uuid::parse_str(rest[..end].trim()).ok()
    });
    Some(named)
}

/// A tracking position as the `tracking` table's two bigints.
fn tracking_params(position: Position) -> (i64, i64) {
    (
        i64::try_from(position.commit).unwrap_or(i64::MAX),
        i64::try_from(position.seq).unwrap_or(i64::MAX),
    )
}

fn position_params(after: Position) -> (Xid8, i64) {
    (
        Xid8(after.commit),
        i64::try_from(after.seq).unwrap_or(i64::MAX),
    )
}

/// One row of `EVENT_COLUMNS`.
fn row_to_event(row: &Row) -> Result<StoredEvent, Error> {
    let stream_id: Uuid = row.try_get(0).map_err(pg_error)?;
    decode_row(row, stream_id, 1)
}

/// The `STREAM_COLUMNS` of a row, starting at column `at`.
/// A row of `REPLAY_COLUMNS`: position and metadata stay at their defaults.
fn decode_replay_row(row: &Row, stream_id: Uuid) -> Result<StoredEvent, Error> {
    let version: i64 = row.try_get(0).map_err(pg_error)?;
    let schema_version: i32 = row.try_get(2).map_err(pg_error)?;
    Ok(StoredEvent {
        stream_id,
        version: u64::try_from(version)
            .map_err(|_| out_of_range(format!("stream {stream_id} has version {version}")))?,
        position: Position::default(),
        event_type: row.try_get(1).map_err(pg_error)?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            out_of_range(format!(
                "stream {stream_id} version {version} has schema version {schema_version}"
            ))
        })?,
        timestamp: row.try_get(3).map_err(pg_error)?,
        payload: row.try_get(4).map_err(pg_error)?,
        metadata: Metadata::default(),
    })
}

fn decode_row(row: &Row, stream_id: Uuid, at: usize) -> Result<StoredEvent, Error> {
    let version: i64 = row.try_get(at).map_err(pg_error)?;
    let tx_id: Xid8 = row.try_get(at + 1).map_err(pg_error)?;
    let position: i64 = row.try_get(at + 2).map_err(pg_error)?;
    let schema_version: i32 = row.try_get(at + 4).map_err(pg_error)?;
    let metadata: Option<Json<Metadata>> = row.try_get(at + 7).map_err(pg_error)?;
    Ok(StoredEvent {
        stream_id,
        version: u64::try_from(version)
            .map_err(|_| out_of_range(format!("stream {stream_id} has version {version}")))?,
        position: Position {
            commit: tx_id.0,
            seq: position.max(0) as u64,
        },
        event_type: row.try_get(at + 3).map_err(pg_error)?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            out_of_range(format!(
                "stream {stream_id} version {version} has schema version {schema_version}"
            ))
        })?,
        timestamp: row.try_get(at + 5).map_err(pg_error)?,
        payload: row.try_get(at + 6).map_err(pg_error)?,
        metadata: metadata.map(|Json(m)| m).unwrap_or_default(),
    })
}

/// Whether the newest event's transaction id is at or beyond the server's next one.
async fn log_ahead(client: &tokio_postgres::Client, schema: &str) -> Result<bool, Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT COALESCE((SELECT tx_id FROM {}.events ORDER BY tx_id DESC LIMIT 1) \
                                 >= pg_snapshot_xmax(pg_current_snapshot()), false)",
                quote_ident(schema)
            ),
            &[],
        )
        .await
        .map_err(|e| query_error(e, schema))?;
    Ok(row.get(0))
}

/// Refuses to start on a log copied from another cluster (see the crate docs): its order would
/// silently break. A missing table is left for the first operation to report.
async fn check_log_horizon(client: &tokio_postgres::Client, schema: &str) -> Result<(), Error> {
    match log_ahead(client, schema).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(Error::Schema(format!(
            "the events in schema `{schema}` carry transaction ids at or beyond this server's \
             next transaction id: they were copied from another cluster (pg_dump/restore or \
             logical replication), and new events would sort before them in the log. Before \
             writing, stop the server and raise its transaction-id epoch above the stored ids \
             with `pg_resetwal -e <epoch>` (see the eventsourcing-postgres docs, \"Dump and \
             restore\")"
        ))),
        Err(Error::Schema(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
