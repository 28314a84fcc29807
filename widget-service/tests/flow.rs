//! The seed's flow over HTTP against the real server, on SQLite and on PostgreSQL (and on the
//! memory store where no restart is involved): create,
//! read, rename, read again; optimistic concurrency with If-Match; concurrent renames without
//! it; the tenant read model catching up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{etag, rename, tenant, Backend, Deadline};
use eventsourcing_postgres::testing::join_all;
use serde_json::Value;

/// The ids of a page of endpoints (`/tenants/{tenant}/endpoints`).
fn ids(page: &Value) -> BTreeSet<String> {
    page["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_flow_create_read_rename_read() {
    for backend in Backend::each_with_memory().await {
        let server = backend.start();
        let created = server
            .create("https://example.com", "Test Endpoint", "tenant-123")
            .await;
        let path = format!("/endpoints/{}", created["id"].as_str().unwrap());
        assert_eq!(created["version"], 1, "{}", backend.name());

        let read = server.get(&path).await;
        assert_eq!(read.status(), 200);
        assert_eq!(etag(&read), "\"1\"");
        let body: Value = read.json().await.unwrap();
        assert_eq!(body["url"], "https://example.com");
        assert_eq!(body["name"], "Test Endpoint");
        assert_eq!(body["tenant_id"], "tenant-123");

        let renamed = server.rename(&path, Some("\"1\""), "Updated Name").await;
        assert_eq!(renamed.status(), 200, "{}", backend.name());
        assert_eq!(etag(&renamed), "\"2\"");

        let read = server.get(&path).await;
        assert_eq!(etag(&read), "\"2\"");
        let body: Value = read.json().await.unwrap();
        assert_eq!(body["name"], "Updated Name", "{}", backend.name());
        assert_eq!(body["version"], 2);

        // The earlier version is still there.
        let old = server.get_json(&format!("{path}?version=1")).await;
        assert_eq!(old["name"], "Test Endpoint");
        assert_eq!(old["version"], 1);

        // The history, a page at a time.
        let page = server.get_json(&format!("{path}/history?limit=1")).await;
        assert_eq!(page["events"][0]["type"], "Registered");
        assert_eq!(page["next_after"], 1);
        let page = server.get_json(&format!("{path}/history?after=1")).await;
        assert_eq!(page["events"][0]["type"], "NameUpdated");
        assert_eq!(page["events"][0]["data"]["name"], "Updated Name");
        assert_eq!(page["next_after"], Value::Null);

        // Request ids: echoed when sent, made when not.
        let echoed = server
            .http
            .get(server.url("/healthz"))
            .header("x-request-id", "test-request-1")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.headers()["x-request-id"], "test-request-1");
        let made = server.get("/healthz").await;
        assert!(!made.headers()["x-request-id"].is_empty());

        // Ready, and the metrics show the requests.
        let ready = server.get("/readyz").await;
        assert_eq!(ready.status(), 200, "{}", backend.name());
        let metrics = server.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains(
                "http_requests_total{method=\"POST\",route=\"/endpoints\",status=\"201\"} 1"
            ),
            "{metrics}"
        );
        // The library's metrics beside them: the create and the rename were saves.
        let store = match backend.name() {
            "sqlite" => "sqlite",
            "memory" => "memory",
            _ => "postgres",
        };
        let saves = format!(
            "eventsourcing_saves_total{{aggregate_type=\"WidgetRegistryEndpoint\",store=\"{store}\"}} 2"
        );
        assert!(metrics.contains(&saves), "{saves} not in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    for backend in Backend::each().await {
        let (server, path) = backend.start_with_endpoint("A").await;
        let first = server.rename(&path, Some("\"1\""), "first").await;
        assert_eq!(first.status(), 200);

        // A second client still holding version 1.
        let stale = server.rename(&path, Some("\"1\""), "second").await;
        assert_eq!(stale.status(), 412, "{}", backend.name());
        assert_eq!(stale.headers()["content-type"], "application/problem+json");
        let problem: Value = stale.json().await.unwrap();
        assert_eq!(problem["status"], 412);

        let now = server.get_json(&path).await;
        assert_eq!(now["name"], "first");
        assert_eq!(now["version"], 2);

        // A list of tags matches when one of them is current.
        let listed = server.rename(&path, Some("\"1\", \"2\""), "third").await;
        assert_eq!(listed.status(), 200, "{}", backend.name());
        assert_eq!(etag(&listed), "\"3\"");
        // `*` matches any current version.
        let any = server.rename(&path, Some("*"), "fourth").await;
        assert_eq!(any.status(), 200);
        assert_eq!(etag(&any), "\"4\"");
    }
}

/// `clients` renames of the endpoint at `url` at once, each with `If-Match: if_match` if
/// given; returns each one's status and body, in the order of the clients.
async fn concurrent_renames(
    http: &reqwest::Client,
    url: &str,
    clients: usize,
    if_match: Option<&'static str>,
) -> Vec<(u16, String)> {
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (http, url) = (http.clone(), url.to_owned());
            tokio::spawn(async move {
                let response = rename(&http, &url, if_match, &format!("name {i}")).await;
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    join_all(tasks, Duration::from_secs(120), "the concurrent renames").await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renames_without_if_match_all_land() {
    const RENAMES: usize = 16;
    for backend in Backend::each_with_memory().await {
        let (server, path) = backend.start_with_endpoint("C").await;
        let outcomes = concurrent_renames(&server.http, &server.url(&path), RENAMES, None).await;
        for (status, body) in outcomes {
            assert_eq!(status, 200, "{}: {body}", backend.name());
        }

        let now = server.get_json(&path).await;
        assert_eq!(now["version"], 1 + RENAMES as u64, "{}", backend.name());
        let history = server.get_json(&format!("{path}/history")).await;
        let names: BTreeSet<String> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "NameUpdated")
            .map(|e| e["data"]["name"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = (0..RENAMES).map(|i| format!("name {i}")).collect();
        assert_eq!(names, expected, "{}: a rename was lost", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_read_model_catches_up() {
    for backend in Backend::each_with_memory().await {
        let server = backend.start();
        let (mine, other) = (tenant(), tenant());
        let mut ids_of_mine = BTreeSet::new();
        for i in 0..5 {
            let e = server
                .create(&format!("https://example.com/{i}"), &format!("E{i}"), &mine)
                .await;
            ids_of_mine.insert(e["id"].as_str().unwrap().to_owned());
        }
        server
            .create("https://example.com/other", "other", &other)
            .await;
        let renamed = ids_of_mine.iter().next().unwrap().clone();
        let response = server
            .rename(&format!("/endpoints/{renamed}"), None, "renamed")
            .await;
        assert_eq!(response.status(), 200);

        // Eventually consistent: poll, with a generous deadline on the waiting only.
        let listing = format!("/tenants/{mine}/endpoints");
        let deadline = Deadline::after(Duration::from_secs(30));
        let page = loop {
            let page = server.get_json(&listing).await;
            let rows = page["endpoints"].as_array().unwrap();
            let caught_up = rows.len() == 5
                && rows
                    .iter()
                    .any(|r| r["id"] == renamed.as_str() && r["name"] == "renamed");
            if caught_up {
                break page;
            }
            deadline
                .pause(|| format!("{}: the read model shows {page}", backend.name()))
                .await;
        };
        assert_eq!(
            ids(&page),
            ids_of_mine,
            "{}: only this tenant's endpoints",
            backend.name()
        );

        // Paged by id.
        let first = server.get_json(&format!("{listing}?limit=3")).await;
        let after = first["next_after"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let second = server
            .get_json(&format!("{listing}?limit=3&after={after}"))
            .await;
        let paged: BTreeSet<String> = ids(&first).union(&ids(&second)).cloned().collect();
        assert_eq!(paged, ids_of_mine);

        let ready = server.get_json("/readyz").await;
        assert_eq!(ready["projection"]["lag"], 0, "{}: {ready}", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renames_with_the_same_if_match_one_wins() {
    const CLIENTS: usize = 16;
    for backend in Backend::each_with_memory().await {
        let (server, path) = backend.start_with_endpoint("race").await;
        let outcomes =
            concurrent_renames(&server.http, &server.url(&path), CLIENTS, Some("\"1\"")).await;
        let statuses: Vec<u16> = outcomes.iter().map(|(status, _)| *status).collect();
        let won = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 412).count();
        assert_eq!(
            (won, refused),
            (1, CLIENTS - 1),
            "{}: {statuses:?}",
            backend.name()
        );
        let now = server.get_json(&path).await;
        assert_eq!(now["version"], 2, "{}", backend.name());
    }
}
