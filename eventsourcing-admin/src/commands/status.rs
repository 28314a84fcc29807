//! `status`: the migrations; counts of events, streams, snapshots and parked events; each
//! consumer's tracking position and lag; table sizes; and for PostgreSQL the log horizon (what
//! holds committed events back from readers).

use eventsourcing::{
    maintenance::StoreStats,
    postgres::{LogHorizon, MigrationState, MigrationStatus},
    AnyStore, Maintenance,
};
use serde::Serialize;

use crate::{output::Failure, store::Context};

/// Show the migrations, counts, consumers' lag, table sizes and (PostgreSQL) the log horizon.
///
/// Read-only. Counts: events, streams, snapshots, parked events; every tracking row (projection
/// or process) with the number of events of this store's log after its position; each table's
/// size and its indexes' size. For PostgreSQL also the log horizon: whether committed events wait behind a
/// running transaction, and which session holds it (pid, database, application, age).
///
/// Example: `eventsourcing-admin --app widgets status --json`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

#[derive(Debug, Serialize)]
struct Report {
    migrations: Vec<Migration>,
    pending: usize,
    /// Counts and sizes; absent until every migration is applied.
    stats: Option<StoreStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_horizon: Option<Horizon>,
    log_ahead_of_server: bool,
}

#[derive(Debug, Serialize)]
struct Migration {
    version: u32,
    description: String,
    state: &'static str,
    applied_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct Horizon {
    held_back: bool,
    holders: Vec<Holder>,
}

#[derive(Debug, Serialize)]
struct Holder {
    pid: i32,
    database: Option<String>,
    user: Option<String>,
    application_name: Option<String>,
    state: Option<String>,
    transaction_age_seconds: Option<f64>,
}

fn state(m: &MigrationStatus) -> &'static str {
    match m.state {
        MigrationState::Pending => "pending",
        MigrationState::Applied => "applied",
        MigrationState::ChecksumMismatch => "checksum differs from this release",
        _ => "unknown to this release",
    }
}

fn horizon(h: &LogHorizon) -> Horizon {
    Horizon {
        held_back: h.held_back,
        holders: h
            .holders
            .iter()
            .map(|h| Holder {
                pid: h.pid,
                database: h.database.clone(),
                user: h.user.clone(),
                application_name: h.application_name.clone(),
                state: h.state.clone(),
                transaction_age_seconds: h.transaction_age.map(|a| a.as_secs_f64()),
            })
            .collect(),
    }
}

pub(crate) async fn run(_args: Args, ctx: &Context) -> Result<(), Failure> {
    let store = ctx.open().await?;
    // What only PostgreSQL has: the log horizon, and the log-order check.
    let (log_horizon, log_ahead_of_server) = match &store {
        AnyStore::Postgres(s) => {
            let status = s.status().await?;
            (
                status.log_horizon.as_ref().map(horizon),
                status.log_ahead_of_server,
            )
        }
        _ => (None, false),
    };
    let migrations = store.migration_status().await?;
    let pending = migrations
        .iter()
        .filter(|m| m.state == MigrationState::Pending)
        .count();
    let stats = match pending {
        0 => Some(store.stats().await?),
        _ => None,
    };
    let report = Report {
        pending,
        stats,
        migrations: migrations
            .iter()
            .map(|m| Migration {
                version: m.version,
                description: m.description.clone(),
                state: state(m),
                applied_at: m
                    .applied_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            })
            .collect(),
        log_horizon,
        log_ahead_of_server,
    };
    ctx.report_on(&store, &report, text)
}

fn text(store: &str, r: &Report) -> String {
    let mut out = format!("{store}\n");
    out.push_str("migrations:\n");
    for m in &r.migrations {
        out.push_str(&format!(
            "  {:<8} {:>4}  {:<14} {}\n",
            if m.state == "pending" {
                "pending"
            } else {
                "applied"
            },
            m.version,
            m.description,
            match (m.state, &m.applied_at) {
                ("pending", _) => String::new(),
                ("applied", Some(at)) => format!("{at}  checksum ok"),
                (state, at) => format!("{}  {}", at.as_deref().unwrap_or(""), state.to_uppercase()),
            }
        ));
    }
    if let Some(stats) = &r.stats {
        stats_text(stats, &mut out);
    }
    if r.log_ahead_of_server {
        out.push_str(
            "WARNING: the stored transaction ids are ahead of this server's: the events were \
             copied from another cluster and the log order is broken until the server's xid \
             epoch is raised (pg_resetwal -e); see the eventsourcing-postgres docs\n",
        );
    }
    if let Some(h) = &r.log_horizon {
        match (h.held_back, h.holders.first()) {
            (true, Some(h)) => out.push_str(&format!(
                "log horizon: committed events are held back by the transaction of pid {} \
                 (database {}, application {:?}, {}, open for {:.0}s); readers of the log wait \
                 until it ends: `SELECT pg_terminate_backend({})`\n",
                h.pid,
                h.database.as_deref().unwrap_or("?"),
                h.application_name.as_deref().unwrap_or(""),
                h.state.as_deref().unwrap_or("state hidden"),
                h.transaction_age_seconds.unwrap_or_default(),
                h.pid
            )),
            (true, None) => out.push_str("log horizon: committed events are held back\n"),
            (false, _) => out.push_str("log horizon: nothing held back\n"),
        }
    }
    if r.pending > 0 {
        out.push_str("run `eventsourcing-admin migrate` to apply the pending migrations\n");
    }
    out
}

fn stats_text(s: &StoreStats, out: &mut String) {
    out.push_str(&format!(
        "events: {}\nstreams: {}\nsnapshots: {}\nparked events: {}\n",
        s.events, s.streams, s.snapshots, s.parked
    ));
    if s.consumers.is_empty() {
        out.push_str("consumers: none (no tracking rows)\n");
    } else {
        out.push_str("consumers (tracking position, events behind):\n");
        for c in &s.consumers {
            out.push_str(&format!(
                "  {:<30} ({}, {})  {} behind\n",
                c.name, c.position_commit, c.position_seq, c.behind
            ));
        }
    }
    out.push_str("tables (bytes, index bytes):\n");
    for t in &s.tables {
        let size = |b: Option<u64>| b.map_or("?".to_owned(), |b| b.to_string());
        out.push_str(&format!(
            "  {:<26} {:>12} {:>12}\n",
            t.table,
            size(t.bytes),
            size(t.index_bytes)
        ));
    }
}
