//! The WhatsApp Cloud API connector against a Graph stub: the exact requests Meta documents
//! (method, path, bearer token, JSON bodies), end to end from `/v1/send` to `sent`; every
//! documented error answer mapped to its kind; `/verify`; and delivery receipts (the
//! verify-token handshake, signed status callbacks, refused forgeries, idempotent repeats).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::stub::{Recorded, Reply, Stub};
use crate::harness::{Account, TestApp, message_for, opened_credential};
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use relayit::db::receipts::{self, HeldRound};
use relayit::domain::provider_types::ProviderType;
use relayit::providers::connector::{Connector, ProviderError};
use relayit::providers::whatsapp::{DEFAULT_API_VERSION, Whatsapp};
use reqwest::Method;
use ring::hmac;
use serde_json::{Value, json};

const TOKEN: &str = "EAAGm0PX4ZCpsBAtest0token";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const PHONE_NUMBER_ID: &str = "106540352242922";

/// A Graph stub: message sends answer a fresh `wamid`, phone number lookups the number.
async fn graph() -> Stub {
    let counter = AtomicU64::new(0);
    Stub::start(move |request: &Recorded| {
        if request.method == "POST" && request.path.ends_with("/messages") {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let to = request.json()["to"].clone();
            Reply::json(
                200,
                json!({"messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": format!("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI{n}")}]}),
            )
        } else {
            Reply::json(
                200,
                json!({"verified_name": "Acme Support", "display_phone_number": "+1 555-010-0199",
                    "id": PHONE_NUMBER_ID, "quality_rating": "GREEN"}),
            )
        }
    })
    .await
}

async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.providers.allow_endpoint_overrides = true;
        c.delivery.retry_base_delay = Duration::from_millis(100);
    })
    .await
}

/// Creates a WhatsApp credential aimed at `stub`; returns its id.
async fn credential(app: &TestApp, owner: &Account, stub: &Stub, extra: Value) -> String {
    let mut credentials = json!({"accessToken": TOKEN, "appSecret": APP_SECRET});
    for (k, v) in extra.as_object().unwrap() {
        credentials[k] = v.clone();
    }
    app.create_provider(
        &owner.token,
        json!({"name": "WhatsApp", "channel": "whatsapp", "providerType": "whatsapp_cloud",
            "credentials": credentials,
            "config": {"phoneNumberId": PHONE_NUMBER_ID, "baseUrl": stub.url()}}),
    )
    .await
}

async fn send(app: &TestApp, key: &str, content: Value) -> String {
    let body = json!({"channel": "whatsapp", "to": "+16505551234", "content": content});
    app.send_message(key, body).await
}

fn messages_path() -> String {
    format!("/{DEFAULT_API_VERSION}/{PHONE_NUMBER_ID}/messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_template_messages_reach_graph_as_documented() {
    let stub = graph().await;
    let app = app().await;
    let (owner, key) = app.sender("Wanda").await;
    credential(&app, &owner, &stub, json!({})).await;

    let text = send(&app, &key, json!({"text": "Your code is 123456"})).await;
    let sent = app.wait_for_status(&key, &text, "sent").await;
    assert_eq!(sent["providerMessageId"], "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0");
    assert_eq!(sent["provider"]["type"], "whatsapp_cloud");

    let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]);
    let template = send(
        &app,
        &key,
        json!({"template": {"name": "order_shipped", "language": "en_US", "components": components}}),
    )
    .await;
    let sent = app.wait_for_status(&key, &template, "sent").await;
    assert_eq!(sent["providerMessageId"], "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1");

    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "one call per message: {requests:?}");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, messages_path());
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        requests[0].json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "16505551234", "type": "text",
            "text": {"preview_url": false, "body": "Your code is 123456"}})
    );
    assert_eq!(
        requests[1].json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "16505551234", "type": "template",
            "template": {"name": "order_shipped", "language": {"code": "en_US"},
                "components": components}})
    );
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_errors_map_to_their_kinds() {
    let stub = graph().await;
    let connector = Whatsapp::new(true).unwrap();
    let credential = opened_credential(
        ProviderType::WhatsappCloud,
        json!({"accessToken": TOKEN}),
        json!({"phoneNumberId": PHONE_NUMBER_ID, "apiVersion": "v21.0", "baseUrl": stub.url()}),
    );
    let message = message_for("whatsapp", "+16505551234", json!({"text": "hi"}));
    let graph_error = |code: i64, message: &str, details: &str| {
        json!({"error": {"message": message, "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEfGhIjK"}})
    };
    let cases = [
        (
            400,
            graph_error(
                130429,
                "(#130429) Rate limit hit",
                "Cloud API message throughput has been reached.",
            ),
            "throttled",
        ),
        (
            400,
            graph_error(
                131056,
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                "Too many messages sent to this number.",
            ),
            "throttled",
        ),
        (
            400,
            graph_error(4, "(#4) Application request limit reached", "Too many API calls."),
            "throttled",
        ),
        (
            400,
            graph_error(80007, "(#80007) Rate limit issues", "WABA rate limit reached."),
            "throttled",
        ),
        (
            400,
            graph_error(131026, "Message undeliverable", "Unable to deliver the message."),
            "permanent",
        ),
        (
            400,
            graph_error(
                131047,
                "Re-engagement message",
                "More than 24 hours have passed since the recipient last replied.",
            ),
            "permanent",
        ),
        (
            400,
            graph_error(
                131051,
                "Unsupported message type",
                "Message type is not currently supported.",
            ),
            "permanent",
        ),
        (400, graph_error(100, "Invalid parameter", "Parameter value is not valid."), "permanent"),
        (
            401,
            graph_error(
                190,
                "Error validating access token: Session has expired.",
                "Token expired.",
            ),
            "credential",
        ),
        (500, graph_error(131000, "Something went wrong", "Unknown error."), "retryable"),
        (
            503,
            graph_error(133004, "Server temporarily unavailable", "Try again later."),
            "retryable",
        ),
    ];
    for (status, body, kind) in cases {
        stub.push(Reply::json(status, body.clone()));
        let error = connector.send(&message, &credential).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{body} -> {error}");
        let code = body["error"]["code"].as_i64().unwrap();
        assert!(error.to_string().starts_with(&format!("Graph error {code}: ")), "{error}");
    }
    // not Graph's JSON at all: by status; a proxy's 429 with Retry-After is honoured
    stub.push(Reply { status: 502, headers: vec![], body: "<html>Bad Gateway</html>".into() });
    assert_eq!(connector.send(&message, &credential).await.unwrap_err().kind(), "retryable");
    stub.push(Reply::json(429, json!({})).with_header("retry-after", "7"));
    assert_eq!(
        connector.send(&message, &credential).await.unwrap_err(),
        ProviderError::Throttled {
            message: "Graph answered 429 Too Many Requests: {}".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    // the credential's own API version
    assert!(stub.requests().iter().all(|r| r.path == format!("/v21.0/{PHONE_NUMBER_ID}/messages")));

    // nobody listening: retryable, saying why
    let closed = format!("127.0.0.1:{}", crate::harness::free_port());
    let nowhere = opened_credential(
        ProviderType::WhatsappCloud,
        json!({"accessToken": TOKEN}),
        json!({"phoneNumberId": PHONE_NUMBER_ID, "baseUrl": format!("http://{closed}")}),
    );
    let error = connector.send(&message, &nowhere).await.unwrap_err();
    assert_eq!(error.kind(), "retryable", "{error}");
    assert!(error.to_string().to_lowercase().contains("connection refused"), "{error}");

    // nothing reaches the stub when overrides are off: the credential is refused
    let before = stub.requests().len();
    let strict = Whatsapp::new(false).unwrap();
    assert_eq!(strict.send(&message, &credential).await.unwrap_err().kind(), "credential");
    assert_eq!(stub.requests().len(), before);
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_the_worker_keep_graphs_error() {
    let stub = graph().await;
    let app = app().await;
    let (owner, key) = app.sender("Walt").await;
    credential(&app, &owner, &stub, json!({})).await;

    // throttled, then accepted: not an attempt spent
    stub.push(Reply::json(
        400,
        json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException",
            "code": 130429, "fbtrace_id": "x"}}),
    ));
    let id = send(&app, &key, json!({"text": "hello"})).await;
    let sent = app.wait_for_status(&key, &id, "sent").await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    assert!(
        sent["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == "retrying" && e["details"]["throttled"] == true)
    );

    // undeliverable: failed at once, with Graph's code in statusReason
    stub.push(Reply::json(
        400,
        json!({"error": {"message": "Message undeliverable", "type": "OAuthException",
            "code": 131026, "error_data": {"messaging_product": "whatsapp",
            "details": "Unable to deliver the message."}, "fbtrace_id": "y"}}),
    ));
    let id = send(&app, &key, json!({"text": "hello again"})).await;
    let failed = app.wait_for_status(&key, &id, "failed").await;
    assert_eq!(
        failed["statusReason"],
        "Graph error 131026: Message undeliverable - Unable to deliver the message."
    );
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_looks_the_phone_number_up() {
    let stub = graph().await;
    let app = app().await;
    let owner = app.sign_up("Vera").await;
    let id = credential(&app, &owner, &stub, json!({})).await;
    let path = format!("/v1/providers/{id}/verify");
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["detail"].as_str().unwrap().contains("+1 555-010-0199"), "{result}");
    let lookup = &stub.requests()[0];
    assert_eq!(lookup.method, "GET");
    assert_eq!(lookup.path, format!("/{DEFAULT_API_VERSION}/{PHONE_NUMBER_ID}"));
    assert_eq!(lookup.query, "fields=display_phone_number%2Cverified_name");
    assert_eq!(lookup.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));

    stub.push(Reply::json(
        401,
        json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException", "code": 190, "fbtrace_id": "z"}}),
    ));
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "a refusal is an answer: {result}");
    assert_eq!(result["ok"], false);
    assert_eq!(
        result["detail"],
        "credential: Graph error 190: Invalid OAuth access token - Cannot parse access token"
    );
    stub.stop().await;
}

// ---- delivery receipts ----

fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A status callback as Meta sends it.
fn callback(statuses: Vec<Value>) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": statuses}}]}]})
    .to_string()
    .into_bytes()
}

fn status_update(wamid: &str, status: &str) -> Value {
    json!({"id": wamid, "status": status, "timestamp": "1750263773", "recipient_id": "16505551234",
        "conversation": {"id": "CONVERSATION_ID", "origin": {"type": "utility"}},
        "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}})
}

async fn post_callback(
    app: &TestApp,
    credential: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let mut request =
        app.client.post(app.url(&format!("/v1/inbound/whatsapp/{credential}"))).body(body.to_vec());
    request = request.header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A sweep's round of held receipts, expiring those held since before `minutes` from now.
async fn sweep_held(app: &TestApp, minutes: i64) -> HeldRound {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let now = Utc::now();
    receipts::apply_held(&mut conn, now, now + chrono::Duration::minutes(minutes)).await.unwrap()
}

fn event_statuses(message: &Value) -> Vec<String> {
    message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_status_callbacks_move_messages_and_forgeries_change_nothing() {
    let stub = graph().await;
    let app = app().await;
    let (owner, key) = app.sender("Rita").await;
    let credential_id = credential(&app, &owner, &stub, json!({})).await;
    let first = send(&app, &key, json!({"text": "one"})).await;
    let second = send(&app, &key, json!({"text": "two"})).await;
    let first_wamid = app.wait_for_status(&key, &first, "sent").await["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_wamid = app.wait_for_status(&key, &second, "sent").await["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned();

    // forged, unsigned, or signed with another secret: 401, and nothing changes
    let delivered = callback(vec![status_update(&first_wamid, "delivered")]);
    for signature in
        [None, Some("sha256=00"), Some("sha256=zz"), Some(&*sign("not-the-secret", &delivered))]
    {
        let (code, body) = post_callback(&app, &credential_id, &delivered, signature).await;
        assert_eq!(code, 401, "{signature:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // a valid signature over another body does not carry over
    let other = callback(vec![status_update(&second_wamid, "delivered")]);
    let (code, _) =
        post_callback(&app, &credential_id, &delivered, Some(&sign(APP_SECRET, &other))).await;
    assert_eq!(code, 401);
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "sent");

    // signed: `sent` is known already, `delivered` moves the message, once
    let body = callback(vec![
        status_update(&first_wamid, "sent"),
        status_update(&first_wamid, "delivered"),
    ]);
    let (code, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(result, json!({"received": 2, "applied": 1, "held": 0}));
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "delivered");
    let event =
        message["events"].as_array().unwrap().iter().find(|e| e["status"] == "delivered").unwrap();
    assert_eq!(event["details"]["providerStatus"], "delivered");
    assert_eq!(event["details"]["providerMessageId"], first_wamid.as_str());
    let events = event_statuses(&message);

    // repeats and a later `read` change nothing
    let read = callback(vec![
        status_update(&first_wamid, "delivered"),
        status_update(&first_wamid, "read"),
    ]);
    let (code, result) =
        post_callback(&app, &credential_id, &read, Some(&sign(APP_SECRET, &read))).await;
    assert_eq!((code, result), (200, json!({"received": 2, "applied": 0, "held": 0})));
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(event_statuses(&message), events);

    // failed, with Graph's error as the reason
    let mut failed = status_update(&second_wamid, "failed");
    failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable",
        "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]);
    let body = callback(vec![failed]);
    let (code, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!((code, result), (200, json!({"received": 1, "applied": 1, "held": 0})));
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{second}")).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(
        message["statusReason"],
        "WhatsApp error 131026: Message undeliverable - Message Undeliverable."
    );

    // signed but not a callback: 400
    let junk = b"not json".to_vec();
    let (code, body) =
        post_callback(&app, &credential_id, &junk, Some(&sign(APP_SECRET, &junk))).await;
    assert_eq!(code, 400, "{body}");
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_ahead_of_its_send_is_held_until_the_send_is_recorded() {
    let stub = graph().await;
    let app = TestApp::spawn_with(|c| {
        c.providers.allow_endpoint_overrides = true;
        c.delivery.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let (owner, key) = app.sender("Hana").await;
    let credential_id = credential(&app, &owner, &stub, json!({})).await;

    // Meta reports the stub's first message delivered before RelayIt recorded it as sent
    let wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0";
    let body = callback(vec![status_update(wamid, "delivered")]);
    let (code, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!((code, result), (200, json!({"received": 1, "applied": 0, "held": 1})));

    let id = send(&app, &key, json!({"text": "quick"})).await;
    app.wait_for_status(&key, &id, "delivered").await;
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{id}")).await;
    assert_eq!(message["providerMessageId"], wamid);
    assert_eq!(event_statuses(&message), ["received", "queued", "processing", "sent", "delivered"]);
    assert_eq!(message["events"][4]["details"]["providerStatus"], "delivered");

    // released once applied: the same update again is a repeat, not held
    let (code, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!((code, result), (200, json!({"received": 1, "applied": 0, "held": 0})));
    assert_eq!(sweep_held(&app, 1).await, HeldRound::default(), "nothing left held");
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_only_their_own_organizations_messages() {
    let stub = graph().await;
    let app = app().await;
    let (owner, key) = app.sender("Olga").await;
    credential(&app, &owner, &stub, json!({})).await;
    let id = send(&app, &key, json!({"text": "mine"})).await;
    let wamid = app.wait_for_status(&key, &id, "sent").await["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned();

    // another tenant's credential, properly signed with its own secret
    let mallory = app.sign_up("Mallory").await;
    let (status, theirs) = app
        .post_as(
            &mallory.token,
            "/v1/providers",
            json!({"name": "WA", "channel": "whatsapp", "providerType": "whatsapp_cloud",
                "credentials": {"accessToken": "EAAother", "appSecret": "mallory-secret"},
                "config": {"phoneNumberId": "1234567"}}),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    let body = callback(vec![status_update(&wamid, "failed")]);
    let (code, result) = post_callback(
        &app,
        theirs["id"].as_str().unwrap(),
        &body,
        Some(&sign("mallory-secret", &body)),
    )
    .await;
    // her organization has no message with that id: held there, where none will ever match,
    // and dropped after the hold
    assert_eq!((code, result), (200, json!({"received": 1, "applied": 0, "held": 1})));
    assert_eq!(sweep_held(&app, -1).await, HeldRound::default(), "kept while the hold lasts");
    assert_eq!(sweep_held(&app, 1).await, HeldRound { expired: 1, ..HeldRound::default() });
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "sent");

    // a credential without an appSecret cannot take callbacks; unknown ids are not found
    let (status, bare) = app
        .post_as(
            &owner.token,
            "/v1/providers",
            json!({"name": "Bare", "channel": "whatsapp", "providerType": "whatsapp_cloud",
                "credentials": {"accessToken": "EAAbare"}, "config": {"phoneNumberId": "7654321"}}),
        )
        .await;
    assert_eq!(status, 201, "{bare}");
    let (code, _) =
        post_callback(&app, bare["id"].as_str().unwrap(), &body, Some(&sign("", &body))).await;
    assert_eq!(code, 403);
    let (code, _) = post_callback(&app, "prv_missing", &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(code, 404);
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_token_handshake_answers_only_the_right_token() {
    let stub = graph().await;
    let app = app().await;
    let owner = app.sign_up("Hank").await;
    let with_token = credential(&app, &owner, &stub, json!({"verifyToken": "meatyhamhock"})).await;
    let without = credential(&app, &owner, &stub, json!({})).await;
    let handshake = |id: &str, mode: &str, token: &str| {
        app.url(&format!(
            "/v1/inbound/whatsapp/{id}?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"
        ))
    };

    let response =
        app.client.get(handshake(&with_token, "subscribe", "meatyhamhock")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "1158201444");

    for (id, mode, token) in [
        (&with_token, "subscribe", "wrong"),
        (&with_token, "subscribe", ""),
        (&with_token, "unsubscribe", "meatyhamhock"),
        (&without, "subscribe", "meatyhamhock"),
    ] {
        let response = app.client.get(handshake(id, mode, token)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{mode} {token}");
        crate::harness::error_body(response).await;
    }
    let response = app.client.get(handshake("prv_missing", "subscribe", "x")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = app
        .client
        .get(app.url(&format!("/v1/inbound/whatsapp/{with_token}?hub.mode=subscribe")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // the verify token is a validated secret, redacted on reads
    let (_, read) = app.get_as(&owner.token, &format!("/v1/providers/{with_token}")).await;
    assert_eq!(read["credentials"]["verifyToken"], "********");
    let (status, body) = app
        .patch_as(
            &owner.token,
            &format!("/v1/providers/{with_token}"),
            json!({"credentials": {"verifyToken": "has space"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "credentials.verifyToken");

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let item = &doc["paths"]["/v1/inbound/whatsapp/{credentialId}"];
    assert!(item["get"].is_object() && item["post"].is_object(), "{item}");
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_opt_out_suppresses_the_number_even_when_its_receipt_was_held() {
    let stub = graph().await;
    let app = app().await;
    let (owner, key) = app.sender("Rita").await;
    let credential_id = credential(&app, &owner, &stub, json!({})).await;
    let to = |number: &str, text: &str| json!({"channel": "whatsapp", "to": number, "content": {"text": text}});
    let first = app.send_message(&key, to("+16505551234", "one")).await;
    let later = app.send_message(&key, to("+16505557777", "two")).await;
    let wamid = app.wait_for_status(&key, &first, "sent").await["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&key, &later, "sent").await;
    let failed = |wamid: &str, code: i64| {
        let mut status = status_update(wamid, "failed");
        status["errors"] = json!([{"code": code, "title": "Undeliverable"}]);
        callback(vec![status])
    };
    let suppressions = format!("/v1/projects/{}/suppressions", owner.project_id);

    // the opt-out error suppresses the number; another failure would not
    let body = failed(&wamid, 131050);
    let (code, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!((code, result["applied"].as_i64()), (200, Some(1)), "{result}");
    let (_, list) = app.get_as(&owner.token, &suppressions).await;
    let entry = &list["data"][0];
    assert_eq!(
        (entry["channel"].as_str(), entry["address"].as_str(), entry["reason"].as_str()),
        (Some("whatsapp"), Some("+16505551234"), Some("unsubscribe")),
        "{list}"
    );
    assert_eq!(entry["messageId"], first.as_str());
    let posts = stub.requests().len();
    let next = app.send_message(&key, to("+16505551234", "again")).await;
    let message = app.wait_for_status(&key, &next, "failed").await;
    assert!(message["statusReason"].as_str().unwrap().contains("unsubscribed"), "{message}");
    assert_eq!(stub.requests().len(), posts, "Graph was not called");

    // an opt-out that arrives before its message is known is held, and suppresses once applied
    let body = failed("wamid.early", 131050);
    let (_, result) =
        post_callback(&app, &credential_id, &body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(result["held"], 1, "{result}");
    app.sql(&format!(
        "UPDATE messages SET provider_message_id = 'wamid.early' WHERE id = '{later}'"
    ))
    .await;
    assert_eq!(sweep_held(&app, -60).await.moved, 1);
    let (_, list) = app.get_as(&owner.token, &format!("{suppressions}?search=7777")).await;
    assert_eq!(list["data"][0]["reason"], "unsubscribe", "{list}");
    stub.stop().await;
}
