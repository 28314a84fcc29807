//! Group commit: saves that arrive while others are being written wait in a queue, and the
//! queued saves are then written together, in one autocommitted statement (one round trip, one
//! commit). Each save stays all or nothing: the statement inserts nothing of a save whose
//! expected version is stale (or would leave a hole), and that save gets its own
//! [`Error::Conflict`] while its neighbours commit. Each caller hears its outcome only after
//! the commit that holds its save has returned.
//!
//! At most `pool_size` writes run at once, each on a pooled connection of its own. A save
//! that finds a free slot is written at once by its caller, with the single-save statement of
//! `append.rs` (what a lone writer pays stays what it was); the write that ends while saves
//! are queued hands its slot to a task that writes them as a group, and goes on with the next
//! group while saves keep coming.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use eventsourcing_core::{Error, NewEvent};
use tokio::sync::oneshot;
use tokio_postgres::{error::Severity, types::ToSql};
use uuid::Uuid;

use crate::{
    append::{self, conflict_at, partial_insert, Batch},
    error::{pg_error, shared_error, OutcomeUnknown},
    pool::{Checkout, Pool},
    sql::{Shape, Stmt},
};

/// The most events one group carries; the saves beyond wait for the next group.
const MAX_GROUP_EVENTS: usize = 4096;

/// The queue of one store's saves and the writes in flight.
pub(crate) struct Groups {
    pool: Arc<Pool>,
    /// Writes running at once, each on a connection of its own (`pool_size`); saves queue, and
    /// go in groups, only beyond. Measured on the 2-core machine (BENCHMARKS.md, issue 14):
    /// with 2 or 4 for eight writers, the queued saves waited for a whole commit before theirs
    /// began, and saved about 25 % slower than eight plain connections; with 8 they did not.
    in_flight: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Saves waiting for a write slot; never empty while a slot is free.
    queue: VecDeque<Save>,
    /// Writes running (a caller's own save, or a group task).
    in_flight: usize,
}

/// One queued save.
struct Save {
    events: Vec<NewEvent>,
    /// Told the outcome once the save is committed or refused; the caller may have gone.
    reply: oneshot::Sender<Result<(), Error>>,
}

impl Groups {
    pub(crate) fn new(pool: Arc<Pool>, in_flight: u32) -> Self {
        Groups {
            pool,
            in_flight: in_flight.max(1) as usize,
            state: Mutex::new(State::default()),
        }
    }

    /// Saves `events` atomically: at once if a write slot is free, else with the saves queued
    /// beside it, in the next group.
    pub(crate) async fn append(self: &Arc<Self>, events: Vec<NewEvent>) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let turn = {
            let mut state = self.lock();
            if state.in_flight < self.in_flight {
                state.in_flight += 1;
                Turn::Now(events)
            } else {
                let (reply, outcome) = oneshot::channel();
                state.queue.push_back(Save { events, reply });
                Turn::Queued(outcome)
            }
        };
        match turn {
            Turn::Now(events) => {
                // The slot is handed on (or freed) when this write ends, or if the caller
                // drops it.
                let _slot = Slot {
                    groups: Arc::clone(self),
                    armed: true,
                };
                append::append(&self.pool, &events).await
            }
            // No answer: the task writing the group was dropped (its runtime shut down),
            // maybe after the commit.
            Turn::Queued(outcome) => outcome.await.unwrap_or_else(|_| {
                Err(Error::Transient(Box::new(OutcomeUnknown {
                    cause: "the task writing the save's group ended".to_owned(),
                })))
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next group to write with the slot of a write that ended, or `None` (and the slot is
    /// freed) if no save waits.
    fn next_group(&self) -> Option<Vec<Save>> {
        let mut state = self.lock();
        if state.queue.is_empty() {
            state.in_flight = state.in_flight.saturating_sub(1);
            return None;
        }
        Some(take_group(&mut state.queue))
    }

    /// Hands the slot of a write that ended to a task writing the queued saves.
    fn release(self: &Arc<Self>) {
        while let Some(group) = self.next_group() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // No runtime to write on: nothing of these saves was written.
                for save in group {
                    let _ = save.reply.send(Err(no_runtime()));
                }
                continue;
            };
            runtime.spawn(Arc::clone(self).flush(group));
            return;
        }
    }

    /// Writes `group`, then each group gathered meanwhile, until no save waits.
    async fn flush(self: Arc<Self>, mut group: Vec<Save>) {
        // If the task is dropped mid-write (its runtime shutting down), the slot is handed on.
        let mut slot = Slot {
            groups: Arc::clone(&self),
            armed: true,
        };
        loop {
            write_group(&self.pool, group).await;
            match self.next_group() {
                Some(next) => group = next,
                None => break,
            }
        }
        slot.armed = false;
    }
}

fn no_runtime() -> Error {
    Error::Transient("no Tokio runtime to write the save on".into())
}

/// Who writes a save: its caller, now, or a group task later.
enum Turn {
    Now(Vec<NewEvent>),
    Queued(oneshot::Receiver<Result<(), Error>>),
}

/// A write slot held: handed on when dropped, unless disarmed (the slot was freed already).
struct Slot {
    groups: Arc<Groups>,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.groups.release();
        }
    }
}

/// The queued saves that go together: in queue order, at most [`MAX_GROUP_EVENTS`] events (a
/// larger save alone), and no two writing the same stream (the statement checks every save
/// against the table as it was before it, so the later save would fail the whole statement on
/// the primary key). The others stay queued, in order, for the next group.
fn take_group(queue: &mut VecDeque<Save>) -> Vec<Save> {
    let mut group = Vec::new();
    let mut streams: HashSet<Uuid> = HashSet::new();
    let mut events = 0;
    let mut rest = VecDeque::new();
    while let Some(save) = queue.pop_front() {
        let fits = group.is_empty()
            || (events + save.events.len() <= MAX_GROUP_EVENTS
                && save.events.iter().all(|e| !streams.contains(&e.stream_id)));
        if fits {
            streams.extend(save.events.iter().map(|e| e.stream_id));
            events += save.events.len();
            group.push(save);
        } else {
            rest.push_back(save);
        }
    }
    *queue = rest;
    group
}

/// Writes `group` and tells each save its outcome.
async fn write_group(pool: &Pool, group: Vec<Save>) {
    let mut conn = match pool.checkout().await {
        Ok(conn) => conn,
        Err(e) => {
            // Nothing was written: each save is told why.
            for save in group {
                let _ = save.reply.send(Err(shared_error(&e)));
            }
            return;
        }
    };
    if group.len() == 1 {
        for save in group {
            let outcome = append::append_on(&mut conn, pool, &save.events).await;
            let _ = save.reply.send(outcome);
        }
        return;
    }
    let (events, mut replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|save| (save.events, Some(save.reply)))
        .unzip();
    match commit_together(&mut conn, pool, &events, &mut replies).await {
        Ok(()) => {}
        Err(Failed::Refused) => {
            // The server refused the statement and nothing of it was written (a concurrent
            // save of one of the streams committed first, a deadlock, a timeout): each save
            // is written alone, to get the outcome of its own attempt.
            for (events, reply) in events.iter().zip(&mut replies) {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(append::append_on(&mut conn, pool, events).await);
                }
            }
        }
        Err(Failed::Unknown(cause)) => {
            // The connection went away while the statement ran: it may have committed or
            // not. Never written again (that could write a save twice); the connection is
            // not reused.
            conn.discard();
            for reply in replies.iter_mut().filter_map(Option::take) {
                let _ = reply.send(Err(Error::Transient(Box::new(OutcomeUnknown {
                    cause: cause.clone(),
                }))));
            }
        }
    }
}

/// Why a group statement did not answer.
enum Failed {
    /// The server refused it: nothing of it was written.
    Refused,
    /// No answer came (the connection was lost): committed or not, nobody knows.
    Unknown(String),
}

/// The group's one statement; each save's caller is told its outcome (the inserted ones first,
/// before the conflicts are read). Saves that are not valid are refused before anything is sent.
async fn commit_together(
    conn: &mut Checkout<'_>,
    pool: &Pool,
    events: &[Vec<NewEvent>],
    replies: &mut [Option<oneshot::Sender<Result<(), Error>>>],
) -> Result<(), Failed> {
    // Each save's columns, with its index in `events`; an invalid save is told so now.
    let mut batches = Vec::with_capacity(events.len());
    for (index, save) in events.iter().enumerate() {
        match Batch::new(save) {
            Ok(Some(batch)) => batches.push((index, batch)),
            Ok(None) => tell(replies, index, Ok(())),
            Err(e) => tell(replies, index, Err(e)),
        }
    }
    let columns = Columns::new(&batches);
    let stmt = match conn.statement(Stmt::AppendGroup).await {
        Ok(stmt) => stmt,
        Err(_) => return Err(Failed::Refused),
    };
    let row = match conn.client.query_one(&stmt, &columns.params()).await {
        Ok(row) => row,
        Err(e) if refused(&e, conn) => return Err(Failed::Refused),
        Err(e) => return Err(Failed::Unknown(pg_error(e).to_string())),
    };
    let rejected: Vec<i32> = row.try_get(0).unwrap_or_default();
    let inserted: i64 = row.try_get(1).unwrap_or_default();
    let (rejected, written): (Vec<_>, Vec<_>) = batches
        .iter()
        .enumerate()
        .partition(|(save, _)| rejected.contains(&(*save as i32)));
    let expected: usize = written.iter().map(|(_, (_, b))| b.versions.len()).sum();
    for (_, (index, _)) in &written {
        let outcome = if inserted as usize == expected {
            Ok(())
        } else {
            Err(partial_insert(inserted.max(0) as u64, expected))
        };
        tell(replies, *index, outcome);
    }
    if rejected.is_empty() {
        return Ok(());
    }
    // One read of the rejected saves' streams, then each save's own conflict.
    let ids: Vec<Uuid> = rejected
        .iter()
        .flat_map(|(_, (_, batch))| batch.streams.iter().map(|(id, _)| *id))
        .collect();
    match append::stream_versions(conn, pool, &ids).await {
        Ok(current) => {
            for (_, (index, batch)) in rejected {
                tell(replies, *index, Err(conflict_at(batch, &current, None)));
            }
        }
        Err(e) => {
            for (_, (index, _)) in rejected {
                tell(replies, *index, Err(shared_error(&e)));
            }
        }
    }
    Ok(())
}

/// Whether the server refused a statement (an `ERROR` on a connection still open), so that
/// nothing of it was written. A `FATAL` (the session terminated) or a lost connection may have
/// come after the commit.
fn refused(err: &tokio_postgres::Error, conn: &Checkout<'_>) -> bool {
    let error = err
        .as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error));
    error && !conn.client.is_closed()
}

fn tell(
    replies: &mut [Option<oneshot::Sender<Result<(), Error>>>],
    index: usize,
    outcome: Result<(), Error>,
) {
    if let Some(reply) = replies.get_mut(index).and_then(Option::take) {
        let _ = reply.send(outcome);
    }
}

/// The columns of every save of a group, concatenated, with the save each event and each
/// checked stream belongs to.
struct Columns<'a> {
    events: Batch<'a>,
    saves: Vec<i32>,
    check_saves: Vec<i32>,
    check_ids: Vec<Uuid>,
    check_versions: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn new(batches: &[(usize, Batch<'a>)]) -> Self {
        let mut columns = Columns {
            events: Batch::empty(),
            saves: Vec::new(),
            check_saves: Vec::new(),
            check_ids: Vec::new(),
            check_versions: Vec::new(),
        };
        for (save, (_, batch)) in batches.iter().enumerate() {
            let save = save as i32;
            columns.events.extend(batch);
            columns
                .saves
                .extend(std::iter::repeat_n(save, batch.versions.len()));
            for (id, first) in &batch.streams {
                columns.check_saves.push(save);
                columns.check_ids.push(*id);
                // `Batch::new` checked every version fits an int8.
                columns.check_versions.push(*first as i64);
            }
        }
        columns
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params = self.events.params(Shape::Many);
        params.extend([
            &self.saves as &(dyn ToSql + Sync),
            &self.check_saves,
            &self.check_ids,
            &self.check_versions,
        ]);
        params
    }
}
