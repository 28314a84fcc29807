//! Reading the log ahead of a sequential reader (a subscription or projection catching up) on
//! a reader thread; the bookkeeping is core's [`read_ahead`](eventsourcing_core::read_ahead).
//!
//! Positions are assigned in commit order by the one writer and never reused, so a full page
//! of the log never changes once read. When `read_log` returns a full page to a caller that
//! waits for a reader thread anyway, the next one is read at once on a reader thread while the
//! caller works through the first; and while the caller keeps up, that reader goes on to the
//! next page straight away. So a catch-up is limited by the reader's own speed rather than by
//! two thread wake-ups per page; at most [`PAGES`] pages are held for all callers.

use std::sync::Arc;

use eventsourcing_core::{read_ahead::is_full, StoredEvent};

use crate::{job::Job, read::read_page, rows::clamp_i64};

/// Pages read ahead and not yet asked for, at most (the oldest are dropped).
pub(crate) const PAGES: usize = 8;

/// A page of the log: the `position` it starts after, and its limit.
pub(crate) type Key = (i64, i64);

/// The pages read ahead, by where they start and their limit.
pub(crate) type ReadAhead = eventsourcing_core::read_ahead::ReadAhead<Key>;

/// A job that reads the page `key` ahead, or `None` if it is already on its way.
pub(crate) fn job(ahead: &Arc<ReadAhead>, dbname: &Arc<str>, key: Key) -> Option<Job> {
    let mut link = ahead.begin(key)?;
    let (ahead, dbname) = (Arc::clone(ahead), Arc::clone(dbname));
    Some(Box::new(move |conn| loop {
        let (floor, limit) = link.key();
        let page = read_page(conn, &dbname, floor, limit);
        let next = |e: &StoredEvent| (clamp_i64(e.position.commit), limit);
        match link.deliver(&ahead, page, usize::try_from(limit).unwrap_or(0), next) {
            Some(next) => link = next,
            None => return,
        }
    }))
}

/// Whether a page read with `limit` holds that many events: then it is final.
pub(crate) fn full(events: &[StoredEvent], limit: i64) -> bool {
    usize::try_from(limit).is_ok_and(|limit| is_full(events, limit))
}
