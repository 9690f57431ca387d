//! The HTTP surface of the foundation: operations routes, OpenAPI, and the error body of
//! requests that match nothing.

use std::time::{Duration, Instant};

use crate::harness::{TestApp, error_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_generated_from_the_handlers() {
    let app = TestApp::spawn().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
        ("/v1/auth/sign-up", "post"),
        ("/v1/auth/session", "get"),
        ("/v1/organizations/{orgId}/members/{memberId}", "patch"),
        ("/v1/organizations/{orgId}/invitations", "post"),
        ("/v1/invitations/{token}/accept", "post"),
        ("/v1/projects", "get"),
        ("/v1/projects/{projectId}", "delete"),
        ("/v1/api-keys/{keyId}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from {doc}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids must be unique");
}

/// `docs/api.md` carries an index of every route between `<!-- routes -->` and
/// `<!-- /routes -->`, one `| METHOD | path |` row each: it must list exactly what the server's
/// OpenAPI document describes, so the documentation cannot fall behind the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_documentation_indexes_every_route_served() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut served: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("| {} | `{path}` |", method.to_uppercase()))
        })
        .collect();
    served.sort();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let index = text
        .split("<!-- routes -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /routes -->").next())
        .expect("docs/api.md has a route index");
    let mut listed: Vec<String> = index
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.starts_with("| ") && !line.starts_with("| method") && !line.starts_with("| ---")
        })
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        served,
        "docs/api.md's route index, as it should read:\n{}",
        served.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_the_error_body() {
    let app = TestApp::spawn().await;
    let response = app.get("/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body = error_body(response).await;
    assert_eq!(body["error"]["code"], "not_found");

    let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body = error_body(response).await;
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_the_listener_and_reports_success() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.shutdown().await.expect("clean shutdown");
    let after = app.client.get(app.url("/healthz")).send().await;
    assert!(after.is_err(), "still answering after shutdown: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    // A listener that never accepts: a readiness check against it hangs until its timeout, which
    // makes /readyz a request that is still in flight when shutdown begins.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut app = TestApp::spawn_with(|c| {
        c.database.url = format!("postgres://postgres@127.0.0.1:{port}/relayit");
        c.database.connect_timeout = Duration::from_secs(30);
    })
    .await;
    let (client, url) = (app.client.clone(), app.url("/readyz"));
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!in_flight.is_finished(), "the request should still be waiting on the database");

    let started = Instant::now();
    app.shutdown().await.expect("clean shutdown");
    let response = in_flight.await.unwrap().expect("the in-flight request got its answer");
    assert_eq!(response.status(), 503);
    let body = error_body(response).await;
    assert_eq!(body["error"]["details"][0]["field"], "postgres");
    assert!(started.elapsed() < Duration::from_secs(5), "within the grace period");
    drop(silent);
}
