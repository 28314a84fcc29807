//! The seed's flow over HTTP against the real server, on SQLite and on PostgreSQL (and on the
//! memory store where no restart is involved): create,
//! read, rename, read again; optimistic concurrency with If-Match; concurrent renames without
//! it; the tenant read model catching up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{client, create, etag, get_json, tenant, Backend};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_flow_create_read_rename_read() {
    for backend in Backend::each_with_memory().await {
        let server = backend.start();
        let http = client();
        let created = create(
            &server,
            &http,
            "https://example.com",
            "Test Endpoint",
            "tenant-123",
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["version"], 1, "{}", backend.name());

        let read = http
            .get(server.url(&format!("/endpoints/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(etag(&read), "\"1\"");
        let body: Value = read.json().await.unwrap();
        assert_eq!(body["url"], "https://example.com");
        assert_eq!(body["name"], "Test Endpoint");
        assert_eq!(body["tenant_id"], "tenant-123");

        let renamed = http
            .patch(server.url(&format!("/endpoints/{id}")))
            .header("if-match", "\"1\"")
            .json(&serde_json::json!({ "name": "Updated Name" }))
            .send()
            .await
            .unwrap();
        assert_eq!(renamed.status(), 200, "{}", backend.name());
        assert_eq!(etag(&renamed), "\"2\"");

        let read = http
            .get(server.url(&format!("/endpoints/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(etag(&read), "\"2\"");
        let body: Value = read.json().await.unwrap();
        assert_eq!(body["name"], "Updated Name", "{}", backend.name());
        assert_eq!(body["version"], 2);

        // The earlier version is still there.
        let old: Value = get_json(&http, server.url(&format!("/endpoints/{id}?version=1"))).await;
        assert_eq!(old["name"], "Test Endpoint");
        assert_eq!(old["version"], 1);

        // The history, a page at a time.
        let page: Value = get_json(
            &http,
            server.url(&format!("/endpoints/{id}/history?limit=1")),
        )
        .await;
        assert_eq!(page["events"][0]["type"], "Registered");
        assert_eq!(page["next_after"], 1);
        let page: Value = get_json(
            &http,
            server.url(&format!("/endpoints/{id}/history?after=1")),
        )
        .await;
        assert_eq!(page["events"][0]["type"], "NameUpdated");
        assert_eq!(page["events"][0]["data"]["name"], "Updated Name");
        assert_eq!(page["next_after"], Value::Null);

        // Request ids: echoed when sent, made when not.
        let echoed = http
            .get(server.url("/healthz"))
            .header("x-request-id", "test-request-1")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.headers()["x-request-id"], "test-request-1");
        let made = http.get(server.url("/healthz")).send().await.unwrap();
        assert!(!made.headers()["x-request-id"].is_empty());

        // Ready, and the metrics show the requests.
        let ready = http.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{}", backend.name());
        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
        let server = backend.start();
        let http = client();
        let created = create(&server, &http, "https://example.com/a", "A", &tenant()).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let url = server.url(&format!("/endpoints/{id}"));
        let first = http
            .patch(&url)
            .header("if-match", "\"1\"")
            .json(&serde_json::json!({ "name": "first" }))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 200);

        // A second client still holding version 1.
        let stale = http
            .patch(&url)
            .header("if-match", "\"1\"")
            .json(&serde_json::json!({ "name": "second" }))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 412, "{}", backend.name());
        assert_eq!(stale.headers()["content-type"], "application/problem+json");
        let problem: Value = stale.json().await.unwrap();
        assert_eq!(problem["status"], 412);

        let now: Value = get_json(&http, &url).await;
        assert_eq!(now["name"], "first");
        assert_eq!(now["version"], 2);

        // A list of tags matches when one of them is current.
        let listed = http
            .patch(&url)
            .header("if-match", "\"1\", \"2\"")
            .json(&serde_json::json!({ "name": "third" }))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200, "{}", backend.name());
        assert_eq!(common::etag(&listed), "\"3\"");
        // `*` matches any current version.
        let any = http
            .patch(&url)
            .header("if-match", "*")
            .json(&serde_json::json!({ "name": "fourth" }))
            .send()
            .await
            .unwrap();
        assert_eq!(any.status(), 200);
        assert_eq!(common::etag(&any), "\"4\"");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renames_without_if_match_all_land() {
    const RENAMES: usize = 16;
    for backend in Backend::each_with_memory().await {
        let server = backend.start();
        let http = client();
        let created = create(&server, &http, "https://example.com/c", "C", &tenant()).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let url = server.url(&format!("/endpoints/{id}"));

        let tasks: Vec<_> = (0..RENAMES)
            .map(|i| {
                let http = http.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let response = http
                        .patch(&url)
                        .json(&serde_json::json!({ "name": format!("name {i}") }))
                        .send()
                        .await
                        .unwrap();
                    (response.status(), response.text().await.unwrap())
                })
            })
            .collect();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, 200, "{}: {body}", backend.name());
        }

        let now: Value = get_json(&http, &url).await;
        assert_eq!(now["version"], 1 + RENAMES as u64, "{}", backend.name());
        let history: Value = get_json(&http, server.url(&format!("/endpoints/{id}/history"))).await;
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
        let http = client();
        let (mine, other) = (tenant(), tenant());
        let mut ids = BTreeSet::new();
        for i in 0..5 {
            let e = create(
                &server,
                &http,
                &format!("https://example.com/{i}"),
                &format!("E{i}"),
                &mine,
            )
            .await;
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        create(&server, &http, "https://example.com/other", "other", &other).await;
        let renamed = ids.iter().next().unwrap().clone();
        let response = http
            .patch(server.url(&format!("/endpoints/{renamed}")))
            .json(&serde_json::json!({ "name": "renamed" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        // Eventually consistent: poll, with a generous deadline on the waiting only.
        let deadline = Instant::now() + Duration::from_secs(30);
        let listing = loop {
            let page: Value =
                get_json(&http, server.url(&format!("/tenants/{mine}/endpoints"))).await;
            let rows = page["endpoints"].as_array().unwrap().clone();
            let caught_up = rows.len() == 5
                && rows
                    .iter()
                    .any(|r| r["id"] == renamed.as_str() && r["name"] == "renamed");
            if caught_up {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the read model shows {rows:?}",
                backend.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let listed: BTreeSet<String> = listing
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            listed,
            ids,
            "{}: only this tenant's endpoints",
            backend.name()
        );

        // Paged by id.
        let first: Value = get_json(
            &http,
            server.url(&format!("/tenants/{mine}/endpoints?limit=3")),
        )
        .await;
        let after = first["next_after"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let second: Value = get_json(
            &http,
            server.url(&format!("/tenants/{mine}/endpoints?limit=3&after={after}")),
        )
        .await;
        let paged: BTreeSet<String> = first["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["endpoints"].as_array().unwrap())
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paged, ids);

        let ready: Value = get_json(&http, server.url("/readyz")).await;
        assert_eq!(ready["projection"]["lag"], 0, "{}: {ready}", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renames_with_the_same_if_match_one_wins() {
    const CLIENTS: usize = 16;
    for backend in Backend::each_with_memory().await {
        let server = backend.start();
        let http = client();
        let created = create(
            &server,
            &http,
            "https://example.com/race",
            "race",
            &tenant(),
        )
        .await;
        let url = server.url(&format!("/endpoints/{}", created["id"].as_str().unwrap()));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let response = http
                        .patch(&url)
                        .header("if-match", "\"1\"")
                        .json(&serde_json::json!({ "name": format!("racer {i}") }))
                        .send()
                        .await
                        .unwrap();
                    response.status().as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        let won = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 412).count();
        assert_eq!(
            (won, refused),
            (1, CLIENTS - 1),
            "{}: {statuses:?}",
            backend.name()
        );
        let now: Value = get_json(&http, &url).await;
        assert_eq!(now["version"], 2, "{}", backend.name());
    }
}
