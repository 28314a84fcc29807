//! `migrate` (alias `init_event_store`, the seed's name): applies the pending migrations,
//! creating the tables (and the PostgreSQL schema, or the SQLite file) if needed.

use eventsourcing::AnyStore;
use serde::Serialize;

use crate::{
    output::Failure,
    store::{describe, unsupported, Context, Open},
};

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
    store: String,
    applied: Vec<Applied>,
    already_applied: Vec<u32>,
}

#[derive(Debug, Serialize)]
struct Applied {
    version: u32,
    description: &'static str,
}

pub(crate) async fn run(_args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open(Open::MayCreate).await?;
    let report = match &store {
        AnyStore::Sqlite(s) => s.migrate().await?,
        AnyStore::Postgres(s) => s.migrate().await?,
        other => return Err(unsupported(other, "migrate")),
    };
    let report = Report {
        store: describe(&store),
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
    ctx.out.report(&report, |r| {
        if r.applied.is_empty() {
            return format!(
                "{}: up to date ({} migrations already applied)",
                r.store,
                r.already_applied.len()
            );
        }
        r.applied
            .iter()
            .map(|m| {
                format!(
                    "{}: applied migration {} ({})\n",
                    r.store, m.version, m.description
                )
            })
            .collect()
    })
}
