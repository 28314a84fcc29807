//! SIGTERM during a burst of saves: the server finishes the requests in flight and exits 0,
//! and every save a client saw succeed is there after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{tenant, Backend, Deadline};
use eventsourcing_postgres::testing::join_all;
use serde_json::Value;

const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_saves_keeps_every_acknowledged_save() {
    for backend in Backend::each().await {
        let mut server = backend.start();
        let tenant = tenant();
        let acknowledged = Arc::new(AtomicUsize::new(0));

        // Each client saves until the server goes away, keeping the ids it got a 201 for.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let http = server.http.clone();
                let url = server.url("/endpoints");
                let tenant = tenant.clone();
                let acknowledged = Arc::clone(&acknowledged);
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0.. {
                        let body = serde_json::json!({
                            "url": format!("https://example.com/{c}/{i}"),
                            "name": format!("burst {c} {i}"),
                            "tenant_id": tenant,
                        });
                        let Ok(response) = http.post(&url).json(&body).send().await else {
                            break;
                        };
                        if !response.status().is_success() {
                            assert_eq!(response.status(), 503, "only a refusal while stopping");
                            break;
                        }
                        let Ok(created) = response.json::<Value>().await else {
                            break;
                        };
                        ids.push(created["id"].as_str().unwrap().to_owned());
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    ids
                })
            })
            .collect();

        // Mid-burst: once saves are flowing.
        let deadline = Deadline::after(Duration::from_secs(60));
        while acknowledged.load(Ordering::Relaxed) < 4 * CLIENTS {
            deadline
                .pause(|| format!("no saves got through:\n{}", server.log()))
                .await;
        }
        server.terminate();
        let status = server.wait_exit().await;
        assert!(
            status.success(),
            "{}: exit {status:?}\n{}",
            backend.name(),
            server.log()
        );

        let ids: Vec<String> = join_all(
            clients,
            Duration::from_secs(120),
            "the clients after the server's exit",
        )
        .await
        .concat();
        assert!(ids.len() >= 4 * CLIENTS);
        drop(server);

        let restarted = backend.start();
        for id in &ids {
            let response = restarted.get(&format!("/endpoints/{id}")).await;
            assert_eq!(
                response.status(),
                200,
                "{}: {id} was acknowledged but is gone",
                backend.name()
            );
        }
    }
}
