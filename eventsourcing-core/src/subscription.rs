use std::{time::Duration, vec::IntoIter};

use futures_util::Stream;

use crate::{
    changes::Changes,
    error::Error,
    event::{Position, StoredEvent},
    store::EventStore,
};

/// Reads the whole log after `after`, one page at a time: memory stays bounded by one page
/// however long the log is. The stream ends at the end of the log as it is when reached.
pub fn read_log_stream<S: EventStore>(
    store: &S,
    after: Position,
    page: usize,
) -> impl Stream<Item = Result<StoredEvent, Error>> + Send + '_ {
    let page = page.max(1);
    // The page being handed out: taken from the read's vector as it is, never copied.
    let state = (after, Vec::<StoredEvent>::new().into_iter(), false);
    futures_util::stream::unfold(state, move |(after, mut buffer, done)| async move {
        if let Some(event) = buffer.next() {
            let item = event.check_defect().map(|()| event);
            return Some((item, (after, buffer, done)));
        }
        if done {
            return None;
        }
        match store.read_log(after, page).await {
            Err(e) => Some((Err(e), (after, buffer, true))),
            Ok(events) => {
                let done = events.len() < page;
                let after = events.last().map_or(after, |e| e.position);
                buffer = events.into_iter();
                let event = buffer.next()?;
                let item = event.check_defect().map(|()| event);
                Some((item, (after, buffer, done)))
            }
        }
    })
}

/// Catches up from a position, then follows the log live.
///
/// Woken by the store's [`changes`](EventStore::changes) (in process for memory and SQLite, by
/// LISTEN/NOTIFY on PostgreSQL) and, whatever happens to those hints, by polling every
/// `poll_interval`, so a lost wake-up only delays an event, never loses it.
#[derive(Debug)]
pub struct Subscription<S> {
    store: S,
    delivered: Position,
    read: Position,
    page: usize,
    poll: Duration,
    /// What is left of the last page read (its vector, handed out in place).
    buffer: IntoIter<StoredEvent>,
    changes: Changes,
    types: Option<Vec<String>>,
    /// The last read returned less than a page: until woken (or polled), nothing new is known.
    caught_up: bool,
}

impl<S: EventStore> Subscription<S> {
    /// Delivers every event after `after`.
    pub fn new(store: S, after: Position) -> Self {
        let changes = store.changes();
        Subscription {
            store,
            delivered: after,
            read: after,
            page: 500,
            poll: Duration::from_secs(1),
            buffer: Vec::new().into_iter(),
            changes,
            types: None,
            caught_up: false,
        }
    }

    /// Events read per query (default 500).
    pub fn page_size(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }

    /// How long to wait for a wake-up before reading again anyway (default 1 s).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Delivers only events of these types; the others still move [`position`](Self::position)
    /// on.
    pub fn event_types<I: IntoIterator<Item = T>, T: Into<String>>(mut self, types: I) -> Self {
        self.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// The position of the last event delivered or skipped.
    pub fn position(&self) -> Position {
        self.delivered
    }

    /// The next event, waiting for one if the subscriber has caught up.
    pub async fn next(&mut self) -> Result<StoredEvent, Error> {
        loop {
            if let Some(event) = self.try_next().await? {
                return Ok(event);
            }
            self.changes.wait(self.poll).await;
            // Woken, or the poll interval passed: read again either way.
            self.caught_up = false;
        }
    }

    /// The next event if one is readable now, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<StoredEvent>, Error> {
        loop {
            for event in self.buffer.by_ref() {
                self.delivered = event.position;
                // A row that cannot be read: reported, and passed (the next call goes on).
                event.check_defect()?;
                if wants(self.types.as_deref(), &event) {
                    return Ok(Some(event));
                }
            }
            // Caught up and no wake-up since: a read would find nothing new (saves through
            // this store wake us), so skip it. This halves the reads of a live follower.
            if self.caught_up && self.changes.is_live() && !self.changes.has_changed() {
                return Ok(None);
            }
            // Seen-marks go first: a wake-up arriving during the read then wakes the next wait.
            self.changes.mark_seen();
            let events = self.store.read_log(self.read, self.page).await?;
            self.caught_up = events.len() < self.page;
            let Some(last) = events.last() else {
                return Ok(None);
            };
            self.read = last.position;
            self.buffer = events.into_iter();
        }
    }
}

/// Whether a subscriber to `types` (every type: `None`) wants `event`.
fn wants(types: Option<&[String]>, event: &StoredEvent) -> bool {
    types.is_none_or(|t| t.contains(&event.event_type))
}
