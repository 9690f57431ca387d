//! `/readyz` names the dependency that is down, and recovers by itself when it returns.

use std::time::{Duration, Instant};

use crate::harness::{PrivateRedis, TestApp, error_body, free_port};

async fn wait_for_status(app: &TestApp, status: u16, within: Duration) -> reqwest::Response {
    let deadline = Instant::now() + within;
    loop {
        let response = app.get("/readyz").await;
        if response.status() == status || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_reported_and_recovered_from() {
    let mut redis = PrivateRedis::start(free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::spawn_with(|c| {
        c.redis.url = url;
        c.redis.command_timeout = Duration::from_millis(500);
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    redis.stop();
    let response = wait_for_status(&app, 503, Duration::from_secs(10)).await;
    assert_eq!(response.status(), 503);
    let body = error_body(response).await;
    assert_eq!(body["error"]["code"], "unavailable");
    let details = body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{body}");
    assert_eq!(details[0]["field"], "redis");
    // named, without the driver's error (addresses, ports) in the answer
    assert_eq!(details[0]["message"], "unreachable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("redis"));
    // liveness is unaffected
    assert_eq!(app.get("/healthz").await.status(), 200);

    let _redis = PrivateRedis::start(redis.port);
    let response = wait_for_status(&app, 200, Duration::from_secs(30)).await;
    assert_eq!(response.status(), 200, "did not recover after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_reported() {
    let closed = free_port();
    let app = TestApp::spawn_with(|c| {
        c.database.url = format!("postgres://postgres@127.0.0.1:{closed}/relayit");
        c.database.connect_timeout = Duration::from_millis(500);
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body = error_body(response).await;
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["postgres"], "{body}");
    assert_eq!(body["error"]["details"][0]["message"], "unreachable", "{body}");
    assert!(!body.to_string().contains(&closed.to_string()), "{body}");
}
