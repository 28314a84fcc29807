//! The seed's widget service: a `WidgetRegistryEndpoint` created, renamed, reloaded and printed.
//!
//! Run with: `cargo run --example widget_service`

use eventsourcing::prelude::*;

#[derive(Aggregate, Debug, Serialize, Deserialize)]
struct WidgetRegistryEndpoint {
    meta: Meta<Self>,
    pub url: String,
    pub name: String,
    pub tenant_id: String,
}

#[events]
impl WidgetRegistryEndpoint {
    #[event("Registered")]
    pub fn create(url: String, name: String, tenant_id: String) -> Self {
        Self {
            meta: Meta::default(),
            url,
            name,
            tenant_id,
        }
    }

    #[event("NameUpdated")]
    pub fn update_name(&mut self, name: String) {
        self.name = name;
    }
}

#[tokio::main]
async fn main() -> Result<(), eventsourcing::Error> {
    let app = Application::new(MemoryStore::new());

    let mut endpoint = WidgetRegistryEndpoint::create(
        "https://example.com".into(),
        "Test Endpoint".into(),
        "tenant-123".into(),
    );
    app.save(&mut endpoint).await?;
    println!(
        "registered {} ({}) at version {}",
        endpoint.name,
        endpoint.id(),
        endpoint.version()
    );

    let renamed: WidgetRegistryEndpoint = app
        .update(endpoint.id(), |e: &mut WidgetRegistryEndpoint| {
            e.update_name("Updated Name".into());
            Ok::<_, std::convert::Infallible>(())
        })
        .await?;
    println!(
        "renamed to {:?} at version {}",
        renamed.name,
        renamed.version()
    );

    let loaded: WidgetRegistryEndpoint = app.repository().get(endpoint.id()).await?;
    println!(
        "reloaded: url={} name={:?} tenant={} version={} created={} modified={}",
        loaded.url,
        loaded.name,
        loaded.tenant_id,
        loaded.version(),
        loaded.created_on(),
        loaded.modified_on()
    );
    Ok(())
}
