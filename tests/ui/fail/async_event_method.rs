use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event]
    async fn rename(&mut self, name: String) { self.name = name; }
}

fn main() {}
