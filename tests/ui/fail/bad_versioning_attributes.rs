use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)]
#[aggregate(snapshot_every = 0)]
struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event(version = 0)]
    fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event(upcast = Self::up)]
    fn rename(&mut self, name: String) { self.name = name; }

    #[event(version = 2, version = 3)]
    fn touch(&mut self) {}
}

fn main() {}
