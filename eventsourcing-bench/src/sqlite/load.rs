//! The load figures on SQLite: `load_N` (raw: the raw table) and `load_snap_N` (raw: a
//! hand-written snapshot load of the store's own tables).

use eventsourcing::{prelude::*, sqlite::SqliteStore};

use super::raw::Raw;
use crate::common::{
    timing::{self, compare_loads, ours_saved, LOAD_FIGURES},
    BoxError,
};

/// Loads timed per load figure (ours and raw alternate); the median time is reported.
const LOADS: usize = 25;

/// The `load_N` figures: an aggregate of N events saved at once by each side.
pub(crate) async fn load(app: &Application<SqliteStore>, raw: &mut Raw) -> Result<(), BoxError> {
    for (figure, events) in LOAD_FIGURES {
        let id = ours_saved(app, events).await?;
        let raw_id = raw.save_stream(events)?;
        compare_loads(
            figure,
            LOADS,
            None,
            async || Ok(app.repository().get(id).await?),
            async || raw.load(raw_id),
        )
        .await?;
    }
    Ok(())
}

/// The `load_snap_N` figures.
pub(crate) async fn load_snap(app: &Application<SqliteStore>, raw: &Raw) -> Result<(), BoxError> {
    timing::load_snap(app, LOADS, async |id| raw.load_with_snapshot(id)).await
}
