//! The Messages API: one message with its history, the project's message log (filters, search,
//! time window, keyset pages, parameter validation), retry and cancel, permissions and tenant
//! isolation.
//!
//! Messages are arranged by inserting rows with `db::messages::insert_all`, as ingestion does,
//! with the events of the life cycle up to their status.

use crate::harness::validation_fields;
use crate::harness::{Account, TestApp};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use fred::prelude::StreamsInterface;
use relayit::db::messages::{self as db, Event, NewMessage};
use relayit::domain::ids;
use relayit::domain::status;
use reqwest::Method;
use serde_json::{Value, json};

/// These tests arrange messages in every status by hand; no worker may deliver them meanwhile.
async fn spawn_without_worker() -> TestApp {
    TestApp::spawn_roles(relayit::server::Roles { api: true, worker: false, webhook: true }, |_| {})
        .await
}

/// A message to arrange.
#[derive(Debug, Clone)]
struct Seed {
    channel: &'static str,
    to: String,
    content: Value,
    status: &'static str,
    created_at: DateTime<Utc>,
}

impl Seed {
    fn email(to: &str, subject: &str) -> Seed {
        Seed {
            channel: "email",
            to: to.to_owned(),
            content: json!({"subject": subject, "text": format!("{subject}: details inside.")}),
            status: status::SENT,
            created_at: a_minute_ago(),
        }
    }

    fn sms(to: &str) -> Seed {
        Seed {
            channel: "sms",
            to: to.to_owned(),
            content: json!({"text": "Your code is 123456"}),
            status: status::SENT,
            created_at: a_minute_ago(),
        }
    }

    fn whatsapp(to: &str) -> Seed {
        Seed {
            channel: "whatsapp",
            content: json!({"text": "Your order shipped"}),
            ..Seed::sms(to)
        }
    }

    fn discord(channel_id: &str) -> Seed {
        Seed {
            channel: "discord",
            content: json!({"text": "Deploy finished"}),
            ..Seed::sms(channel_id)
        }
    }

    fn status(self, status: &'static str) -> Seed {
        Seed { status, ..self }
    }

    fn at(self, created_at: DateTime<Utc>) -> Seed {
        Seed { created_at, ..self }
    }
}

/// The default creation time: the arranged history (events a few milliseconds apart) is then
/// over before the test acts on the message.
fn a_minute_ago() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(1)
}

/// The statuses a message passes through to reach `status`.
fn life_cycle(status: &str) -> Vec<&'static str> {
    let path: &[&'static str] = match status {
        status::RECEIVED => &[status::RECEIVED],
        status::QUEUED => &[status::RECEIVED, status::QUEUED],
        status::PROCESSING => &[status::RECEIVED, status::QUEUED, status::PROCESSING],
        status::RETRYING => {
            &[status::RECEIVED, status::QUEUED, status::PROCESSING, status::RETRYING]
        }
        status::SENT => &[status::RECEIVED, status::QUEUED, status::PROCESSING, status::SENT],
        status::DELIVERED => {
            &[status::RECEIVED, status::QUEUED, status::PROCESSING, status::SENT, status::DELIVERED]
        }
        status::FAILED => &[status::RECEIVED, status::QUEUED, status::PROCESSING, status::FAILED],
        status::CANCELED => &[status::RECEIVED, status::CANCELED],
        other => panic!("no life cycle for {other}"),
    };
    path.to_vec()
}

/// Inserts the messages into `account`'s project and returns their ids, in order.
async fn insert(app: &TestApp, account: &Account, seeds: &[Seed]) -> Vec<String> {
    let mut conn = app.running().state().db.get().await.unwrap();
    insert_on(&mut conn, account, seeds).await
}

async fn insert_on(
    conn: &mut diesel_async::AsyncPgConnection,
    account: &Account,
    seeds: &[Seed],
) -> Vec<String> {
    let now = Utc::now();
    let mut new = Vec::new();
    let mut events = Vec::new();
    for seed in seeds {
        let id = ids::new_id(ids::MESSAGE);
        let scheduled = seed.status == status::RECEIVED;
        new.push(NewMessage {
            id: id.clone(),
            organization_id: account.org_id.clone(),
            project_id: account.project_id.clone(),
            api_key_id: None,
            channel: seed.channel.to_owned(),
            recipient: seed.to.clone(),
            requested_provider: None,
            status: seed.status,
            content: seed.content.clone(),
            metadata: json!({"orderId": "ord_1"}),
            idempotency_key: None,
            // a message waits in `received` only when scheduled for later
            send_at: scheduled.then(|| now + Duration::hours(1)),
            created_at: seed.created_at,
            // recently touched, so that no recovery sweep takes these rows for stuck ones
            updated_at: now,
            template_id: None,
            template_version: None,
        });
        // inserted newest first: the API must order the history by time, not by insertion
        for (i, status) in life_cycle(seed.status).into_iter().enumerate().rev() {
            let at = seed.created_at + Duration::milliseconds(10 * i as i64);
            events.push(Event::new(&id, status, json!({"step": i}), at));
        }
    }
    db::insert_all(conn, &new, &events).await.unwrap();
    new.into_iter().map(|m| m.id).collect()
}

async fn insert_one(app: &TestApp, account: &Account, seed: Seed) -> String {
    insert(app, account, &[seed]).await.remove(0)
}

/// A failed message, as the worker leaves one after its last attempt.
async fn insert_failed(app: &TestApp, account: &Account) -> String {
    let id =
        insert_one(app, account, Seed::email("dana@example.com", "Receipt").status(status::FAILED))
            .await;
    app.sql(&format!(
        "UPDATE messages SET attempts = 3, status_reason = 'MessageRejected: Email address is not verified' WHERE id = '{id}'"
    ))
    .await;
    id
}

/// Another project in `owner`'s organization, as an account whose project it is.
async fn other_project(app: &TestApp, owner: &Account, name: &str) -> Account {
    let (status, project) = app.post_as(&owner.token, "/v1/projects", json!({"name": name})).await;
    assert_eq!(status, 201, "{project}");
    Account { project_id: project["id"].as_str().unwrap().to_owned(), ..owner.clone() }
}

/// Creates an API key and returns `(id, key)`.
async fn api_key(app: &TestApp, owner: &Account, scopes: &[&str]) -> (String, String) {
    let (status, body) =
        app.post_as(&owner.token, "/v1/api-keys", json!({"name": "ops", "scopes": scopes})).await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
}

fn message(id: &str) -> String {
    format!("/v1/messages/{id}")
}

fn log(project: &str, query: &str) -> String {
    format!("/v1/projects/{project}/messages?{query}")
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The ids of a list answer, in order.
fn ids_of(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {body}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids the log answers for `query` (one page), asserting 200.
async fn listed(app: &TestApp, account: &Account, query: &str) -> Vec<String> {
    let (status, body) = app.get_as(&account.token, &log(&account.project_id, query)).await;
    assert_eq!(status, 200, "{query}: {body}");
    ids_of(&body)
}

fn event_statuses(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {body}"))
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The message ids on the delivery stream, oldest first.
async fn delivery_stream(app: &TestApp) -> Vec<String> {
    let redis = &app.running().state().redis;
    let entries = redis
        .pool()
        .next()
        .xrange_values::<String, String, String, _, _, _>(redis.keys().deliveries(), "-", "+", None)
        .await
        .unwrap();
    entries.into_iter().map(|(_, mut fields)| fields.remove("m").unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reads_with_its_provider_and_its_events_oldest_first() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let (status, provider) = app
        .post_as(
            &owner.token,
            "/v1/providers",
            json!({"name": "Sandbox", "slug": "sandbox-mail", "channel": "email",
                   "providerType": "sandbox", "credentials": {}}),
        )
        .await;
    assert_eq!(status, 201, "{provider}");
    let provider_id = provider["id"].as_str().unwrap();
    let created_at = Utc::now() - Duration::minutes(5);
    let id = insert_one(
        &app,
        &owner,
        Seed::email("alice@example.com", "Your invoice").status(status::DELIVERED).at(created_at),
    )
    .await;
    app.sql(&format!(
        "UPDATE messages SET provider_credential_id = '{provider_id}', provider_type = 'sandbox', \
         provider_message_id = 'sandbox-0001', attempts = 1 WHERE id = '{id}'"
    ))
    .await;

    let (status, body) = app.get_as(&owner.token, &message(&id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["projectId"], owner.project_id.as_str());
    assert_eq!(body["channel"], "email");
    assert_eq!(body["to"], "alice@example.com");
    assert_eq!(
        body["provider"],
        json!({"id": provider_id, "slug": "sandbox-mail", "type": "sandbox"})
    );
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["statusReason"], Value::Null);
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["metadata"], json!({"orderId": "ord_1"}));
    assert_eq!(body["content"]["subject"], "Your invoice");
    assert_eq!(body["providerMessageId"], "sandbox-0001");
    assert_eq!(body["sendAt"], Value::Null);
    let read_created: DateTime<Utc> = body["createdAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(read_created.timestamp_micros(), created_at.timestamp_micros());
    assert!(body["updatedAt"].as_str().unwrap().parse::<DateTime<Utc>>().is_ok(), "{body}");

    assert_eq!(event_statuses(&body), ["received", "queued", "processing", "sent", "delivered"]);
    let events = body["events"].as_array().unwrap();
    let times: Vec<DateTime<Utc>> =
        events.iter().map(|e| e["at"].as_str().unwrap().parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{body}");
    for (i, event) in events.iter().enumerate() {
        assert!(event["id"].as_str().unwrap().starts_with("evt_"), "{event}");
        assert_eq!(event["details"], json!({"step": i}));
    }

    // A message no provider has handled yet has none.
    let queued = insert_one(&app, &owner, Seed::sms("+14155550123").status(status::QUEUED)).await;
    let (status, body) = app.get_as(&owner.token, &message(&queued)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], Value::Null);
    assert_eq!(event_statuses(&body), ["received", "queued"]);

    // Members and keys with `read` or `manage` read it too.
    let member = app.add_member(&owner, "Member", "member").await;
    let read_key = app.create_api_key(&owner, &["read"], None).await;
    let manage_key = app.create_api_key(&owner, &["manage"], None).await;
    let bound_key = app.create_api_key(&owner, &["read"], Some(&owner.project_id)).await;
    for token in [&member.token, &read_key, &manage_key, &bound_key] {
        let (status, body) = app.get_as(token, &message(&id)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_and_other_projects_find_nothing() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let failed = insert_failed(&app, &owner).await;
    let scheduled =
        insert_one(&app, &owner, Seed::sms("+14155550123").status(status::RECEIVED)).await;

    // Another organization: its owner's session, and its own keys.
    let stranger = app.sign_up("Stranger").await;
    let stranger_read = app.create_api_key(&stranger, &["read"], None).await;
    let stranger_manage = app.create_api_key(&stranger, &["manage"], None).await;
    for token in [&stranger.token, &stranger_read, &stranger_manage] {
        let (status, body) = app.get_as(token, &message(&failed)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
        let (status, body) = app.get_as(token, &log(&owner.project_id, "")).await;
        assert_eq!(status, 404, "{body}");
    }
    for token in [&stranger.token, &stranger_manage] {
        let (status, body) = app
            .call(Method::POST, &format!("/v1/messages/{failed}/retry"), Some(token), None)
            .await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = app
            .call(Method::POST, &format!("/v1/messages/{scheduled}/cancel"), Some(token), None)
            .await;
        assert_eq!(status, 404, "{body}");
    }

    // A key bound to another project of the same organization.
    let second = other_project(&app, &owner, "Second").await;
    let bound_read = app.create_api_key(&owner, &["read"], Some(&second.project_id)).await;
    let bound_manage = app.create_api_key(&owner, &["manage"], Some(&second.project_id)).await;
    for token in [&bound_read, &bound_manage] {
        let (status, body) = app.get_as(token, &message(&failed)).await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = app.get_as(token, &log(&owner.project_id, "")).await;
        assert_eq!(status, 404, "{body}");
    }
    for (id, action) in [(&failed, "retry"), (&scheduled, "cancel")] {
        let (status, body) = app
            .call(Method::POST, &format!("/v1/messages/{id}/{action}"), Some(&bound_manage), None)
            .await;
        assert_eq!(status, 404, "{action}: {body}");
    }
    // ... while it sees its own project's messages.
    let own = insert_one(&app, &second, Seed::sms("+14155550199")).await;
    assert_eq!(app.get_as(&bound_read, &message(&own)).await.0, 200);
    assert_eq!(
        listed(&app, &Account { token: bound_read.clone(), ..second.clone() }, "").await,
        vec![own]
    );

    // Unknown ids.
    for token in [&owner.token, &app.create_api_key(&owner, &["read"], None).await] {
        let (status, body) = app.get_as(token, &message("msg_0000000000000000000000000000")).await;
        assert_eq!(status, 404, "{body}");
        let (status, _) = app.get_as(token, &message("not-an-id")).await;
        assert_eq!(status, 404);
    }
    for action in ["retry", "cancel"] {
        let (status, body) = app
            .call(
                Method::POST,
                &format!("/v1/messages/msg_nope/{action}"),
                Some(&owner.token),
                None,
            )
            .await;
        assert_eq!(status, 404, "{body}");
    }

    // Nothing above changed the messages.
    let (_, body) = app.get_as(&owner.token, &message(&failed)).await;
    assert_eq!(body["status"], "failed");
    let (_, body) = app.get_as(&owner.token, &message(&scheduled)).await;
    assert_eq!(body["status"], "received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filters_by_status_and_channel() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let t0 = Utc::now() - Duration::hours(1);
    let at = |minutes: i64| t0 + Duration::minutes(minutes);
    let ids = insert(
        &app,
        &owner,
        &[
            Seed::email("a@example.com", "One").status(status::SENT).at(at(0)),
            Seed::email("b@example.com", "Two").status(status::FAILED).at(at(1)),
            Seed::sms("+14155550101").status(status::DELIVERED).at(at(2)),
            Seed::sms("+14155550102").status(status::FAILED).at(at(3)),
            Seed::whatsapp("+14155550103").status(status::QUEUED).at(at(4)),
            Seed::discord("112233445566778899").status(status::RECEIVED).at(at(5)),
            Seed::email("c@example.com", "Three").status(status::CANCELED).at(at(6)),
        ],
    )
    .await;
    // Another project's messages never show.
    let second = other_project(&app, &owner, "Second").await;
    insert(&app, &second, &[Seed::email("x@example.com", "Elsewhere").status(status::FAILED)])
        .await;

    // Everything, newest first, without events.
    let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, "")).await;
    assert_eq!(status, 200, "{body}");
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(ids_of(&body), newest_first);
    assert_eq!(body["nextCursor"], Value::Null);
    assert!(body["data"][0].get("events").is_none(), "{body}");
    assert_eq!(body["data"][0]["status"], "canceled");
    assert_eq!(body["data"][0]["to"], "c@example.com");

    let cases: [(&str, Vec<&String>); 8] = [
        ("status=failed", vec![&ids[3], &ids[1]]),
        ("status=failed,canceled", vec![&ids[6], &ids[3], &ids[1]]),
        ("status=%20queued%20,%20received", vec![&ids[5], &ids[4]]),
        ("channel=sms", vec![&ids[3], &ids[2]]),
        ("channel=email,discord", vec![&ids[6], &ids[5], &ids[1], &ids[0]]),
        ("status=failed&channel=sms", vec![&ids[3]]),
        ("status=processing", vec![]),
        ("status=", newest_first.iter().collect()),
    ];
    for (query, expected) in cases {
        let found = listed(&app, &owner, query).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(found, expected, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_ids_recipients_and_subjects_literally() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let ids = insert(
        &app,
        &owner,
        &[
            Seed::email("Alice.Smith@Example.com", "Your invoice #42"),
            Seed::email("bob@example.org", "Welcome aboard"),
            Seed::sms("+14155550123"),
            Seed::email("carol_x@example.com", "50% off today"),
            Seed::email("carolyx@example.com", "Order 5000 shipped"),
            Seed::sms("+14155550999"),
            Seed::email("dave@example.com", r"Saved to C:\temp"),
            Seed::discord("998877665544332211"),
        ],
    )
    .await;
    app.sql(&format!(
        "UPDATE messages SET provider_message_id = 'prov-abc-123' WHERE id = '{}'",
        ids[5]
    ))
    .await;
    // Another project's message with the same recipient never shows.
    let second = other_project(&app, &owner, "Second").await;
    insert(&app, &second, &[Seed::email("alice.smith@example.com", "Your invoice #42")]).await;

    let cases: Vec<(String, Vec<&String>)> = vec![
        // recipient, case-insensitively, any part of it
        ("alice.SMITH".into(), vec![&ids[0]]),
        ("EXAMPLE.ORG".into(), vec![&ids[1]]),
        ("4155550".into(), vec![&ids[5], &ids[2]]),
        // the email subject
        ("invoice".into(), vec![&ids[0]]),
        ("WELCOME".into(), vec![&ids[1]]),
        // trimmed
        ("  aboard  ".into(), vec![&ids[1]]),
        // exact ids only
        (ids[2].clone(), vec![&ids[2]]),
        (ids[2][..12].to_owned(), vec![]),
        ("prov-abc-123".into(), vec![&ids[5]]),
        ("prov-abc".into(), vec![]),
        // LIKE's wildcards and escape character are plain characters
        ("50%".into(), vec![&ids[3]]),
        ("carol_x".into(), vec![&ids[3]]),
        ("%".into(), vec![&ids[3]]),
        ("_".into(), vec![&ids[3]]),
        (r":\t".into(), vec![&ids[6]]),
        (r"\".into(), vec![&ids[6]]),
        // discord's text is not searched, only an email's subject
        ("deploy".into(), vec![]),
        ("nothing like this".into(), vec![]),
    ];
    for (term, expected) in cases {
        let found = listed(&app, &owner, &format!("search={}", encode(&term))).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(found, expected, "search {term:?}");
    }
    // Search combines with the other filters.
    let found = listed(&app, &owner, "search=example&channel=email&limit=2").await;
    assert_eq!(found, [ids[6].clone(), ids[4].clone()]);
    assert_eq!(listed(&app, &owner, "search=4155550&status=failed").await, Vec::<String>::new());

    // Exact and substring matches make one log, newest first, paged as any other.
    app.sql(&format!("UPDATE messages SET provider_message_id = 'carol' WHERE id = '{}'", ids[6]))
        .await;
    assert_eq!(listed(&app, &owner, "search=carol").await, [&*ids[6], &ids[4], &ids[3]]);
    let (status, first) =
        app.get_as(&owner.token, &log(&owner.project_id, "search=carol&limit=2")).await;
    assert_eq!((status, ids_of(&first)), (200, vec![ids[6].clone(), ids[4].clone()]));
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let rest =
        listed(&app, &owner, &format!("search=carol&limit=2&cursor={}", encode(cursor))).await;
    assert_eq!(rest, [&*ids[3]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_until_bound_the_creation_time() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    // whole seconds, so that the bounds sent as text are the very instants stored
    let t0 = DateTime::from_timestamp(Utc::now().timestamp() - 86_400, 0).unwrap();
    let hour = Duration::hours(1);
    let ids = insert(
        &app,
        &owner,
        &[
            Seed::sms("+14155550101").at(t0 - hour * 3),
            Seed::sms("+14155550102").at(t0 - hour * 2),
            Seed::sms("+14155550103").at(t0 - hour),
        ],
    )
    .await;
    let (old, middle, new) = (&ids[0], &ids[1], &ids[2]);
    let since = |at: DateTime<Utc>| format!("since={}", encode(&rfc3339(at)));
    let until = |at: DateTime<Utc>| format!("until={}", encode(&rfc3339(at)));

    // `since` is inclusive, `until` exclusive.
    assert_eq!(listed(&app, &owner, &since(t0 - hour * 2)).await, [new.clone(), middle.clone()]);
    assert_eq!(listed(&app, &owner, &until(t0 - hour)).await, [middle.clone(), old.clone()]);
    let window = format!("{}&{}", since(t0 - hour * 2), until(t0 - hour));
    assert_eq!(listed(&app, &owner, &window).await, vec![middle.clone()]);
    let empty = format!("{}&{}", since(t0 - hour), until(t0 - hour));
    assert_eq!(listed(&app, &owner, &empty).await, Vec::<String>::new());
    assert_eq!(listed(&app, &owner, &since(t0)).await, Vec::<String>::new());

    // Any offset, and a `+` sent encoded.
    let offset = (t0 - hour * 2).with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap());
    let query = format!("since={}", encode(&offset.to_rfc3339()));
    assert!(query.contains("%2B02%3A00"), "{query}");
    assert_eq!(listed(&app, &owner, &query).await, [new.clone(), middle.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_have_no_duplicates_or_gaps_while_messages_arrive() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let t0 = Utc::now() - Duration::minutes(30);
    // Pairs created in the same microsecond: the id breaks the tie.
    let times = [0, 1, 1, 2, 3, 3, 4].map(|s| t0 + Duration::seconds(s));
    let seeds: Vec<Seed> = times
        .iter()
        .enumerate()
        .map(|(i, at)| Seed::sms(&format!("+1415555010{i}")).at(*at))
        .collect();
    let ids = insert(&app, &owner, &seeds).await;
    let mut expected: Vec<(DateTime<Utc>, String)> =
        times.iter().copied().zip(ids.iter().cloned()).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    let page = |cursor: Option<String>| {
        let owner = owner.clone();
        let app = &app;
        async move {
            let query = match cursor {
                Some(cursor) => format!("limit=3&cursor={}", encode(&cursor)),
                None => "limit=3".to_owned(),
            };
            let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, &query)).await;
            assert_eq!(status, 200, "{body}");
            (ids_of(&body), body["nextCursor"].as_str().map(str::to_owned))
        }
    };
    let (first, cursor) = page(None).await;
    assert_eq!(first.len(), 3);
    // New messages arrive between pages: they belong before the first page, not in later ones.
    let arrived =
        insert(&app, &owner, &[Seed::sms("+14155550200"), Seed::sms("+14155550201")]).await;
    let (second, cursor) = page(Some(cursor.expect("a second page"))).await;
    assert_eq!(second.len(), 3);
    let (third, cursor) = page(Some(cursor.expect("a third page"))).await;
    assert_eq!(cursor, None);
    let all: Vec<String> = [first, second, third].concat();
    assert_eq!(all, expected);

    // A fresh walk sees the new ones first.
    let (fresh, _) = page(None).await;
    assert_eq!(fresh[..2], [arrived[1].clone(), arrived[0].clone()]);
    assert_eq!(fresh[2], expected[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_parameter_is_named() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    insert(&app, &owner, &[Seed::sms("+14155550123")]).await;
    let long = "x".repeat(201);
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("status=bogus".into(), vec!["status"]),
        ("status=sent,nope".into(), vec!["status"]),
        ("status=SENT".into(), vec!["status"]),
        ("channel=fax".into(), vec!["channel"]),
        ("channel=email,pigeon".into(), vec!["channel"]),
        ("since=yesterday".into(), vec!["since"]),
        ("since=2026-01-01".into(), vec!["since"]),
        ("until=2026-13-01T00:00:00Z".into(), vec!["until"]),
        ("limit=0".into(), vec!["limit"]),
        ("limit=101".into(), vec!["limit"]),
        ("limit=-1".into(), vec!["limit"]),
        ("limit=ten".into(), vec!["limit"]),
        ("cursor=garbage!".into(), vec!["cursor"]),
        (format!("cursor={}", encode("bm90IGEgY3Vyc29y")), vec!["cursor"]),
        (format!("search={long}"), vec!["search"]),
        // all at once
        (
            "status=x&channel=y&since=z&limit=0&cursor=%21".into(),
            vec!["status", "channel", "since", "limit", "cursor"],
        ),
    ];
    for (query, expected) in cases {
        let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, &query)).await;
        assert_eq!(validation_fields(status, &body), expected, "{query}");
    }
    // The limits themselves and 200 characters of search are fine.
    for query in ["limit=1", "limit=100", &format!("search={}", "x".repeat(200))] {
        let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, query)).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
    // 200 characters as sent, spaces included (what the OpenAPI document says)
    let padded = format!("search=%20{}", "x".repeat(200));
    let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, &padded)).await;
    assert_eq!(validation_fields(status, &body), ["search"], "{body}");
    // A range that ends before it starts holds no message: an empty page, not an error.
    let (status, body) = app
        .get_as(
            &owner.token,
            &log(&owner.project_id, "since=2030-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "{body}");
    // An unknown parameter is refused rather than silently ignored.
    let (status, body) = app.get_as(&owner.token, &log(&owner.project_id, "statuses=sent")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_requeues_a_failed_message() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let failed = insert_failed(&app, &owner).await;
    let (_, before) = app.get_as(&owner.token, &message(&failed)).await;
    assert_eq!((before["attempts"].as_i64(), before["status"].as_str()), (Some(3), Some("failed")));
    assert!(delivery_stream(&app).await.is_empty());

    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{failed}/retry"), Some(&owner.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], failed.as_str());
    assert_eq!(body["status"], "queued");
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["statusReason"], Value::Null);
    assert_eq!(event_statuses(&body), ["received", "queued", "processing", "failed", "queued"]);
    let last = body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["details"], json!({"retry": true, "by": owner.user_id}));
    let updated = |m: &Value| m["updatedAt"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert!(updated(&body) > updated(&before), "{body}");
    assert_eq!(delivery_stream(&app).await, vec![failed.clone()]);

    // Stored as answered.
    let (_, stored) = app.get_as(&owner.token, &message(&failed)).await;
    assert_eq!(stored["attempts"], 0);
    assert_eq!(stored["events"].as_array().unwrap().len(), 5);

    // Now queued: a second retry is a conflict, and enqueues nothing.
    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{failed}/retry"), Some(&owner.token), None)
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(delivery_stream(&app).await, vec![failed.clone()]);

    // Only failed messages can be retried.
    let others = insert(
        &app,
        &owner,
        &[
            Seed::sms("+14155550101").status(status::SENT),
            Seed::sms("+14155550102").status(status::DELIVERED),
            Seed::sms("+14155550103").status(status::RECEIVED),
            Seed::sms("+14155550104").status(status::RETRYING),
            Seed::sms("+14155550105").status(status::CANCELED),
        ],
    )
    .await;
    for id in &others {
        let (status, body) = app
            .call(Method::POST, &format!("/v1/messages/{id}/retry"), Some(&owner.token), None)
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    }
    assert_eq!(delivery_stream(&app).await, vec![failed.clone()]);

    // A `manage` key and an admin may retry too; the event names the key.
    let (key_id, manage_key) = api_key(&app, &owner, &["manage"]).await;
    let by_key = insert_failed(&app, &owner).await;
    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{by_key}/retry"), Some(&manage_key), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let last = body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["details"], json!({"retry": true, "by": key_id}));
    let admin = app.add_member(&owner, "Admin", "admin").await;
    let by_admin = insert_failed(&app, &owner).await;
    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{by_admin}/retry"), Some(&admin.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivery_stream(&app).await, [failed, by_key, by_admin]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_scheduled_message_only() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let admin = app.add_member(&owner, "Admin", "admin").await;
    let scheduled =
        insert_one(&app, &owner, Seed::sms("+14155550123").status(status::RECEIVED)).await;

    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{scheduled}/cancel"), Some(&admin.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "canceled");
    assert!(body["statusReason"].is_string(), "{body}");
    assert!(body["sendAt"].is_string(), "{body}");
    assert_eq!(event_statuses(&body), ["received", "canceled"]);
    let last = body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["details"]["by"], admin.user_id.as_str());
    let (_, stored) = app.get_as(&owner.token, &message(&scheduled)).await;
    assert_eq!(stored["status"], "canceled");

    // Once canceled, or past `received`, it is a conflict and nothing changes.
    let later = insert(
        &app,
        &owner,
        &[
            Seed::sms("+14155550101").status(status::QUEUED),
            Seed::sms("+14155550102").status(status::PROCESSING),
            Seed::sms("+14155550103").status(status::SENT),
            Seed::sms("+14155550104").status(status::FAILED),
        ],
    )
    .await;
    for id in std::iter::once(&scheduled).chain(&later) {
        let (_, before) = app.get_as(&owner.token, &message(id)).await;
        let (status, body) = app
            .call(Method::POST, &format!("/v1/messages/{id}/cancel"), Some(&owner.token), None)
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
        let (_, after) = app.get_as(&owner.token, &message(id)).await;
        assert_eq!(after, before);
    }

    // A `manage` key may cancel.
    let manage_key = app.create_api_key(&owner, &["manage"], None).await;
    let another =
        insert_one(&app, &owner, Seed::email("a@example.com", "Later").status(status::RECEIVED))
            .await;
    let (status, body) = app
        .call(Method::POST, &format!("/v1/messages/{another}/cancel"), Some(&manage_key), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_follow_roles_and_scopes() {
    let app = spawn_without_worker().await;
    let owner = app.sign_up("Owner").await;
    let failed = insert_failed(&app, &owner).await;
    let scheduled =
        insert_one(&app, &owner, Seed::sms("+14155550123").status(status::RECEIVED)).await;
    let member = app.add_member(&owner, "Member", "member").await;
    let read_key = app.create_api_key(&owner, &["read"], None).await;
    let send_key = app.create_api_key(&owner, &["send"], None).await;

    // Members and `read` keys read, but neither retries nor cancels.
    for token in [&member.token, &read_key] {
        assert_eq!(app.get_as(token, &message(&failed)).await.0, 200);
        assert_eq!(listed_as(&app, token, &owner.project_id).await, 200);
        for (id, action) in [(&failed, "retry"), (&scheduled, "cancel")] {
            let (status, body) = app
                .call(Method::POST, &format!("/v1/messages/{id}/{action}"), Some(token), None)
                .await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{body}"
            );
        }
    }
    // A `send` key reads nothing.
    let (status, body) = app.get_as(&send_key, &message(&failed)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(listed_as(&app, &send_key, &owner.project_id).await, 403);
    for (id, action) in [(&failed, "retry"), (&scheduled, "cancel")] {
        let (status, _) = app
            .call(Method::POST, &format!("/v1/messages/{id}/{action}"), Some(&send_key), None)
            .await;
        assert_eq!(status, 403);
    }
    // Without credentials: 401.
    assert_eq!(app.call(Method::GET, &message(&failed), None, None).await.0, 401);

    // Nothing changed.
    let (_, body) = app.get_as(&owner.token, &message(&failed)).await;
    assert_eq!((body["status"].as_str(), body["attempts"].as_i64()), (Some("failed"), Some(3)));
    let (_, body) = app.get_as(&owner.token, &message(&scheduled)).await;
    assert_eq!(body["status"], "received");
    assert!(delivery_stream(&app).await.is_empty());
}

async fn listed_as(app: &TestApp, token: &str, project: &str) -> u16 {
    app.get_as(token, &log(project, "")).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_are_in_the_openapi_document() {
    let app = spawn_without_worker().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    assert!(paths["/v1/messages/{messageId}"]["get"].is_object(), "{paths}");
    assert!(paths["/v1/messages/{messageId}/retry"]["post"].is_object(), "{paths}");
    assert!(paths["/v1/messages/{messageId}/cancel"]["post"].is_object(), "{paths}");
    let list = &paths["/v1/projects/{projectId}/messages"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["projectId", "status", "channel", "search", "since", "until", "limit", "cursor"] {
        assert!(params.contains(&name), "{name} missing from {params:?}");
    }
}

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many statements this connection holds prepared whose text starts with `prefix`.
async fn prepared(conn: &mut diesel_async::AsyncPgConnection, prefix: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE starts_with(statement, $1)",
    )
    .bind::<diesel::sql_types::Text, _>(prefix)
    .get_result::<Prepared>(conn)
    .await
    .unwrap()
    .n
}

/// The ingestion statement is prepared once per connection and reused, unlike a plain
/// `sql_query`, which diesel prepares anew (a Parse round trip and a plan) on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_statements_stay_prepared_on_their_connection() {
    use diesel_async::RunQueryDsl;
    use relayit::db::CacheStatement;
    let app = spawn_without_worker().await;
    let account = app.sign_up("Ada").await;
    let mut conn = app.running().state().db.get().await.unwrap();

    for _ in 0..3 {
        diesel::sql_query("SELECT 41 + $1")
            .bind::<diesel::sql_types::Integer, _>(1)
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query("SELECT 42 + $1")
            .bind::<diesel::sql_types::Integer, _>(1)
            .cached()
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(prepared(&mut conn, "SELECT 41 + $1").await, 0, "plain sql_query is not kept");
    assert_eq!(prepared(&mut conn, "SELECT 42 + $1").await, 1, "cached: one statement, reused");

    for _ in 0..3 {
        insert_on(&mut conn, &account, &[Seed::email("ada@example.com", "Hello")]).await;
    }
    assert_eq!(prepared(&mut conn, "WITH m AS (").await, 1);
}

/// A migration adding a column while workers run (a rolling upgrade) must not break the claim
/// statement they hold prepared: Postgres refuses a prepared statement whose result type
/// changed ("cached plan must not change result type"), which `RETURNING *` would do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_claim_survives_a_column_added_meanwhile() {
    let app = spawn_without_worker().await;
    let account = app.sign_up("Ada").await;
    let mut conn = app.running().state().db.get().await.unwrap();
    let queued = [
        Seed::email("ada@example.com", "One").status(status::QUEUED),
        Seed::email("bob@example.com", "Two").status(status::QUEUED),
    ];
    let ids = insert_on(&mut conn, &account, &queued).await;
    let (now, stale) = (Utc::now(), Utc::now() - Duration::minutes(5));

    let first = relayit::db::delivery::claim(&mut conn, &ids[..1], now, stale, "w1", &[], false)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    app.sql("ALTER TABLE messages ADD COLUMN added_by_a_later_release integer").await;
    let second = relayit::db::delivery::claim(&mut conn, &ids[1..], now, stale, "w1", &[], false)
        .await
        .unwrap();
    assert_eq!(second.iter().map(|m| &m.id).collect::<Vec<_>>(), vec![&ids[1]]);
}

/// The claim, the outcome write and a cancel find their rows by primary key even when the
/// statistics were gathered while nothing was in flight (a quiet queue) and a backlog built up
/// since: given a partial index over unfinished messages and a plain status test, the planner
/// believed that index nearly empty and scanned all of it for every batch (or every cancel).
/// And the claims stay on their pages, touching no index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_find_their_rows_by_id_whatever_the_statistics() {
    use diesel_async::RunQueryDsl;
    use relayit::db::delivery::{self, Outcome};
    let app = spawn_without_worker().await;
    let account = app.sign_up("Ada").await;
    app.sql("ALTER TABLE messages SET (autovacuum_enabled = false)").await;
    let mut conn = app.running().state().db.get().await.unwrap();
    let done: Vec<Seed> =
        (0..500).map(|i| Seed::email(&format!("old{i}@example.com"), "Old")).collect();
    insert_on(&mut conn, &account, &done).await;
    app.sql("ANALYZE messages").await;
    let backlog: Vec<Seed> = (0..3000)
        .map(|i| Seed::email(&format!("new{i}@example.com"), "New").status(status::QUEUED))
        .collect();
    let ids = insert_on(&mut conn, &account, &backlog).await;
    let scheduled: Vec<Seed> = (0..3000)
        .map(|i| Seed::email(&format!("later{i}@example.com"), "Later").status(status::RECEIVED))
        .collect();
    let scheduled = insert_on(&mut conn, &account, &scheduled).await;
    let scans_before = index_scans(&app).await;

    // a cancel is rare on a connection: planned for its values, status included
    let canceled =
        db::cancel_received(&mut conn, &account.org_id, &scheduled[0], "canceled", json!({}))
            .await
            .unwrap();
    assert_eq!(canceled.map(|m| m.status), Some(status::CANCELED.to_owned()));
    // the claim and the outcome write: the plan a worker's connection settles on after a few
    // executions
    diesel::sql_query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();

    let (now, stale) = (Utc::now(), Utc::now() - Duration::minutes(5));
    let claimed =
        delivery::claim(&mut conn, &ids[..100], now, stale, "w1", &[], false).await.unwrap();
    assert_eq!(claimed.len(), 100);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|m| Outcome {
            message_id: m.id.clone(),
            claimed_at: m.updated_at,
            status: status::SENT,
            status_reason: None,
            attempts: 1,
            next_attempt_at: None,
            provider_message_id: Some(format!("pm-{}", m.id)),
            provider_credential_id: None,
            provider_type: Some("sandbox".into()),
            throttled_since: None,
            details: json!({}),
        })
        .collect();
    let applied = delivery::record(&mut conn, &outcomes, Utc::now()).await.unwrap();
    assert_eq!(applied.len(), 100);
    // this backend reports its counters before it answers this statement
    diesel::sql_query("SELECT pg_stat_force_next_flush()").execute(&mut conn).await.unwrap();

    let scans_after = index_scans(&app).await;
    assert_eq!(
        scans_after.other, scans_before.other,
        "no status change by id may scan another index of messages"
    );
    assert!(scans_after.primary > scans_before.primary, "they find their rows by id");
    // the claims changed no indexed column and found room on their pages (migration 000014)
    assert!(
        scans_after.hot_updates >= scans_before.hot_updates + 100,
        "the claims are HOT updates: {} -> {}",
        scans_before.hot_updates,
        scans_after.hot_updates
    );
}

#[derive(diesel::QueryableByName)]
struct IndexScans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    other: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    primary: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot_updates: i64,
}

async fn index_scans(app: &TestApp) -> IndexScans {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut conn = diesel_async::AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(
        "SELECT coalesce(sum(idx_scan) FILTER (WHERE indexrelname <> 'messages_pkey'), 0)::int8 AS other,
                sum(idx_scan) FILTER (WHERE indexrelname = 'messages_pkey')::int8 AS primary,
                (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'messages')
                    AS hot_updates
         FROM pg_stat_user_indexes WHERE relname = 'messages'",
    )
    .get_result(&mut conn)
    .await
    .unwrap()
}
