//! The read model of the memory store: a map in the process, kept by a runner of the library's
//! projection engine (the same loop, retries and failure policy as the database projections).

use std::{
    collections::{BTreeMap, HashMap},
    error::Error as StdError,
    sync::{Arc, Mutex, PoisonError},
};

use eventsourcing::{
    plumbing::engine::{spawn_runner, Batch, BatchTarget, Consumer, Known, Outcome, Step},
    AnyStore, BoxError, Error, PayloadCodec, Position, ProjectionOptions, RunnerHandle, Uuid,
};

use super::{event_types, Change, Page, TenantEndpoint, PROJECTION};

#[derive(Debug, Default)]
struct State {
    /// By tenant, then id.
    rows: BTreeMap<(String, Uuid), TenantEndpoint>,
    /// Each endpoint's tenant.
    tenants: HashMap<Uuid, String>,
    /// The last event applied.
    position: Option<Position>,
}

/// The map, shared by the runner and the handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table(Arc<Mutex<State>>);

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn position(&self) -> Option<Position> {
        self.lock().position
    }

    pub(crate) fn list(&self, page: Page<'_>) -> Vec<TenantEndpoint> {
        let state = self.lock();
        let from = (page.tenant.to_owned(), page.after.unwrap_or(Uuid::nil()));
        state
            .rows
            .range(from..)
            .take_while(|((t, _), _)| t == page.tenant)
            .filter(|((_, id), _)| page.after.is_none_or(|a| *id > a))
            .take(page.limit)
            .map(|(_, row)| row.clone())
            .collect()
    }
}

/// Starts the runner that keeps `table` up to date with `store`'s log.
pub(crate) fn spawn(
    store: AnyStore,
    table: Table,
    codec: PayloadCodec,
    options: ProjectionOptions,
) -> RunnerHandle {
    spawn_runner(
        store,
        Consumer::new(PROJECTION, event_types()),
        Target(table, codec),
        options,
    )
}

/// The map, and the application's codec to decode with.
struct Target(Table, PayloadCodec);

impl BatchTarget for Target {
    async fn setup(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    async fn tracking_position(&mut self) -> Result<Option<Position>, Error> {
        Ok(self.0.position())
    }

    /// Decodes every event to handle first (the only step that can fail, so a failure leaves
    /// the map as it was, like a rolled-back transaction), then applies them all.
    async fn attempt(&mut self, batch: &Arc<Batch>, known: &Known) -> Result<Outcome, Error> {
        let mut state = self.0.lock();
        let recorded = state.position;
        let plan = batch.plan(recorded, known);
        let mut decoded = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            match *step {
                Step::Handle { index, event } => match Change::of(event, &self.1) {
                    Ok(change) => decoded.push(change),
                    Err(error) => {
                        return Ok(Outcome::Failed {
                            index,
                            error: error.into(),
                            recorded,
                        })
                    }
                },
                Step::Park { event, error } => {
                    tracing::warn!(
                        projection = PROJECTION,
                        stream_id = %event.stream_id,
                        version = event.version,
                        error,
                        "skipping an event the read model cannot handle (the memory store keeps no parked events)"
                    );
                }
            }
        }
        for change in decoded {
            apply(&mut state, change);
        }
        if let Some(position) = plan.record {
            state.position = Some(position);
        }
        Ok(Outcome::Done {
            position: state.position,
            stopped: plan.stopped,
        })
    }

    fn is_transient(&self, _error: &(dyn StdError + 'static)) -> bool {
        false
    }
}

fn apply(state: &mut State, change: Change) {
    match change {
        Change::Upsert { tenant, row } => {
            state.tenants.insert(row.id, tenant.clone());
            state.rows.insert((tenant, row.id), row);
        }
        Change::Rename { id, name } => {
            if let Some(tenant) = state.tenants.get(&id) {
                if let Some(row) = state.rows.get_mut(&(tenant.clone(), id)) {
                    row.name = name;
                }
            }
        }
    }
}
