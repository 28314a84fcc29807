//! Read replicas: a pool per standby, and which pool a read goes to. Log reads go to the
//! standbys in turn; a load goes to a standby that has replayed every save made through this
//! store so far (read-your-writes, by WAL position), waiting for one up to
//! `read_your_writes_timeout`, else to the primary. The settings are in `replica_config.rs`.
//!
//! A standby that cannot be reached when the store connects does not stop it: it is named in a
//! warning, reads go to the other standbys or the primary, and a background task keeps trying
//! to connect (with a backoff) until it answers, from when on it serves reads too.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock, PoisonError, Weak,
    },
    time::Duration,
};

use eventsourcing_core::Error;
use tokio_postgres::{types::PgLsn, SimpleQueryMessage};

use crate::{
    config::PostgresConfig,
    horizon::HorizonWatch,
    pool::{Connector, Pool},
};

/// Where reads go, beside the primary.
pub(crate) struct Replicas {
    standbys: Vec<Standby>,
    /// The standby the next read starts looking at (round robin).
    next: AtomicUsize,
    wait: Duration,
    /// Saves made through this store (and its clones), counted once they returned; the
    /// store's start counts as one, so that loads go only to a standby that has replayed what
    /// the primary held then (its tables, after a migration at start).
    saves: AtomicU64,
    /// (saves covered, WAL position): a position of the primary's WAL at or after the commit
    /// of that many saves.
    written: Mutex<(u64, u64)>,
    standby_reads: AtomicU64,
    primary_reads: AtomicU64,
}

/// One standby's pool, once it answered.
pub(crate) struct Standby {
    pool: Arc<OnceLock<Pool>>,
    pub(crate) horizon: HorizonWatch,
    /// The highest replay position seen on it.
    replayed: AtomicU64,
}

/// The first wait before connecting again to a standby that did not answer; it doubles up to
/// [`MAX_RECONNECT_WAIT`].
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(100);
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// Where this store's reads went since it was opened (see
/// [`PostgresStore::read_routing`](crate::PostgresStore::read_routing)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadRouting {
    /// Loads and log reads served by a standby.
    pub standby_reads: u64,
    /// Loads served by the primary because no standby had replayed this store's saves within
    /// the read-your-writes timeout (or none answered), and log reads retried there after a
    /// standby failed.
    pub primary_reads: u64,
}

impl Replicas {
    /// A pool on each standby of `config`; `None` without standbys. Opens one connection to
    /// each at once; a standby that does not answer is connected to in the background, and
    /// serves no read until it answers.
    pub(crate) async fn connect(config: &PostgresConfig) -> Result<Option<Replicas>, Error> {
        if config.replicas().is_empty() {
            return Ok(None);
        }
        let mut standbys = Vec::new();
        for index in 0..config.replicas().len() {
            let Some(standby) = config.replica_config(index) else {
                continue;
            };
            let connector = Connector::new(&standby)?;
            let pool = Arc::new(OnceLock::new());
            match connector.connect().await {
                Ok(first) => {
                    let _ = pool.set(Pool::new(&standby, connector, first));
                }
                Err(e) => {
                    tracing::warn!(
                        standby = %standby.target(),
                        error = %e,
                        "a read replica does not answer: reading elsewhere until it does"
                    );
                    tokio::spawn(reconnect(standby, connector, Arc::downgrade(&pool)));
                }
            }
            standbys.push(Standby {
                pool,
                horizon: HorizonWatch::default(),
                replayed: AtomicU64::new(0),
            });
        }
        Ok(Some(Replicas {
            standbys,
            next: AtomicUsize::new(0),
            wait: config.read_your_writes_timeout(),
            saves: AtomicU64::new(1),
            written: Mutex::new((0, 0)),
            standby_reads: AtomicU64::new(0),
            primary_reads: AtomicU64::new(0),
        }))
    }

    /// Called after each save through the store returned: the next load must see it.
    pub(crate) fn saved(&self) {
        self.saves.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a read the primary served in a standby's place.
    pub(crate) fn fell_back(&self) {
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn routing(&self) -> ReadRouting {
        ReadRouting {
            standby_reads: self.standby_reads.load(Ordering::Relaxed),
            primary_reads: self.primary_reads.load(Ordering::Relaxed),
        }
    }

    /// The standby for a log read: the next in turn that answered (`None` if none did: read
    /// from the primary). A log read needs no wait: a standby's log is the primary's as of its
    /// replay, and its horizon keeps the never-skip rule.
    pub(crate) fn for_log(&self) -> Option<(&Pool, &HorizonWatch)> {
        let found = self
            .in_turn()
            .find_map(|s| Some((s.pool.get()?, &s.horizon)));
        match found {
            Some(_) => self.standby_reads.fetch_add(1, Ordering::Relaxed),
            None => self.primary_reads.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// The pool for a load that must see every save made through this store: a standby that
    /// has replayed them, waiting for one up to the read-your-writes timeout, else `primary`.
    pub(crate) async fn for_load<'a>(&'a self, primary: &'a Pool) -> &'a Pool {
        match self.replayed_standby(primary).await {
            Some(pool) => {
                self.standby_reads.fetch_add(1, Ordering::Relaxed);
                pool
            }
            None => {
                self.fell_back();
                primary
            }
        }
    }

    /// The standbys that answered, in turn: each call starts at the next one.
    fn in_turn(&self) -> impl Iterator<Item = &Standby> {
        let count = self.standbys.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        (0..count)
            .map(move |k| &self.standbys[(start + k) % count])
            .filter(|s| s.pool.get().is_some())
    }

    async fn replayed_standby(&self, primary: &Pool) -> Option<&Pool> {
        let needed = self.needed(primary).await?;
        if let Some(standby) = self
            .in_turn()
            .find(|s| s.replayed.load(Ordering::Acquire) >= needed)
        {
            return standby.pool.get();
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(1);
        loop {
            for standby in self.in_turn() {
                if let Some(lsn) = standby.replay_lsn().await {
                    standby.replayed.fetch_max(lsn, Ordering::AcqRel);
                    if lsn >= needed {
                        return standby.pool.get();
                    }
                }
            }
            if tokio::time::Instant::now() + pause >= deadline {
                tracing::debug!(
                    needed = %PgLsn::from(needed),
                    "no standby replayed this store's saves in time: reading from the primary"
                );
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The WAL position a standby must have replayed to hold every save made through this
    /// store: 0 before the first, else the primary's `pg_current_wal_insert_lsn()` read after
    /// the last of them returned (at or after its commit record, whatever
    /// `synchronous_commit`), asked once per batch of saves. `None` if the primary does not
    /// answer (the read then goes there and reports the error itself).
    async fn needed(&self, primary: &Pool) -> Option<u64> {
        let saves = self.saves.load(Ordering::Acquire);
        {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            if written.0 >= saves {
                return Some(written.1);
            }
        }
        let lsn = lsn_of(primary, "SELECT pg_current_wal_insert_lsn()").await?;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        *written = (written.0.max(saves), written.1.max(lsn));
        Some(written.1)
    }
}

impl Standby {
    /// `pg_last_wal_replay_lsn()`: `None` if it does not answer, or is no standby (NULL).
    async fn replay_lsn(&self) -> Option<u64> {
        lsn_of(self.pool.get()?, "SELECT pg_last_wal_replay_lsn()").await
    }
}

/// Connects to a standby that did not answer, again and again with a growing wait, until it
/// answers (its pool is then set) or the store is dropped.
async fn reconnect(config: PostgresConfig, connector: Connector, pool: Weak<OnceLock<Pool>>) {
    let mut wait = FIRST_RECONNECT_WAIT;
    loop {
        tokio::time::sleep(wait).await;
        let Some(slot) = pool.upgrade() else {
            return;
        };
        match connector.connect().await {
            Ok(first) => {
                tracing::info!(standby = %config.target(), "a read replica answers again");
                let _ = slot.set(Pool::new(&config, connector, first));
                return;
            }
            Err(e) => {
                tracing::debug!(standby = %config.target(), error = %e, "a read replica still does not answer");
            }
        }
        wait = (wait * 2).min(MAX_RECONNECT_WAIT);
    }
}

/// The WAL position `sql` returns, in one round trip (the simple protocol: nothing to
/// prepare); `None` on any failure or NULL.
async fn lsn_of(pool: &Pool, sql: &str) -> Option<u64> {
    let conn = pool.checkout().await.ok()?;
    let messages = conn.client.simple_query(sql).await.ok()?;
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row
            .get(0)
            .and_then(|text| text.parse::<PgLsn>().ok())
            .map(u64::from),
        _ => None,
    })
}
