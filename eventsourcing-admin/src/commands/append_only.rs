//! `append-only on|off|status`: the trigger that refuses UPDATE, DELETE and TRUNCATE on events
//! for every role, the owner included (PostgreSQL).

use eventsourcing::postgres::PostgresStore;
use serde::Serialize;

use crate::{commands::grants::postgres_targets, output::Failure, store::Context};

/// Install, remove or show the append-only trigger on events (PostgreSQL).
///
/// With it on, UPDATE, DELETE and TRUNCATE on events fail (SQLSTATE 42501) for every role,
/// the owner included, except in a transaction that archives on purpose:
/// `BEGIN; SET LOCAL eventsourcing.allow_archive = 'on'; DELETE ...; COMMIT;`.
/// Installing or removing it twice changes nothing.
///
/// Example: `eventsourcing-admin append-only on`, `eventsourcing-admin append-only status --tenants`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// on, off or status.
    #[arg(value_enum)]
    state: State,
    /// For every tenant of TENANT_LAYOUT (database or schema) instead of the one store.
    #[arg(long)]
    tenants: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum State {
    On,
    Off,
    Status,
}

#[derive(Debug, Serialize)]
struct Row {
    target: String,
    append_only: bool,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for (target, config) in postgres_targets(ctx, args.tenants).await? {
        let store = PostgresStore::connect_pool_only(config).await?;
        match args.state {
            State::On => store.set_append_only(true).await?,
            State::Off => store.set_append_only(false).await?,
            State::Status => {}
        }
        rows.push(Row {
            target,
            append_only: store.is_append_only().await?,
        });
    }
    ctx.out.report(&rows, |rows| {
        rows.iter()
            .map(|r| {
                let state = if r.append_only { "on" } else { "off" };
                format!("{}: append-only {state}\n", r.target)
            })
            .collect()
    })
}
