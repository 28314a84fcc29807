//! The conformance suite on the embedded SQLite store: on a file, and in memory.

mod conformance;

mod file {
    use super::conformance;

    async fn store() -> (
        eventsourcing_sqlite::SqliteStore,
        eventsourcing_sqlite::testing::TempGuard,
    ) {
        eventsourcing_sqlite::testing::temp_file_store()
    }

    conformance::conformance_tests!(store);
}

mod memory {
    use super::conformance;

    async fn store() -> (eventsourcing_sqlite::SqliteStore, ()) {
        (eventsourcing_sqlite::testing::memory_store(), ())
    }

    conformance::conformance_tests!(store);
}
