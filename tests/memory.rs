//! The conformance suite on the in-memory store.

mod conformance;

async fn memory() -> (eventsourcing::MemoryStore, ()) {
    (eventsourcing::MemoryStore::new(), ())
}

conformance::conformance_tests!(memory);
