//! `indexes`: each index's size and use.

use eventsourcing::{maintenance::IndexUsage, Maintenance};
use serde::Serialize;

use crate::{
    output::Failure,
    store::{describe, Context},
};

/// Show each index of the store: size, scans, and whether it looks unused.
///
/// PostgreSQL: scans since the statistics were reset (`pg_stat_user_indexes`), size
/// (`pg_relation_size`); an index never scanned that enforces no constraint is flagged
/// `unused`. SQLite counts no scans: usage shows as `unknown`, sizes come from `dbstat`.
/// Read-only.
///
/// Example: `eventsourcing-admin indexes --json`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    index: &'a IndexUsage,
    /// `used`, `unused`, `constraint` (unique, never scanned) or `unknown`.
    usage: &'static str,
}

fn usage(i: &IndexUsage) -> &'static str {
    match i.scans {
        None => "unknown",
        Some(_) if i.unused() => "unused",
        Some(0) => "constraint",
        Some(_) => "used",
    }
}

pub(crate) async fn run(_args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let indexes = store.index_usage().await?;
    let rows: Vec<Row<'_>> = indexes
        .iter()
        .map(|index| Row {
            index,
            usage: usage(index),
        })
        .collect();
    let target = describe(&store);
    ctx.out.report(&rows, |rows| {
        let mut out = format!(
            "{target}\n  {:<24} {:<34} {:>12} {:>10}  usage\n",
            "table", "index", "bytes", "scans"
        );
        for r in rows {
            let i = r.index;
            out.push_str(&format!(
                "  {:<24} {:<34} {:>12} {:>10}  {}{}\n",
                i.table,
                i.index,
                i.bytes.map_or("?".to_owned(), |b| b.to_string()),
                i.scans.map_or("-".to_owned(), |s| s.to_string()),
                r.usage,
                if i.unique { " (unique)" } else { "" }
            ));
        }
        out
    })
}
