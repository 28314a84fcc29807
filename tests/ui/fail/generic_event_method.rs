use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event]
    fn rename<N: Into<String>>(&mut self, name: N) { self.name = name.into(); }
}

fn main() {}
