//! Reading the log ahead of a sequential reader (a subscription or projection catching up) on
//! a reader thread; the bookkeeping is core's [`read_ahead`](eventsourcing_core::read_ahead).
//!
//! Positions are assigned in commit order by the one writer and never reused, so a full page
//! of the log never changes once read. When `read_log` returns a full page to a caller that
//! waits for a reader thread anyway, the next one is read at once on a reader thread while the
//! caller works through the first; and while the caller keeps up, that reader goes on to the
//! next page straight away. So a catch-up is limited by the reader's own speed rather than by
//! two thread wake-ups per page; at most [`PAGES`] pages are held for all callers.
//!
//! A caller that reads on its own thread (a multi-thread runtime) has no page read ahead for
//! it: it reads sooner than it would be woken with one. While the pages it gets are full and
//! their positions contiguous, it guesses where the next page starts (right after this one's
//! `limit` positions) and has a reader thread read that one page ([`guess`]) while it reads its
//! own; the page after is its own again, and so on: two threads read, each a page at a time.
//! A wrong guess costs one page read for nothing (a full page is the same whoever reads it,
//! so a page found under the right key is always right).

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

/// A job that reads the page `key` and no further, or `None` if it is already on its way: a
/// guess at the page after the one a caller is reading on its own thread meanwhile.
pub(crate) fn guess(ahead: &Arc<ReadAhead>, dbname: &Arc<str>, key: Key) -> Option<Job> {
    let link = ahead.begin(key)?;
    let dbname = Arc::clone(dbname);
    Some(Box::new(move |conn| {
        let (floor, limit) = link.key();
        link.finish(read_page(conn, &dbname, floor, limit));
    }))
}

/// Whether a page read with `limit` holds that many events: then it is final.
pub(crate) fn full(events: &[StoredEvent], limit: i64) -> bool {
    usize::try_from(limit).is_ok_and(|limit| is_full(events, limit))
}
