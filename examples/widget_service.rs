//! The seed's widget service: a `WidgetRegistryEndpoint` registered, renamed, reloaded and
//! printed. Durable by default: run it twice and the second run finds what the first saved.
//!
//! Run with: `cargo run --example widget_service`
//!
//! Reads `PERSISTENCE_MODULE` (`eventsourcing.sqlite` by default, `eventsourcing.postgres`,
//! `eventsourcing.popo`), then that store's settings (`SQLITE_DBNAME`, default
//! `eventsourcing.db` in the working directory; `POSTGRES_HOST`, ... for PostgreSQL), each first
//! as `WIDGETS_<NAME>`.

use eventsourcing::prelude::*;

// The seed's aggregate, `WidgetRegistryEndpoint`, is in `common/widget.rs`, shared with the tests.
#[path = "common/widget.rs"]
mod widget;

use widget::WidgetRegistryEndpoint;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("widget_service: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), eventsourcing::Error> {
    let app = eventsourcing::application_from_env(Some("widgets")).await?;
    println!("store: {:?}", app.store().kind());

    // One endpoint per URL: the id is derived from it, so every run finds the same aggregate.
    let url = "https://example.com";
    let id = eventsourcing::id_from_name(url);
    if app.repository().exists(id).await? {
        let earlier: WidgetRegistryEndpoint = app.repository().get(id).await?;
        println!(
            "found {:?} saved by an earlier run, at version {} (last modified {})",
            earlier.name,
            earlier.version(),
            earlier.modified_on()
        );
    } else {
        let endpoint = WidgetRegistryEndpoint::create_with_id(
            id,
            url.into(),
            "Test Endpoint".into(),
            "tenant-123".into(),
        );
        let endpoint = app.create(endpoint).await?;
        println!(
            "registered {:?} as {id} (version {})",
            endpoint.name,
            endpoint.version()
        );
    }

    let renamed: WidgetRegistryEndpoint = app
        .update(id, |e: &mut WidgetRegistryEndpoint| {
            let next = format!("Updated Name {}", e.version());
            e.update_name(next);
            Ok::<_, std::convert::Infallible>(())
        })
        .await?;
    println!(
        "renamed to {:?} (version {})",
        renamed.name,
        renamed.version()
    );

    let loaded: WidgetRegistryEndpoint = app.repository().get(id).await?;
    println!(
        "reloaded: url={} name={:?} tenant={} version={} created={}",
        loaded.url,
        loaded.name,
        loaded.tenant_id,
        loaded.version(),
        loaded.created_on()
    );
    Ok(())
}
