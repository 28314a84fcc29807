//! Live notifications: the in-process [`ChangeNotifier`] of a store and its clones, fed by this
//! store's own appends and by PostgreSQL `LISTEN`/`NOTIFY` for appends by other processes.
//!
//! Two background tasks, each on a dedicated connection outside the pool, each started lazily:
//!
//! - the **sender**, started by the first append: after each successful append the writer only
//!   sets a flag (a [`Notify`] permit) and returns; the sender sends one `SELECT pg_notify(…)` at
//!   a time, then pauses ten times as long as it took (at most [`NOTIFY_SPACING`]), so all the
//!   appends that finish meanwhile are announced by the next one. The writing transactions
//!   never issue `NOTIFY` (which would serialize their commits), and never wait for the sender;
//! - the **listener**, started by the first [`changes`](eventsourcing_core::EventStore::changes):
//!   `LISTEN`s on the schema's channel and wakes the notifier for each notification that another
//!   store instance sent, reconnecting with a backoff after any failure and waking the notifier
//!   once it listens again (events may have been appended meanwhile).
//!
//! Both end when the last clone of the store is dropped.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use eventsourcing_core::{ChangeNotifier, Changes};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;

use crate::{config::PostgresConfig, error::PgError, pool::Connector, sql::quote_ident};

/// The first wait after a failure of the listener or the sender; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the listener checks its connection (by repeating its `LISTEN`, which changes
/// nothing), to notice a connection that died without closing (a cable pulled, a NAT timeout).
const LISTENER_PING: Duration = Duration::from_secs(30);
/// How long the listener's check may take before the connection is given up on.
const LISTENER_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause after a notification before the next one. The first append after a
/// quiet spell is announced at once; after each notification the sender pauses
/// [`NOTIFY_COST_FACTOR`] times as long as that notification took, at most this long, and the
/// appends meanwhile share the next one. So the sender notifies at most a tenth of the time
/// (one notification per append cost every save figure 10 to 20 % on a 2-core machine), and
/// at most 100 times a second when the server is slow.
/// Other processes' subscribers hear of an append a few milliseconds late on a local server
/// (median 2.4 ms one save at a time, `live_other` in BENCHMARKS.md), at most this much; this
/// process's own are woken at once.
pub(crate) const NOTIFY_SPACING: Duration = Duration::from_millis(10);
/// How many times as long as a notification took the sender pauses before the next one.
const NOTIFY_COST_FACTOR: u32 = 10;

/// The pause after a notification that took `took` (see [`NOTIFY_SPACING`]).
fn spacing_after(took: Duration) -> Duration {
    took.saturating_mul(NOTIFY_COST_FACTOR).min(NOTIFY_SPACING)
}

/// PostgreSQL's longest channel name (`NAMEDATALEN - 1` bytes).
const MAX_CHANNEL: usize = 63;
const CHANNEL_PREFIX: &str = "eventsourcing:";

/// The notification channel of a schema: `eventsourcing:<schema>`, or, for a schema name too long
/// for a channel, `eventsourcing:` and 48 hex digits of its SHA-256.
pub(crate) fn channel_name(schema: &str) -> String {
    let plain = format!("{CHANNEL_PREFIX}{schema}");
    if plain.len() <= MAX_CHANNEL {
        return plain;
    }
    let digest = Sha256::digest(schema.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{CHANNEL_PREFIX}{}", &hex[..48])
}

/// A store's live notifications (one per [`PostgresStore`](crate::PostgresStore) and its
/// clones).
pub(crate) struct Live {
    notifier: ChangeNotifier,
    shared: Arc<Shared>,
    /// Dropped with the store: ends both background tasks.
    _shutdown: watch::Sender<()>,
    shutdown: watch::Receiver<()>,
}

/// What the background tasks hold (never the store itself, so that they end with it).
struct Shared {
    config: PostgresConfig,
    connector: Connector,
    channel: String,
    /// The payload of this instance's notifications: the listener ignores its own.
    token: String,
    /// The sender's work: a permit means "announce the appends since the last notification".
    kick: Notify,
    sender_running: AtomicBool,
    listener_running: AtomicBool,
    /// False for a store that holds nothing but its pool (tenant stores): no sender, no
    /// listener; only this store's own appends wake its subscribers, who otherwise poll.
    remote: bool,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("channel", &self.shared.channel)
            .field("sender_running", &self.shared.sender_running)
            .field("listener_running", &self.shared.listener_running)
            .finish_non_exhaustive()
    }
}

impl Live {
    pub(crate) fn new(config: &PostgresConfig, connector: Connector, remote: bool) -> Self {
        let (shutdown_tx, shutdown) = watch::channel(());
        Live {
            notifier: ChangeNotifier::new(),
            shared: Arc::new(Shared {
                config: config.clone(),
                connector,
                channel: channel_name(&config.schema),
                token: uuid::Uuid::new_v4().simple().to_string(),
                kick: Notify::new(),
                sender_running: AtomicBool::new(false),
                listener_running: AtomicBool::new(false),
                remote,
            }),
            _shutdown: shutdown_tx,
            shutdown,
        }
    }

    /// The channel this store's notifications use.
    pub(crate) fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// After a successful append: wakes this process's subscribers now, and has the sender
    /// announce it to other processes. Costs the writer two atomic operations, never a wait.
    pub(crate) fn appended(&self) {
        self.notifier.notify();
        if !self.shared.remote {
            return;
        }
        if !self.shared.sender_running.load(Ordering::Acquire) {
            self.start(Task::Sender);
        }
        self.shared.kick.notify_one();
    }

    /// A handle woken by appends of this store (at once) and of other instances (through the
    /// listener, started by the first call).
    pub(crate) fn changes(&self) -> Changes {
        if self.shared.remote && !self.shared.listener_running.load(Ordering::Acquire) {
            self.start(Task::Listener);
        }
        self.notifier.subscribe()
    }

    /// Spawns a background task unless it runs already. Outside a Tokio runtime nothing is
    /// spawned: the next call inside one tries again (until then, subscribers poll).
    fn start(&self, task: Task) {
        let flag = match task {
            Task::Sender => &self.shared.sender_running,
            Task::Listener => &self.shared.listener_running,
        };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            flag.store(false, Ordering::Release);
            return;
        };
        let running = Running {
            shared: Arc::clone(&self.shared),
            task,
        };
        let shutdown = self.shutdown.clone();
        match task {
            Task::Sender => {
                runtime.spawn(send(running, shutdown));
            }
            Task::Listener => {
                runtime.spawn(listen(running, self.notifier.clone(), shutdown));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Sender,
    Listener,
}

/// Held by a running task; clears its flag when the task ends or is dropped (its runtime shut
/// down), so that the next append or `changes()` starts it again.
struct Running {
    shared: Arc<Shared>,
    task: Task,
}

impl Drop for Running {
    fn drop(&mut self) {
        let flag = match self.task {
            Task::Sender => &self.shared.sender_running,
            Task::Listener => &self.shared.listener_running,
        };
        flag.store(false, Ordering::Release);
    }
}

/// Waits `backoff(failures)`; false if the store was dropped meanwhile.
async fn pause(shutdown: &mut watch::Receiver<()>, failures: u32) -> bool {
    let wait = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    tokio::select! {
        biased;
        _ = shutdown.changed() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// The sender: one `pg_notify` at a time, each announcing every append since the previous one,
/// spaced as [`NOTIFY_SPACING`] says.
async fn send(running: Running, mut shutdown: watch::Receiver<()>) {
    let shared = &running.shared;
    let mut session: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = shared.kick.notified() => {}
        }
        // Announce, retrying until it is sent or the store is gone: a failure only delays
        // other processes' subscribers (they poll meanwhile).
        loop {
            let ready = match session.take() {
                Some((client, stmt)) if !client.is_closed() => Ok((client, stmt)),
                _ => sender_session(shared).await,
            };
            let sent = match ready {
                Ok((client, stmt)) => {
                    let started = Instant::now();
                    let result = client
                        .execute(&stmt, &[&shared.channel, &shared.token])
                        .await;
                    match result {
                        Ok(_) => {
                            session = Some((client, stmt));
                            Ok(started.elapsed())
                        }
                        Err(e) => Err(PgError(e).to_string()),
                    }
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(took) => {
                    failures = 0;
                    // Appends meanwhile leave a permit: the next notification goes right after.
                    tokio::select! {
                        biased;
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(spacing_after(took)) => {}
                    }
                    break;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(
                        channel = %shared.channel,
                        attempt = failures,
                        %error,
                        "cannot send the notification of new events; retrying"
                    );
                    if !pause(&mut shutdown, failures).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The sender's connection. `synchronous_commit = off`: a notification's transaction (it has a
/// transaction id) then does not wait for its commit record to reach the disk; losing one in a
/// crash costs nothing, subscribers poll.
async fn sender_session(
    shared: &Shared,
) -> Result<(tokio_postgres::Client, tokio_postgres::Statement), String> {
    let client = shared
        .connector
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute("SET synchronous_commit = off")
        .await
        .map_err(|e| PgError(e).to_string())?;
    let stmt = client
        .prepare("SELECT pg_notify($1, $2)")
        .await
        .map_err(|e| PgError(e).to_string())?;
    Ok((client, stmt))
}

/// How a listening session ended.
enum Ended {
    /// The store was dropped.
    Shutdown,
    /// The connection failed (after listening, if `listened`).
    Lost { error: String, listened: bool },
}

/// The listener: listens, and after any failure reconnects with a backoff, for as long as the
/// store lives.
async fn listen(running: Running, notifier: ChangeNotifier, mut shutdown: watch::Receiver<()>) {
    let shared = &running.shared;
    let mut failures = 0u32;
    loop {
        match listen_once(shared, &notifier, &mut shutdown).await {
            Ended::Shutdown => return,
            Ended::Lost { error, listened } => {
                if listened {
                    failures = 0;
                }
                failures += 1;
                tracing::warn!(
                    channel = %shared.channel,
                    attempt = failures,
                    %error,
                    "the listener for new events lost its connection; reconnecting \
                     (subscribers poll meanwhile)"
                );
                if !pause(&mut shutdown, failures).await {
                    return;
                }
            }
        }
    }
}

/// Aborts the connection task of a listening session when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), String>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening session: connects, `LISTEN`s, wakes the notifier once (events may have been
/// appended while nobody listened), then for each notification from another instance, until
/// the connection fails or the store is dropped.
async fn listen_once(
    shared: &Shared,
    notifier: &ChangeNotifier,
    shutdown: &mut watch::Receiver<()>,
) -> Ended {
    let lost = |error: String, listened| Ended::Lost { error, listened };
    // Its own connection rather than the pool's connector: notifications arrive through the
    // connection object, which the connector hands to a task that drops them.
    let (tls, ssl_mode) =
        match crate::tls::connector(shared.config.ssl_mode, shared.config.root_certs.as_ref()) {
            Ok(parts) => parts,
            Err(e) => return lost(e.to_string(), false),
        };
    let mut pg = shared.config.pg.clone();
    pg.ssl_mode(ssl_mode);
    let connected = tokio::select! {
        biased;
        _ = shutdown.changed() => return Ended::Shutdown,
        connected = pg.connect(tls) => connected,
    };
    let (client, mut connection) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            return lost(
                format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    shared.config.target(),
                    PgError(e)
                ),
                false,
            )
        }
    };
    let token = shared.token.clone();
    let wake = notifier.clone();
    let mut driver = AbortOnDrop(tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.payload() != token {
                        wake.notify();
                    }
                }
                Some(Ok(_notice)) => {}
                Some(Err(e)) => return Err(PgError(e).to_string()),
                None => return Err("the connection closed".to_owned()),
            }
        }
    }));
    let listen_sql = format!("LISTEN {}", quote_ident(&shared.channel));
    let listened = tokio::select! {
        biased;
        _ = shutdown.changed() => return Ended::Shutdown,
        ended = &mut driver.0 => return lost(driver_error(ended), false),
        listened = client.batch_execute(&listen_sql) => listened,
    };
    if let Err(e) = listened {
        return lost(PgError(e).to_string(), false);
    }
    tracing::debug!(channel = %shared.channel, "listening for new events");
    notifier.notify();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ended::Shutdown,
            ended = &mut driver.0 => return lost(driver_error(ended), true),
            () = tokio::time::sleep(LISTENER_PING) => {
                match tokio::time::timeout(LISTENER_PING_TIMEOUT, client.batch_execute(&listen_sql))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return lost(PgError(e).to_string(), true),
                    Err(_) => {
                        return lost(
                            format!("no answer within {LISTENER_PING_TIMEOUT:?}"),
                            true,
                        )
                    }
                }
            }
        }
    }
}

fn driver_error(ended: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(())) => "the connection closed".to_owned(),
        Ok(Err(e)) => e,
        Err(e) => format!("the connection task failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_postgres_and_differ_per_schema() {
        assert_eq!(channel_name("public"), "eventsourcing:public");
        let long = "t".repeat(63);
        let hashed = channel_name(&long);
        assert_eq!(hashed.len(), MAX_CHANNEL - 1);
        assert!(hashed.starts_with(CHANNEL_PREFIX));
        assert_ne!(hashed, channel_name(&"u".repeat(63)));
        assert_eq!(channel_name(&"x".repeat(49)).len(), MAX_CHANNEL);
    }

    #[test]
    fn the_pause_after_a_notification_grows_with_its_cost_up_to_the_spacing() {
        let micros = Duration::from_micros;
        assert_eq!(spacing_after(micros(0)), micros(0));
        assert_eq!(spacing_after(micros(120)), micros(1200));
        assert_eq!(spacing_after(micros(999)), micros(9990));
        assert_eq!(spacing_after(micros(1001)), NOTIFY_SPACING);
        assert_eq!(spacing_after(Duration::MAX), NOTIFY_SPACING);
    }
}
