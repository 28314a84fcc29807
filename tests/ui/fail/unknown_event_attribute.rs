use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event(nmae = "Created")]
    fn create(name: String) -> Self { Self { meta: Meta::default(), name } }
}

fn main() {}
