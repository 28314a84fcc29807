//! `verify`: reads every stream and snapshot and reports what is wrong.

use eventsourcing::{maintenance::PayloadCheck, Maintenance};

use crate::{
    output::Failure,
    progress::Progress,
    store::{describe, Context},
};

/// Check every stream and snapshot; exit 1 listing what is wrong.
///
/// Reads the events in (stream, version) order, a page at a time (memory stays bounded however
/// large the store), and checks: versions contiguous from 1, a non-empty event type, a payload
/// that is JSON (or, with `--payload bytes`, any bytes: for a compressing or encrypting codec),
/// metadata that decodes; and that every snapshot belongs to a stream with events and is not
/// above its version. Read-only. Problems are listed (at most 1000, then a count).
///
/// Example: `eventsourcing-admin verify --json > report.json || echo "store has problems"`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How payloads are checked: `json` (the JSON codec) or `bytes` (only readable).
    #[arg(long, value_enum, default_value_t = Payload::Json)]
    payload: Payload,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Payload {
    Json,
    Bytes,
}

pub(crate) async fn run(args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let payload = match args.payload {
        Payload::Json => PayloadCheck::Json,
        Payload::Bytes => PayloadCheck::Bytes,
    };
    let mut progress = Progress::new("verify", 0);
    let report = store
        .verify(payload, |done, total| progress.set(done, total))
        .await;
    progress.finish();
    let report = report?;
    let target = describe(&store);
    ctx.out.report(&report, |r| {
        let mut out = format!(
            "{target}: checked {} events in {} streams\n",
            r.events, r.streams
        );
        if r.archived_streams > 0 {
            out.push_str(&format!(
                "  {} streams start after archived events, at a snapshot\n",
                r.archived_streams
            ));
        }
        for p in &r.problems {
            out.push_str(&format!(
                "  stream {} version {}: {} ({})\n",
                p.stream_id, p.version, p.detail, p.kind
            ));
        }
        if r.more > 0 {
            out.push_str(&format!("  ... and {} more problems\n", r.more));
        }
        if r.is_ok() {
            out.push_str("no problems found\n");
        }
        out
    })?;
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::Problems(format!(
            "verify: {} problems found in {target}",
            report.problems.len() as u64 + report.more
        )))
    }
}
