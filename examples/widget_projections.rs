//! The widget service with a read model and a reaction, both exactly-once and crash-safe:
//! - a projection keeps the table `endpoints_by_tenant` up to date (its rows and its tracking
//!   position commit together);
//! - a process application keeps an audit log of renames as another aggregate (its events and
//!   its tracking position commit together).
//!
//! Run with: `cargo run --example widget_projections`
//! (SQLite file `SQLITE_DBNAME`, default `widget_projections.db` in the working directory; run it
//! again and the projection and the audit log resume where they stopped.)

use std::time::Duration;

use eventsourcing::prelude::*;
use eventsourcing::sqlite::rusqlite::{self, Transaction};
use eventsourcing::sqlite::{spawn_projection, ProjectionOptions, SqliteProjection, SqliteStore};
use eventsourcing::{BoxError, Env, RunnerHandle, StoredEvent};

// The seed's aggregate, `WidgetRegistryEndpoint`, is in `common/widget.rs`, shared with the tests.
#[path = "common/widget.rs"]
mod widget;

use widget::{WidgetRegistryEndpoint, WidgetRegistryEndpointEvent};

// The audit log process application, shared with the conformance suite.
#[path = "common/audit.rs"]
mod audit;

use audit::{audit_log_id, AuditLog, Auditor};

/// The read model: endpoints per tenant, in a table of the same database.
struct EndpointsByTenant;

impl SqliteProjection for EndpointsByTenant {
    fn name(&self) -> &str {
        "endpoints_by_tenant"
    }

    fn event_types(&self) -> Option<Vec<String>> {
        Some(vec!["Registered".into(), "NameUpdated".into()])
    }

    fn setup(&mut self, tx: &Transaction<'_>) -> Result<(), BoxError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS endpoints_by_tenant (
                 endpoint_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, url TEXT NOT NULL,
                 name TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS endpoints_by_tenant_tenant ON endpoints_by_tenant (tenant_id);",
        )?;
        Ok(())
    }

    fn handle(&mut self, tx: &Transaction<'_>, event: &StoredEvent) -> Result<(), BoxError> {
        let id = event.stream_id.to_string();
        match event.decode::<WidgetRegistryEndpointEvent, _>(&eventsourcing::JsonCodec)? {
            WidgetRegistryEndpointEvent::Registered {
                url,
                name,
                tenant_id,
            } => {
                tx.execute(
                    "INSERT INTO endpoints_by_tenant (endpoint_id, tenant_id, url, name) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![id, tenant_id, url, name],
                )?;
            }
            WidgetRegistryEndpointEvent::NameUpdated { name } => {
                tx.execute(
                    "UPDATE endpoints_by_tenant SET name = ?2 WHERE endpoint_id = ?1",
                    rusqlite::params![id, name],
                )?;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("widget_projections: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let env = Env::from_process().with_app_name("widgets");
    let dbname = env
        .string(&["SQLITE_DBNAME"])
        .unwrap_or_else(|| "widget_projections.db".into());
    let store = SqliteStore::open(eventsourcing::sqlite::SqliteConfig::new(dbname.clone())).await?;
    let app = Application::new(store.clone());
    println!("store: SQLite file {dbname}");

    let projection = spawn_projection(
        store.clone(),
        EndpointsByTenant,
        ProjectionOptions::default(),
    );
    let auditor = eventsourcing::spawn_process(
        Auditor::default(),
        store.clone(),
        app.clone(),
        ProjectionOptions::default(),
    );

    // Some work: three endpoints of two tenants, one renamed twice.
    let run_tag = eventsourcing::new_id().simple().to_string()[..6].to_owned();
    let mut a = WidgetRegistryEndpoint::create(
        format!("https://a.example/{run_tag}"),
        "A".into(),
        "tenant-1".into(),
    );
    let mut b = WidgetRegistryEndpoint::create(
        format!("https://b.example/{run_tag}"),
        "B".into(),
        "tenant-1".into(),
    );
    let mut c = WidgetRegistryEndpoint::create(
        format!("https://c.example/{run_tag}"),
        "C".into(),
        "tenant-2".into(),
    );
    app.save((&mut a, &mut b, &mut c)).await?;
    a.update_name("A (renamed)".into());
    app.save(&mut a).await?;
    a.update_name("A (renamed again)".into());
    app.save(&mut a).await?;

    // Both consumers are woken by the saves; wait until they have caught up with the last one.
    let last = app
        .store()
        .load(a.id(), 0, None)
        .await?
        .last()
        .map(|e| e.position)
        .unwrap_or_default();
    let projection = until(projection, "the projection", async |p| {
        Ok(p.position() >= last)
    })
    .await?;
    let audit_id = audit_log_id(a.id());
    let auditor = until(auditor, "the auditor", async |_| {
        match app.repository().get::<AuditLog>(audit_id).await {
            Ok(log) if log.renames.len() == 2 => {
                println!("audit log of {}: {:?}", a.url, log.renames);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    })
    .await?;

    let rows = store
        .query(|tx| {
            let mut stmt = tx.prepare(
                "SELECT tenant_id, COUNT(*), GROUP_CONCAT(name, ', ') FROM endpoints_by_tenant GROUP BY tenant_id ORDER BY tenant_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    for (tenant, count, names) in rows {
        println!("{tenant}: {count} endpoints ({names})");
    }

    projection.stop().await?;
    auditor.stop().await?;
    Ok(())
}

/// Polls `done` until it holds and hands `runner` back; fails with the runner's error if it
/// stops first (it runs until told to stop).
async fn until(
    runner: RunnerHandle,
    what: &str,
    mut done: impl AsyncFnMut(&RunnerHandle) -> Result<bool, BoxError>,
) -> Result<RunnerHandle, BoxError> {
    loop {
        if done(&runner).await? {
            return Ok(runner);
        }
        if runner.is_finished() {
            let error = runner.join().await.err();
            return Err(error.map_or_else(|| format!("{what} stopped").into(), Into::into));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
