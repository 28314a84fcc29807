use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)]
#[aggregate(name = "Widget", name = "Gadget")]
struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }
}

fn main() {}
