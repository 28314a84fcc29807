//! `archive`: the events of quiet streams out of the hot table into an archive file, and
//! `archive restore` to bring them back.

use std::path::PathBuf;

use eventsourcing::{
    backup::ArchiveReport,
    chrono::{DateTime, NaiveDate, TimeDelta, Utc},
    AnyStore, Archive,
};
use serde::Serialize;

use crate::{
    commands::export::{failed, transfer},
    output::Failure,
    store::Context,
};

/// Move the events of streams untouched since a time into a new archive FILE.
///
/// A stream is archived when its newest event is older than the cut-off and a snapshot at its
/// newest version exists (take one with the application's `take_snapshot`): all its events but
/// the newest go to FILE, so it still loads (from the snapshot) and takes new events. Streams
/// without that snapshot are listed and left alone. FILE is written, synced and read back
/// before the events are deleted, in one transaction. Refused (exit 1) while a consumer's
/// position is behind the newest event it would remove, unless --force.
///
/// Example: `eventsourcing-admin archive --older-than 365d cold-2024.esb`
///
/// Example: `eventsourcing-admin archive --before 2024-01-01 cold.esb`
///
/// Example: `eventsourcing-admin archive restore cold-2024.esb`
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    restore: Option<Sub>,
    /// Archive streams whose newest event is older than this: RFC 3339
    /// (2024-01-01T00:00:00Z) or a date (2024-01-01, midnight UTC).
    #[arg(long, value_name = "TIME", required_unless_present = "older_than", value_parser = parse_time)]
    before: Option<DateTime<Utc>>,
    /// Archive streams whose newest event is older than this age: N followed by d (days) or
    /// h (hours), e.g. 365d.
    #[arg(long, value_name = "AGE", conflicts_with = "before", value_parser = parse_age)]
    older_than: Option<TimeDelta>,
    /// Archive even when a consumer has not processed the events yet (it will never see them).
    #[arg(long)]
    force: bool,
    /// The archive file to create.
    #[arg(required = true)]
    file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    Restore(RestoreArgs),
}

/// Put the events of an archive FILE back into the store, at their original log positions.
///
/// The whole file is checked first; then the events are written in one transaction. Refused
/// (exit 1) when any of them is already in the store (restored before).
///
/// Example: `eventsourcing-admin archive restore cold-2024.esb`
#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The archive file written by `archive`.
    file: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    file: String,
    before: DateTime<Utc>,
    #[serde(flatten)]
    archive: ArchiveReport,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{text}` is neither RFC 3339 nor a YYYY-MM-DD date"))
}

fn parse_age(text: &str) -> Result<TimeDelta, String> {
    let bad = || format!("`{text}` is not an age like 365d or 12h");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    match unit {
        "d" => TimeDelta::try_days(n).ok_or_else(bad),
        "h" => TimeDelta::try_hours(n).ok_or_else(bad),
        _ => Err(bad()),
    }
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    if let Some(Sub::Restore(restore)) = args.restore {
        return restore_archive(restore, ctx).await;
    }
    let before = match (args.before, args.older_than) {
        (Some(t), _) => t,
        (None, Some(age)) => Utc::now() - age,
        (None, None) => return Err(Failure::Usage("give --before or --older-than".into())),
    };
    let Some(file) = args.file else {
        return Err(Failure::Usage("give the archive FILE to create".into()));
    };
    let store = ctx.open().await?;
    let archive = store
        .archive(before, &file, args.force)
        .await
        .map_err(failed)?;
    let report = Report {
        file: file.display().to_string(),
        before,
        archive,
    };
    ctx.report_on(&store, &report, |store, r| {
        let mut text = if r.archive.streams.is_empty() {
            format!("{store}: no stream to archive before {}\n", r.before)
        } else {
            format!(
                "{store}: archived {} events of {} streams to {}\n",
                r.archive.counts.events,
                r.archive.streams.len(),
                r.file
            )
        };
        for id in &r.archive.skipped {
            text.push_str(&format!(
                "skipped {id}: no snapshot at its newest version (take one, then archive again)\n"
            ));
        }
        text
    })
}

/// `archive restore FILE`: the events of an archive file back into the store they came from.
async fn restore_archive(args: RestoreArgs, ctx: &Context) -> Result<(), Failure> {
    let file = args.file.as_path();
    let restore = async |store: &AnyStore, _| store.restore_archive(file).await.map_err(failed);
    let store = ctx.open().await?;
    transfer(ctx, &store, file, None, restore, |store, r| {
        format!(
            "{store}: restored {} events from {}",
            r.counts.events, r.file
        )
    })
    .await
}
