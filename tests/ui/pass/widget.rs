use eventsourcing::prelude::*;

#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetRegistryEndpoint {
    meta: Meta<Self>,
    pub url: String,
    pub name: String,
    pub tenant_id: String,
}

#[events]
impl WidgetRegistryEndpoint {
    /// Registers an endpoint.
    #[event("Registered")]
    pub fn create(url: String, name: String, tenant_id: String) -> Self {
        Self { meta: Meta::default(), url, name, tenant_id }
    }

    #[event("NameUpdated", alias = "NameChanged")]
    pub fn update_name(&mut self, mut name: String) {
        name.truncate(100);
        self.name = name;
    }

    /// A command: ordinary methods stay as written.
    pub fn rename(&mut self, name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("empty".into());
        }
        self.update_name(name.to_owned());
        Ok(())
    }
}

fn main() {
    let mut w = WidgetRegistryEndpoint::create("u".into(), "n".into(), "t".into());
    w.rename("m").unwrap();
    assert_eq!(w.version(), 2);
    assert_eq!(w.pending_events().len(), 2);
    let _: &WidgetRegistryEndpointEvent = &w.pending_events()[1].event;
    let id = eventsourcing::id_from_name("https://example.com");
    let v = WidgetRegistryEndpoint::create_with_id(id, "u".into(), "n".into(), "t".into());
    assert_eq!(v.id(), id);
}
