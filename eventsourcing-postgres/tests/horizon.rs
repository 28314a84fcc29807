//! A transaction left open anywhere on the server (here: in another database) holds back every
//! reader of the log; the store names it (`log_horizon`, `status`) so an operator can end it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventsourcing_core::{EventStore, NewEvent, Position};
use eventsourcing_postgres::testing::{fresh, server_config, HeldTransaction};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_in_another_database_is_named_as_what_holds_the_log() {
    let (store, _schema) = fresh().await;
    // A session on the `postgres` database that took a transaction id and stays open.
    let config = server_config()
        .to_builder()
        .dbname("postgres")
        .build()
        .unwrap();
    let held = HeldTransaction::begin(&config, "forgotten-begin").await;
    let pid = held.pid();

    let id = Uuid::new_v4();
    store
        .append(vec![NewEvent::new(id, 1, "Happened", b"{}".to_vec())])
        .await
        .unwrap();
    // Committed, but held back: the log does not hand it out yet.
    assert!(store
        .read_log(Position::START, 10)
        .await
        .unwrap()
        .iter()
        .all(|e| e.stream_id != id));
    let horizon = store.log_horizon().await.unwrap();
    assert!(horizon.held_back, "{horizon:?}");
    let holder = horizon
        .holders
        .iter()
        .find(|h| h.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among {horizon:?}"));
    assert_eq!(holder.database.as_deref(), Some("postgres"));
    assert_eq!(holder.application_name.as_deref(), Some("forgotten-begin"));
    assert!(holder.transaction_age.is_some());
    let status = store.status().await.unwrap();
    let shown = status.log_horizon.expect("the events table exists");
    assert!(shown.held_back && shown.holders.iter().any(|h| h.pid == pid));

    // Ended: the event is readable, and the session is no longer named.
    held.commit().await;
    let log = store.read_log(Position::START, 10).await.unwrap();
    assert!(log.iter().any(|e| e.stream_id == id));
    let after = store.log_horizon().await.unwrap();
    assert!(after.holders.iter().all(|h| h.pid != pid), "{after:?}");
}
