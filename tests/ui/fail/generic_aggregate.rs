use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget<T> { meta: Meta<Self>, value: T }

fn main() {}
