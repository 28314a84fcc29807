use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

impl Widget {
    #[event]
    fn rename(&mut self, name: String) { self.name = name; }
}

fn main() {}
