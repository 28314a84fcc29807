//! The database goes away and comes back (a throwaway PostgreSQL cluster, never the shared
//! server): meanwhile requests get 503 problem details with `Retry-After` and `/readyz` says
//! not ready; afterwards the service serves again and the read model catches up, without a
//! restart of the service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, Deadline, Server};
use eventsourcing_postgres::cluster::{StopMode, TestCluster};
use serde_json::Value;

async fn wait_until_ready(server: &Server) {
    let deadline = Deadline::after(Duration::from_secs(90));
    loop {
        let ready = server.get("/readyz").await;
        if ready.status() == 200 {
            return;
        }
        let body = ready.text().await.unwrap();
        deadline.pause(|| format!("not ready again: {body}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_is_503_then_the_service_recovers() {
    let cluster = TestCluster::new().await;
    let backend = Backend::Cluster(Box::new(cluster));
    let server = backend.start();
    let endpoint = server
        .create_path("https://example.com/up", "up", "tenant-outage")
        .await;
    wait_until_ready(&server).await;

    let Backend::Cluster(cluster) = &backend else {
        unreachable!()
    };
    cluster.stop(StopMode::Fast).await;

    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false, "{body}");

    let save = server
        .http
        .post(server.url("/endpoints"))
        .json(&serde_json::json!({ "url": "https://example.com/down", "name": "down", "tenant_id": "tenant-outage" }))
        .send()
        .await
        .unwrap();
    assert_eq!(save.status(), 503, "{:?}", save.text().await);
    assert_eq!(save.headers()["content-type"], "application/problem+json");
    assert!(save.headers().contains_key("retry-after"));
    let problem: Value = save.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    assert!(
        !problem.to_string().contains("127.0.0.1"),
        "no connection details reach the client: {problem}"
    );
    assert_eq!(server.get(&endpoint).await.status(), 503);

    cluster.start().await;
    wait_until_ready(&server).await;
    assert_eq!(server.get(&endpoint).await.status(), 200);
    let after = server
        .create("https://example.com/again", "again", "tenant-outage")
        .await;

    // The projection lived through the outage: it shows the endpoint saved after it.
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let page = server.get_json("/tenants/tenant-outage/endpoints").await;
        if page["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == after["id"])
        {
            break;
        }
        deadline
            .pause(|| format!("the read model did not catch up: {page}"))
            .await;
    }
    drop(server);
}
