//! The log horizon: the oldest transaction still running anywhere in the cluster. A reader of
//! the log never passes it (see [Global order](crate#global-order)), so one transaction left
//! open, in any database of the server (a forgotten `BEGIN` in psql, a stuck job), holds back
//! every reader of every store on the server. This module finds what holds it and says so.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use eventsourcing_core::Error;

use crate::{error::pg_error, pool::Pool, xid::Xid8};

/// How long committed events may stay held back behind one running transaction before the
/// store says so at `warn` (then at most once per this interval while it lasts).
pub const HORIZON_WARN_AFTER: Duration = Duration::from_secs(10);

/// A session whose open transaction holds the log horizon (or may soon: the oldest running
/// transactions of the server, oldest first).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HorizonHolder {
    /// The server process id: `SELECT pg_terminate_backend(pid)` ends it.
    pub pid: i32,
    /// Its database.
    pub database: Option<String>,
    /// Its role.
    pub user: Option<String>,
    /// Its `application_name`.
    pub application_name: Option<String>,
    /// `active`, `idle in transaction`, ... (hidden from roles without `pg_read_all_stats`).
    pub state: Option<String>,
    /// How long its transaction has been open.
    pub transaction_age: Option<Duration>,
}

/// The horizon as `eventsourcing-admin status` shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogHorizon {
    /// Committed events of this store wait behind a running transaction: readers cannot see
    /// them until it ends.
    pub held_back: bool,
    /// The oldest running transactions of the server, oldest first (at most five).
    pub holders: Vec<HorizonHolder>,
}

/// The oldest running transactions of the server, oldest first.
pub(crate) async fn holders(pool: &Pool) -> Result<Vec<HorizonHolder>, Error> {
    let conn = pool.checkout().await?;
    let rows = conn
        .client
        .query(
            "SELECT pid, datname::text, usename::text, application_name, state, \
                    extract(epoch FROM clock_timestamp() - xact_start)::float8 \
             FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
             ORDER BY age(backend_xid) DESC LIMIT 5",
            &[],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            let age: Option<f64> = row.try_get(5).map_err(pg_error)?;
            Ok(HorizonHolder {
                pid: row.try_get(0).map_err(pg_error)?,
                database: row.try_get(1).map_err(pg_error)?,
                user: row.try_get(2).map_err(pg_error)?,
                application_name: row.try_get(3).map_err(pg_error)?,
                state: row.try_get(4).map_err(pg_error)?,
                transaction_age: age.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
            })
        })
        .collect()
}

/// Since when the horizon has held back committed events, and when that was last reported.
#[derive(Debug, Default)]
pub(crate) struct HorizonWatch(Mutex<Option<Held>>);

#[derive(Debug)]
struct Held {
    horizon: Xid8,
    since: Instant,
    reported: Option<Instant>,
}

impl HorizonWatch {
    /// Notes that `horizon` holds back committed events; true when it has for longer than
    /// [`HORIZON_WARN_AFTER`] and was not reported within that interval (the caller reports).
    pub(crate) fn held(&self, horizon: Xid8) -> bool {
        let now = Instant::now();
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = match held.as_mut() {
            Some(h) if h.horizon == horizon => h,
            _ => held.insert(Held {
                horizon,
                since: now,
                reported: None,
            }),
        };
        let due = now.duration_since(entry.since) >= HORIZON_WARN_AFTER
            && entry
                .reported
                .is_none_or(|at| now.duration_since(at) >= HORIZON_WARN_AFTER);
        if due {
            entry.reported = Some(now);
        }
        due
    }

    /// Nothing is held back any more.
    pub(crate) fn released(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Says at `warn` what holds the horizon (a failure to find out, too).
pub(crate) async fn report(pool: &Pool, horizon: Xid8) {
    match holders(pool).await {
        Ok(holders) => {
            let oldest = holders.first();
            tracing::warn!(
                horizon = horizon.0,
                pid = oldest.map(|h| h.pid),
                database = oldest.and_then(|h| h.database.as_deref()),
                application_name = oldest.and_then(|h| h.application_name.as_deref()),
                transaction_age_s = oldest.and_then(|h| h.transaction_age).map(|a| a.as_secs()),
                others = holders.len().saturating_sub(1),
                "committed events have been held back for over {HORIZON_WARN_AFTER:?} by a \
                 running transaction: readers of the log wait until it ends (end it, or \
                 `SELECT pg_terminate_backend(pid)`; see the crate docs, Global order)"
            );
        }
        Err(e) => tracing::warn!(
            horizon = horizon.0,
            error = %e,
            "committed events are held back by a running transaction, which cannot be named"
        ),
    }
}
