//! [`PostgresStore`]: connecting, its accessors, and the [`EventStore`] methods, each handed to
//! the module that does that job (`append.rs`, `read.rs`, `status.rs`).

use std::{fmt, future::Future, sync::Arc};

use chrono::{DateTime, Utc};
use eventsourcing_core::{
    metrics, Changes, Env, Error, EventStore, Fold, MigrationStatus, NewEvent, ParkedEvent,
    Position, Snapshot, StoredEvent, Tracking,
};
use uuid::Uuid;

use crate::{
    append,
    config::PostgresConfig,
    conn::PgConn,
    group::Groups,
    horizon::{HorizonWatch, LogHorizon},
    live::Live,
    migrate::{self, MigrationReport},
    pool::{Checkout, Connector, Pool, KIND},
    read::{self, Columns},
    read_ahead::{self, ReadAhead},
    replica::{ReadRouting, Replicas},
    sql::Stmt,
    status::{self, SchemaStatus},
};

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
    pool: Arc<Pool>,
    /// Saves: written at once, or together with others queued meanwhile (see `group.rs`).
    groups: Arc<Groups>,
    config: PostgresConfig,
    connector: Connector,
    /// Wakes this process's subscribers after each save through this store, and other
    /// processes' through `NOTIFY` (see `live.rs`).
    live: Live,
    /// How long the log horizon has held back committed events (see `horizon.rs`).
    horizon: HorizonWatch,
    /// The standbys reads go to, if any (see `replica.rs`).
    replicas: Option<Replicas>,
    /// Pages of the log read ahead of sequential readers (see `read_ahead.rs`).
    ahead: Arc<ReadAhead>,
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

impl PostgresStore {
    /// Opens the pool. With `create_table` (the default; `CREATE_TABLE=y`) it first applies
    /// the pending migrations; otherwise it issues no DDL, and a missing table is reported as
    /// [`Error::Schema`] by the first operation.
    ///
    /// One connection is opened at once, so a wrong host, port or password fails here with the
    /// server's reason (never showing the password); bb8 opens the others in the background.
    pub async fn connect(config: PostgresConfig) -> Result<Self, Error> {
        Self::open(config, true).await
    }

    /// Like [`connect`](Self::connect), but the store holds no connection besides its pool:
    /// no `LISTEN` connection and no `NOTIFY` sender (see
    /// [Live notifications](crate#live-notifications)). Its subscribers are woken by appends
    /// through this store (and its clones) and find other processes' appends at their next
    /// poll. The connections it holds are exactly [`pool_state`](Self::pool_state)'s, at most
    /// [`PostgresConfig::max_connections`]: what a bound on connections (tenants) counts.
    pub async fn connect_pool_only(config: PostgresConfig) -> Result<Self, Error> {
        Self::open(config, false).await
    }

    async fn open(config: PostgresConfig, remote: bool) -> Result<Self, Error> {
        let connector = Connector::new(&config)?;
        let mut first = connector
            .connect()
            .await
            .map_err(|e| Error::Store(Box::new(e)))?;
        if config.create_table {
            migrate::migrate(&mut first, &config.schema).await?;
        }
        status::check_log_horizon(&first, &config.schema).await?;
        let pool = Arc::new(Pool::new(&config, connector.clone(), first));
        let replicas = Replicas::connect(&config).await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                groups: Arc::new(Groups::new(Arc::clone(&pool), config.pool_size())),
                pool,
                live: Live::new(&config, connector.clone(), remote),
                config,
                connector,
                horizon: HorizonWatch::default(),
                replicas,
                ahead: Arc::new(ReadAhead::new(read_ahead::PAGES)),
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

    /// Every migration this code knows and every one the schema records, each with its state
    /// (applied, pending, changed since it was applied, or unknown to this code), as on SQLite.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, Error> {
        let conn = self.checkout().await?;
        let applied = migrate::applied(&conn.client, &self.inner.config.schema)
            .await?
            .unwrap_or_default();
        Ok(migrate::MIGRATIONS.status(&applied))
    }

    /// The applied and pending migrations, the number of events and the log-order check.
    pub async fn status(&self) -> Result<SchemaStatus, Error> {
        status::status(&self.inner.pool).await
    }

    /// The log horizon: whether committed events of this store are held back behind a running
    /// transaction, and the oldest running transactions of the server (what to end). See
    /// [Global order](crate#global-order).
    pub async fn log_horizon(&self) -> Result<LogHorizon, Error> {
        status::log_horizon(&self.inner.pool).await
    }

    /// `Ok` if every migration of this code is applied; otherwise [`Error::Schema`] saying to
    /// run `eventsourcing-admin migrate`. For start-up checks with `CREATE_TABLE=n`.
    pub async fn check_schema(&self) -> Result<(), Error> {
        status::check_schema(&self.inner.pool).await
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
        append::append_in(&self.inner.pool, tx, &events).await
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
        self.on_log_source(|pool, horizon| {
            read::read_by_time(pool, horizon, from, to, after, limit)
        })
        .await
    }

    /// The PostgreSQL notification channel of this store's schema: `eventsourcing:<schema>`
    /// (for a schema name longer than 49 bytes, `eventsourcing:` and a hash of it). After each
    /// append the store sends a notification on it, whose payload identifies the sending store
    /// instance; `LISTEN` on it to be woken by new events.
    pub fn notify_channel(&self) -> &str {
        self.inner.live.channel()
    }

    /// Wakes subscribers at once, in this process and (through `NOTIFY`) in others, as an
    /// append through the store does. Call it after committing a transaction in which
    /// [`append_in`](Self::append_in) wrote events; otherwise subscribers find them at their
    /// next poll.
    pub fn announce_events(&self) {
        self.saved();
        self.inner.live.appended();
    }

    /// Where loads and log reads went: to a standby, or to the primary in a standby's place
    /// (all zero without [replicas](crate#read-replicas-and-failover)).
    pub fn read_routing(&self) -> ReadRouting {
        self.inner
            .replicas
            .as_ref()
            .map(Replicas::routing)
            .unwrap_or_default()
    }

    /// The pool a load goes to: a standby that has replayed this store's saves, else the
    /// primary (see `replica.rs`).
    async fn load_pool(&self) -> &Pool {
        match &self.inner.replicas {
            Some(replicas) => replicas.for_load(&self.inner.pool).await,
            None => &self.inner.pool,
        }
    }

    /// A log read on a standby in turn, or on the primary without standbys. A read that
    /// fails on a standby, for any reason, is made again on the primary: a standby may be down,
    /// or not have replayed the store's tables yet, and the primary's answer is the one that
    /// counts.
    async fn on_log_source<'a, T, F, Fut>(&'a self, read: F) -> Result<T, Error>
    where
        F: Fn(&'a Pool, &'a HorizonWatch) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let primary = (&self.inner.pool, &self.inner.horizon);
        let Some(replicas) = &self.inner.replicas else {
            return read(primary.0, primary.1).await;
        };
        let Some((pool, horizon)) = replicas.for_log() else {
            return read(primary.0, primary.1).await;
        };
        match read(pool, horizon).await {
            Err(e) => {
                tracing::debug!(error = %e, "a log read failed on a standby: reading from the primary");
                replicas.fell_back();
                read(primary.0, primary.1).await
            }
            result => result,
        }
    }

    async fn load_routed(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        columns: Columns,
    ) -> Result<Vec<StoredEvent>, Error> {
        let pool = self.load_pool().await;
        read::load(pool, stream_id, after_version, up_to, columns).await
    }

    async fn version_routed(&self, stream_id: Uuid) -> Result<u64, Error> {
        read::stream_version(self.load_pool().await, stream_id).await
    }

    async fn snapshot_saved(&self, snapshot: Snapshot, keep: Option<u32>) -> Result<(), Error> {
        read::save_snapshot(&self.inner.pool, snapshot, keep).await?;
        self.saved();
        Ok(())
    }

    async fn snapshot_routed(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> Result<Option<Snapshot>, Error> {
        read::load_snapshot(self.load_pool().await, stream_id, at_or_below).await
    }

    /// Counts a save for read-your-writes.
    fn saved(&self) {
        if let Some(replicas) = &self.inner.replicas {
            replicas.saved();
        }
    }

    /// A pooled connection (for `projection.rs`).
    pub(crate) async fn checkout(&self) -> Result<Checkout<'_>, Error> {
        self.inner.pool.checkout().await
    }

    /// The prepared statement on `conn`, preparing it on first use there.
    pub(crate) async fn statement(
        &self,
        conn: &mut PgConn,
        stmt: Stmt,
    ) -> Result<tokio_postgres::Statement, Error> {
        let pool = &self.inner.pool;
        conn.prepared(stmt, pool.sql(), pool.schema()).await
    }

    /// A driver error as the store reports it (a missing table says what to run).
    pub(crate) fn error(&self, err: tokio_postgres::Error) -> Error {
        self.inner.pool.error(err)
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), Error> {
        let any = !events.is_empty();
        self.inner.groups.append(events).await?;
        self.saved();
        if any {
            self.inner.live.appended();
        }
        Ok(())
    }

    async fn append_with_tracking(
        &self,
        events: Vec<NewEvent>,
        tracking: Tracking,
    ) -> Result<(), Error> {
        append::append_tracked(&self.inner.pool, &events, tracking).await?;
        self.saved();
        if !events.is_empty() {
            self.inner.live.appended();
        }
        Ok(())
    }
}

/// What the read ahead of the log reads through (see `read_ahead.rs`).
impl read_ahead::Source for PostgresStore {
    /// A standby in turn, or the primary (without standbys, or with none answering).
    fn log_pool(&self) -> &Pool {
        let standby = self.inner.replicas.as_ref().and_then(Replicas::for_log);
        standby.map_or(&*self.inner.pool, |(pool, _)| pool)
    }

    async fn log_page(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, Error> {
        self.on_log_source(move |pool, horizon| read::read_log(pool, horizon, after, limit))
            .await
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
        self.load_routed(stream_id, after_version, up_to, Columns::All)
    }

    fn load_for_replay(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        // Less to send and decode: replay reads neither position nor metadata.
        self.load_routed(stream_id, after_version, up_to, Columns::Replay)
    }

    /// Folded as the rows arrive, from where loads go.
    async fn replay_into<F: Fold>(
        &self,
        stream_id: Uuid,
        after_version: u64,
        up_to: Option<u64>,
        fold: F,
    ) -> Result<F, Error> {
        let pool = self.load_pool().await;
        read::replay_into(pool, stream_id, after_version, up_to, fold).await
    }

    fn stream_version(&self, stream_id: Uuid) -> impl Future<Output = Result<u64, Error>> + Send {
        self.version_routed(stream_id)
    }

    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send {
        let read = read_ahead::read_log(self, &self.inner.ahead, (after, limit));
        metrics::observe_log_read(KIND, after, limit, read)
    }

    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        keep: Option<u32>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.snapshot_saved(snapshot, keep)
    }

    fn load_snapshot(
        &self,
        stream_id: Uuid,
        at_or_below: Option<u64>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send {
        self.snapshot_routed(stream_id, at_or_below)
    }

    /// One statement: the snapshot and the events after it in one round trip.
    fn load_from_snapshot(
        &self,
        stream_id: Uuid,
        up_to: Option<u64>,
    ) -> impl Future<Output = Result<(Option<Snapshot>, Vec<StoredEvent>), Error>> + Send {
        read::load_from_snapshot(&self.inner.pool, stream_id, up_to)
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
        async move { read::tracking_position(&self.inner.pool, &name).await }
    }

    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), Error>> + Send {
        self.park_event(parked)
    }

    fn parked(&self, name: &str) -> impl Future<Output = Result<Vec<ParkedEvent>, Error>> + Send {
        let name = name.to_owned();
        async move { Self::parked(self, &name).await }
    }

    /// Woken at once after every save made through this store (and its clones), and by
    /// `LISTEN` for saves by other store instances (started by the first call); see
    /// [Live notifications](crate#live-notifications).
    fn changes(&self) -> Changes {
        self.inner.live.changes()
    }

    fn store_kind(&self) -> &'static str {
        KIND
    }
}
