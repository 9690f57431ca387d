//! The HTTP surface of the foundation: operations routes, OpenAPI, and the error body of
//! requests that match nothing.

use std::time::{Duration, Instant};

use crate::harness::{TestApp, error_body, validation_fields};

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

/// The operations of `/openapi.json` with their path and method, filled-in path and body.
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            found.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    found
}

/// What the document says about who may call each operation holds for every route: one that
/// lists security answers 401 to a request without credentials, one that lists none does not
/// ask for them; and whatever a route answers is among the statuses the document lists for it,
/// every error with the error body. (scripts/api-fuzz checks far more against a started
/// server; this keeps the hand-written parts honest on every `cargo test`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_says_which_routes_need_credentials_and_what_they_answer() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let error_body = "#/components/schemas/ErrorBody";
    for (path, method, operation) in operations(&doc) {
        let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
        let concrete = path.split('/').map(|s| if s.starts_with('{') { "x" } else { s });
        let url = concrete.collect::<Vec<_>>().join("/");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = app.client.request(method.clone(), app.url(&url));
        if operation["requestBody"].is_object() {
            request = request.json(&serde_json::json!({}));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let documented = &operation["responses"][status.to_string()];
        assert!(documented.is_object(), "{method} {path}: {status} is not documented");
        if secured {
            assert_eq!(status, 401, "{method} {path} lists security but answered {status}");
        } else if status == 401 {
            // a route without credentials may still refuse a request it cannot verify (a
            // missing signature), and says so itself
            assert!(
                documented["$ref"].is_null(),
                "{method} {path} lists no security but asked for credentials"
            );
        }
        for (code, response) in operation["responses"].as_object().unwrap() {
            if !code.starts_with('4') && !code.starts_with('5') {
                continue;
            }
            let response = match response["$ref"].as_str() {
                Some(name) => &doc["components"]["responses"][name.rsplit('/').next().unwrap()],
                None => response,
            };
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, error_body, "{method} {path}: {code} without the error body");
        }
    }
}

/// PostgreSQL stores no U+0000: a path, query or body that carries one is refused, naming
/// where, before it reaches the database (which answered 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_holding_nul_is_refused_naming_where() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let cases = [
        (reqwest::Method::GET, "/v1/projects/a%00b", None, "path"),
        (reqwest::Method::GET, "/v1/projects/default/messages?search=a%00", None, "query"),
        (
            reqwest::Method::POST,
            "/v1/projects",
            Some(serde_json::json!({"name": "a\u{0}b"})),
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/projects",
            Some(serde_json::json!({"name": "P", "metadata": {"tags": ["ok", "\u{0}"]}})),
            "metadata.tags.1",
        ),
        (
            reqwest::Method::POST,
            "/v1/projects",
            Some(serde_json::json!({"name": "P", "metadata": {"a\u{0}": 1}})),
            "metadata.a\u{0}",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = app.call(method, path, Some(&owner.token), body).await;
        assert_eq!(validation_fields(status, &answer), [field], "{path}: {answer}");
    }
    // a backslash and the text `u0000` is no NUL
    let (status, answer) =
        app.post_as(&owner.token, "/v1/projects", serde_json::json!({"name": "\\u0000"})).await;
    assert_eq!(status, 201, "{answer}");
}

/// Without `providers.allow_endpoint_overrides` the server refuses the provider configs'
/// endpoint fields, and its document does not list them; with it, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_fields_are_documented_where_the_server_takes_them() {
    for allowed in [false, true] {
        let app = TestApp::spawn_with(|c| c.providers.allow_endpoint_overrides = allowed).await;
        let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
        let schemas = &doc["components"]["schemas"];
        for (config, field) in [
            ("SesConfig", "endpointUrl"),
            ("SnsConfig", "endpointUrl"),
            ("WhatsappConfig", "baseUrl"),
            ("DiscordConfig", "baseUrl"),
        ] {
            assert!(schemas[config]["properties"]["region"].is_object() || config != "SesConfig");
            let listed = schemas[config]["properties"][field].is_object();
            assert_eq!(listed, allowed, "{config}.{field} with overrides allowed: {allowed}");
        }
    }
}
