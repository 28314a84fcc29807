//! Reading the log ahead of a sequential reader (a subscription or projection catching up).
//!
//! A full page of the log never changes once read: positions are assigned in commit order by
//! the one writer and never reused, so no event can later appear among or before the events of
//! a page that already holds `limit` of them. When `read_log` returns a full page, the next one
//! is therefore read at once on a reader thread, while the caller works through the first;
//! and while the caller keeps up (it has asked for the page before the one just read), that
//! reader goes on to the next page straight away. So a catch-up is limited by the reader's own speed rather than
//! by two thread wake-ups per page, and memory stays bounded: at most two pages are read ahead
//! of what a caller has asked for, and at most [`PAGES`] pages are held for all callers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use eventsourcing_core::{Error, StoredEvent};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{job::Job, read::read_page, rows::clamp_i64};

/// Pages read ahead and not yet asked for, at most (the oldest are dropped).
pub(crate) const PAGES: usize = 8;

type Page = Result<Vec<StoredEvent>, Error>;

/// The page of the log after `floor` (at most `limit` events), being read or read.
struct Ahead {
    floor: i64,
    limit: i64,
    page: oneshot::Receiver<Page>,
}

#[derive(Default)]
pub(crate) struct ReadAhead {
    pages: Mutex<VecDeque<Ahead>>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead").finish_non_exhaustive()
    }
}

impl ReadAhead {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Ahead>> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page after `floor` if it is read (or being read) ahead.
    pub(crate) fn take(&self, floor: i64, limit: i64) -> Option<oneshot::Receiver<Page>> {
        let mut pages = self.lock();
        let i = pages
            .iter()
            .position(|a| a.floor == floor && a.limit == limit)?;
        pages.remove(i).map(|a| a.page)
    }

    /// Registers the page after `floor` as being read ahead, unless it already is; returns
    /// where to send it.
    fn register(&self, floor: i64, limit: i64) -> Option<oneshot::Sender<Page>> {
        let mut pages = self.lock();
        if pages.iter().any(|a| a.floor == floor && a.limit == limit) {
            return None;
        }
        if pages.len() >= PAGES {
            pages.pop_front();
        }
        let (tx, page) = oneshot::channel();
        pages.push_back(Ahead { floor, limit, page });
        Some(tx)
    }

    /// Whether the page after `floor` is waiting to be asked for.
    fn waiting(&self, floor: i64, limit: i64) -> bool {
        self.lock()
            .iter()
            .any(|a| a.floor == floor && a.limit == limit)
    }

    /// A job that reads the page after `floor` ahead, or `None` if it is already on its way.
    pub(crate) fn job(self: &Arc<Self>, dbname: &Arc<str>, floor: i64, limit: i64) -> Option<Job> {
        let tx = self.register(floor, limit)?;
        let (me, dbname) = (Arc::clone(self), Arc::clone(dbname));
        Some(Box::new(move |conn| {
            me.run(conn, &dbname, floor, limit, tx)
        }))
    }

    fn run(
        &self,
        conn: &mut Connection,
        dbname: &str,
        mut floor: i64,
        limit: i64,
        mut tx: oneshot::Sender<Page>,
    ) {
        // The page before this one: the caller has it when the chain starts.
        let mut previous: Option<i64> = None;
        loop {
            let page = read_page(conn, dbname, floor, limit);
            let next = match &page {
                Ok(events) if is_full(events, limit) => events.last().map(|e| e.position.commit),
                _ => None,
            };
            // Go on only if the caller has already asked for the page before this one: it is
            // keeping up, and will want the next one soon after this one.
            let chained = next
                .map(clamp_i64)
                .filter(|_| previous.is_none_or(|p| !self.waiting(p, limit)))
                .and_then(|next| Some((next, self.register(next, limit)?)));
            // The caller may be gone: the page is simply dropped.
            let _ = tx.send(page);
            match chained {
                Some((next, next_tx)) => (previous, floor, tx) = (Some(floor), next, next_tx),
                None => return,
            }
        }
    }
}

/// Whether a page holds `limit` events: then it is final.
pub(crate) fn is_full(events: &[StoredEvent], limit: i64) -> bool {
    i64::try_from(events.len()).is_ok_and(|n| n == limit)
}
