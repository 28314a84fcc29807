use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event]
    fn rename(&self, name: String) -> bool { let _ = name; true }

    #[event(colour = "red")]
    fn paint(&mut self, (a, b): (u8, u8)) { let _ = (a, b); }
}

fn main() {}
