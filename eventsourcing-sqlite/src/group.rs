//! Group commit: the saves waiting for the writer together share one transaction and one commit
//! (with `synchronous = FULL`, one `fsync` for all of them instead of one each). Each save runs
//! under a savepoint of its own, so a save that fails (a conflict, a position already recorded)
//! is rolled back alone and its neighbours commit; each caller hears its own outcome, and only
//! after the commit that made its save durable.

use std::sync::Arc;

use eventsourcing_core::{metrics::Queued, ChangeNotifier, Error};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::append::{write, write_rows, Plan, TrackingRow};

/// One save queued for the writer.
pub(crate) struct Save {
    pub(crate) plan: Plan,
    pub(crate) tracking: Option<TrackingRow>,
    pub(crate) dbname: Arc<str>,
    /// Woken once the save's events have committed.
    pub(crate) notifier: ChangeNotifier,
    pub(crate) reply: oneshot::Sender<Result<(), Error>>,
    /// The save as the writer's pool gauges count it: waiting until its group is written.
    pub(crate) queued: Option<Queued>,
}

/// Writes `group` in one transaction if it can, and tells each save its outcome.
pub(crate) fn write_group(conn: &mut Connection, mut group: Vec<Save>) {
    // Every save of the group holds the writer until the group is written.
    let _busy: Vec<_> = group
        .iter_mut()
        .filter_map(|save| save.queued.take())
        .map(Queued::start)
        .collect();
    if group.len() > 1 {
        if let Ok(outcomes) = commit_together(conn, &group) {
            for (save, outcome) in group.into_iter().zip(outcomes) {
                finish(save, outcome);
            }
            return;
        }
        // The shared transaction could not begin or commit, and wrote nothing: each save runs
        // alone, so that each gets the error of its own attempt.
    }
    for save in group {
        let outcome = write(conn, &save.dbname, &save.plan, save.tracking.as_ref());
        finish(save, outcome);
    }
}

/// One transaction for all the saves, each under its own savepoint: the outcome of each, once
/// the whole has committed.
fn commit_together(
    conn: &mut Connection,
    group: &[Save],
) -> Result<Vec<Result<(), Error>>, rusqlite::Error> {
    // IMMEDIATE takes the write lock first, so no other process writes between a save's checks
    // and its inserts.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    for save in group {
        let savepoint = tx.savepoint()?;
        let outcome = write_rows(&savepoint, &save.dbname, &save.plan, save.tracking.as_ref());
        if outcome.is_ok() {
            savepoint.commit()?;
        }
        // A failed save's savepoint rolls back when dropped: none of it stays.
        outcomes.push(outcome);
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Writes one save in a transaction of its own (the writer is lent to its caller); its
/// outcome, for [`finish`].
pub(crate) fn write_alone(conn: &mut Connection, save: &Save) -> Result<(), Error> {
    write(conn, &save.dbname, &save.plan, save.tracking.as_ref())
}

/// Tells the caller of `save` its outcome, after waking subscribers if it wrote events.
pub(crate) fn finish(save: Save, outcome: Result<(), Error>) {
    if outcome.is_ok() && !save.plan.rows.is_empty() {
        save.notifier.notify();
    }
    // The caller may have given up waiting; the save is done either way.
    let _ = save.reply.send(outcome);
}
