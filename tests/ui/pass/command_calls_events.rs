use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Counter { meta: Meta<Self>, n: u32 }

#[events] impl Counter {
    #[event] fn start() -> Self { Self { meta: Meta::default(), n: 0 } }

    #[event] fn bump(&mut self) { self.n += 1; }

    /// A command, not an event: it may record as many events as it likes.
    fn bump_twice(&mut self) {
        self.bump();
        Self::bump(self);
    }
}

fn main() {
    let mut counter = Counter::start();
    counter.bump_twice();
    assert_eq!(counter.n, 2);
    assert_eq!(counter.pending_events().len(), 3);
}
