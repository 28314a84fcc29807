//! `vacuum`: reclaims space and refreshes the planner's statistics.

use eventsourcing::Maintenance;

use crate::{
    output::Failure,
    progress::Progress,
    store::{describe, Context},
};

/// Reclaim space and refresh statistics.
///
/// PostgreSQL: `VACUUM (ANALYZE)` on each of the store's tables (runs beside the application).
/// SQLite: `PRAGMA wal_checkpoint(TRUNCATE)`, `VACUUM` (rewrites the file: needs free disk
/// about its size, and holds writers back while it runs), `PRAGMA optimize`.
///
/// Example: `PERSISTENCE_MODULE=eventsourcing.sqlite SQLITE_DBNAME=app.db eventsourcing-admin vacuum`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let mut progress = Progress::new("vacuum", 0);
    let steps = store.vacuum(|i, n, step| progress.step(i, n, step)).await;
    progress.finish();
    let steps = steps?;
    let target = describe(&store);
    ctx.out.report(&steps, |steps| {
        let mut out = format!("{target}: vacuumed\n");
        for s in steps {
            match &s.result {
                Some(result) => out.push_str(&format!("  {}: {result}\n", s.step)),
                None => out.push_str(&format!("  {}\n", s.step)),
            }
        }
        out
    })
}
