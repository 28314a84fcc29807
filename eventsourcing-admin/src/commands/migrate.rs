//! `migrate` (alias `init_event_store`, the seed's name): applies the pending migrations,
//! creating the tables (and the PostgreSQL schema, or the SQLite file) if needed.

use serde::Serialize;

use crate::{output::Failure, store::Context};

/// Apply the pending migrations (creates the schema and tables).
///
/// Safe to run any number of times, from several processes at once: each migration is applied
/// once. Refuses (exit 1) a database whose applied migrations differ from this release's.
///
/// Example: `PERSISTENCE_MODULE=eventsourcing.postgres POSTGRES_SCHEMA=widgets eventsourcing-admin migrate`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

#[derive(Debug, Serialize)]
struct Report {
    applied: Vec<Applied>,
    already_applied: Vec<u32>,
}

#[derive(Debug, Serialize)]
struct Applied {
    version: u32,
    description: &'static str,
}

pub(crate) async fn run(_args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open_or_create().await?;
    let report = store.migrate().await?;
    let report = Report {
        applied: report
            .applied
            .iter()
            .map(|m| Applied {
                version: m.version,
                description: m.description,
            })
            .collect(),
        already_applied: report.already_applied,
    };
    ctx.report_on(&store, &report, |store, r| {
        if r.applied.is_empty() {
            return format!(
                "{store}: up to date ({} migrations already applied)",
                r.already_applied.len()
            );
        }
        r.applied
            .iter()
            .map(|m| {
                format!(
                    "{store}: applied migration {} ({})\n",
                    m.version, m.description
                )
            })
            .collect()
    })
}
