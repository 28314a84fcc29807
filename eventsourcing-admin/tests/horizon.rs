//! `status` on PostgreSQL names the session whose open transaction holds the log back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{append, Target};
use eventsourcing::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_open_transaction_that_holds_the_log_back() {
    let target = Target::postgres().await;
    let store = target.open().await;
    let Target::Postgres { schema } = &target else {
        unreachable!()
    };
    // A session that took a transaction id and stays open (a forgotten BEGIN).
    let client = schema.client().await.unwrap();
    client
        .batch_execute(
            "SET application_name = 'forgotten-begin'; BEGIN; SELECT pg_current_xact_id()",
        )
        .await
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    append(&store, Uuid::new_v4(), 1).await;

    let run = target.admin(&["status", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let horizon = &run.json()["log_horizon"];
    assert_eq!(horizon["held_back"], true, "{horizon}");
    let holder = horizon["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among {horizon}"));
    assert_eq!(holder["application_name"], "forgotten-begin", "{horizon}");

    let run = target.admin(&["status"]);
    assert!(
        run.stdout.contains("held back by the transaction of pid"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("pg_terminate_backend("),
        "{}",
        run.all()
    );

    client.batch_execute("COMMIT").await.unwrap();
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
