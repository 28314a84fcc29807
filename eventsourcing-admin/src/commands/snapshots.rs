//! `snapshots prune`: removes old snapshots, keeping the newest of every stream.

use std::time::Duration;

use eventsourcing::{maintenance::SnapshotPrune, Maintenance};

use crate::{
    output::Failure,
    store::{describe, Context},
};

/// Manage snapshots.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Args {
    Prune(PruneArgs),
}

/// Delete old snapshots, keeping the newest N of every stream.
///
/// Snapshots only make loads faster: removing old ones changes no aggregate's state and no
/// projection (projections read events, never snapshots), so this never needs projections to
/// be caught up. The newest `--keep` snapshots of every stream (at least one) are never
/// removed; with `--older-than`, only snapshots taken longer ago than that are.
///
/// Example: `eventsourcing-admin snapshots prune --keep 2 --older-than 30d`
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Snapshots kept per stream, newest first (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep: u32,
    /// Only remove snapshots older than this: a number with s, m, h, d or w (`90m`, `30d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<Duration>,
}

/// `30d`, `12h`, `90m`, `45s`, `2w`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` lacks a unit: s, m, h, d or w (e.g. 30d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number (e.g. 30d)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => {
            return Err(format!(
                "unknown unit `{other}`: use s, m, h, d or w (e.g. 30d)"
            ))
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let Args::Prune(prune) = args;
    let store = ctx.open().await?;
    let rule = SnapshotPrune {
        keep: prune.keep,
        older_than: prune.older_than,
    };
    let report = store.prune_snapshots(rule).await?;
    let target = describe(&store);
    ctx.out.report(&report, |r| {
        format!("{target}: deleted {} snapshots, {} kept", r.deleted, r.kept)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("d").is_err());
    }
}
