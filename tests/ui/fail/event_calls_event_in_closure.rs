use eventsourcing::prelude::*;

#[derive(Aggregate, Serialize, Deserialize)] struct Counter { meta: Meta<Self>, n: u32 }

#[events] impl Counter {
    #[event] fn start() -> Self { Self { meta: Meta::default(), n: 0 } }

    #[event] fn bump(&mut self) { self.n += 1; }

    #[event]
    fn bump_many(&mut self, times: u32) {
        (0..times).for_each(|_| self.bump());
        if times > 10 {
            match times {
                11 => { (*self).bump() }
                _ => assert!(times > 0, "{:?}", self.bump()),
            }
        }
    }

    #[event]
    fn restart() -> Self {
        let mut counter = Self { meta: Meta::default(), n: 0 };
        {
            counter.n = 1;
            Self::start()
        };
        counter.bump(); // not `self`: only the run-time guard sees this one
        counter
    }
}

fn main() {}
