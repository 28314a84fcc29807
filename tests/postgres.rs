//! The conformance suite on PostgreSQL: each test on a fresh schema of the server named by
//! `EVENTSOURCING_TEST_POSTGRES_URL` (default `postgresql://root@127.0.0.1:5432/test`), dropped
//! afterwards. A test that cannot reach the server fails and says how to point it at one.

mod conformance;

conformance::conformance_tests!(eventsourcing_postgres::testing::fresh);
