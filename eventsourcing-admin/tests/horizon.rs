//! `status` on PostgreSQL names the session whose open transaction holds the log back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{new_stream, Target};
use eventsourcing_postgres::testing::HeldTransaction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_open_transaction_that_holds_the_log_back() {
    let target = Target::postgres().await;
    let store = target.open().await;
    let Target::Postgres { schema } = &target else {
        unreachable!()
    };
    // A session that took a transaction id and stays open (a forgotten BEGIN).
    let held = HeldTransaction::begin(&schema.config(), "forgotten-begin").await;
    let pid = held.pid();
    new_stream(&store, 1).await;

    let horizon = &target.admin(&["status", "--json"]).assert_code(0).json()["log_horizon"];
    assert_eq!(horizon["held_back"], true, "{horizon}");
    let holder = horizon["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among {horizon}"));
    assert_eq!(holder["application_name"], "forgotten-begin", "{horizon}");

    target
        .admin(&["status"])
        .assert_stdout("held back by the transaction of pid")
        .assert_stdout("pg_terminate_backend(");

    held.commit().await;
    let json = target.admin(&["status", "--json"]).json();
    assert!(
        json["log_horizon"]["holders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["pid"] != pid),
        "{json}"
    );
}
