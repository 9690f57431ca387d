//! The delivery worker end to end, against real Postgres and Redis, with the sandbox provider:
//! outcomes and their history, retries with backoff, throttling, failover in routing order,
//! dead letters, duplicate entries, a crash in mid-burst, scheduled sends and lost entries.
//!
//! Messages are created as ingestion creates them: rows and their first events inserted with
//! `db::messages::insert_all`, then `queue::deliveries::enqueue`.

use std::time::{Duration, Instant};

use crate::harness::{Account, TestApp};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fred::prelude::{ClientLike, KeysInterface, StreamsInterface};
use relayit::config::Config;
use relayit::db::messages::{self, Event, Message, NewMessage};
use relayit::db::schema::messages as m;
use relayit::domain::status;
use relayit::queue::Keys;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Short delays, so retries and sweeps happen within a test.
fn fast(config: &mut Config) {
    config.delivery.retry_base_delay = Duration::from_millis(200);
    config.delivery.retry_max_delay = Duration::from_secs(2);
    config.delivery.sweep_interval = Duration::from_millis(200);
}

/// Creates a sandbox credential and returns its id and slug.
async fn sandbox(
    app: &TestApp,
    owner: &Account,
    channel: &str,
    config: Value,
    extra: Value,
) -> (String, String) {
    let mut body = json!({
        "name": crate::harness::unique("sandbox"), "channel": channel, "providerType": "sandbox",
        "credentials": {}, "config": config,
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, created) = app.post_as(&owner.token, "/v1/providers", body).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["slug"].as_str().unwrap().to_owned())
}

struct Draft<'a> {
    channel: &'a str,
    requested: Option<&'a str>,
    send_at: Option<DateTime<Utc>>,
}

const EMAIL: Draft<'static> = Draft { channel: "email", requested: None, send_at: None };

/// A message row and its first events, as ingestion writes them: `queued` (events received and
/// queued), or `received` when scheduled.
fn draft(owner: &Account, draft: &Draft<'_>) -> (NewMessage, Vec<Event>) {
    let now = Utc::now();
    let id = relayit::domain::ids::new_id(relayit::domain::ids::MESSAGE);
    let recipient = match draft.channel {
        "email" => "alice@example.com",
        "discord" => "123456789012345678",
        _ => "+14155550123",
    };
    let status = if draft.send_at.is_some() { status::RECEIVED } else { status::QUEUED };
    let mut events = vec![Event::new(&id, status::RECEIVED, json!({}), now)];
    if status == status::QUEUED {
        events.push(Event::new(&id, status::QUEUED, json!({}), now));
    }
    let message = NewMessage {
        id,
        organization_id: owner.org_id.clone(),
        project_id: owner.project_id.clone(),
        api_key_id: None,
        channel: draft.channel.to_owned(),
        recipient: recipient.to_owned(),
        requested_provider: draft.requested.map(str::to_owned),
        status,
        content: json!({"subject": "Hello", "text": "Hi there"}),
        metadata: json!({}),
        idempotency_key: None,
        send_at: draft.send_at,
        created_at: now,
        updated_at: now,
        template_id: None,
        template_version: None,
    };
    (message, events)
}

/// Inserts `count` messages like `draft` and, unless scheduled or `lost`, enqueues them.
async fn submit_many(
    app: &TestApp,
    owner: &Account,
    template: &Draft<'_>,
    count: usize,
    lost: bool,
) -> Vec<String> {
    let (rows, events): (Vec<_>, Vec<_>) = (0..count).map(|_| draft(owner, template)).unzip();
    let events: Vec<Event> = events.into_iter().flatten().collect();
    let state = app.running().state();
    let mut conn = state.db.get().await.unwrap();
    messages::insert_all(&mut conn, &rows, &events).await.unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    if template.send_at.is_none() && !lost {
        relayit::queue::deliveries::enqueue(&state.redis, &ids).await.unwrap();
    }
    ids
}

async fn submit(app: &TestApp, owner: &Account, template: &Draft<'_>) -> String {
    submit_many(app, owner, template, 1, false).await.remove(0)
}

async fn load(conn: &mut AsyncPgConnection, id: &str) -> Message {
    m::table.find(id).select(Message::as_select()).first(conn).await.unwrap()
}

async fn history(conn: &mut AsyncPgConnection, id: &str) -> Vec<Event> {
    messages::events(conn, id).await.unwrap()
}

fn statuses(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.status.as_str()).collect()
}

/// Waits until `done` holds for the message, and returns it with its history.
async fn wait_until(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Message, &[Event]) -> bool,
) -> (Message, Vec<Event>) {
    let mut conn = app.connect().await;
    let start = Instant::now();
    loop {
        let message = load(&mut conn, id).await;
        let events = history(&mut conn, id).await;
        if done(&message, &events) {
            return (message, events);
        }
        assert!(
            start.elapsed() < WAIT,
            "{id} never became {what}: status {} ({:?}), events {:#?}",
            message.status,
            message.status_reason,
            events.iter().map(|e| (&e.status, &e.details)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> (Message, Vec<Event>) {
    wait_until(app, id, status, |m, _| m.status == status).await
}

async fn redis(app: &TestApp) -> (fred::clients::Client, Keys) {
    let config = fred::prelude::Config::from_url(&crate::harness::redis_url()).unwrap();
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.unwrap();
    (client, Keys::new(&app.redis_prefix))
}

/// The dead-letter stream's entries as (message id, reason).
async fn dead_letters(app: &TestApp) -> Vec<(String, String)> {
    let (client, keys) = redis(app).await;
    let entries: Vec<(String, std::collections::HashMap<String, String>)> =
        client.xrange_values(keys.deliveries_dead(), "-", "+", None).await.unwrap();
    entries
        .into_iter()
        .map(|(_, mut f)| (f.remove("m").unwrap(), f.remove("reason").unwrap()))
        .collect()
}

/// Waits until every stream entry has been handled (handled entries are deleted).
async fn wait_stream_empty(app: &TestApp) {
    let (client, keys) = redis(app).await;
    let start = Instant::now();
    loop {
        let len: u64 = client.xlen(keys.deliveries()).await.unwrap();
        if len == 0 {
            return;
        }
        assert!(start.elapsed() < WAIT, "{len} entries left on the delivery stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events_with(events: &[Event], status: &str) -> usize {
    events.iter().filter(|e| e.status == status).count()
}

#[tokio::test]
async fn a_sandbox_message_is_sent_with_its_whole_history() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    let (credential, slug) =
        sandbox(&app, &owner, "email", json!({"latencyMs": 5}), json!({})).await;
    let id = submit(&app, &owner, &EMAIL).await;

    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(statuses(&events), ["received", "queued", "processing", "sent"]);
    assert_eq!(message.attempts, 1);
    assert_eq!(message.status_reason, None);
    assert_eq!(message.provider_credential_id.as_deref(), Some(credential.as_str()));
    assert_eq!(message.provider_type.as_deref(), Some("sandbox"));
    let provider_id = message.provider_message_id.clone().expect("a provider message id");
    assert!(provider_id.starts_with("sandbox-"), "{provider_id}");
    let sent = &events[3].details;
    assert_eq!(sent["attempt"], 1);
    assert_eq!(sent["providerMessageId"], provider_id.as_str());
    assert_eq!(sent["tries"][0]["credentialId"], credential.as_str());
    assert_eq!(sent["tries"][0]["slug"], slug.as_str());
    assert_eq!(sent["tries"][0]["result"], "sent");
    assert_eq!(events[2].details["attempt"], 1);
    // times only move forward
    assert!(events.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    assert_eq!(message.updated_at, events[3].created_at);
    wait_stream_empty(&app).await;
    assert!(dead_letters(&app).await.is_empty());
}

#[tokio::test]
async fn retryable_failures_are_retried_after_a_growing_backoff() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({"failFirst": 2}), json!({})).await;
    let id = submit(&app, &owner, &EMAIL).await;

    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(
        statuses(&events),
        [
            "received",
            "queued",
            "processing",
            "retrying",
            "processing",
            "retrying",
            "processing",
            "sent"
        ]
    );
    assert_eq!(message.attempts, 3);
    assert_eq!(message.status_reason, None, "a sent message keeps no failure reason");
    let base = Duration::from_millis(200);
    for (n, i) in [(1u32, 3usize), (2, 5)] {
        let retrying = &events[i].details;
        assert_eq!(retrying["attempt"], n);
        assert_eq!(retrying["tries"][0]["result"], "retryable");
        assert!(retrying["error"].as_str().unwrap().contains("simulated temporary failure"));
        // equal jitter: at least half the doubled delay, at most all of it
        let delay = Duration::from_millis(retrying["retryInMs"].as_u64().unwrap());
        let full = base * 2u32.pow(n - 1);
        assert!(delay >= full / 2 && delay <= full, "retry {n} after {delay:?}");
        let due: DateTime<Utc> = serde_json::from_value(retrying["nextAttemptAt"].clone()).unwrap();
        let next = &events[i + 1];
        assert!(
            next.created_at >= due,
            "retry {n} ran at {} before it was due at {due}",
            next.created_at
        );
        // from one attempt's start to the next's: at least the backoff
        let spacing = (next.created_at - events[i - 1].created_at).to_std().unwrap();
        assert!(spacing >= delay, "retry {n}: attempts {spacing:?} apart, backoff {delay:?}");
        assert_eq!(next.details["attempt"], n + 1);
    }
    wait_stream_empty(&app).await;
}

#[tokio::test]
async fn a_permanent_failure_fails_at_once_and_is_dead_lettered() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    // a permanent error is about the message: no failover to the second credential
    sandbox(
        &app,
        &owner,
        "email",
        json!({"failRate": 1, "failMode": "permanent"}),
        json!({"priority": 0}),
    )
    .await;
    sandbox(&app, &owner, "email", json!({}), json!({"priority": 1})).await;
    let id = submit(&app, &owner, &EMAIL).await;

    let (message, events) = wait_for_status(&app, &id, "failed").await;
    assert_eq!(statuses(&events), ["received", "queued", "processing", "failed"]);
    assert_eq!(message.attempts, 1);
    let reason = message.status_reason.expect("a reason");
    assert!(reason.contains("sandbox: simulated rejection"), "{reason}");
    assert_eq!(events[3].details["failure"], "permanent");
    assert_eq!(events[3].details["tries"].as_array().unwrap().len(), 1);
    assert_eq!(dead_letters(&app).await, [(id, reason)]);
}

#[tokio::test]
async fn exhausted_attempts_fail_and_are_dead_lettered() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.delivery.max_attempts = 3;
        c.delivery.retry_base_delay = Duration::from_millis(50);
    })
    .await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({"failRate": 1, "failMode": "retryable"}), json!({}))
        .await;
    let id = submit(&app, &owner, &EMAIL).await;

    let (message, events) = wait_for_status(&app, &id, "failed").await;
    assert_eq!(
        statuses(&events),
        [
            "received",
            "queued",
            "processing",
            "retrying",
            "processing",
            "retrying",
            "processing",
            "failed"
        ]
    );
    assert_eq!(message.attempts, 3);
    assert_eq!(message.next_attempt_at, None, "a failed message has no next attempt");
    let reason = message.status_reason.expect("a reason");
    assert!(reason.contains("simulated temporary failure (503) on attempt 3"), "{reason}");
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    assert_eq!(events[7].details["failure"], "attempts_exhausted");
    assert_eq!(dead_letters(&app).await, [(id, reason)]);
}

#[tokio::test]
async fn throttling_reschedules_without_spending_attempts() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.delivery.max_attempts = 2;
        // the credential is changed below and must apply at once
        c.delivery.credential_cache_ttl = Duration::ZERO;
    })
    .await;
    let owner = app.sign_up("Owner").await;
    let throttled = json!({"failRate": 1, "failMode": "throttled", "retryAfterMs": 150});
    let (credential, _) = sandbox(&app, &owner, "email", throttled, json!({})).await;
    let id = submit(&app, &owner, &EMAIL).await;

    // more throttled calls than max_attempts allows attempts, and still not failed
    let (message, events) = wait_until(&app, &id, "throttled 3 times", |_, events| {
        events_with(events, "retrying") >= 3
    })
    .await;
    assert_eq!(message.attempts, 0);
    for (i, event) in events.iter().enumerate().filter(|(_, e)| e.status == "retrying") {
        assert_eq!(event.details["throttled"], true);
        assert_eq!(event.details["retryInMs"], 150);
        assert_eq!(event.details["attempt"], 1, "every try is still the first attempt");
        if let Some(next) = events.get(i + 1) {
            let spacing = (next.created_at - events[i - 1].created_at).to_std().unwrap();
            assert!(spacing >= Duration::from_millis(150), "tries {spacing:?} apart");
        }
    }

    let (status, body) = app
        .patch_as(&owner.token, &format!("/v1/providers/{credential}"), json!({"config": {}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(message.attempts, 1, "only the attempt that got through counts");
    assert_eq!(events.last().unwrap().details["attempt"], 1);
}

#[tokio::test]
async fn failover_follows_scope_then_priority() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    // tried first despite its priority: it belongs to the message's project
    let (project_own, _) = sandbox(
        &app,
        &owner,
        "email",
        json!({"failRate": 1, "failMode": "retryable"}),
        json!({"priority": 10, "projectId": owner.project_id}),
    )
    .await;
    let (refusing, _) = sandbox(
        &app,
        &owner,
        "email",
        json!({"failRate": 1, "failMode": "credential"}),
        json!({"priority": 0}),
    )
    .await;
    let (working, _) = sandbox(&app, &owner, "email", json!({}), json!({"priority": 1})).await;
    let (spare, spare_slug) =
        sandbox(&app, &owner, "email", json!({}), json!({"priority": 2})).await;
    sandbox(&app, &owner, "email", json!({}), json!({"priority": -1, "isActive": false})).await;
    sandbox(&app, &owner, "sms", json!({}), json!({"priority": -5})).await;

    let id = submit(&app, &owner, &EMAIL).await;
    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(message.attempts, 1);
    assert_eq!(message.provider_credential_id.as_deref(), Some(working.as_str()));
    let tries = events.last().unwrap().details["tries"].as_array().unwrap().clone();
    let tried: Vec<(&str, &str)> = tries
        .iter()
        .map(|t| (t["credentialId"].as_str().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tried,
        [
            (project_own.as_str(), "retryable"),
            (refusing.as_str(), "credential"),
            (working.as_str(), "sent")
        ]
    );
    assert!(tries[1]["error"].as_str().unwrap().contains("authentication failure"));
    // the refused credential is flagged for its owner
    let (_, shown) = app.get_as(&owner.token, &format!("/v1/providers/{refusing}")).await;
    assert!(shown["lastError"].as_str().unwrap().contains("authentication failure"), "{shown}");

    // naming a credential pins it
    let pinned = Draft { requested: Some(&spare_slug), ..EMAIL };
    let id = submit(&app, &owner, &pinned).await;
    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(message.provider_credential_id.as_deref(), Some(spare.as_str()));
    assert_eq!(events.last().unwrap().details["tries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn failover_with_every_credential_refused_fails() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    for priority in [0, 1] {
        let config = json!({"failRate": 1, "failMode": "credential"});
        sandbox(&app, &owner, "sms", config, json!({"priority": priority})).await;
    }
    let id = submit(&app, &owner, &Draft { channel: "sms", ..EMAIL }).await;
    let (message, events) = wait_for_status(&app, &id, "failed").await;
    assert_eq!(message.attempts, 1);
    assert!(message.status_reason.unwrap().contains("authentication failure"));
    let failed = &events.last().unwrap().details;
    assert_eq!(failed["failure"], "credentials_refused");
    assert_eq!(failed["tries"].as_array().unwrap().len(), 2);
    assert_eq!(dead_letters(&app).await.len(), 1);
}

#[tokio::test]
async fn messages_without_a_usable_credential_fail_clearly() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    let other = app.sign_up("Other").await;
    // another organization's credential, and another channel's, are no route
    sandbox(&app, &other, "sms", json!({}), json!({})).await;
    sandbox(&app, &owner, "email", json!({}), json!({})).await;

    let id = submit(&app, &owner, &Draft { channel: "sms", ..EMAIL }).await;
    let (message, events) = wait_for_status(&app, &id, "failed").await;
    assert_eq!(
        message.status_reason.as_deref(),
        Some("no active sms provider credential for this project")
    );
    assert_eq!(message.attempts, 0, "no provider was called");
    assert_eq!(statuses(&events), ["received", "queued", "processing", "failed"]);
    assert_eq!(events[3].details["failure"], "no_route");

    let unknown = Draft { requested: Some("nope"), ..EMAIL };
    let id2 = submit(&app, &owner, &unknown).await;
    let (message, _) = wait_for_status(&app, &id2, "failed").await;
    assert_eq!(
        message.status_reason.as_deref(),
        Some("provider `nope` is not an active email credential of this project")
    );
    let dead: Vec<String> = dead_letters(&app).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(dead, [id, id2]);

    // a real provider's credential whose stored config is unusable (edited by hand): the
    // credential is refused, and nothing pretends to send
    app.sql(&format!(
        "UPDATE provider_credentials SET provider_type = 'sns', channel = 'sms' \
         WHERE organization_id = '{}'",
        owner.org_id
    ))
    .await;
    let id3 = submit(&app, &owner, &Draft { channel: "sms", ..EMAIL }).await;
    let (message, events) = wait_for_status(&app, &id3, "failed").await;
    assert_eq!(
        message.status_reason.as_deref(),
        Some("the stored sns config is invalid: missing field `region`")
    );
    assert_eq!(events.last().unwrap().details["failure"], "credentials_refused");
}

#[tokio::test]
async fn appending_many_entries_keeps_them_all_in_order() {
    let app = TestApp::spawn().await;
    let redis = &app.running().state().redis;
    let stream = format!("{}:append-test", redis.keys().deliveries());
    // more than one script call's worth
    let values: Vec<String> = (0..1201).map(|i| format!("v{i}")).collect();
    relayit::queue::append_all(redis, &stream, "m", &values).await.unwrap();
    relayit::queue::append_all(redis, &stream, "m", &Vec::<String>::new()).await.unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> =
        redis.pool().next().xrange(&stream, "-", "+", None).await.unwrap();
    let read: Vec<&str> = entries.iter().map(|(_, fields)| fields["m"].as_str()).collect();
    assert_eq!(read, values);
}

#[tokio::test]
async fn duplicate_entries_never_send_twice() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({"latencyMs": 50}), json!({})).await;
    let id = submit(&app, &owner, &EMAIL).await;
    let redis = &app.running().state().redis;
    // a duplicate while the first is queued or in flight
    relayit::queue::deliveries::enqueue(redis, &[id.clone(), id.clone()]).await.unwrap();
    wait_for_status(&app, &id, "sent").await;
    // and more once it is sent
    relayit::queue::deliveries::enqueue(redis, &[id.clone(), id.clone()]).await.unwrap();
    wait_stream_empty(&app).await;

    let mut conn = app.connect().await;
    let events = history(&mut conn, &id).await;
    assert_eq!(
        statuses(&events),
        ["received", "queued", "processing", "sent"],
        "one provider call"
    );
    assert_eq!(load(&mut conn, &id).await.attempts, 1);
}

#[tokio::test]
async fn a_burst_survives_a_crash_and_each_message_is_sent_once() {
    let crashy = |c: &mut Config| {
        fast(c);
        c.delivery.concurrency = 10;
        // every slot busy, so the reader waits for a free one (and sees the shutdown at once)
        // rather than for new entries (up to a second, while deliveries in flight end)
        c.delivery.organization_share = 1.0;
        c.delivery.visibility_timeout = Duration::from_secs(1);
        c.delivery.provider_timeout = Duration::from_millis(500);
        // deliveries in flight at shutdown are cut off, as by a crash
        c.server.shutdown_grace = Duration::ZERO;
    };
    let mut app = TestApp::spawn_with(crashy).await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({"latencyMs": 100}), json!({})).await;
    let ids = submit_many(&app, &owner, &EMAIL, 200, false).await;

    let mut conn = app.connect().await;
    let count_status = async |conn: &mut AsyncPgConnection, status: &str| -> i64 {
        m::table.filter(m::status.eq(status)).count().get_result(conn).await.unwrap()
    };
    // crash while deliveries are in flight (not between two rounds of them)
    let start = Instant::now();
    while count_status(&mut conn, "sent").await < 30
        || count_status(&mut conn, "processing").await == 0
    {
        assert!(start.elapsed() < WAIT, "the burst does not move");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.shutdown().await.expect("shutdown");
    let sent = count_status(&mut conn, "sent").await;
    let cut_off = count_status(&mut conn, "processing").await;
    assert!(sent < 200, "the burst was over before the crash");
    assert!(cut_off > 0, "no delivery was in flight at the crash");

    // a replacement worker takes over the pending entries and the stranded claims
    app.restart_with(|_| {}).await;
    let start = Instant::now();
    while count_status(&mut conn, "sent").await < 200 {
        assert!(
            start.elapsed() < WAIT,
            "after the restart: {} sent, {} processing, {} queued",
            count_status(&mut conn, "sent").await,
            count_status(&mut conn, "processing").await,
            count_status(&mut conn, "queued").await,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use relayit::db::schema::message_events as e;
    let sent_events: Vec<String> =
        e::table.filter(e::status.eq("sent")).select(e::message_id).load(&mut conn).await.unwrap();
    assert_eq!(sent_events.len(), 200, "one sent event per message");
    let distinct: std::collections::HashSet<_> = sent_events.into_iter().collect();
    assert_eq!(distinct, ids.into_iter().collect());
    wait_stream_empty(&app).await;
}

/// With the stream in partitions, a worker serves them all at once, sharing its slots: the
/// few messages of one partition go out while another's long backlog is still being worked
/// through, not after it; and every entry is acknowledged on its own partition.
#[tokio::test]
async fn partitions_share_a_workers_slots_fairly() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.redis.stream_partitions = 2;
        c.delivery.concurrency = 4;
        c.delivery.organization_share = 1.0;
    })
    .await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({"latencyMs": 50}), json!({})).await;
    // rows first, then the entries: a backlog on partition 0, then a few on partition 1
    let ids = submit_many(&app, &owner, &EMAIL, 300, true).await;
    let state = app.running().state();
    let keys = state.redis.keys();
    let (backlog, few): (Vec<String>, Vec<String>) =
        ids.into_iter().partition(|id| keys.partition_of(id) == 0);
    let few = &few[..10];
    relayit::queue::deliveries::enqueue(&state.redis, &backlog).await.unwrap();
    relayit::queue::deliveries::enqueue(&state.redis, few).await.unwrap();

    let mut conn = app.connect().await;
    let sent_of = async |conn: &mut AsyncPgConnection, ids: &[String]| -> usize {
        let sent: i64 = m::table
            .filter(m::id.eq_any(ids))
            .filter(m::status.eq("sent"))
            .count()
            .get_result(conn)
            .await
            .unwrap();
        sent as usize
    };
    let start = Instant::now();
    while sent_of(&mut conn, few).await < few.len() {
        assert!(start.elapsed() < WAIT, "partition 1's messages are not sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backlog_sent = sent_of(&mut conn, &backlog).await;
    assert!(
        backlog_sent < backlog.len() / 2,
        "partition 1 waited behind partition 0: {backlog_sent} of {} sent first",
        backlog.len()
    );
    let start = Instant::now();
    while sent_of(&mut conn, &backlog).await < backlog.len() {
        assert!(start.elapsed() < WAIT, "the backlog is not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // acknowledged and deleted where they were read
    let (client, _) = redis(&app).await;
    for p in 0..2 {
        let stream = keys.partition(p).deliveries();
        let start = Instant::now();
        while client.xlen::<u64, _>(&stream).await.unwrap() > 0 {
            assert!(start.elapsed() < WAIT, "entries left on {stream}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_scheduled_message_is_sent_once_due() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({}), json!({})).await;
    let send_at = Utc::now() + chrono::Duration::seconds(1);
    let id = submit(&app, &owner, &Draft { send_at: Some(send_at), ..EMAIL }).await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = app.connect().await;
    assert_eq!(load(&mut conn, &id).await.status, "received", "sent before its time");

    let (message, events) = wait_for_status(&app, &id, "sent").await;
    assert_eq!(statuses(&events), ["received", "queued", "processing", "sent"]);
    assert!(events[1].created_at >= send_at, "queued at {} before {send_at}", events[1].created_at);
    assert!(events[1].details["sendAt"].is_string());
    assert_eq!(message.attempts, 1);
}

#[tokio::test]
async fn messages_whose_entry_was_lost_are_swept_back() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.delivery.requeue_after = Duration::from_millis(500);
    })
    .await;
    let owner = app.sign_up("Owner").await;
    sandbox(&app, &owner, "email", json!({}), json!({})).await;
    // committed as queued, but the process died before the XADD
    let queued = submit_many(&app, &owner, &EMAIL, 1, true).await.remove(0);
    // committed as received (unscheduled), and never moved on
    let received = submit_many(&app, &owner, &EMAIL, 1, true).await.remove(0);
    app.sql(&format!("UPDATE messages SET status = 'received' WHERE id = '{received}'")).await;
    app.sql(&format!(
        "DELETE FROM message_events WHERE message_id = '{received}' AND status = 'queued'"
    ))
    .await;

    let (_, events) = wait_for_status(&app, &queued, "sent").await;
    assert_eq!(statuses(&events), ["received", "queued", "processing", "sent"]);
    let (_, events) = wait_for_status(&app, &received, "sent").await;
    assert_eq!(statuses(&events), ["received", "queued", "processing", "sent"]);
    assert_eq!(events[1].details["recovered"], true);
    let waited = events[2].created_at - events[0].created_at;
    assert!(waited.to_std().unwrap() >= Duration::from_millis(500), "swept after {waited}");
}

/// When each provider call of the message's sent event started.
fn call_started(events: &[Event]) -> DateTime<Utc> {
    let sent = events.iter().find(|e| e.status == "sent").expect("a sent event");
    let last = sent.details["tries"].as_array().unwrap().last().unwrap().clone();
    serde_json::from_value(last["startedAt"].clone()).expect("startedAt")
}

#[tokio::test]
async fn a_credential_rate_limit_paces_its_calls_without_spending_attempts() {
    const BURST: usize = 8;
    const RATE: u32 = 2;
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    let (credential, slug) =
        sandbox(&app, &owner, "email", json!({"rateLimit": RATE}), json!({})).await;
    let ids = submit_many(&app, &owner, &EMAIL, BURST, false).await;

    let mut starts = Vec::new();
    let mut throttled = 0;
    for id in &ids {
        let (message, events) = wait_for_status(&app, id, "sent").await;
        assert_eq!(message.attempts, 1, "waiting for the limit spent no attempt");
        assert_eq!(message.throttled_since, None, "sent: no longer throttled");
        assert_eq!(events_with(&events, "sent"), 1);
        let waits: Vec<&Event> = events.iter().filter(|e| e.status == "retrying").collect();
        // the limiter gives each refused message a place in line: it comes back when a slot
        // is free, instead of all of them retrying together round after round
        assert!(waits.len() <= 3, "{id} was throttled {} times", waits.len());
        for wait in &waits {
            let details = &wait.details;
            assert_eq!(
                (&details["throttled"], &details["rateLimited"]),
                (&json!(true), &json!(true))
            );
            assert_eq!(details["attempt"], 1);
            assert_eq!(details["tries"][0]["result"], "rate_limited");
            assert_eq!(details["tries"][0]["credentialId"], credential.as_str());
            let error = details["error"].as_str().unwrap();
            assert_eq!(error, format!("credential `{slug}` is at its rate limit (2/s)"));
            assert!(details["throttledSince"].is_string());
        }
        throttled += waits.len();
        starts.push(call_started(&events));
    }
    // a burst of RATE goes at once; the rest must wait
    assert!(throttled >= BURST - RATE as usize, "only {throttled} throttled retries");

    // In any stretch of time, at most RATE calls plus one per interval: calls i..=j (in time
    // order) need (j - i + 1 - RATE) intervals between the first and the last.
    starts.sort();
    let interval = Duration::from_millis(1000 / u64::from(RATE));
    let slack = Duration::from_millis(150);
    for i in 0..starts.len() {
        for j in i + 1..starts.len() {
            let calls = (j - i + 1) as u32;
            let needed = interval * calls.saturating_sub(RATE);
            let took = (starts[j] - starts[i]).to_std().unwrap();
            assert!(took + slack >= needed, "calls {i}..={j} within {took:?}: {starts:#?}");
        }
    }
    // the limit's state: one key per credential, expiring once idle
    let (client, keys) = redis(&app).await;
    let ttl: i64 = client.pttl(keys.rate_limit(&credential)).await.unwrap();
    assert!(ttl > 0 || ttl == -2, "the rate-limit key must expire, pttl {ttl}");
}

#[tokio::test]
async fn a_busy_credential_fails_over_to_the_next_one() {
    let app = TestApp::spawn_with(fast).await;
    let owner = app.sign_up("Owner").await;
    let (busy, _) =
        sandbox(&app, &owner, "email", json!({"rateLimit": 1}), json!({"priority": 0})).await;
    let (spare, _) = sandbox(&app, &owner, "email", json!({}), json!({"priority": 1})).await;
    let ids = submit_many(&app, &owner, &EMAIL, 6, false).await;

    let mut by_busy = Vec::new();
    for id in &ids {
        let (message, events) = wait_for_status(&app, id, "sent").await;
        assert_eq!(message.attempts, 1);
        assert_eq!(
            events_with(&events, "retrying"),
            0,
            "{id} waited although a credential was free"
        );
        let tries = events.last().unwrap().details["tries"].as_array().unwrap().clone();
        let tried: Vec<(&str, &str)> = tries
            .iter()
            .map(|t| (t["credentialId"].as_str().unwrap(), t["result"].as_str().unwrap()))
            .collect();
        if message.provider_credential_id.as_deref() == Some(busy.as_str()) {
            assert_eq!(tried, [(busy.as_str(), "sent")]);
            by_busy.push(call_started(&events));
        } else {
            assert_eq!(tried, [(busy.as_str(), "rate_limited"), (spare.as_str(), "sent")]);
            assert!(tries[0].get("startedAt").is_none(), "a passed-over credential is not called");
        }
    }
    assert!(!by_busy.is_empty(), "the first choice sent nothing");
    assert!(by_busy.len() < ids.len(), "nothing failed over");
    by_busy.sort();
    for pair in by_busy.windows(2) {
        let apart = (pair[1] - pair[0]).to_std().unwrap();
        assert!(apart >= Duration::from_millis(850), "1/s credential called {apart:?} apart");
    }
}

#[tokio::test]
async fn a_message_throttled_for_too_long_fails_and_is_dead_lettered() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.delivery.max_throttled_for = Duration::from_millis(800);
    })
    .await;
    let owner = app.sign_up("Owner").await;
    let throttled = json!({"failRate": 1, "failMode": "throttled", "retryAfterMs": 150});
    sandbox(&app, &owner, "email", throttled, json!({})).await;
    let id = submit(&app, &owner, &EMAIL).await;

    let (message, events) = wait_for_status(&app, &id, "failed").await;
    assert_eq!(message.attempts, 0, "throttling spends no attempt, even at the end");
    assert_eq!(message.throttled_since, None);
    let reason = message.status_reason.clone().expect("a reason");
    assert!(reason.contains("delivery.max_throttled_for, 800ms"), "{reason}");
    assert!(reason.contains("simulated throttling (429)"), "{reason}");
    let retries: Vec<&Event> = events.iter().filter(|e| e.status == "retrying").collect();
    assert!(retries.len() >= 2, "{:?}", statuses(&events));
    // the streak's start is kept from the first throttled try to the last
    let since = &retries[0].details["throttledSince"];
    assert!(retries.iter().all(|e| &e.details["throttledSince"] == since));
    let first: DateTime<Utc> = serde_json::from_value(since.clone()).unwrap();
    let failed = events.last().unwrap();
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.details["failure"], "throttled_too_long");
    assert!((failed.created_at - first).to_std().unwrap() >= Duration::from_millis(800));
    assert_eq!(dead_letters(&app).await, [(id, reason)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tenant_cannot_hold_every_delivery_slot() {
    // 8 slots, half of them at most for one organization
    let app = TestApp::spawn_with(|c| c.delivery.concurrency = 8).await;
    let (slow, slow_key) = app.sender("Slow").await;
    let (fast, fast_key) = app.sender("Fast").await;
    let sandbox = |latency_ms: u64| {
        json!({"name": "Sandbox", "channel": "email", "providerType": "sandbox",
               "credentials": {}, "config": {"latencyMs": latency_ms}})
    };
    // every call of the slow tenant's provider takes 10 s (the sandbox's longest)
    app.create_provider(&slow.token, sandbox(10_000)).await;
    app.create_provider(&fast.token, sandbox(0)).await;
    let email = |n: usize| {
        json!({"channel": "email", "to": format!("user{n}@example.com"),
               "content": {"subject": "Hello", "text": "Hi"}})
    };
    // more than every slot, ahead of the fast tenant's in the stream
    for n in 0..24 {
        app.send_message(&slow_key, email(n)).await;
    }
    let mut conn = app.connect().await;
    let start = Instant::now();
    while count_status(&mut conn, "processing").await < 4 {
        assert!(start.elapsed() < WAIT, "the slow tenant's messages are not being delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fast_ids = Vec::new();
    for n in 0..16 {
        fast_ids.push(app.send_message(&fast_key, email(n)).await);
    }
    for id in &fast_ids {
        app.wait_for_status(&fast_key, id, "sent").await;
    }
    // the fast tenant was served while the slow one's first calls were still running, and
    // those held no more than their share
    assert_eq!(
        count_status(&mut conn, "sent").await,
        16,
        "the fast tenant waited for the slow one"
    );
    assert_eq!(count_status(&mut conn, "processing").await, 4, "the slow tenant's share");
    assert_eq!(count_status(&mut conn, "queued").await, 20, "the slow tenant's others wait");
}

async fn count_status(conn: &mut AsyncPgConnection, status: &str) -> i64 {
    crate::harness::count(conn, &format!("messages WHERE status = '{status}'")).await
}
