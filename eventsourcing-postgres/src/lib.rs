//! The PostgreSQL event store of `eventsourcing`: a bb8 pool of tokio-postgres connections,
//! configured with the names the Python `eventsourcing` library and its users' `.env` files
//! use, with embedded migrations, an admin command, and a global log order that never skips an
//! event and never serializes writers.
//!
//! ```no_run
//! use eventsourcing_core::{Application, Env};
//! use eventsourcing_postgres::{PostgresConfig, PostgresStore, SslMode};
//!
//! # async fn example() -> Result<(), eventsourcing_core::Error> {
//! // The seed's production settings, from the environment: POSTGRES_HOST, POSTGRES_PORT,
//! // POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POOL_SIZE=20, POOL_MAX_OVERFLOW=10,
//! // POOL_TIMEOUT=30, POOL_PRE_PING=y, CREATE_TABLE=n; WIDGETS_* variables win.
//! let config = PostgresConfig::from_env(&Env::from_process().with_app_name("widgets"))?;
//! let store = PostgresStore::connect(config).await?;
//! let app = Application::new(store);
//!
//! // The same in code.
//! let config = PostgresConfig::builder()
//!     .host("db.internal")
//!     .user("widgets")
//!     .password(std::env::var("POSTGRES_PASSWORD").unwrap_or_default())
//!     .dbname("widget_service")
//!     .ssl_mode(SslMode::VerifyFull)
//!     .pool_size(20)
//!     .max_overflow(10)
//!     .pool_timeout(std::time::Duration::from_secs(30))
//!     .pre_ping(true)
//!     .create_table(false) // tables come from `eventsourcing-admin migrate`
//!     .build()?;
//! let store = PostgresStore::connect(config).await?;
//!
//! // Or a connection string (libpq `key=value` pairs or a URL).
//! let config: PostgresConfig = "postgresql://widgets@db.internal/widget_service?sslmode=require".parse()?;
//! # let _ = (app, store, config);
//! # Ok(())
//! # }
//! ```
//!
//! # Settings
//!
//! [`PostgresConfig`] lists every setting: its builder method, its environment variables (read
//! by [`PostgresConfig::from_env`]), its default and what it does.
//!
//! # TLS
//!
//! rustls on the `ring` provider (passed explicitly, nothing is installed process-wide).
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default, as libpq) | if the server offers it | no |
//! | `require` | yes | no (the server must still prove it holds the certificate's key); with a root certificate file it behaves as `verify-ca`, as libpq does |
//! | `verify-ca` | yes | chains to a trusted root; the host name is not checked |
//! | `verify-full` | yes | chains to a trusted root and names the host in its subjectAltName (rustls ignores the legacy common name) |
//!
//! Trusted roots: exactly the certificates of `sslrootcert` when given (libpq's rule), else the
//! Mozilla roots of `webpki-roots`. Debian's default server certificate (`ssl-cert-snakeoil`,
//! self-signed for `DNS:localhost`) passes `require`; with itself as `sslrootcert` it passes
//! `verify-ca`, and `verify-full` when connecting to `localhost` but not to `127.0.0.1`.
//!
//! # Tables and indexes
//!
//! Created by versioned migrations embedded in this crate (`migrations/*.sql`), in the
//! configured schema:
//!
//! | table / index | serves |
//! |---|---|
//! | `events` primary key `(stream_id, version)` | loading a stream (`stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version`), its current version (`max(version)`), the save's contiguity guard, and the concurrency check itself: a second writer of a version fails with SQLSTATE 23505, reported as [`Error::Conflict`](eventsourcing_core::Error::Conflict) |
//! | `events_log_idx (tx_id, position)` | [`read_log`](eventsourcing_core::EventStore::read_log) (and `read_by_time`'s order) and the log-head check |
//! | `events_timestamp_brin` (BRIN on `timestamp`, `autosummarize = on`) | [`PostgresStore::read_by_time`]: events recorded in a time window. BRIN because events arrive in about timestamp order: a summary per block range is kilobytes where a B-tree is gigabytes, and costs inserts almost nothing (measured: within noise of no index) |
//! | `snapshots` primary key `(stream_id, version)` | the newest snapshot at or below a version (`ORDER BY version DESC LIMIT 1`) and pruning old ones; a snapshotting load reads that snapshot and the events after it (the `events` primary key) in one statement, one round trip (`load_from_snapshot`: a `UNION ALL` of both with a column telling them apart) |
//! | `tracking` primary key `(name)` | a projection's or process application's position: `tracking_position`, the check and upsert of `append_tracked`, the row each projection batch locks, [`PostgresStore::projection_lag`] |
//! | `parked_events` primary key `(name, position_commit, position_seq)` | the events a projection parked ([`OnError::Park`]): [`PostgresStore::parked`] (`WHERE name = $1 ORDER BY` position) and [`PostgresStore::unpark`] |
//! | `eventsourcing_migrations` primary key `(version)` | the applied migrations with their SHA-256 checksums |
//!
//! No index on `position` alone (no query reads by it) and no B-tree on `timestamp` (the BRIN
//! serves the only time query). `metadata` is `NULL` when a save has none. `stream_type` holds the
//! aggregate type on a stream's first event and `''` on the others (a load checks it:
//! [`Error::WrongType`](eventsourcing_core::Error::WrongType)).
//! `events` has no `CHECK` constraint (migration 6 dropped 1's `version > 0`): every save is
//! validated before it is written (a version below 1 is an
//! [`Error::InvalidEvent`](eventsourcing_core::Error::InvalidEvent)) and a load reads versions
//! from 1 on (a stream without its version 1 is
//! [`Error::Corrupt`](eventsourcing_core::Error::Corrupt)), while PostgreSQL rebuilds a table's
//! `CHECK` expressions at the start of every statement that writes it (about 7 µs of an 80 µs
//! one-row insert, measured with `pgbench`).
//!
//! Migrations ([`MIGRATIONS`]) run under a session `pg_advisory_lock` keyed by the schema, each
//! in its own transaction with the row recording it, so instances starting together apply each
//! migration once. The engine is core's ([`Migrations`], shared with the SQLite store): a
//! migration whose recorded checksum differs from the embedded one, or a version this release
//! does not know (the database was migrated by a newer one), stops the run before it applies
//! anything, with [`Error::Schema`](eventsourcing_core::Error::Schema) naming the version. Run
//! them with
//! [`PostgresStore::migrate`], at start-up (`CREATE_TABLE=y`), or from the command line with
//! the `eventsourcing-admin` tool (crate `eventsourcing-admin`, for every store):
//!
//! ```text
//! PERSISTENCE_MODULE=eventsourcing.postgres eventsourcing-admin [--app NAME] migrate   # alias: init_event_store
//! PERSISTENCE_MODULE=eventsourcing.postgres eventsourcing-admin [--app NAME] status    # migrations, counts, log horizon
//! ```
//!
//! # Writes
//!
//! A save is one autocommitted statement and one round trip, prepared once per pooled
//! connection, so it is atomic (all events or none) without `BEGIN`/`COMMIT` round trips:
//!
//! | save | statement |
//! |---|---|
//! | one event, version 1 | `INSERT … VALUES ($1, …, $7)` |
//! | one event, version v > 1 | `INSERT … SELECT $1, …, $7 WHERE EXISTS (version v - 1 of the stream)` |
//! | several events, every stream new | `INSERT … SELECT * FROM unnest($1::uuid[], $2::int8[], …)` |
//! | several events, some stream continued | the same, `WHERE NOT EXISTS` (a stream whose version before its first new one is missing) |
//!
//! The primary key rejects a version that already exists (a concurrent save got there first);
//! the guard (one primary-key probe per continued stream, on the index page the insert touches
//! anyway) rejects a first version that would leave a hole. Measured on a 2-core machine with
//! PostgreSQL 15, it adds about 13 µs of server time to a single-event save (141 → 155 µs with
//! `synchronous_commit=off`, 383 → 395 µs with durable commits). Either way nothing is written and
//! the error is [`Error::Conflict`](eventsourcing_core::Error::Conflict) naming the stream, the
//! version the save expected and the one the stream is at (read after the failure). The
//! statement per shape exists because the general `unnest` form costs the server about 20 % more
//! than a plain `INSERT … VALUES` for the most common save, a single event. No `NOTIFY`, no
//! lock. Connections are reused last-in first-out, so a busy store keeps using the same warm
//! server processes.
//!
//! [`PostgresStore::append_in`] runs the same statements inside a caller's transaction, for
//! writing events atomically with other rows.
//!
//! **Group commit** (`group.rs`). One save is written at a time, by its caller, with the
//! statement above. A save arriving while another is written is queued; when a write ends, the
//! queued saves (no two writing the same stream, at most 4096 events) are written together in
//! one autocommitted statement, and the callers just answered get a few turns of the runtime
//! first, so that a caller saving in a loop joins the next group. The group goes first as one
//! multi-event save (the `unnest` statement above, all of it or nothing, the cheapest for the
//! server). If the server refuses that (a stale version, a hole), it goes with a statement that
//! checks each save on its own: `INSERT … SELECT FROM unnest(…)` over all the events with the
//! save each belongs to, and a check of every save's first version (not there yet, its
//! predecessor there) against the table as the statement found it. A save that fails the
//! check inserts nothing and gets its own `Conflict` (one version read for all such saves,
//! after the others are acknowledged); the others commit together. Either way each save's
//! events are in version order at consecutive positions of the one transaction (so the log
//! order of [Global order](#global-order) is unchanged). A caller hears its outcome only after
//! the statement that holds its save returned. If the server refuses that statement too
//! (another process committed one of those versions first, a deadlock, a timeout), nothing of
//! it was written and each save is written alone for an outcome of its own. If the connection
//! is lost while it runs, the outcome is unknown: every save of the group gets
//! [`Error::Transient`](eventsourcing_core::Error::Transient) saying so, is never written
//! again by the store (read the stream before retrying), and the connection is discarded.
//! A write that makes no progress for 100 ms (waiting for a row lock that an open
//! transaction holds, say) does not hold back the saves queued behind it: another write
//! starts on another connection, up to `pool_size` at once.
//! Tracked appends and `append_in` do not go through the queue.
//!
//! `append_tracked` (projections and process applications) is one statement too: a CTE takes
//! the consumer's row in `tracking` only if the new position is after the recorded one
//! (`ON CONFLICT DO UPDATE … WHERE`, which locks the row, so a concurrent runner of the same
//! name waits and then sees the newer position), and inserts the events only if it did:
//! events and position are written together or not at all, and a position already recorded
//! is `Error::AlreadyProcessed`.
//!
//! Subscribers are woken after each save without the save issuing `NOTIFY`: see
//! [Live notifications](#live-notifications).
//!
//! # Global order
//!
//! A `bigserial` position is taken at INSERT but becomes visible at COMMIT, so a reader that
//! asks for "positions after the last one I saw" misses a lower position that commits late.
//! The known answers and their costs:
//!
//! | approach | writers pay | readers pay |
//! |---|---|---|
//! | table lock per insert (Python `eventsourcing`) | all writers serialized | nothing |
//! | one global row lock (Commanded) | all writers serialized | nothing |
//! | gap detection + timeout (Marten legacy, Axon, Eventuous) | nothing | a transaction slower than the timeout loses its events |
//! | **transaction ids (chosen)** | one 8-byte column and its index | wait for the oldest running transaction |
//!
//! Each row records its transaction's id (`tx_id xid8 DEFAULT pg_current_xact_id()`, 64 bits,
//! never wrapping). Readers order by `(tx_id, position)` and read only rows with
//! `tx_id < pg_snapshot_xmin(pg_current_snapshot())`: every transaction below the snapshot's
//! `xmin` has ended, and every transaction that has not yet written gets a larger id, so no row
//! can ever appear below a position a reader has passed. Rolled-back transactions leave no rows
//! and no gap to wait on. [`Position`](eventsourcing_core::Position) is `{ commit: tx_id, seq:
//! position }`. Writers take no lock and do not wait for each other.
//!
//! A reader's short page at the head of the log is completed, within [`LOG_CATCH_UP`] (1 s),
//! with events that had committed when it was called but were still held back by an older
//! running transaction, so that a caller reads its own writes; past that it returns what is safe
//! (it never returns an event past a running transaction). It waits without holding a
//! connection. Do not read the log from a session that holds its own write transaction open:
//! that transaction holds the horizon back.
//!
//! A reader catching up reads ahead: a full page is final (every row is below the horizon), so
//! when `read_log` returns one, a task streams the next four pages in one statement on one
//! pooled connection and hands each over as its rows arrive, while the caller works through
//! the page before; it goes on while the caller keeps up, and holds at most 16 pages for all
//! readers (a subscription through 100,000 events: 1.1–1.4 × the raw driver's paged reads, see
//! BENCHMARKS.md). A page read ahead that failed is read again by its caller.
//!
//! The costs, and what to do about them:
//! - **Readers wait for the oldest running transaction that holds a transaction id, anywhere in
//!   the cluster** — not only event writers: a long `UPDATE` in another database, a forgotten
//!   `BEGIN` in psql, or a prepared (two-phase) transaction holds every log reader back until
//!   it ends. Writers are unaffected. `POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT` (default
//!   5 s) ends idle transactions of this store's sessions (projection batches, which wait on
//!   their handlers, are exempt); set `idle_in_transaction_session_timeout` server-wide to
//!   protect against other clients. The store watches for it: when committed events have been
//!   held back for longer than [`HORIZON_WARN_AFTER`] (10 s), a read of the log logs at `warn`
//!   the pid, database, application and transaction age of the oldest running transaction (again
//!   every 10 s while it lasts); [`PostgresStore::log_horizon`] and `eventsourcing-admin status`
//!   show the same. The operator's fix: end that transaction (commit or roll it back where it
//!   was opened, or `SELECT pg_terminate_backend(pid)`); readers then catch up at once.
//! - **Dump and restore.** Transaction ids belong to a cluster. `pg_upgrade`, physical
//!   replicas and base backups keep them; `pg_dump`/`pg_restore` into a new cluster and logical
//!   replication do not: the restored rows keep their old `tx_id`, the new cluster counts from
//!   a small number, and new events would sort before old ones while the old ones stay hidden.
//!   [`PostgresStore::connect`] refuses to start on such a log and `eventsourcing-admin status`
//!   reports it. The operator's fix, before writing: stop the new server and raise its
//!   transaction-id epoch above the stored ids, `pg_resetwal -e E $PGDATA` with
//!   `E = (SELECT (max(tx_id::text::numeric) / 4294967296)::bigint + 1 FROM events)`; then every
//!   new id is larger than every stored one and saved reader positions stay valid.
//! - Poolers: the order depends on no session state. In transaction mode, PgBouncer needs
//!   `max_prepared_statements` (1.21+) for the prepared statements each connection caches.
//!   `LISTEN` needs a session of its own: through a pooler in transaction mode the listener
//!   hears nothing reliably and subscribers fall back to polling (see
//!   [Live notifications](#live-notifications)).
//! - Projection batches are transactions that hold an id while their handlers run: a slow
//!   batch holds every log reader back like any other long transaction (see
//!   [Projections](#projections)).
//!
//! # Tracking and exactly-once
//!
//! A consumer of the log (a projection, a process application) records how far it got in
//! `tracking`, in the same transaction as its effects, so that a crash can neither lose an
//! event nor apply one twice.
//! [`append_tracked`](eventsourcing_core::EventStore::append_tracked) (what
//! [`spawn_process`](eventsourcing_core::spawn_process) uses) writes a process application's
//! new events and its position in one autocommitted statement, one round trip: a CTE moves the
//! consumer's row only if the new position is after the recorded one (`ON CONFLICT DO UPDATE …
//! WHERE`, which locks the row, so a concurrent runner of the same name waits, then sees the
//! newer position) and only if the contiguity guard passes, and inserts the events only if the
//! row moved. Both or neither are written: a stale stream version fails the whole statement on
//! the primary key ([`Error::Conflict`](eventsourcing_core::Error::Conflict)), and a position
//! already recorded is [`Error::AlreadyProcessed`](eventsourcing_core::Error::AlreadyProcessed)
//! with nothing written, which tells a second instance of the process that the event is done.
//! [`tracking_position`](eventsourcing_core::EventStore::tracking_position) reads the row.
//! Projections lock the same row for each batch instead ([Projections](#projections)).
//!
//! # Live notifications
//!
//! [`changes`](eventsourcing_core::EventStore::changes) hands out a wake-up hint for
//! subscribers ([`Subscription`](eventsourcing_core::Subscription), projections, process
//! applications). Subscribers always re-read the log; the hint only saves them waiting for
//! their poll interval, and the polling stays as the fallback, so a lost hint only delays an
//! event.
//!
//! - **In process.** Each successful save through the store or its clones wakes its
//!   subscribers at once, before `append` returns.
//! - **Across processes.** The save does not issue `NOTIFY`: inside the writing transaction it
//!   takes a database-wide lock at commit, so that notifications are queued in commit order,
//!   and every writer's commit would wait for it. Instead the save only sets a flag, and a
//!   background sender on a connection of its own (outside the pool, opened by the first save,
//!   `synchronous_commit = off` since a notification is only a hint) sends
//!   `SELECT pg_notify(channel, instance id)`, one at a time, then pauses ten times as long as
//!   it took (at most 10 ms): the first save after a quiet spell is announced at once, and the
//!   saves during a pause share the next notification. Writers never wait for it; announcing
//!   keeps the sender busy at most a tenth of the time, and costs the server at most 100 small
//!   transactions a second when it is slow (one per save cost every save 10–20 % on a 2-core
//!   machine). Other processes hear of a save a few milliseconds late at most (median 2.4 ms
//!   one save at a time on a local server, `live_other` in BENCHMARKS.md), 10 ms at worst.
//! - **Listening.** The first `changes()` call starts a listener on another connection of its
//!   own, `LISTEN "eventsourcing:<schema>"` ([`PostgresStore::notify_channel`]; a long schema
//!   name is hashed to fit PostgreSQL's 63 bytes), so tenants in different schemas do not wake
//!   each other. It ignores its own instance's notifications (already delivered in process) and
//!   wakes its subscribers for the others'. It checks its connection every 30 s by repeating
//!   the `LISTEN`; after any failure (a restart, `pg_terminate_backend`, a network cut) it
//!   reconnects with a backoff from 100 ms to 5 s, and once it listens again wakes its
//!   subscribers, since events may have come meanwhile. Subscribers poll while it is down.
//! - Both background tasks end when the last clone of the store is dropped. Events written with
//!   [`PostgresStore::append_in`] commit in the caller's transaction, unseen by the store: call
//!   [`PostgresStore::announce_events`] after the commit, or subscribers see them at their
//!   next poll.
//!
//! # Projections
//!
//! A [`PostgresProjection`] keeps a read model in tables of the store's database;
//! [`spawn_projection`] runs it from its recorded position, through the log in pages, then
//! live.
//!
//! ```no_run
//! # use eventsourcing_core::{BoxError, StoredEvent};
//! # use eventsourcing_postgres::{tokio_postgres::Transaction, PostgresProjection};
//! use eventsourcing_postgres::{spawn_projection, OnError, PostgresStore, ProjectionOptions};
//! # struct EventsPerStream;
//! # impl PostgresProjection for EventsPerStream {
//! #     fn name(&self) -> &str { "events_per_stream" }
//! #     async fn handle(&mut self, _: &Transaction<'_>, _: &StoredEvent) -> Result<(), BoxError> { Ok(()) }
//! # }
//!
//! # async fn demo(store: PostgresStore) -> Result<(), eventsourcing_core::Error> {
//! let options = ProjectionOptions { on_error: OnError::Park, ..ProjectionOptions::default() };
//! let runner = spawn_projection(store.clone(), EventsPerStream, options);
//! // Meanwhile: watch the lag and the parked events.
//! let behind = store.projection_lag("events_per_stream").await?;
//! let parked = store.parked("events_per_stream").await?;
//! runner.stop().await?;
//! # Ok(()) }
//! ```
//!
//! - **Exactly once.** Each batch of events (at most
//!   [`page_size`](ProjectionOptions::page_size)) is handled in one transaction on a pooled
//!   connection, which first creates the projection's `tracking` row if it is missing and locks
//!   it (`SELECT … FOR UPDATE`, pipelined with the insert: one round trip), skips the events the
//!   recorded position covers, hands the others to the handler, and moves the position in the
//!   same transaction: the read model's rows and the position commit together or not at all.
//!   Two runners of one projection (in one process or several) therefore never apply an event
//!   twice: the second waits for the first's batch, then finds its events done. A crash or an
//!   [`abort`](eventsourcing_core::RunnerHandle::abort) loses only an uncommitted batch, which
//!   the next runner reads again. (`tests/projection.rs` aborts a runner three times in the
//!   middle of a catch-up, and runs two at once, then compares the read model with the log.)
//! - **Failures.** When the handler returns an error or panics, the batch is rolled back, and
//!   [`OnError`] decides: [`Stop`](OnError::Stop) (the default) runs the batch again up to the
//!   failing event, commits that, and ends the runner with
//!   [`Error::Handler`](eventsourcing_core::Error::Handler) naming the projection and the
//!   event's type, stream, version and position; a restart tries that event again.
//!   [`Park`](OnError::Park) runs the batch again with the event recorded in `parked_events`
//!   instead of handled, in the transaction that moves the position past it;
//!   [`PostgresStore::parked`] lists those and [`PostgresStore::unpark`] removes one once dealt
//!   with. No event is ever skipped silently. The batch is re-run rather than protected by a
//!   savepoint per event: savepoints would cost two round trips per event on every batch, and
//!   more than 64 subtransactions in one transaction slow down every session's snapshots; the
//!   price is that a failure hands the events before it to the handler a second time (their
//!   writes were rolled back, so the read model still sees each once).
//! - **Transient failures** — a lost connection, a pool timeout, a serialization failure, a
//!   deadlock, a lock timeout, from the runner's own statements or from the handler's — roll the
//!   batch back; the runner waits (doubling from [`backoff`](ProjectionOptions::backoff), at
//!   most 5 s) and tries again, and ends with the error after
//!   [`attempts`](ProjectionOptions::attempts) failures in a row.
//! - **Live.** Caught up, the runner waits for a wake-up ([Live notifications](#live-notifications))
//!   or its [`poll_interval`](ProjectionOptions::poll_interval), and reads once per wake-up.
//! - **Lag.** [`PostgresStore::projection_lag`] counts the committed events after the recorded
//!   position (one range scan of `events_log_idx`). Events a projection filters out
//!   ([`PostgresProjection::event_types`]) count until its position passes them; a run of them
//!   with nothing to handle is recorded once a page of it has gone by, when the runner has
//!   caught up, and when it stops, so an idle, caught-up projection reports 0.
//! - **Costs.** A batch's transaction holds a transaction id from its first statement to its
//!   commit, and log readers do not read past a running transaction
//!   ([Global order](#global-order)): a batch whose handlers take 100 ms delays every
//!   subscriber by up to 100 ms. Keep handlers to SQL on the transaction, and lower
//!   `page_size` if they are slow. The setups of runners on one schema take turns under an
//!   advisory lock, so that instances starting together do not race on `CREATE TABLE IF NOT
//!   EXISTS`.
//!
//! # Faults
//!
//! What happens when connections die or the server stops, and what a caller should do. Tested
//! under load by `tests/faults.rs` (eight writers on a throwaway cluster,
//! `cluster::TestCluster` of the `testing` feature: sessions killed with
//! `pg_terminate_backend`, `pg_ctl stop -m fast` and `-m immediate` then a start, commits whose
//! acknowledgement is lost); the figures are in `RELIABILITY.md` at the repository's root.
//!
//! - **Transient errors.** [`Error::is_transient`](eventsourcing_core::Error::is_transient)
//!   is true, and the same call may succeed after a short wait, for: a connection lost, reset
//!   or refused (I/O errors, a closed connection, SQLSTATE class 08); the server ending the
//!   session or not yet accepting it (57P01 `admin_shutdown`, which `pg_terminate_backend` and
//!   `pg_ctl stop -m fast` send; 57P02 `crash_shutdown`; 57P03 `cannot_connect_now` while it
//!   starts or recovers; 53300 `too_many_connections`); serialization failures, deadlocks, lock
//!   timeouts (`POSTGRES_LOCK_TIMEOUT`), an idle transaction ended by
//!   `idle_in_transaction_session_timeout`; and the pool's own: no connection within
//!   `pool_timeout` (the error says why the last attempt to connect failed) or too many callers
//!   waiting (`POSTGRES_MAX_WAITING`). Everything else — a conflict, a missing table, a
//!   statement the server refuses — fails the same way when retried.
//! - **A lost acknowledgement.** A save is one autocommitted statement: it is stored entirely or
//!   not at all, but when the connection fails while it is in flight the caller cannot tell
//!   which. The commit may have reached the disk with its reply lost (the session killed or the
//!   server crashed just after the commit record was flushed, or while the commit waited for a
//!   synchronous standby), and the error is still transient. Retrying **the same save** is
//!   safe: each save names the versions it writes, so if the first attempt was stored the
//!   retry fails with [`Error::Conflict`](eventsourcing_core::Error::Conflict) and writes
//!   nothing twice. After a conflict on a retry, reload the stream and look for the save (give
//!   each save an id of its own in its metadata, e.g. with
//!   [`Application::save_with_metadata`](eventsourcing_core::Application::save_with_metadata)):
//!   found, it succeeded; not found, another writer won and this is an ordinary conflict. An
//!   aggregate keeps its pending events after a failed save, so `app.save(&mut aggregate)`
//!   again is that same save. Do not re-run the *command* on a fresh load after a transient
//!   error (as [`update_with_retry`](eventsourcing_core::Application::update_with_retry) does
//!   after a conflict): if the first save was stored, the command would be applied twice.
//! - **Projections and process applications** need nothing of this: they retry transient
//!   failures themselves ([Projections](#projections)), and a batch or a tracked append whose
//!   commit was stored but not acknowledged is found done by the retry (the recorded position
//!   covers it, or [`Error::AlreadyProcessed`](eventsourcing_core::Error::AlreadyProcessed)).
//! - **How the pool recovers**, without a new [`PostgresStore`]: a connection that reports
//!   itself closed is dropped when it returns to the pool and replaced, so each pooled
//!   connection killed while idle costs at most one failed operation (with `pre_ping` the
//!   checkout's empty query finds it first, at one round trip per operation; a connection can
//!   still die between the ping and the statement). While the server is down, operations wait
//!   for a connection up to `pool_timeout`, then fail as transient. bb8 keeps trying to open
//!   connections in the background (0.4 s after a failure, doubling up to half the
//!   `pool_timeout`; an attempt gives up after `pool_timeout` and operations start new ones),
//!   so once the server is back the store serves again within a fraction of a second, and the
//!   pool may hold fewer than `pool_size` connections until the waiting attempts retry
//!   (measured: back to its size within 1.5 s of the first answer). The `LISTEN` listener and the
//!   `NOTIFY` sender reconnect by themselves ([Live notifications](#live-notifications)).
//!
//! ```no_run
//! use eventsourcing_core::{Error, EventStore, NewEvent};
//!
//! /// Saves `events` (non-empty; their metadata carries an id of this save), retrying
//! /// transient failures, and tells a lost acknowledgement from a real conflict.
//! async fn save(store: &impl EventStore, events: Vec<NewEvent>) -> Result<(), Error> {
//!     let first = events[0].clone();
//!     let mut retried = false;
//!     for _ in 0..10 {
//!         match store.append(events.clone()).await {
//!             Ok(()) => return Ok(()),
//!             Err(e) if e.is_transient() => retried = true, // and wait a little
//!             Err(conflict @ Error::Conflict { .. }) if retried => {
//!                 let at = first.version;
//!                 let stored = store.load(first.stream_id, at - 1, Some(at)).await?;
//!                 let ours = stored.first().is_some_and(|e| e.metadata == first.metadata);
//!                 return if ours { Ok(()) } else { Err(conflict) };
//!             }
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     Err(Error::transient("the database stayed unreachable"))
//! }
//! ```
//!
//! # Read replicas and failover
//!
//! **Read replicas.** With standbys configured (`POSTGRES_REPLICA_HOSTS` and
//! `POSTGRES_REPLICA_PORTS`, or [`PostgresConfigBuilder::replica`]) the store opens a pool on
//! each. Aggregate loads, `stream_version`, snapshots' loads, `read_log` and `read_by_time`
//! (so subscriptions, projection runners and process applications reading this store's log)
//! go to the standbys in turn; saves, snapshots' saves, tracking, parking, `LISTEN`/`NOTIFY`
//! and administration go to the primary. The never-skip order holds on a standby (proven by
//! `tests/never_skip_standby.rs`): transaction ids survive physical replication and a
//! standby's snapshot keeps every transaction still running on the primary (as far as it has
//! replayed) running, so its horizon never passes a position a later commit could fill.
//! **Read-your-writes:** a load after a save through the same store (and its clones) goes to a
//! standby only once it has replayed that save: after saves, the next load reads the primary's
//! `pg_current_wal_insert_lsn()` (one round trip, then cached until the next save; at or after
//! the save's commit record whatever `synchronous_commit`) and picks a standby whose
//! `pg_last_wal_replay_lsn()` has reached it, polling up to `POSTGRES_READ_YOUR_WRITES_TIMEOUT`
//! (1 s), then reads from the primary ([`PostgresStore::read_routing`] counts both). A load never
//! returns a version older than this store's own last save. The store's start counts as a save:
//! the first load waits in the same way for a standby that has replayed what the primary held
//! then (the tables a migration at start created). Saves by other processes are seen once
//! replayed: a standby's reads are as old as its replay lag. A log read that fails on a standby,
//! for any reason (down, or without the tables yet), is made again on the primary. A standby
//! that does not answer at
//! [`PostgresStore::connect`] is named in a warning and connected to in the background (the
//! wait doubling from 100 ms up to 5 s); until it answers, reads go to the other standbys or
//! the primary.
//!
//! **Failover.** `POSTGRES_HOST=a,b` with `POSTGRES_PORT=5432,5433` (one port for all, or one
//! per host) and `POSTGRES_TARGET_SESSION_ATTRS=read-write` (libpq's semantics, as far as
//! tokio-postgres has them: `any`, `read-write`, `read-only`): each new connection tries the
//! hosts in order and keeps the first that takes writes. After the primary dies, the pool's
//! broken connections fail transiently (retry them), and once a standby is promoted new
//! connections reach it: no restart of the process (`tests/failover.rs`: eight writers, the
//! primary crashed, its synchronous standby promoted, every acknowledged save present once).
//! Positions stay valid across a promotion (same transaction ids). What an acknowledged save
//! survives depends on the primary's `synchronous_commit`, with the standby named in
//! `synchronous_standby_names`:
//!
//! | `synchronous_commit` | a save is acknowledged once | survives |
//! |---|---|---|
//! | `off` | in the primary's WAL buffers | nothing certain: a primary crash can lose the last few hundred ms of saves |
//! | `local` (or any, without a synchronous standby) | flushed on the primary | a primary crash and restart; **not** a failover (the standby may not have it) |
//! | `remote_write` | written (not flushed) by the standby | a primary crash and promotion, unless the standby's machine also crashes |
//! | `on` (default) | flushed by the standby | a primary lost for good and the standby promoted |
//! | `remote_apply` | replayed by the standby | as `on`; and reads on that standby see it at once (read-your-writes waits return immediately) |
//!
//! A commit waiting for the synchronous standby is not yet visible to other sessions, so a
//! log reader on the primary never passes a position the standby lacks. With asynchronous
//! standbys a failover can lose acknowledged saves, and readers that read them from the old
//! primary may hold positions the new one never had. If the commit's acknowledgement is lost
//! (the connection dies while it waits), the save may be stored: retry and treat a conflict as
//! described under [Faults](#faults).
//!
//! # Roles
//!
//! The seed's production pattern (`CREATE_TABLE=n`, "tables created via migration") with
//! least privilege is two roles:
//!
//! - the **owner** runs `eventsourcing-admin migrate` (or [`PostgresStore::migrate`]): it
//!   creates the schema and tables and owns them;
//! - the **application role** runs the service with `CREATE_TABLE=n`: it reads and appends
//!   events but can never update, delete or truncate one. [`roles::grant_statements`] lists
//!   exactly what it is granted and why (print them with
//!   `eventsourcing-admin grants print ROLE`, apply them as the owner with
//!   [`roles::apply_grants`] or `grants apply ROLE`); `UPDATE`, `DELETE` and `TRUNCATE` on
//!   `events` then fail with SQLSTATE 42501. Projections' own tables belong elsewhere: give the
//!   application role a schema of its own for them (`CREATE SCHEMA views AUTHORIZATION app`).
//!
//! ```text
//! CREATE ROLE es_owner LOGIN;  CREATE ROLE app LOGIN PASSWORD '…';
//! eventsourcing-admin migrate                 # as es_owner (POSTGRES_USER=es_owner)
//! eventsourcing-admin grants apply app        # as es_owner
//! # the service: POSTGRES_USER=app CREATE_TABLE=n
//! ```
//!
//! The owner can still change events. The optional **append-only trigger**
//! ([`roles::set_append_only`], `eventsourcing-admin append-only on|off`) refuses `UPDATE`,
//! `DELETE` and `TRUNCATE` on `events` for every role, the owner included (SQLSTATE 42501),
//! except in a transaction that says it archives on purpose:
//!
//! ```text
//! BEGIN;
//! SET LOCAL eventsourcing.allow_archive = 'on';   -- only for this transaction
//! DELETE FROM events WHERE …;                      -- after copying them elsewhere
//! COMMIT;
//! ```
//!
//! The escape guards against mistakes, not against the owner (who may drop the trigger): any
//! role may set the setting, so the application role's protection is its grants.
//!
//! # Tenants
//!
//! [`PostgresTenants`] gives core's [`Tenants`](eventsourcing_core::Tenants) registry a store
//! per tenant: a database each ([`PostgresTenants::database`], the seed's
//! `POSTGRES_DBNAME=tenant_{id}`) or a schema each in one database
//! ([`PostgresTenants::schema`], `POSTGRES_SCHEMA=tenant_{id}`). A tenant store is opened with
//! [`PostgresStore::connect_pool_only`]: it holds its pool's connections and no others (no
//! `LISTEN` connection, no `NOTIFY` sender; subscribers poll for other processes' appends), so
//! the registry's bound on connections is exact. Creating a tenant database while opening it
//! uses one connection to the admin database, closed before the store connects.
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `testing` | `testing::TestSchema` and `testing::fresh()`: a migrated store on a fresh schema of the server named by `EVENTSOURCING_TEST_POSTGRES_URL`, dropped afterwards; `testing::TestRole` (a LOGIN role) and `testing::DropTenants` (a registry's tenants), dropped the same way; `testing::CountEvents`, a projection counting events into a table; `cluster::TestCluster` (Unix): a throwaway server of the test's own, to stop, crash and restart |

// One job per module, and no module uses one that uses it back. Listed from the bottom up: each
// may use only those above it.
//
// - `xid`, `sql`, `error`, `tls`, `replica_config` (the replica settings' struct): nothing of
//   this crate (a type, statement texts, error conversions and what is transient, TLS modes
//   and connectors)
// - `config`: replica_config, tls
// - `hosts` (ports per host, target_session_attrs, the replica settings): config, replica_config
// - `conn_str`: config, tls
// - `env`: config, conn_str, hosts, tls
// - `cluster` (a throwaway server for fault tests, its standbys): config
// - `rows`: error, xid
// - `migrate`: error, sql
// - `conn` (a connection and its prepared statements): error, sql
// - `pool` (opening and handing out connections): config, conn, error, sql, tls
// - `live`: config, error, pool, sql, tls
// - `horizon` (what holds the log horizon): error, pool, xid
// - `replica` (the standbys' pools, read routing): config, horizon, pool
// - `read`: error, horizon, pool, rows, sql
// - `read_ahead` (pages of the log read ahead; the store as a `Source`): pool, read
// - `append`: error, pool, read, rows, sql
// - `group` (group commit of concurrent saves): append, error, pool, sql
// - `status`: error, horizon, migrate, pool, read, sql
// - `store` (`PostgresStore`): append, config, conn, group, horizon, live, migrate, pool, read,
//   read_ahead, replica, sql, status
// - `projection`: error, rows, sql, store
// - `maintenance` (core's `Maintenance`: what `eventsourcing-admin` runs): error, rows, sql, store
// - `roles` (grants, the append-only trigger): error, migrate, sql, store
// - `tenant` (a store per tenant): config, error, migrate, pool, sql, store
// - `backup` (core's `Backup`: export, import): error, rows, sql, store, xid
// - `archive` (core's `Archive`: archive, restore): backup, error, rows, sql, store, xid
// - `testing`: config, pool, projection, sql, store, tenant
mod append;
mod archive;
mod backup;
mod config;
mod conn;
mod conn_str;
mod env;
mod error;
mod group;
mod horizon;
mod hosts;
mod live;
mod maintenance;
mod migrate;
mod pool;
mod projection;
mod read;
mod read_ahead;
mod replica;
mod replica_config;
pub mod roles;
mod rows;
mod sql;
mod status;
mod store;
mod tenant;
mod tls;
mod xid;

#[cfg(all(feature = "testing", unix))]
pub mod cluster;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    PostgresConfig, PostgresConfigBuilder, DEFAULT_IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, DEFAULT_RECYCLE, DEFAULT_SCHEMA,
};
pub use eventsourcing_core::backup::{Archive, Backup};
pub use eventsourcing_core::maintenance::{
    ConsumerLag, IndexUsage, Maintenance, MaintenanceStep, PayloadCheck, Problem, PruneReport,
    SnapshotPrune, StoreStats, TableSize, VerifyReport,
};
pub use eventsourcing_core::{
    AppliedMigration, MigrateError, Migration, MigrationReport, MigrationState, MigrationStatus,
    Migrations,
};
pub use horizon::{HorizonHolder, LogHorizon, HORIZON_WARN_AFTER};
pub use migrate::MIGRATIONS;
pub use projection::{
    spawn_projection, OnError, ParkedEvent, PostgresProjection, ProjectionOptions,
};
pub use read::LOG_CATCH_UP;
pub use replica::ReadRouting;
pub use replica_config::DEFAULT_READ_YOUR_WRITES_TIMEOUT;
pub use status::SchemaStatus;
pub use store::PostgresStore;
pub use tenant::{PostgresTenants, TenantLayout, DEFAULT_TENANT_ADMIN_DBNAME};
pub use tls::{SslMode, UnknownSslMode};

pub use bb8;
pub use tokio_postgres;
