use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Counter { meta: Meta<Self>, n: u32 }

#[events] impl Counter {
    #[event] fn start() -> Self { Self { meta: Meta::default(), n: 0 } }

    #[event] fn bump(&mut self) { self.n += 1; }

    #[event]
    fn bump_thrice(&mut self) {
        Self::bump(self);
        Counter::bump(&mut *self);
        <Self>::bump(self);
    }

    #[event]
    fn bump_each(&mut self, times: u32) {
        let bump = Self::bump;
        for _ in 0..times {
            bump(self);
        }
    }
}

fn main() {}
