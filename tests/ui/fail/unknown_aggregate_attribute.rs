use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)]
#[aggregate(name = "Widget", snapshot_evry = 10)]
struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }
}

fn main() {}
