use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event("Name Updated")]
    fn create(name: String) -> Self { Self { meta: Meta::default(), name } }
}

fn main() {}
