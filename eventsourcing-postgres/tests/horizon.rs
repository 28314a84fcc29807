//! A transaction left open anywhere on the server (here: in another database) holds back every
//! reader of the log; the store names it (`log_horizon`, `status`) so an operator can end it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsourcing_core::{EventStore, NewEvent, Position};
use eventsourcing_postgres::testing::{fresh, server_config};
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
    let (client, connection) = config
        .tokio_postgres_config()
        .connect(eventsourcing_postgres::tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
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
    client.batch_execute("COMMIT").await.unwrap();
    let log = store.read_log(Position::START, 10).await.unwrap();
    assert!(log.iter().any(|e| e.stream_id == id));
    let after = store.log_horizon().await.unwrap();
    assert!(after.holders.iter().all(|h| h.pid != pid), "{after:?}");
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the session closes")
        .unwrap()
        .unwrap();
}
