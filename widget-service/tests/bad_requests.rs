//! Bad requests against the real server: each gets the right status and an RFC 9457
//! problem-details body (`application/problem+json` with type, title and status), never a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Backend;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// One bad request: what is sent, and the status it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
}

fn case(what: &'static str, method: Method, path: impl Into<String>, status: u16) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        status,
    }
}

impl Case {
    fn json(mut self, body: impl Into<String>) -> Self {
        self.headers
            .push(("content-type", "application/json".into()));
        self.body = Some(body.into());
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, body: impl Into<String>) -> Self {
        if let Some(t) = content_type {
            self.headers.push(("content-type", t.into()));
        }
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_right_status_and_problem_details() {
    for backend in Backend::each().await {
        let (server, endpoint) = backend.start_with_endpoint("Bad").await;
        let missing = eventsourcing::new_id();
        let too_long = "x".repeat(20_000);

        let cases = vec![
            case("malformed JSON", Method::POST, "/endpoints", 400).json(r#"{"url": "#),
            case("an empty JSON body", Method::POST, "/endpoints", 400).json(""),
            case("no content type", Method::POST, "/endpoints", 415)
                .raw(None, r#"{"url":"https://a","name":"a","tenant_id":"t"}"#),
            case("a text content type", Method::POST, "/endpoints", 415).raw(
                Some("text/plain"),
                r#"{"url":"https://a","name":"a","tenant_id":"t"}"#,
            ),
            case("a missing field", Method::POST, "/endpoints", 422).json(r#"{"url":"https://a"}"#),
            case("a field of the wrong type", Method::POST, "/endpoints", 422)
                .json(r#"{"url":1,"name":"a","tenant_id":"t"}"#),
            case("an unknown field", Method::POST, "/endpoints", 422)
                .json(r#"{"url":"https://a","name":"a","tenant_id":"t","colour":"red"}"#),
            case("a blank name", Method::POST, "/endpoints", 422)
                .json(r#"{"url":"https://a","name":"  ","tenant_id":"t"}"#),
            case("a URL that is not http(s)", Method::POST, "/endpoints", 422)
                .json(r#"{"url":"ftp://a","name":"a","tenant_id":"t"}"#),
            case("a tenant with a space", Method::POST, "/endpoints", 422)
                .json(r#"{"url":"https://a","name":"a","tenant_id":"a b"}"#),
            case("a body over the limit", Method::POST, "/endpoints", 413).json(format!(
                r#"{{"url":"https://a","name":"{too_long}","tenant_id":"t"}}"#
            )),
            case(
                "an id that is not a UUID",
                Method::GET,
                "/endpoints/not-a-uuid",
                400,
            ),
            case(
                "an id that does not exist",
                Method::GET,
                format!("/endpoints/{missing}"),
                404,
            ),
            case(
                "version 0",
                Method::GET,
                format!("{endpoint}?version=0"),
                400,
            ),
            case(
                "a version that is not a number",
                Method::GET,
                format!("{endpoint}?version=abc"),
                400,
            ),
            case(
                "a version never reached",
                Method::GET,
                format!("{endpoint}?version=99"),
                404,
            ),
            case(
                "an unknown query parameter",
                Method::GET,
                format!("{endpoint}?colour=red"),
                400,
            ),
            case(
                "If-Match that is not an entity tag",
                Method::PATCH,
                endpoint.clone(),
                400,
            )
            .header("if-match", "abc")
            .json(r#"{"name":"n"}"#),
            case("a stale If-Match", Method::PATCH, endpoint.clone(), 412)
                .header("if-match", "\"7\"")
                .json(r#"{"name":"n"}"#),
            case(
                "renaming what does not exist",
                Method::PATCH,
                format!("/endpoints/{missing}"),
                404,
            )
            .json(r#"{"name":"n"}"#),
            case(
                "renaming to a blank name",
                Method::PATCH,
                endpoint.clone(),
                422,
            )
            .json(r#"{"name":""}"#),
            case(
                "a method the route lacks",
                Method::DELETE,
                endpoint.clone(),
                405,
            ),
            case("a method /healthz lacks", Method::PUT, "/healthz", 405),
            case("a route that does not exist", Method::GET, "/nowhere", 404),
            case(
                "a history page of 0",
                Method::GET,
                format!("{endpoint}/history?limit=0"),
                400,
            ),
            case(
                "the history of nothing",
                Method::GET,
                format!("/endpoints/{missing}/history"),
                404,
            ),
            case(
                "a tenant with a space",
                Method::GET,
                "/tenants/a%20b/endpoints",
                400,
            ),
            case(
                "a tenant page after a non-id",
                Method::GET,
                "/tenants/t/endpoints?after=x",
                400,
            ),
        ];
        assert!(cases.len() >= 15);

        for c in &cases {
            let mut request = server.http.request(c.method.clone(), server.url(&c.path));
            for (name, value) in &c.headers {
                request = request.header(*name, value);
            }
            if let Some(body) = &c.body {
                request = request.body(body.clone());
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            let text = response.text().await.unwrap();
            let context = format!("{} ({}): {status} {text}", c.what, backend.name());
            assert_eq!(status, StatusCode::from_u16(c.status).unwrap(), "{context}");
            assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{context}"
            );
            let problem: Value = serde_json::from_str(&text).expect(&context);
            assert_eq!(problem["status"], c.status, "{context}");
            assert!(problem["type"].is_string(), "{context}");
            assert!(
                problem["title"].as_str().is_some_and(|t| !t.is_empty()),
                "{context}"
            );
        }

        // None of that changed the endpoint.
        let now = server.get_json(&endpoint).await;
        assert_eq!(now["version"], 1);
        assert_eq!(now["name"], "Bad");
    }
}
