use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Counter { meta: Meta<Self>, n: u32 }

#[events] impl Counter {
    #[event] fn start() -> Self { Self { meta: Meta::default(), n: 0 } }

    #[event] fn bump(&mut self) { self.n += 1; }

    #[event]
    fn bump_twice(&mut self) {
        self.bump();
        self.bump();
    }
}

fn main() {}
