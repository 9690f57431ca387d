//! Outbound webhooks end to end: real messages through the sandbox provider, the webhook role
//! delivering to receivers on 127.0.0.1 (so these tests allow private targets, except the one
//! proving they are refused otherwise). Signatures are checked with the `standardwebhooks`
//! crate, a verifier we did not write.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::sandbox_provider;
use crate::harness::{Account, PrivateRedis, TestApp};
use fred::prelude::{SortedSetsInterface, StreamsInterface};
use relayit::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(30);

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    /// A status with extra header lines (`Name: value`).
    WithHeaders(u16, Vec<String>),
    /// Never answers (the connection stays open until the client gives up, which the
    /// receiver sees).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1: answers requests with the scripted replies in
/// order (200 once they run out), keeps every request, and counts the connections open at once.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

/// One open connection, counted until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            open: Arc::default(),
            most_open: Arc::default(),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The most connections that were open at once.
    fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }

    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(start.elapsed() < WAIT, "{} of {n} requests arrived", hits.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn serve(self, mut stream: TcpStream) {
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_open.fetch_max(open, Ordering::SeqCst);
        let _open = Open(self.open.clone());
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut headers = http::HeaderMap::new();
        for line in head.lines().skip(1).filter(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                headers.append(
                    http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                    value.trim().parse().unwrap(),
                );
            }
        }
        let length: usize =
            headers.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        self.hits.lock().unwrap().push(Hit { at: Instant::now(), headers, body });
        let reply = self.script.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
        let (status, extra) = match reply {
            Reply::Status(status) => (status, vec![]),
            Reply::WithHeaders(status, extra) => (status, extra),
            Reply::Hang => {
                // until the client gives up and closes the connection
                while let Ok(1..) = stream.read(&mut chunk).await {}
                return;
            }
        };
        let mut response =
            format!("HTTP/1.1 {status} Whatever\r\nconnection: close\r\ncontent-length: 2\r\n");
        for line in extra {
            response.push_str(&line);
            response.push_str("\r\n");
        }
        response.push_str("\r\nok");
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Webhooks to local receivers, on a scaled-down schedule.
fn local(schedule: &'static [&'static str]) -> impl FnOnce(&mut Config) {
    move |config| {
        config.webhooks.allow_private_targets = true;
        config.webhooks.retry_schedule =
            schedule.iter().map(|d| humantime::parse_duration(d).unwrap()).collect();
    }
}

/// An owner with a sandbox email credential and a send key.
async fn sender(app: &TestApp) -> (Account, String) {
    let owner = app.sign_up("Owner").await;
    let (status, provider) =
        app.post_as(&owner.token, "/v1/providers", sandbox_provider("Sandbox", "email")).await;
    assert_eq!(status, 201, "{provider}");
    let key = app.create_api_key(&owner, &["send", "read"], Some(&owner.project_id)).await;
    (owner, key)
}

async fn endpoint(app: &TestApp, owner: &Account, body: Value) -> Value {
    let (status, created) = app
        .post_as(&owner.token, &format!("/v1/projects/{}/webhooks", owner.project_id), body)
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn send(app: &TestApp, key: &str) -> String {
    let (status, accepted) = app
        .post_as(
            key,
            "/v1/send",
            json!({"channel": "email", "to": "alice@example.com",
                   "content": {"subject": "Hello", "text": "Hi"}, "metadata": {"order": 42}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    accepted["id"].as_str().unwrap().to_owned()
}

fn verify(secret: &str, hit: &Hit) -> Result<(), standardwebhooks::WebhookError> {
    standardwebhooks::Webhook::new(secret).expect("a secret").verify(&hit.body, &hit.headers)
}

/// A well-formed secret that signs nothing of ours.
fn unrelated_secret() -> String {
    use base64::Engine;
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
}

fn webhook_path(owner: &Account, id: &str, rest: &str) -> String {
    format!("/v1/projects/{}/webhooks/{id}{rest}", owner.project_id)
}

/// The endpoint's delivery log, oldest first.
async fn deliveries(app: &TestApp, owner: &Account, id: &str) -> Vec<Value> {
    let (status, page) = app.get_as(&owner.token, &webhook_path(owner, id, "/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    let mut rows = page["data"].as_array().unwrap().clone();
    rows.reverse();
    rows
}

async fn wait_deliveries(app: &TestApp, owner: &Account, id: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let rows = deliveries(app, owner, id).await;
        if rows.len() >= n {
            return rows;
        }
        assert!(start.elapsed() < WAIT, "{} of {n} attempts logged: {rows:?}", rows.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Jobs waiting in the Postgres outbox.
async fn outbox(app: &TestApp) -> i64 {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM webhook_jobs")
        .get_result(&mut conn)
        .await
        .unwrap();
    n.n
}

async fn dead_letters(app: &TestApp) -> usize {
    let redis = &app.running().state().redis;
    redis.pool().next().xlen::<usize, _>(redis.keys().webhooks_dead()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_events_arrive_signed_with_the_payload_of_the_contract() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint(
        &app,
        &owner,
        json!({"url": receiver.url(), "eventTypes": ["message.queued", "message.sent"]}),
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();
    let id = send(&app, &key).await;

    let hits = receiver.wait_for(2).await;
    // received and processing are not subscribed: only queued and sent arrive
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_after = receiver.hits();
    assert_eq!(hits_after.len(), 2, "only the subscribed events");
    let mut types: Vec<String> =
        hits.iter().map(|h| h.json()["type"].as_str().unwrap().to_owned()).collect();
    types.sort();
    assert_eq!(types, ["message.queued", "message.sent"]);
    for hit in &hits {
        verify(secret, hit).expect("the signature verifies");
        assert!(verify(&unrelated_secret(), hit).is_err());
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("user-agent"), format!("RelayIt/{}", env!("CARGO_PKG_VERSION")));
        assert!(hit.header("webhook-id").starts_with("evt_"));
        let body = hit.json();
        let data = &body["data"];
        assert_eq!(data["id"], id.as_str());
        assert_eq!(data["projectId"], owner.project_id.as_str());
        assert_eq!(data["channel"], "email");
        assert_eq!(data["to"], "alice@example.com");
        assert_eq!(data["metadata"], json!({"order": 42}));
        assert_eq!(format!("message.{}", data["status"].as_str().unwrap()), body["type"]);
        assert_eq!(data["occurredAt"], body["timestamp"]);
        for field in ["statusReason", "attempts", "providerMessageId"] {
            assert!(data.get(field).is_some(), "{field} missing: {body}");
        }
    }
    let sent = hits.iter().find(|h| h.json()["type"] == "message.sent").unwrap().json();
    assert!(sent["data"]["providerMessageId"].is_string(), "{sent}");
    assert_eq!(sent["data"]["attempts"], 1);

    // the delivery log: one successful attempt per event, with the event ids as webhook-ids
    let rows = wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), 2).await;
    for row in &rows {
        assert_eq!(row["succeeded"], true, "{row}");
        assert_eq!(row["attempt"], 1);
        assert_eq!(row["statusCode"], 200);
        assert_eq!(row["messageId"], id.as_str());
        assert_eq!(row["responseBody"], "ok");
        assert!(hits.iter().any(|h| h.header("webhook-id") == row["eventId"]), "{row}");
    }

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == r#"relayit_webhook_attempts_total{outcome="success"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"relayit_webhook_request_duration_seconds_count{outcome="success"} 2"#)
    );
    assert!(metrics.contains(r#"relayit_queue_length{queue="webhooks_dead"} 0"#));
    assert!(metrics.contains(r#"relayit_queue_delayed{queue="webhooks"} 0"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_on_schedule_with_the_same_webhook_id() {
    let schedule = &["0s", "400ms", "800ms", "400ms"];
    let app = TestApp::spawn_with(local(schedule)).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::WithHeaders(429, vec!["Retry-After: 0".into()]),
    ])
    .await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    send(&app, &key).await;

    let hits = receiver.wait_for(4).await;
    let id = hits[0].header("webhook-id");
    for hit in &hits {
        assert_eq!(hit.header("webhook-id"), id, "the same webhook-id on every attempt");
        verify(hook["secret"].as_str().unwrap(), hit).expect("each attempt is signed afresh");
    }
    // each gap is the schedule's delay, +-20%, plus the mover's polling and the request's time
    for (i, delay_ms) in [400u64, 800, 400].iter().enumerate() {
        let gap = hits[i + 1].at - hits[i].at;
        let low = Duration::from_millis(delay_ms * 8 / 10);
        let high = Duration::from_millis(delay_ms * 12 / 10 + 400);
        assert!(gap >= low && gap <= high, "gap {i}: {gap:?} not in [{low:?}, {high:?}]");
    }
    let rows = wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), 4).await;
    let attempts: Vec<i64> = rows.iter().map(|r| r["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let codes: Vec<i64> = rows.iter().map(|r| r["statusCode"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 503, 429, 200]);
    assert_eq!(rows[3]["succeeded"], true);
    assert!(rows[..3].iter().all(|r| r["succeeded"] == false && r["error"].is_string()));
    // a success ends the failure streak
    let (_, endpoint) =
        app.get_as(&owner.token, &webhook_path(&owner, hook["id"].as_str().unwrap(), "")).await;
    assert_eq!(endpoint["isActive"], true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.hits().len(), 4, "nothing after the success");
    assert_eq!(dead_letters(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_go_to_the_dead_letter_stream() {
    let app = TestApp::spawn_with(local(&["0s", "100ms"])).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(500)]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    send(&app, &key).await;
    wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), 2).await;
    let start = Instant::now();
    while dead_letters(&app).await < 1 {
        assert!(start.elapsed() < WAIT, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.hits().len(), 2, "two attempts in all");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"relayit_queue_length{queue="webhooks_dead"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"relayit_webhook_attempts_total{outcome="failure"} 2"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_at_once() {
    let app = TestApp::spawn_with(local(&["0s", "100ms", "100ms"])).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![Reply::Status(410)]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    let hook_id = hook["id"].as_str().unwrap();
    send(&app, &key).await;
    let rows = wait_deliveries(&app, &owner, hook_id, 1).await;
    assert_eq!(rows[0]["statusCode"], 410);
    let (_, endpoint) = app.get_as(&owner.token, &webhook_path(&owner, hook_id, "")).await;
    assert_eq!(endpoint["isActive"], false, "{endpoint}");
    assert!(endpoint["disabledReason"].as_str().unwrap().contains("410"), "{endpoint}");
    assert!(endpoint["disabledAt"].is_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), 1, "no retry to a gone endpoint");
    assert_eq!(dead_letters(&app).await, 1);

    // a disabled endpoint takes no retries or replays until re-enabled
    let delivery = rows[0]["id"].as_str().unwrap();
    let (status, body) = app
        .post_as(
            &owner.token,
            &webhook_path(&owner, hook_id, &format!("/deliveries/{delivery}/retry")),
            json!(null),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let app = TestApp::spawn_with(|c| {
        local(&["0s", "100ms", "100ms", "100ms", "100ms"])(c);
        c.webhooks.disable_after = Duration::from_millis(250);
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![Reply::Status(500); 5]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    let hook_id = hook["id"].as_str().unwrap();
    send(&app, &key).await;
    let start = Instant::now();
    let endpoint = loop {
        let (_, endpoint) = app.get_as(&owner.token, &webhook_path(&owner, hook_id, "")).await;
        if endpoint["isActive"] == false {
            break endpoint;
        }
        assert!(start.elapsed() < WAIT, "never disabled: {endpoint}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(endpoint["disabledReason"].as_str().unwrap().contains("failed since"), "{endpoint}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let attempts = receiver.hits().len();
    assert!((2..5).contains(&attempts), "{attempts} attempts: stopped when disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    let elsewhere = Receiver::start(vec![]).await;
    let receiver = Receiver::start(vec![Reply::WithHeaders(
        302,
        vec![format!("Location: {}", elsewhere.url())],
    )])
    .await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    send(&app, &key).await;
    let rows = wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), 1).await;
    assert_eq!(rows[0]["statusCode"], 302);
    assert_eq!(rows[0]["succeeded"], false);
    assert!(rows[0]["error"].as_str().unwrap().contains("redirect"), "{}", rows[0]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(elsewhere.hits().is_empty(), "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_target_is_refused_when_not_allowed() {
    let app = TestApp::spawn_with(|c| {
        local(&["0s"])(c);
        c.webhooks.allow_private_targets = false;
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    // refused when saved...
    let (status, body) = app
        .post_as(
            &owner.token,
            &format!("/v1/projects/{}/webhooks", owner.project_id),
            json!({"url": receiver.url(), "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "url");
    // ...and when the worker connects, for a URL that turned private after it was saved (as
    // DNS can): an IP literal, and a name that always means this machine
    let hook = endpoint(
        &app,
        &owner,
        json!({"url": "https://hooks.example.com/relayit", "eventTypes": ["message.sent"]}),
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap();
    let other = endpoint(
        &app,
        &owner,
        json!({"url": "https://hooks.example.com/other", "eventTypes": ["message.sent"]}),
    )
    .await;
    let other_id = other["id"].as_str().unwrap();
    app.sql(&format!(
        "UPDATE webhook_endpoints SET url = '{}' WHERE id = '{hook_id}'",
        receiver.url()
    ))
    .await;
    app.sql(&format!(
        "UPDATE webhook_endpoints SET url = 'http://localhost:{}/hook' WHERE id = '{other_id}'",
        receiver.addr.port()
    ))
    .await;
    send(&app, &key).await;
    for id in [hook_id, other_id] {
        let rows = wait_deliveries(&app, &owner, id, 1).await;
        assert_eq!(rows[0]["succeeded"], false);
        assert!(rows[0]["statusCode"].is_null());
        assert!(rows[0]["error"].as_str().unwrap().contains("refused"), "{}", rows[0]);
    }
    assert!(receiver.hits().is_empty(), "a private target was called");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"relayit_webhook_attempts_total{outcome="refused"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_endpoints_get_nothing() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    let active = Receiver::start(vec![]).await;
    let inactive = Receiver::start(vec![]).await;
    let disabled_later = Receiver::start(vec![]).await;
    endpoint(&app, &owner, json!({"url": active.url(), "eventTypes": ["message.sent"]})).await;
    endpoint(
        &app,
        &owner,
        json!({"url": inactive.url(), "eventTypes": ["message.sent"], "isActive": false}),
    )
    .await;
    let later = endpoint(
        &app,
        &owner,
        json!({"url": disabled_later.url(), "eventTypes": ["message.sent"]}),
    )
    .await;
    let (status, _) = app
        .patch_as(
            &owner.token,
            &webhook_path(&owner, later["id"].as_str().unwrap(), ""),
            json!({"isActive": false}),
        )
        .await;
    assert_eq!(status, 200);
    send(&app, &key).await;
    active.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(inactive.hits().is_empty());
    assert!(disabled_later.hits().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_secrets_verify() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    let old = hook["secret"].as_str().unwrap().to_owned();
    let (status, rotated) = app
        .post_as(
            &owner.token,
            &webhook_path(&owner, hook["id"].as_str().unwrap(), "/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    send(&app, &key).await;
    let hit = receiver.wait_for(1).await.remove(0);
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 2, "two signatures");
    verify(&old, &hit).expect("the old secret verifies during the window");
    verify(&new, &hit).expect("the new secret verifies");
    assert!(verify(&unrelated_secret(), &hit).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_worker_cut_off_at_shutdown_has_its_job_taken_over_at_once() {
    let mut app = TestApp::spawn_with(|c| {
        local(&["0s"])(c);
        c.webhooks.timeout = Duration::from_secs(2);
        // far beyond the test: the job moves because its worker withdrew its liveness key
        c.webhooks.visibility_timeout = Duration::from_secs(600);
        c.webhooks.requeue_after = Duration::from_secs(1200);
        // attempts in flight at shutdown are cut off, as by a crash
        c.server.shutdown_grace = Duration::ZERO;
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![Reply::Hang]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    send(&app, &key).await;
    receiver.wait_for(1).await;
    app.shutdown().await.expect("shutdown");

    // a replacement process takes the pending job over, without waiting for the timeout
    app.restart_with(|_| {}).await;
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
    verify(hook["secret"].as_str().unwrap(), &hits[1]).unwrap();
    let rows = wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), 1).await;
    assert_eq!(rows.len(), 1, "the cut-off attempt left no outcome: {rows:?}");
    assert_eq!(rows[0]["succeeded"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_retry_deliver_again_and_validate_their_input() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    let hook_id = hook["id"].as_str().unwrap();
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    send(&app, &key).await;
    let first = receiver.wait_for(1).await.remove(0);
    let rows = wait_deliveries(&app, &owner, hook_id, 1).await;

    // retry one attempt
    let (status, body) = app
        .post_as(
            &owner.token,
            &webhook_path(
                &owner,
                hook_id,
                &format!("/deliveries/{}/retry", rows[0]["id"].as_str().unwrap()),
            ),
            json!(null),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 1);
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits[1].header("webhook-id"), first.header("webhook-id"));

    // replay a time range: the sent event again; other types only when asked for
    let replay = webhook_path(&owner, hook_id, "/replay");
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (status, body) =
        app.post_as(&owner.token, &replay, json!({"since": before, "until": until})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 1);
    let (status, body) = app
        .post_as(
            &owner.token,
            &replay,
            json!({"since": before, "until": until, "eventTypes": ["message.queued", "message.sent"]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 2);
    let hits = receiver.wait_for(5).await;
    let queued = hits.iter().filter(|h| h.json()["type"] == "message.queued").count();
    assert_eq!(queued, 1);
    // a range with nothing in it
    let (status, body) = app
        .post_as(
            &owner.token,
            &replay,
            json!({"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, body["queued"].as_i64()), (202, Some(0)));
    // and a range that ends where it starts, or before: nothing to replay, not an error
    for (since, until) in [(until, until), (until, before)] {
        let range = json!({"since": since, "until": until});
        let (status, body) = app.post_as(&owner.token, &replay, range).await;
        assert_eq!((status, body["queued"].as_i64()), (202, Some(0)), "{body}");
    }
    let rows = wait_deliveries(&app, &owner, hook_id, 5).await;
    let mut attempts: Vec<i64> = rows
        .iter()
        .filter(|r| r["eventType"] == "message.sent")
        .map(|r| r["attempt"].as_i64().unwrap())
        .collect();
    // the two replays' attempts may run side by side
    attempts.sort();
    assert_eq!(attempts, [1, 2, 3, 4], "attempts number on across retries and replays");

    // validation names the fields
    for (body, field) in [
        (json!({"since": "yesterday", "until": until}), "since"),
        (json!({"since": before, "until": until, "eventTypes": ["message.nope"]}), "eventTypes.0"),
        (json!({"until": until}), "since"),
        (json!({"since": before, "until": until, "extra": 1}), "extra"),
    ] {
        let (status, answer) = app.post_as(&owner.token, &replay, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["details"][0]["field"], field, "{body}: {answer}");
    }
    let (status, _) = app
        .post_as(
            &owner.token,
            &webhook_path(&owner, hook_id, "/deliveries/whd_nope/retry"),
            json!(null),
        )
        .await;
    assert_eq!(status, 404);

    // the log pages with cursors
    let (status, page) =
        app.get_as(&owner.token, &webhook_path(&owner, hook_id, "/deliveries?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let (_, next) = app
        .get_as(
            &owner.token,
            &webhook_path(&owner, hook_id, &format!("/deliveries?limit=2&cursor={cursor}")),
        )
        .await;
    assert_eq!(next["data"].as_array().unwrap().len(), 2);
    assert_ne!(next["data"][0]["id"], page["data"][0]["id"]);

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, method) in [
        ("/v1/projects/{projectId}/webhooks/{webhookId}/deliveries", "get"),
        ("/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry", "post"),
        ("/v1/projects/{projectId}/webhooks/{webhookId}/replay", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
    }
    assert!(doc["components"]["schemas"]["DeliveryView"]["properties"]["eventId"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_in_postgres_while_redis_is_away() {
    let mut redis = PrivateRedis::start(crate::harness::free_port());
    let port = redis.port;
    let app = TestApp::spawn_with(|c| {
        local(&["0s"])(c);
        c.redis.url = format!("redis://127.0.0.1:{port}");
        c.redis.command_timeout = Duration::from_millis(500);
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.queued"]})).await;

    redis.stop();
    // ingestion needs Postgres only; the status change's job is written with it
    let id = send(&app, &key).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(outbox(&app).await, 1, "the job stays in the outbox while the stream is away");
    assert!(receiver.hits().is_empty());

    // a Redis that comes back empty: the job is pushed again, the consumer group recreated
    let _redis = PrivateRedis::start(port);
    let hits = receiver.wait_for(1).await;
    let body = hits[0].json();
    assert_eq!(body["type"], "message.queued");
    assert_eq!(body["data"]["id"], id.as_str());
    wait_outbox_empty(&app).await;
}

/// Waits until every job is settled (its attempt recorded after the receiver answered).
async fn wait_outbox_empty(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox(app).await != 0 {
        assert!(std::time::Instant::now() < deadline, "a settled job stayed in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_webhook_processes_share_the_work_without_duplicates() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let peer =
        app.spawn_peer(relayit::server::Roles { api: false, worker: false, webhook: true }).await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]})).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(send(&app, &key).await);
    }
    let hits = receiver.wait_for(30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_after = receiver.hits();
    assert_eq!(hits_after.len(), 30, "one request per event");
    let mut delivered: Vec<String> =
        hits.iter().map(|h| h.json()["data"]["id"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    peer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_redis_lost_is_pushed_again_from_the_outbox() {
    let mut redis = PrivateRedis::start(crate::harness::free_port());
    let port = redis.port;
    let app = TestApp::spawn_with(|c| {
        // the first attempt waits in the delayed set, where the restart below loses it
        local(&["3s"])(c);
        c.redis.url = format!("redis://127.0.0.1:{port}");
        c.redis.command_timeout = Duration::from_millis(500);
        c.webhooks.timeout = Duration::from_millis(500);
        c.webhooks.visibility_timeout = Duration::from_secs(1);
        c.webhooks.requeue_after = Duration::from_millis(1500);
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.queued"]})).await;
    let id = send(&app, &key).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let delayed: i64 = app
            .running()
            .state()
            .redis
            .pool()
            .next()
            .zcard(app.running().state().redis.keys().webhooks_delayed())
            .await
            .unwrap_or(0);
        if delayed == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job never reached the delayed set");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outbox(&app).await, 1, "pushed, but kept until settled");

    // Redis restarts without its data: the delayed job is gone from it
    redis.stop();
    let _redis = PrivateRedis::start(port);
    let hits = receiver.wait_for(1).await;
    assert_eq!(hits[0].json()["data"]["id"], id.as_str());
    wait_outbox_empty(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_holds_no_more_than_its_bound_and_the_others_keep_flowing() {
    let app = TestApp::spawn_with(|c| {
        local(&["0s", "1m"])(c);
        c.webhooks.concurrency = 8;
        c.webhooks.max_in_flight_per_endpoint = 3;
        c.webhooks.timeout = Duration::from_secs(8);
        // the bound alone, without the backoff's help
        c.webhooks.backoff_after_failures = 0;
    })
    .await;
    let (owner, key) = sender(&app).await;
    let dead = Receiver::start(vec![Reply::Hang; 100]).await;
    let healthy = Receiver::start(vec![Reply::Status(204); 100]).await;
    for receiver in [&dead, &healthy] {
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    }
    let start = Instant::now();
    for _ in 0..40 {
        send(&app, &key).await;
    }
    // behind the dead endpoint's requests, 40 of them 8 at a time taking 8 s each, the last
    // healthy event would wait some 40 s
    let bound = Duration::from_secs(15);
    loop {
        let got = healthy.hits().len();
        if got >= 40 {
            break;
        }
        assert!(start.elapsed() < bound, "{got} of 40 events reached the healthy endpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the dead one's requests pile up to the bound and no further
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!dead.hits().is_empty());
    assert!(dead.most_open() <= 3, "{} requests in flight to one endpoint", dead.most_open());
    assert_eq!(dead.most_open(), 3, "the dead endpoint used its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_rate_limit_spreads_its_requests() {
    let app = TestApp::spawn_with(local(&["0s"])).await;
    let (owner, key) = sender(&app).await;
    // the messages are sent first, and replayed to the limited endpoint all at once
    let witness = Receiver::start(vec![]).await;
    endpoint(&app, &owner, json!({"url": witness.url(), "eventTypes": ["message.sent"]})).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    for _ in 0..20 {
        send(&app, &key).await;
    }
    witness.wait_for(20).await;
    let limited = Receiver::start(vec![]).await;
    let hook = endpoint(
        &app,
        &owner,
        json!({"url": limited.url(), "eventTypes": ["message.sent"], "rateLimit": 5}),
    )
    .await;
    assert_eq!(hook["rateLimit"], 5, "{hook}");
    let hook_id = hook["id"].as_str().unwrap();
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (status, body) = app
        .post_as(
            &owner.token,
            &webhook_path(&owner, hook_id, "/replay"),
            json!({"since": since, "until": until}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 20);
    let hits = limited.wait_for(20).await;
    // five at once (a second's worth), then one every 200 ms: about 3 s
    let spread = hits[19].at - hits[0].at;
    assert!(spread >= Duration::from_millis(2500), "20 requests within {spread:?}");
    assert!(spread <= Duration::from_secs(10), "20 requests over {spread:?}");
    // waiting its turn spent no attempt
    let rows = wait_deliveries(&app, &owner, hook_id, 20).await;
    assert!(rows.iter().all(|r| r["attempt"] == 1 && r["succeeded"] == true), "{rows:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(limited.hits().len(), 20);

    // the field is checked, changed and removed like the others
    let path = webhook_path(&owner, hook_id, "");
    for bad in [json!(0), json!(10_001), json!(-3), json!("5"), json!(1.5)] {
        let (status, body) = app.patch_as(&owner.token, &path, json!({"rateLimit": bad})).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains("rateLimit"), "{bad}: {body}");
    }
    let (status, body) = app.patch_as(&owner.token, &path, json!({"rateLimit": 50})).await;
    assert_eq!((status, &body["rateLimit"]), (200, &json!(50)), "{body}");
    let (status, body) = app.patch_as(&owner.token, &path, json!({"rateLimit": null})).await;
    assert_eq!((status, &body["rateLimit"]), (200, &json!(null)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_backed_off_and_tried_again_after() {
    let app = TestApp::spawn_with(|c| {
        local(&["0s"])(c);
        // then a retry every 100 ms, forty times
        c.webhooks.retry_schedule.extend([Duration::from_millis(100); 40]);
        c.webhooks.backoff_after_failures = 3;
        c.webhooks.backoff_initial = Duration::from_secs(3);
        c.webhooks.backoff_max = Duration::from_secs(30);
    })
    .await;
    let (owner, key) = sender(&app).await;
    let receiver = Receiver::start(vec![Reply::Status(503); 1000]).await;
    let hook =
        endpoint(&app, &owner, json!({"url": receiver.url(), "eventTypes": ["message.sent"]}))
            .await;
    for _ in 0..3 {
        send(&app, &key).await;
    }
    let first = receiver.wait_for(1).await[0].at;
    tokio::time::sleep_until((first + Duration::from_millis(5500)).into()).await;
    let offsets: Vec<Duration> = receiver.hits().iter().map(|h| h.at - first).collect();
    let within = |from: u64, to: u64| {
        let range = Duration::from_millis(from)..Duration::from_millis(to);
        offsets.iter().filter(|at| range.contains(*at)).count()
    };
    // retried every 100 ms, three jobs would make some 50 requests in the window; backed off
    // after three failures, none, and the jobs are tried again once the backoff ends
    assert!(within(0, 1000) >= 3, "{offsets:?}");
    assert_eq!(within(1000, 2800), 0, "{offsets:?}");
    assert!(within(2800, 5500) >= 1, "{offsets:?}");
    // the first failure after it backs off for twice as long
    assert!(within(2800, 5500) <= 6, "{offsets:?}");
    // every attempt made is in the log, numbered in order: none was spent on the backoff
    let made = receiver.hits().len();
    let rows = wait_deliveries(&app, &owner, hook["id"].as_str().unwrap(), made).await;
    let mut per_event: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for row in &rows {
        per_event
            .entry(row["eventId"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(row["attempt"].as_i64().unwrap());
    }
    for attempts in per_event.values() {
        let expected: Vec<i64> = (1..=attempts.len() as i64).collect();
        assert_eq!(attempts, &expected, "{rows:?}");
    }
}
