//! `/v1/send` and `/v1/send/batch`: validation naming every field, project resolution,
//! idempotency, scheduling, the original body shape, and durable acknowledgement.

use crate::harness::TestApp;
use crate::harness::sandbox_provider;
use fred::prelude::StreamsInterface;
use relayit::server::Roles;
use reqwest::Method;
use serde_json::{Value, json};

async fn stream_len(app: &TestApp) -> usize {
    let redis = &app.running().state().redis;
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis.pool().next().xrange(redis.keys().deliveries(), "-", "+", None).await.unwrap();
    entries.len()
}

fn email(to: &str) -> Value {
    json!({"channel": "email", "to": to, "content": {"subject": "Hello", "text": "Hi there"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_committed_queued_and_answered() {
    let app = TestApp::spawn_with(|c| c.delivery.concurrency = 1).await;
    let (_, key) = app.sender("Sender").await;
    let (status, body) = app.post_as(&key, "/v1/send", email("alice@example.com")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));
    assert_eq!(app.count("messages").await, 1);
    assert_eq!(
        app.count("message_events WHERE status IN ('received', 'queued')").await,
        2,
        "received and queued"
    );
    // on the delivery stream, or already taken from it by a worker
    let on_stream = stream_len(&app).await == 1;
    let taken = app.count("message_events WHERE status = 'processing'").await == 1;
    assert!(on_stream || taken, "the message was not enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_field_is_named_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    let cases = [
        (json!({"channel": "pigeon", "to": "x", "content": {}}), "channel"),
        (
            json!({"channel": "email", "to": "not-an-email", "content": {"subject": "s", "text": "t"}}),
            "to",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "content": {"text": "t"}}),
            "content.subject",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "content": {"subject": "s"}}),
            "content.text",
        ),
        (json!({"channel": "sms", "to": "14155550123", "content": {"text": "t"}}), "to"),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "x".repeat(1601)}}),
            "content.text",
        ),
        (json!({"channel": "whatsapp", "to": "+14155550123", "content": {}}), "content.text"),
        (json!({"channel": "discord", "to": "general", "content": {"text": "t"}}), "to"),
        (
            json!({"channel": "discord", "to": "123456789012345678", "content": {"text": "x".repeat(2001)}}),
            "content.text",
        ),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "metadata": {"b": "x".repeat(5000)}}),
            "metadata",
        ),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "metadata": [1]}),
            "metadata",
        ),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "sendAt": "tomorrow"}),
            "sendAt",
        ),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "sendAt": "2099-01-01T00:00:00Z"}),
            "sendAt",
        ),
        (
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "priority": 1}),
            "priority",
        ),
        (json!({"channel": "sms", "content": {"text": "t"}}), "to"),
        (json!({"channel": "sms", "to": 5, "content": {"text": "t"}}), "to"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post_as(&key, "/v1/send", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
        let fields: Vec<&str> = answer["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {fields:?}");
    }
    // a credential that does not exist is not found, like a project, naming the field
    let unknown = json!({"channel": "sms", "to": "+14155550123", "content": {"text": "t"}, "provider": "nope"});
    let (status, answer) = app.post_as(&key, "/v1/send", unknown).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    assert_eq!(answer["error"]["details"][0]["field"], "provider", "{answer}");
    let response = app
        .client
        .post(app.url("/v1/send"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"channel\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let too_big = json!({"channel": "sms", "to": "+14155550123", "content": {"text": "x".repeat(300 * 1024)}});
    let (status, answer) = app.post_as(&key, "/v1/send", too_big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_send_keys_send_and_projects_resolve_within_the_tenant() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let wide = app.create_api_key(&owner, &["send"], None).await;
    let read = app.create_api_key(&owner, &["read"], None).await;
    let other = app.sign_up("Other").await;

    assert_eq!(app.call(Method::POST, "/v1/send", None, Some(email("a@example.com"))).await.0, 401);
    assert_eq!(app.post_as(&owner.token, "/v1/send", email("a@example.com")).await.0, 403);
    assert_eq!(app.post_as(&read, "/v1/send", email("a@example.com")).await.0, 403);

    let (status, body) = app.post_as(&wide, "/v1/send", email("a@example.com")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "project");
    let mut with_project = email("a@example.com");
    with_project["project"] = json!("default");
    assert_eq!(app.post_as(&wide, "/v1/send", with_project.clone()).await.0, 202);
    with_project["project"] = json!(other.project_id);
    assert_eq!(app.post_as(&wide, "/v1/send", with_project.clone()).await.0, 404);
    with_project["project"] = json!("prj_nope");
    assert_eq!(app.post_as(&wide, "/v1/send", with_project).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_mismatches_and_collapse_races() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    let post = |body: Value, idem: &'static str| {
        app.client
            .post(app.url("/v1/send"))
            .bearer_auth(&key)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };
    let first = post(email("a@example.com"), "order-1").await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post(email("a@example.com"), "order-1").await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = post(email("b@example.com"), "order-1").await.unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(other.json::<Value>().await.unwrap()["error"]["code"], "idempotency_mismatch");
    assert_eq!(app.count("messages").await, 1);

    // twenty concurrent identical requests: one message, one answer
    let answers =
        futures::future::join_all((0..20).map(|_| post(email("c@example.com"), "order-2"))).await;
    let mut ids = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 202);
        ids.push(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.count("messages").await, 2);

    // an expired record frees the key
    app.sql("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'").await;
    assert_eq!(post(email("b@example.com"), "order-1").await.unwrap().status(), 202);
    assert_eq!(app.count("messages").await, 3);
    let long = "k".repeat(256);
    let response = app
        .client
        .post(app.url("/v1/send"))
        .bearer_auth(&key)
        .header("Idempotency-Key", long)
        .json(&email("a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_original_shape_messages() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Sender").await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut scheduled = email("a@example.com");
    scheduled["sendAt"] = json!(later);
    let (status, body) = app.post_as(&key, "/v1/send", scheduled).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "received");
    assert_eq!(app.count("message_events").await, 1, "received only");

    let legacy = json!({"channel": "email", "recipient": "bob@example.com", "projectSlug": "default",
        "payload": {"subject": "Old", "body": "<b>hi</b>", "type": "html"}});
    let (status, body) = app.post_as(&key, "/v1/send", legacy).await;
    assert_eq!(status, 202, "{body}");
    app.sql(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM messages WHERE id = '{}' AND recipient = 'bob@example.com'
            AND content = '{{\"subject\": \"Old\", \"html\": \"<b>hi</b>\"}}'::jsonb AND project_id = '{}')
         THEN RAISE EXCEPTION 'legacy body not translated'; END IF; END $$",
        body["id"].as_str().unwrap(),
        owner.project_id
    ))
    .await;
    let legacy_bad = json!({"channel": "email", "recipient": "bob@example.com", "projectSlug": "default",
        "payload": {"body": "hi", "type": "rtf"}});
    let (status, body) = app.post_as(&key, "/v1/send", legacy_bad).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "payload.type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_each_item_in_order() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    let (status, body) = app
        .post_as(
            &key,
            "/v1/send/batch",
            json!({"messages": [email("a@example.com"), email("nope"), email("c@example.com")]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["status"], "queued");
    assert_eq!(data[1]["error"]["code"], "validation_failed");
    assert_eq!(data[1]["error"]["details"][0]["field"], "to");
    assert_eq!(data[2]["status"], "queued");
    assert_eq!(app.count("messages").await, 2);

    assert_eq!(app.post_as(&key, "/v1/send/batch", json!({"messages": []})).await.0, 400);
    let many: Vec<Value> = (0..1001).map(|_| email("a@example.com")).collect();
    let (status, body) = app.post_as(&key, "/v1/send/batch", json!({"messages": many})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "messages");
    let thousand: Vec<Value> = (0..1000).map(|i| email(&format!("user{i}@example.com"))).collect();
    let (status, body) = app.post_as(&key, "/v1/send/batch", json!({"messages": thousand})).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"].as_array().unwrap().len(), 1000);
    assert_eq!(app.count("messages").await, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_postgres_nothing_is_accepted() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    let db = app.db.name.clone();
    let admin = crate::harness::admin_url();
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&admin)
            .await
            .unwrap();
    let run = |sql: String| diesel::sql_query(sql);
    diesel_async::RunQueryDsl::execute(
        run(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false")),
        &mut conn,
    )
    .await
    .unwrap();
    diesel_async::RunQueryDsl::execute(
        run(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let (status, body) = app.post_as(&key, "/v1/send", email("a@example.com")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    diesel_async::RunQueryDsl::execute(
        run(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(app.count("messages").await, 0);
    // and it recovers by itself
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _) = app.post_as(&key, "/v1/send", email("a@example.com")).await;
        if status == 202 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not recover: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A project being deleted (here held open, as a long purge of its messages would be) holds
/// up no other sender: the request naming it fails, 503 to be retried, once its wait for the
/// project gives up (migration 000017), and the rest of its batch is committed without it.
/// Then the project's requests are refused without trying, for a few seconds, so that the
/// others do not pay that wait batch after batch. The window and the single commit slot put
/// each round's requests in one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_being_deleted_holds_up_no_other_sender() {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let app = TestApp::spawn_with(|c| {
        c.api.ingest_window = std::time::Duration::from_millis(300);
        c.api.ingest_commits = 1;
    })
    .await;
    let (doomed, doomed_key) = app.sender("Doomed").await;
    let (_, key) = app.sender("Other").await;
    let mut deleting = diesel_async::AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let delete = format!("BEGIN; DELETE FROM projects WHERE id = '{}'", doomed.project_id);
    deleting.batch_execute(&delete).await.unwrap();

    let refused = |metrics: &str, reason: &str| {
        let line = format!(r#"relayit_ingest_refused_total{{reason="{reason}"}} "#);
        metrics.lines().find_map(|l| l.strip_prefix(&line)?.parse::<u64>().ok()).unwrap_or(0)
    };
    for round in 0..2 {
        let doomed_send = app.post_as(&doomed_key, "/v1/send", email("a@example.com"));
        let other_sends =
            futures::future::join_all((0..5).map(|i| {
                app.post_as(&key, "/v1/send", email(&format!("r{round}-{i}@example.com")))
            }));
        // the guard only keeps a regression from hanging the suite: before 000017 the whole
        // batch waited for as long as the deletion was open
        let ((status, body), others) = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures::future::join(doomed_send, other_sends),
        )
        .await
        .expect("every request is answered while the deletion is open");
        assert_eq!(status, 503, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("being deleted"), "{body}");
        for (status, body) in others {
            assert_eq!(status, 202, "{body}");
        }
    }
    assert_eq!(app.count("messages").await, 10);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    // the first round waited for the lock; the second was refused at once
    assert_eq!(refused(&metrics, "project_locked"), 1, "{metrics}");
    assert_eq!(refused(&metrics, "project_held"), 1, "{metrics}");

    // the deletion rolled back, the project sends again once the hold is over
    deleting.batch_execute("ROLLBACK").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = app.post_as(&doomed_key, "/v1/send", email("a@example.com")).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "still refused: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_acceptances_and_queues() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    for to in ["a@example.com", "b@example.com"] {
        assert_eq!(app.post_as(&key, "/v1/send", email(to)).await.0, 202);
    }
    assert_eq!(app.post_as(&key, "/v1/send", email("bad")).await.0, 400);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l.starts_with(line));
    assert!(
        has(r#"relayit_http_requests_total{method="POST",route="/v1/send",status="202"} 2"#),
        "{text}"
    );
    assert!(
        has(r#"relayit_http_requests_total{method="POST",route="/v1/send",status="400"} 1"#),
        "{text}"
    );
    assert!(has(r#"relayit_messages_accepted_total{channel="email"} 2"#), "{text}");
    // one after the other: two transactions of one message each
    assert!(has("relayit_ingest_batch_messages_count 2"), "{text}");
    assert!(has("relayit_ingest_batch_messages_sum 2"), "{text}");
    assert!(has("relayit_ingest_commit_seconds_count 2"), "{text}");
    assert!(
        has(r#"relayit_http_request_duration_seconds_bucket{method="POST",route="/v1/send""#),
        "{text}"
    );
    assert!(has(r#"relayit_queue_length{queue="deliveries"}"#), "{text}");
    assert!(has(r#"relayit_queue_pending{queue="deliveries"}"#), "{text}");
    assert!(has(r#"relayit_queue_delayed{queue="deliveries"}"#), "{text}");
    assert!(has("relayit_process_resident_memory_bytes"), "{text}");
    // ids never become label values
    assert!(!text.contains("prj_") && !text.contains("msg_"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rate_limits_per_key_when_configured() {
    let app = TestApp::spawn_with(|c| c.api.send_rate_limit = 2).await;
    let owner = app.sign_up("Limited").await;
    let (_, limited) = app
        .post_as(
            &owner.token,
            "/v1/api-keys",
            json!({"name": "k", "scopes": ["send"], "projectId": owner.project_id, "rateLimit": 3}),
        )
        .await;
    let limited = limited["key"].as_str().unwrap().to_owned();
    let send = |key: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/send"))
                .bearer_auth(key)
                .json(&email("a@example.com"))
                .send()
                .await
                .unwrap()
        }
    };
    for remaining in ["2", "1", "0"] {
        let response = send(limited.clone()).await;
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
    }
    let refused = send(limited.clone()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    // a batch spends one unit per message; the configured default applies to other keys
    let default = app.create_api_key(&owner, &["send"], Some(&owner.project_id)).await;
    let (status, _) = app
        .post_as(
            &default,
            "/v1/send/batch",
            json!({"messages": [email("a@example.com"), email("b@example.com")]}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(send(default).await.status(), 429);
    // and the limit refills
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(send(limited).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rate_limit_unless_configured() {
    let app = TestApp::spawn().await;
    let (_, key) = app.sender("Sender").await;
    let response = app
        .client
        .post(app.url("/v1/send"))
        .bearer_auth(&key)
        .json(&email("a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("ratelimit-limit").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_goes_all_the_way_through_the_sandbox() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Sender").await;
    let (status, provider) =
        app.post_as(&owner.token, "/v1/providers", sandbox_provider("Sandbox", "email")).await;
    assert_eq!(status, 201, "{provider}");
    let (status, accepted) = app.post_as(&key, "/v1/send", email("alice@example.com")).await;
    assert_eq!(status, 202);
    let message = app.wait_for_status(&key, accepted["id"].as_str().unwrap(), "sent").await;
    let statuses: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["received", "queued", "processing", "sent"]);
    assert_eq!(message["attempts"], 1);
    assert_eq!(message["provider"]["type"], "sandbox");
    assert!(message["providerMessageId"].is_string());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l
            == r#"relayit_deliveries_total{channel="email",outcome="sent",provider="sandbox"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"relayit_provider_request_duration_seconds_count{provider="sandbox"} 1"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_redis_loses_the_stream() {
    use fred::prelude::KeysInterface;
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Sender").await;
    let body = sandbox_provider("Sandbox", "email");
    assert_eq!(app.post_as(&owner.token, "/v1/providers", body).await.0, 201);
    // as if Redis restarted empty: the stream and its consumer group are gone
    let redis = &app.running().state().redis;
    let _: i64 = redis.pool().next().del(redis.keys().deliveries()).await.unwrap();
    let (status, accepted) = app.post_as(&key, "/v1/send", email("alice@example.com")).await;
    assert_eq!(status, 202);
    app.wait_for_status(&key, accepted["id"].as_str().unwrap(), "sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_deliver_what_the_api_queued_before_any_worker_started() {
    // an API process alone, with a sweeper far too slow to be what delivers
    let app = TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |c| {
        c.delivery.requeue_after = std::time::Duration::from_secs(3600);
    })
    .await;
    let (owner, key) = app.sender("Sender").await;
    let (status, _) =
        app.post_as(&owner.token, "/v1/providers", sandbox_provider("Sandbox", "email")).await;
    assert_eq!(status, 201);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, accepted) =
            app.post_as(&key, "/v1/send", email(&format!("u{i}@example.com"))).await;
        assert_eq!(status, 202);
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(stream_len(&app).await, 5);

    // the first worker of the install starts only now
    let worker = app.spawn_peer(Roles { api: false, worker: true, webhook: false }).await;
    for id in &ids {
        let message = app.wait_for_status(&key, id, "sent").await;
        assert_eq!(message["attempts"], 1);
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_project_is_not_found_by_its_old_slug_on_any_process() {
    let app =
        TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |_| {}).await;
    let peer = app.spawn_peer(Roles { api: true, worker: false, webhook: false }).await;
    let owner = app.sign_up("Sender").await;
    let key = app.create_api_key(&owner, &["send"], None).await;
    let (_, project) =
        app.get_as(&owner.token, &format!("/v1/projects/{}", owner.project_id)).await;
    let slug = project["slug"].as_str().unwrap().to_owned();
    let body = |to: &str| {
        let mut body = email(to);
        body["project"] = json!(slug);
        body
    };
    let peer_send = |body: Value| {
        let url = format!("http://{}/v1/send", peer.addr());
        let request = app.client.post(url).bearer_auth(&key).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // the peer resolves the slug from memory once it holds it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peer.state().tenants.project(&owner.org_id, &slug).is_none() {
        assert!(std::time::Instant::now() < deadline, "the project never got cached");
        assert_eq!(peer_send(body("a@example.com")).await, 202);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _) = app
        .patch_as(
            &owner.token,
            &format!("/v1/projects/{}", owner.project_id),
            json!({"slug": "renamed"}),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while peer.state().tenants.project(&owner.org_id, &slug).is_some() {
        assert!(std::time::Instant::now() < deadline, "the peer kept the old slug");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(peer_send(body("b@example.com")).await, 404);
    assert_eq!(app.post_as(&key, "/v1/send", body("c@example.com")).await.0, 404);
    peer.shutdown().await.unwrap();
}
