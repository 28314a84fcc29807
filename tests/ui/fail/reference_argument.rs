use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event]
    fn rename(&mut self, name: &str) { self.name = name.to_owned(); }
}

fn main() {}
