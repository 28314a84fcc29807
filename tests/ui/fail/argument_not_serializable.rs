use eventsourcing::prelude::*;

#[derive(Debug, Clone)]
struct Colour(u8);

#[derive(Aggregate, Serialize, Deserialize)] struct Widget { meta: Meta<Self>, name: String }

#[events] impl Widget {
    #[event] fn create(name: String) -> Self { Self { meta: Meta::default(), name } }

    #[event]
    fn paint(&mut self, colour: Colour) { let _ = colour; }
}

fn main() {}
