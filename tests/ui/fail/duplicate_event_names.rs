use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event("Created")]
    fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event("Renamed")]
    fn rename(&mut self, name: String) { self.name = name; }

    #[event("Renamed")]
    fn relabel(&mut self, name: String) { self.name = name; }

    #[event(alias = "Created")]
    fn touch(&mut self) {}
}

fn main() {}
