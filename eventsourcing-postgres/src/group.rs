//! Group commit: saves that arrive while another is being written wait in a queue, and the
//! queued saves are then written together, in one autocommitted statement (one round trip, one
//! commit). Each save stays all or nothing, and a save whose expected version is stale (or
//! would leave a hole) gets its own [`Error::Conflict`] while its neighbours commit. Each caller
//! hears its outcome only after the commit that holds its save has returned.
//!
//! One write runs at a time, unless it is stuck. A save that finds none running is written at
//! once by its caller, with the single-save statement of `append.rs` (what a lone writer pays
//! stays what it was); the write that ends while saves are queued hands over to a task that
//! writes them as a group, and goes on with the next group while saves keep coming. Before it takes the next
//! group, that task lets the runtime run the callers it has just answered ([`WAKE_TURNS`]), so
//! that a caller saving in a loop joins the next group instead of starting one of its own.
//! A write that has made no progress for [`STUCK`] (waiting for a row lock of another
//! transaction, say: an open `append_in` inserting the same version) no longer holds back the
//! saves queued behind it: the next one to notice starts another write on another connection,
//! up to `pool_size` writes.
//!
//! A group is written first with the plain statement of a multi-event save, all of its saves
//! as one (the cheapest form for the server). If the server refuses it (a stale version, a
//! guard that held everything back), the group is written with the statement that checks each
//! save on its own (`Stmt::AppendGroup`), and if that is refused too (another process won a
//! race meanwhile), each save alone.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
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

/// How often the task writing groups yields to the runtime between two groups, so that the
/// callers it has just answered can queue their next saves. Measured on the 2-core machine
/// (BENCHMARKS.md, "PostgreSQL group commit, one write at a time"): with eight writers in a
/// loop and no yield, the writers split into two halves whose groups alternated, each waiting
/// for the other's commit; with 8 turns nearly all eight saves went in each group.
const WAKE_TURNS: usize = 8;

/// How long the writes running may make no progress (no write started or ended) before a
/// queued save starts another write beside them.
const STUCK: Duration = Duration::from_millis(100);

/// The queue of one store's saves and the writes in flight.
pub(crate) struct Groups {
    pool: Arc<Pool>,
    /// The most writes at once (`pool_size`), reached only while writes are stuck.
    max_writes: usize,
    state: Mutex<State>,
}

struct State {
    /// Saves waiting for a write to end; empty while none runs.
    queue: VecDeque<Save>,
    /// Writes running (a caller's own save, or a group task).
    writing: usize,
    /// When a write last started or ended.
    progress: Instant,
}

/// One queued save.
struct Save {
    events: Vec<NewEvent>,
    /// Told the outcome once the save is committed or refused; the caller may have gone.
    reply: oneshot::Sender<Result<(), Error>>,
}

impl Groups {
    pub(crate) fn new(pool: Arc<Pool>, max_writes: u32) -> Self {
        Groups {
            pool,
            max_writes: max_writes.max(1) as usize,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                writing: 0,
                progress: Instant::now(),
            }),
        }
    }

    /// Saves `events` atomically: at once if no write runs, else with the saves queued beside
    /// it, in the next group.
    pub(crate) async fn append(self: &Arc<Self>, events: Vec<NewEvent>) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let turn = {
            let mut state = self.lock();
            if state.writing == 0 {
                state.writing = 1;
                state.progress = Instant::now();
                Turn::Now(events)
            } else {
                let (reply, outcome) = oneshot::channel();
                state.queue.push_back(Save { events, reply });
                Turn::Queued(outcome)
            }
        };
        match turn {
            Turn::Now(events) => {
                // Handed over (or ended) when this write ends, or if the caller drops it.
                let _slot = Slot {
                    groups: Arc::clone(self),
                    armed: true,
                };
                append::append(&self.pool, &events).await
            }
            Turn::Queued(mut outcome) => loop {
                match tokio::time::timeout(STUCK, &mut outcome).await {
                    Ok(answer) => {
                        // No answer: the task writing the group was dropped (its runtime shut
                        // down), maybe after the commit.
                        break answer.unwrap_or_else(|_| {
                            Err(Error::Transient(Box::new(OutcomeUnknown {
                                cause: "the task writing the save's group ended".to_owned(),
                            })))
                        });
                    }
                    Err(_) => self.unstick(),
                }
            },
        }
    }

    /// Starts another write of the queued saves if the writes running have made no progress
    /// for [`STUCK`] and fewer than `pool_size` run.
    fn unstick(self: &Arc<Self>) {
        let group = {
            let mut state = self.lock();
            let stuck = state.progress.elapsed() >= STUCK;
            if !stuck || state.queue.is_empty() || state.writing >= self.max_writes {
                return;
            }
            state.writing += 1;
            state.progress = Instant::now();
            take_group(&mut state.queue)
        };
        self.start(group);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next group to write after a write that ended, or `None` (and no write runs any
    /// more) if no save waits.
    fn next_group(&self) -> Option<Vec<Save>> {
        let mut state = self.lock();
        state.progress = Instant::now();
        if state.queue.is_empty() {
            state.writing = state.writing.saturating_sub(1);
            return None;
        }
        Some(take_group(&mut state.queue))
    }

    /// Hands over from a write that ended to a task writing the queued saves.
    fn release(self: &Arc<Self>) {
        if let Some(group) = self.next_group() {
            self.start(group);
        }
    }

    /// Starts a task writing `group`, then the groups after it, as one of the writes running.
    fn start(self: &Arc<Self>, group: Vec<Save>) {
        let mut group = Some(group);
        while let Some(saves) = group.take() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // No runtime to write on: nothing of these saves was written, and the saves
                // queued after them are told so in turn.
                for save in saves {
                    let _ = save.reply.send(Err(no_runtime()));
                }
                group = self.next_group();
                continue;
            };
            runtime.spawn(Arc::clone(self).flush(saves));
        }
    }

    /// Writes `group`, then each group gathered meanwhile, until no save waits.
    async fn flush(self: Arc<Self>, mut group: Vec<Save>) {
        // If the task is dropped mid-write (its runtime shutting down), it hands over still.
        let mut slot = Slot {
            groups: Arc::clone(&self),
            armed: true,
        };
        loop {
            write_group(&self.pool, group).await;
            for _ in 0..WAKE_TURNS {
                tokio::task::yield_now().await;
            }
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

/// The running write: handed over when dropped, unless disarmed (it ended already).
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
    let outcome = match commit_as_one(&mut conn, &events, &mut replies).await {
        Err(Failed::Refused) => commit_together(&mut conn, pool, &events, &mut replies).await,
        outcome => outcome,
    };
    match outcome {
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

/// The group as one save: the plain statement of a multi-event save over every event of the
/// group, all or nothing. `Refused` if the server refused it or its guard held every row back
/// (nothing was written); then no caller has been told anything.
async fn commit_as_one(
    conn: &mut Checkout<'_>,
    events: &[Vec<NewEvent>],
    replies: &mut [Option<oneshot::Sender<Result<(), Error>>>],
) -> Result<(), Failed> {
    let mut all = Batch::empty();
    for save in events {
        match Batch::new(save) {
            Ok(Some(batch)) => all.join(&batch),
            Ok(None) => {}
            // An invalid save: the statement that checks each save tells its caller.
            Err(_) => return Err(Failed::Refused),
        }
    }
    if all.versions.is_empty() {
        return Err(Failed::Refused);
    }
    let shape = all.shape();
    let stmt = conn
        .statement(shape.stmt())
        .await
        .map_err(|_| Failed::Refused)?;
    let inserted = match conn.client.execute(&stmt, &all.params(shape)).await {
        // The guard held every row back: a save would leave a hole.
        Ok(0) => return Err(Failed::Refused),
        Ok(n) => n,
        Err(e) if refused(&e, conn) => return Err(Failed::Refused),
        Err(e) => return Err(Failed::Unknown(pg_error(e).to_string())),
    };
    let expected = all.versions.len();
    for reply in replies.iter_mut().filter_map(Option::take) {
        let _ = reply.send(if inserted as usize == expected {
            Ok(())
        } else {
            Err(partial_insert(inserted, expected))
        });
    }
    Ok(())
}

/// The group's statement that checks each save on its own; each save's caller is told its outcome (the inserted ones first,
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
