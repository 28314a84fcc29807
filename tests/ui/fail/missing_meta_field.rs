use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { name } }
}

fn main() {}
