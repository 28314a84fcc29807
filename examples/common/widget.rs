//! The seed's aggregate: a URL registered under a name for a tenant, renamed later.
//!
//! Shared by the examples, the conformance suite (`tests/conformance`) and a compile test
//! (`tests/ui/pass/widget.rs`), each of which includes this file with `#[path]`.

// Each program that includes this file uses a different part of it.
#![allow(dead_code)]

use eventsourcing::prelude::*;

/// An endpoint of the widget registry. Its fields are the state that events rebuild; `meta`
/// holds its id, version and the events not saved yet.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WidgetRegistryEndpoint {
    meta: Meta<Self>,
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) tenant_id: String,
}

#[events]
impl WidgetRegistryEndpoint {
    /// Registers an endpoint: the creation event, stored as `Registered`.
    #[event("Registered")]
    pub(crate) fn create(url: String, name: String, tenant_id: String) -> Self {
        Self {
            meta: Meta::default(),
            url,
            name,
            tenant_id,
        }
    }

    /// Renames it, stored as `NameUpdated`. Event methods cannot fail (a replay must always
    /// succeed), so the check belongs in the command below.
    #[event("NameUpdated")]
    pub(crate) fn update_name(&mut self, name: String) {
        self.name = name;
    }

    /// A command: validates, then records.
    pub(crate) fn rename(&mut self, name: &str) -> Result<(), String> {
        if name.trim().is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        self.update_name(name.to_owned());
        Ok(())
    }
}
