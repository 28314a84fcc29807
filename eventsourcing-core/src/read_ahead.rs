//! Reading the log ahead of a sequential reader (a subscription or projection catching up):
//! the bookkeeping every store that reads ahead shares. For store crates; applications do
//! not use it.
//!
//! A full page of the log never changes once read: a store's [`read_log`](crate::EventStore::read_log)
//! only returns events no later commit can precede, so no event can later appear among or
//! before the events of a page that already holds `limit` of them. When a read returns a full
//! page, a store may therefore read the next one at once, while the caller works through the
//! first, and hand it over when the caller asks for it. While the caller keeps up (it has
//! asked for the page before the one just read), the reader goes on to the next page
//! ([`Chain::deliver`]); so memory stays bounded: at most two reads' worth of pages (two pages
//! for a store that reads one at a time) ahead of what a caller has asked for, and at most the
//! registry's capacity for all callers.
//!
//! A page is known by a key of the store's choosing (where it starts and its limit).

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::oneshot;

use crate::{error::Error, event::StoredEvent};

/// A page as read: the events, or why the read failed.
pub type Page = Result<Vec<StoredEvent>, Error>;

/// The pages being read, or read, ahead of their callers, by key; at most `capacity` (the
/// oldest are dropped: their callers read for themselves).
pub struct ReadAhead<K> {
    pages: Mutex<VecDeque<(K, oneshot::Receiver<Page>)>>,
    capacity: usize,
}

impl<K> std::fmt::Debug for ReadAhead<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<K: PartialEq + Copy> ReadAhead<K> {
    /// A registry holding at most `capacity` pages (at least one).
    pub fn new(capacity: usize) -> Self {
        ReadAhead {
            pages: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(K, oneshot::Receiver<Page>)>> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page `key` if it is read (or being read) ahead: no longer held for anyone else.
    pub fn take(&self, key: K) -> Option<oneshot::Receiver<Page>> {
        let mut pages = self.lock();
        let i = pages.iter().position(|(k, _)| *k == key)?;
        pages.remove(i).map(|(_, page)| page)
    }

    /// The page `key` read ahead, if it is there, arrives within `patience` if one is given (a
    /// read ahead stuck on a server in trouble then never stalls its caller longer; a store
    /// whose reads always end may wait, and needs no timer) and holds `limit` events: only a
    /// full page is certain to be what a read now would return. `None`: read it now.
    pub async fn take_full(
        &self,
        key: K,
        limit: usize,
        patience: Option<Duration>,
    ) -> Option<Vec<StoredEvent>> {
        let page = self.take(key)?;
        let page = match patience {
            Some(patience) => tokio::time::timeout(patience, page).await.ok()?,
            None => page.await,
        };
        match page {
            Ok(Ok(events)) if is_full(&events, limit) => Some(events),
            _ => None,
        }
    }

    /// Starts reading page `key` ahead, unless it already is: the chain's first link.
    pub fn begin(&self, key: K) -> Option<Chain<K>> {
        let tx = self.register(key)?;
        Some(Chain {
            key,
            previous: None,
            same_read: false,
            tx,
        })
    }

    /// Registers page `key` as being read ahead, unless it already is; returns where to send
    /// it once read.
    fn register(&self, key: K) -> Option<oneshot::Sender<Page>> {
        let mut pages = self.lock();
        if pages.iter().any(|(k, _)| *k == key) {
            return None;
        }
        if pages.len() >= self.capacity {
            pages.pop_front();
        }
        let (tx, page) = oneshot::channel();
        pages.push_back((key, page));
        Some(tx)
    }

    /// Whether page `key` is read ahead and not yet asked for.
    pub fn waiting(&self, key: K) -> bool {
        self.lock().iter().any(|(k, _)| *k == key)
    }
}

/// A page a reader ahead is to read, and where to send it.
pub struct Chain<K> {
    key: K,
    /// The page read before this one in the chain (none for the first: its caller has it).
    previous: Option<K>,
    /// Read by the same statement as the page before it (see [`Chain::in_same_read`]).
    same_read: bool,
    tx: oneshot::Sender<Page>,
}

impl<K> std::fmt::Debug for Chain<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").finish_non_exhaustive()
    }
}

impl<K: PartialEq + Copy> Chain<K> {
    /// The page to read.
    pub fn key(&self) -> K {
        self.key
    }

    /// This link's page comes from the same read as the page before it (a read returning
    /// several): [`deliver`](Self::deliver) then goes on without asking whether the caller
    /// keeps up, and the next link asks as this one would have.
    pub fn in_same_read(mut self) -> Self {
        self.same_read = true;
        self
    }

    /// Hands the page over (its caller may be gone: then it is dropped) and ends the chain:
    /// for a page read on its own, beside a caller reading the one before it.
    pub fn finish(self, page: Page) {
        let _ = self.tx.send(page);
    }

    /// Hands the page read with `limit` over (its caller may be gone: then it is dropped),
    /// and returns the next link if the reader goes on: to the page after a full one (its key
    /// made by `next` from the last event), only while the caller keeps up (it has already
    /// asked for the page before this link's read began), and only if no one else reads it
    /// ahead.
    pub fn deliver(
        self,
        ahead: &ReadAhead<K>,
        page: Page,
        limit: usize,
        next: impl FnOnce(&StoredEvent) -> K,
    ) -> Option<Chain<K>> {
        let (go_on, previous) = if self.same_read {
            (true, self.previous)
        } else {
            let keeps_up = self.previous.is_none_or(|p| !ahead.waiting(p));
            (keeps_up, Some(self.key))
        };
        let next = match &page {
            Ok(events) if go_on && is_full(events, limit) => events.last().map(next),
            _ => None,
        };
        let tx = next.and_then(|n| ahead.register(n));
        let _ = self.tx.send(page);
        Some(Chain {
            key: next?,
            previous,
            same_read: false,
            tx: tx?,
        })
    }
}

/// Whether a page of `events` read with `limit` (above 0) is full: then it is final.
pub fn is_full(events: &[StoredEvent], limit: usize) -> bool {
    limit > 0 && events.len() == limit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use crate::event::Position;

    /// A page of `n` events after seq `after`.
    fn page(after: u64, n: u64) -> Page {
        Ok((after + 1..=after + n)
            .map(|seq| StoredEvent::defective(Position { commit: 1, seq }, String::new()))
            .collect())
    }

    #[test]
    fn a_page_is_taken_once_and_the_oldest_gives_way() {
        let ahead = ReadAhead::new(2);
        assert!(ahead.begin(1).is_some());
        assert!(ahead.begin(1).is_none(), "page 1 is already on its way");
        assert!(ahead.begin(2).is_some());
        assert!(ahead.begin(3).is_some());
        assert!(!ahead.waiting(1), "the oldest page gave way to page 3");
        assert!(ahead.take(2).is_some());
        assert!(ahead.take(2).is_none(), "a page is handed over once");
        assert!(ahead.waiting(3));
    }

    /// A chain's next key: the seq of the page's last event.
    fn next(event: &StoredEvent) -> u64 {
        event.position.seq
    }

    /// A registry whose reader ahead has read page 0 (full: three events, and the page before
    /// it with its caller) and is on to page 3.
    fn on_to_page_3() -> (ReadAhead<u64>, Chain<u64>) {
        let ahead = ReadAhead::new(8);
        let first = ahead.begin(0).expect("page 0 starts");
        let second = first.deliver(&ahead, page(0, 3), 3, next);
        let second = second.expect("on to the page after a full one");
        assert_eq!(second.key(), 3);
        (ahead, second)
    }

    #[tokio::test]
    async fn only_a_full_page_that_comes_in_time_is_taken() {
        let ahead = ReadAhead::new(8);
        let patience = Some(Duration::from_millis(50));
        ahead.begin(0).expect("page 0").finish(page(0, 3));
        let full = ahead.take_full(0, 3, patience).await;
        assert_eq!(full.map(|e| e.len()), Some(3));
        assert!(ahead.take(0).is_none(), "taken once");
        ahead.begin(3).expect("page 3").finish(page(3, 2));
        assert!(
            ahead.take_full(3, 3, patience).await.is_none(),
            "a short page"
        );
        let failed = ahead.begin(6).expect("page 6");
        failed.finish(Err(Error::store("the read failed")));
        assert!(
            ahead.take_full(6, 3, patience).await.is_none(),
            "a failed read"
        );
        let _stuck = ahead.begin(9).expect("page 9");
        assert!(
            ahead.take_full(9, 3, patience).await.is_none(),
            "never sent"
        );
        assert!(
            ahead.take_full(12, 3, patience).await.is_none(),
            "never begun"
        );
    }

    #[test]
    fn a_finished_link_hands_its_page_over_and_reads_no_further() {
        let ahead = ReadAhead::new(8);
        let link = ahead.begin(3).expect("page 3 starts");
        link.finish(page(3, 3));
        let mut held = ahead.take(3).expect("page 3 is held");
        let events = held.try_recv().ok().and_then(Result::ok);
        assert_eq!(events.map(|e| e.len()), Some(3));
        assert!(!ahead.waiting(6), "no page after it is read");
    }

    #[test]
    fn a_reader_ahead_stops_when_its_caller_falls_behind() {
        let (ahead, second) = on_to_page_3();
        // Page 3 read while page 0 still waits: the caller has fallen behind, the chain ends.
        assert!(second.deliver(&ahead, page(3, 3), 3, next).is_none());
        let mut held = ahead.take(0).expect("page 0 is held");
        let events = held.try_recv().ok().and_then(Result::ok);
        assert_eq!(events.map(|e| e.len()), Some(3), "page 0 was handed over");
    }

    #[test]
    fn a_reader_ahead_goes_on_while_its_caller_keeps_up_and_never_past_a_short_page() {
        let (ahead, second) = on_to_page_3();
        assert!(ahead.take(0).is_some());
        let third = second.deliver(&ahead, page(3, 3), 3, next);
        assert_eq!(third.as_ref().map(Chain::key), Some(6), "on to the next");
        assert!(ahead.take(3).is_some());
        let short = third.and_then(|t| t.deliver(&ahead, page(6, 2), 3, next));
        assert!(short.is_none(), "a short page is the log's end for now");
    }

    #[test]
    fn the_pages_of_one_read_go_on_and_the_next_read_asks_whether_the_caller_keeps_up() {
        let (ahead, second) = on_to_page_3();
        // One read returns pages 3 and 6 while page 0 still waits: page 6 comes with page 3,
        assert!(ahead.waiting(0));
        let third = second.in_same_read().deliver(&ahead, page(3, 3), 3, next);
        assert_eq!(
            third.as_ref().map(Chain::key),
            Some(6),
            "the same read goes on"
        );
        // but a read after it waits until the caller has taken page 0.
        let fourth = third.and_then(|t| t.deliver(&ahead, page(6, 3), 3, next));
        assert!(fourth.is_none());
        assert!(ahead.waiting(3) && ahead.waiting(6));
    }
}
