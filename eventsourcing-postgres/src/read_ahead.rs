//! Reading the log ahead of a sequential reader (a subscription or projection catching up);
//! the bookkeeping is core's [`read_ahead`](eventsourcing_core::read_ahead).
//!
//! A log read returns only events of transactions older than the oldest one running, which
//! are final: no later commit can come before them, so a full page never changes once read.
//! When `read_log` returns a full page, a task streams the next [`DEPTH`] pages in one
//! statement on one pooled connection (of the standby or primary a log read would use),
//! handing each page over as soon as its rows have arrived, while the caller works through the
//! pages before. While the caller keeps up, the task goes on with the next pages. A catch-up
//! then waits for one round trip per [`DEPTH`] pages instead of one per page, and reading
//! overlaps delivery. At most [`PAGES`] pages are held for all callers, and at most two reads'
//! worth ahead of one. A reader waits at most [`PATIENCE`] for a page being read ahead, then
//! reads it itself: a read ahead stuck on a server in trouble never stalls it longer.

use std::{future::Future, sync::Arc, time::Duration};

use eventsourcing_core::{read_ahead::is_full, Error, Position, StoredEvent};

use crate::{pool::Pool, read};

/// Pages a read ahead streams in one statement.
pub(crate) const DEPTH: usize = 4;

/// Pages read ahead and not yet asked for, at most (the oldest are dropped).
pub(crate) const PAGES: usize = 4 * DEPTH;

/// How long a reader waits for a page being read ahead before it reads the page itself.
const PATIENCE: Duration = Duration::from_secs(1);

/// A page of the log: the position it starts after, and its limit.
pub(crate) type Key = (Position, usize);

/// The pages read ahead, by where they start and their limit.
pub(crate) type ReadAhead = eventsourcing_core::read_ahead::ReadAhead<Key>;

/// Where a read ahead reads: the store, seen from below (this module never names it).
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// Where a log read goes now: a standby in turn, or the primary.
    fn log_pool(&self) -> &Pool;

    /// A page of the log read now, from where log reads go (falling back as they do).
    fn log_page(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send;
}

/// The page `key`: the one read ahead if it is there (waiting for it if it is still being
/// read) and full, else read now. A full page starts the read of the pages after it ahead.
pub(crate) async fn read_log<S: Source>(
    store: &S,
    ahead: &Arc<ReadAhead>,
    key: Key,
) -> Result<Vec<StoredEvent>, Error> {
    let (after, limit) = key;
    let events = match ahead.take_full(key, limit, Some(PATIENCE)).await {
        Some(events) => events,
        None => store.log_page(after, limit).await?,
    };
    if is_full(&events, limit) {
        if let Some(last) = events.last() {
            start(store, ahead, (last.position, limit));
        }
    }
    Ok(events)
}

/// Reads from page `key` on ahead on a task, unless it already is (or no tokio runtime runs).
fn start<S: Source>(store: &S, ahead: &Arc<ReadAhead>, key: Key) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(first) = ahead.begin(key) else {
        return;
    };
    let (store, ahead) = (store.clone(), Arc::clone(ahead));
    runtime.spawn(async move {
        let mut link = Some(first);
        while let Some(current) = link.take() {
            let (after, limit) = current.key();
            let next = |e: &StoredEvent| (e.position, limit);
            let (mut this, mut handed) = (Some(current), 0);
            let read = read::log_pages(store.log_pool(), after, limit, DEPTH, |events| {
                let Some(l) = this.take() else {
                    return false;
                };
                handed += 1;
                if handed < DEPTH {
                    this = l.in_same_read().deliver(&ahead, Ok(events), limit, next);
                    this.is_some()
                } else {
                    // The read's last page: the next read only while the caller keeps up.
                    link = l.deliver(&ahead, Ok(events), limit, next);
                    false
                }
            });
            if let Err(e) = read.await {
                tracing::debug!(error = %e, "a read ahead of the log failed; its reader reads for itself");
            }
            // A page not handed over (the log ended short of it, or the read failed): its
            // sender is dropped, and its caller reads it for itself.
        }
    });
}
