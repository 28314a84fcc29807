//! The conformance suite on `AnyStore`, built from the environment as an application built
//! with `application_from_env` would be: one module per `PERSISTENCE_MODULE` value, so a test's
//! name says which store it ran on.

mod conformance;

use eventsourcing::{AnyStore, Env, StoreKind};

/// `AnyStore::from_env` on these settings, checked to be the store they name.
async fn from_env(vars: &[(&str, &str)], kind: StoreKind) -> AnyStore {
    let env = Env::from_map(vars.iter().copied());
    let store = AnyStore::from_env(&env)
        .await
        .unwrap_or_else(|e| panic!("AnyStore::from_env({vars:?}): {e}"));
    assert_eq!(store.kind(), kind, "{vars:?}");
    store
}

mod memory {
    use super::*;

    async fn store() -> (AnyStore, ()) {
        let vars = [("PERSISTENCE_MODULE", "eventsourcing.popo")];
        (from_env(&vars, StoreKind::Memory).await, ())
    }

    conformance::conformance_tests!(store);
}

mod sqlite {
    use super::*;
    use eventsourcing::sqlite::testing::TempGuard;

    /// A fresh database file, deleted with the guard.
    async fn store() -> (AnyStore, TempGuard) {
        let guard = TempGuard::new();
        let dbname = guard.dbname();
        let vars = [
            ("PERSISTENCE_MODULE", "eventsourcing.sqlite"),
            ("SQLITE_DBNAME", dbname.as_str()),
        ];
        (from_env(&vars, StoreKind::Sqlite).await, guard)
    }

    conformance::conformance_tests!(store);
}

mod postgres {
    use super::*;
    use eventsourcing::postgres::testing::{url, TestSchema};

    /// The test server (`EVENTSOURCING_TEST_POSTGRES_URL`) on a fresh schema, dropped with the
    /// guard.
    async fn store() -> (AnyStore, TestSchema) {
        let schema = TestSchema::new().await;
        let url = url();
        let vars = [
            ("PERSISTENCE_MODULE", "eventsourcing.postgres"),
            ("DATABASE_URL", url.as_str()),
            ("POSTGRES_SCHEMA", schema.name()),
        ];
        (from_env(&vars, StoreKind::Postgres).await, schema)
    }

    conformance::conformance_tests!(store);
}
