// The seed's aggregate as the examples and the conformance suite use it.
#[path = "../../../examples/common/widget.rs"]
mod widget;

use eventsourcing::prelude::*;
use widget::{WidgetRegistryEndpoint, WidgetRegistryEndpointEvent};

fn main() {
    let mut w = WidgetRegistryEndpoint::create("u".into(), "n".into(), "t".into());
    w.rename("m").unwrap();
    assert!(w.rename(" ").is_err());
    assert_eq!(w.version(), 2);
    assert_eq!(w.pending_events().len(), 2);
    let _: &WidgetRegistryEndpointEvent = &w.pending_events()[1].event;
    let id = eventsourcing::id_from_name("https://example.com");
    let v = WidgetRegistryEndpoint::create_with_id(id, "u".into(), "n".into(), "t".into());
    assert_eq!(v.id(), id);
}
