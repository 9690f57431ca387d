//! Retention: the workers' duty deletes exactly what is due (expired idempotency keys and
//! sessions, old webhook attempts, old final messages with their events, search entries and
//! webhook attempts, by the project's retention or the server's) and nothing else; held
//! receipts go within their hold; several runs at once share the work. The duty is run
//! directly, as of a chosen time, on a server without the worker role (which would run it on
//! its own).

use chrono::{DateTime, Duration, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use relayit::config::RetentionConfig;
use relayit::db::receipts::{self, HeldRound};
use relayit::delivery::recovery::HOLD_RECEIPTS_FOR;
use relayit::delivery::retention::{self, Deleted};
use relayit::server::Roles;
use serde_json::json;

use crate::harness::{Account, TestApp};

const DAY: i64 = 24 * 60;

async fn app() -> TestApp {
    TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |_| {}).await
}

fn policy(messages_days: u64, webhook_deliveries_days: u64) -> RetentionConfig {
    let days = |d: u64| std::time::Duration::from_secs(d * 24 * 3600);
    RetentionConfig {
        messages: days(messages_days),
        webhook_deliveries: days(webhook_deliveries_days),
        // small, so every table takes several batches
        batch_size: 2,
        ..RetentionConfig::default()
    }
}

/// `minutes` before `now`, as SQL.
fn ago(now: DateTime<Utc>, minutes: i64) -> String {
    format!("'{}'::timestamptz", (now - Duration::minutes(minutes)).to_rfc3339())
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The `name` column of `sql`'s rows, sorted.
async fn names(app: &TestApp, sql: &str) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(sql).load(&mut app.connect().await).await.unwrap();
    let mut names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

async fn run(app: &TestApp, config: &RetentionConfig, now: DateTime<Utc>) -> Deleted {
    retention::run_once(&mut app.connect().await, config, now).await.expect("a retention run")
}

/// A message of `project` in `status`, created and last changed the given minutes before `now`,
/// with two events at those times (its search entry comes by trigger), and one webhook attempt
/// on `endpoint` made when it last changed.
async fn message(
    app: &TestApp,
    owner: &Account,
    (project, endpoint): (&str, &str),
    id: &str,
    status: &str,
    (created, updated): (i64, i64),
    now: DateTime<Utc>,
) {
    let due = if relayit::domain::status::FINAL.contains(&status) { "NULL" } else { "now()" };
    let (created, updated) = (ago(now, created), ago(now, updated));
    app.sql(&format!(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status,
             content, due_at, created_at, updated_at)
         VALUES ('{id}', '{org}', '{project}', 'email', '{id}@example.com', '{status}',
             '{{\"subject\": \"about {id}\", \"text\": \"hi\"}}', {due}, {created}, {updated})",
        org = owner.org_id
    ))
    .await;
    app.sql(&format!(
        "INSERT INTO message_events (id, message_id, status, created_at) VALUES
             ('evt_{id}_1', '{id}', 'received', {created}),
             ('evt_{id}_2', '{id}', '{status}', {updated})"
    ))
    .await;
    attempt(app, owner, endpoint, id, &format!("whd_{id}"), &updated).await;
}

/// A webhook attempt of `message`'s last event, made at `at` (SQL).
async fn attempt(
    app: &TestApp,
    owner: &Account,
    endpoint: &str,
    message: &str,
    id: &str,
    at: &str,
) {
    app.sql(&format!(
        "INSERT INTO webhook_deliveries (id, organization_id, webhook_endpoint_id, message_id,
             event_id, event_type, attempt, succeeded, status_code, duration_ms, created_at)
         SELECT '{id}', '{org}', '{endpoint}', '{message}', 'evt_{message}_2', 'message.sent',
             1, true, 200, 5, {at}
         FROM messages WHERE id = '{message}'",
        org = owner.org_id
    ))
    .await;
}

async fn project(app: &TestApp, owner: &Account, name: &str, days: Option<i64>) -> String {
    let (status, project) = app
        .post_as(&owner.token, "/v1/projects", json!({"name": name, "messageRetentionDays": days}))
        .await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(project["messageRetentionDays"], json!(days));
    project["id"].as_str().unwrap().to_owned()
}

async fn endpoint(app: &TestApp, owner: &Account, project: &str) -> String {
    let (status, endpoint) = app
        .post_as(
            &owner.token,
            &format!("/v1/projects/{project}/webhooks"),
            json!({"url": "https://hooks.example.com/relayit", "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    endpoint["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_is_due_and_nothing_else() {
    let app = app().await;
    let owner = app.sign_up("Rhea").await;
    let other = app.sign_up("Otto").await;
    let now = Utc::now();
    // the default project follows the server (null); one keeps for ever, one for two days
    let default = owner.project_id.clone();
    let forever = project(&app, &owner, "Archive", Some(0)).await;
    let short = project(&app, &owner, "Ephemeral", Some(2)).await;
    let (hook, forever_hook, short_hook) = (
        endpoint(&app, &owner, &default).await,
        endpoint(&app, &owner, &forever).await,
        endpoint(&app, &owner, &short).await,
    );

    // messages on both sides of each cut-off (a minute either way)
    let month = 30 * DAY;
    for (project, hook, id, status, times) in [
        // the server's 30 days, once it applies
        (&default, &hook, "msg_delivered_old", "delivered", (month + 1, month + 1)),
        (&default, &hook, "msg_failed_old", "failed", (month + 90, month + 1)),
        (&default, &hook, "msg_canceled_old", "canceled", (month + 1, month + 1)),
        (&default, &hook, "msg_sent_old", "sent", (40 * DAY, 35 * DAY)),
        (&default, &hook, "msg_delivered_young", "delivered", (month - 1, month - 1)),
        // created long ago, final only lately (scheduled ahead): kept for the period after that
        (&default, &hook, "msg_scheduled", "sent", (month + 1, month - 1)),
        // not final, however old
        (&default, &hook, "msg_queued_old", "queued", (40 * DAY, 40 * DAY)),
        (&default, &hook, "msg_retrying_old", "retrying", (40 * DAY, 40 * DAY)),
        // kept for ever
        (&forever, &forever_hook, "msg_archived", "delivered", (400 * DAY, 400 * DAY)),
        // two days
        (&short, &short_hook, "msg_short_old", "delivered", (2 * DAY + 1, 2 * DAY + 1)),
        (&short, &short_hook, "msg_short_young", "failed", (2 * DAY - 1, 2 * DAY - 1)),
    ] {
        message(&app, &owner, (project, hook), id, status, times, now).await;
    }
    // a second attempt of a young message, inside the webhook attempts' ten days
    attempt(&app, &owner, &hook, "msg_delivered_young", "whd_recent", &ago(now, 10 * DAY - 1))
        .await;

    // idempotency keys: expired a minute ago (three: more than a batch), live a minute more
    for (key, expires) in [("k1", 1), ("k2", 1), ("k3", 60), ("live", -1)] {
        app.sql(&format!(
            "INSERT INTO idempotency_keys (project_id, key, request_hash, status, response_status,
                 response_body, created_at, expires_at)
             VALUES ('{default}', '{key}', sha256('{key}'::bytea), 'completed', 202, '{{}}',
                 {created}, {expires})",
            created = ago(now, DAY),
            expires = ago(now, expires)
        ))
        .await;
    }
    // sessions: three expired, one live (besides the two of sign-up)
    for (id, expires) in [("ses_gone1", 1), ("ses_gone2", 1), ("ses_gone3", DAY), ("ses_live", -1)]
    {
        app.sql(&format!(
            "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at)
             VALUES ('{id}', '{user}', sha256('{id}'::bytea), {expires}, {created})",
            user = other.user_id,
            expires = ago(now, expires),
            created = ago(now, 2 * DAY)
        ))
        .await;
    }
    let everything_before = names(&app, "SELECT id AS name FROM messages").await;
    assert_eq!(everything_before.len(), 11);
    assert_eq!(app.count("message_search").await, 11);

    // First, with the server keeping messages for ever: only the two-day project's go, and
    // webhook attempts older than ten days
    let deleted = run(&app, &policy(0, 10), now).await;
    assert_eq!(
        deleted,
        Deleted { idempotency_keys: 3, sessions: 3, webhook_deliveries: 9, messages: 1 },
    );
    assert_eq!(
        names(&app, "SELECT key AS name FROM idempotency_keys").await,
        ["live"],
        "expired keys go, the live one stays"
    );
    let sessions = names(
        &app,
        "SELECT id AS name FROM sessions WHERE id LIKE 'ses\\_l%' OR id LIKE 'ses\\_g%'",
    )
    .await;
    assert_eq!(sessions, ["ses_live"]);
    assert_eq!(app.count("sessions").await, 3, "the sign-up sessions stay");
    assert_eq!(
        names(&app, "SELECT id AS name FROM webhook_deliveries").await,
        sorted(&["whd_recent", "whd_msg_short_young"]),
        "attempts older than ten days go, of every project, whatever their message"
    );
    let mut left = everything_before.clone();
    left.retain(|id| id != "msg_short_old");
    assert_eq!(names(&app, "SELECT id AS name FROM messages").await, left);
    assert_nothing_dangles(&app).await;

    // Then with the server's 30 days: the default project's final messages past them go
    let deleted = run(&app, &policy(30, 10), now).await;
    assert_eq!(deleted, Deleted { messages: 4, ..Deleted::default() });
    assert_eq!(
        names(&app, "SELECT id AS name FROM messages").await,
        sorted(&[
            "msg_delivered_young",
            "msg_scheduled",
            "msg_queued_old",
            "msg_retrying_old",
            "msg_archived",
            "msg_short_young",
        ])
    );
    assert_eq!(app.count("message_events").await, 12, "two events of each message left");
    assert_nothing_dangles(&app).await;
    // the young message's recent attempt stayed with it
    assert_eq!(
        names(&app, "SELECT id AS name FROM webhook_deliveries").await,
        sorted(&["whd_recent", "whd_msg_short_young"])
    );

    // nothing more is due
    assert_eq!(run(&app, &policy(30, 10), now).await, Deleted::default());
    // and what is left is still readable through the API
    let (status, message) = app.get_as(&owner.token, "/v1/messages/msg_archived").await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["events"].as_array().unwrap().len(), 2);
}

/// Every event, search entry and webhook attempt belongs to a message that exists.
async fn assert_nothing_dangles(app: &TestApp) {
    for orphans in [
        "message_events e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id)",
        "message_search s WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = s.message_id)",
        "messages m WHERE NOT EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id)",
    ] {
        assert_eq!(app.count(orphans).await, 0, "{orphans}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_chooses_its_retention_through_the_api() {
    let app = app().await;
    let owner = app.sign_up("Pia").await;
    let path = format!("/v1/projects/{}", owner.project_id);
    let (_, project) = app.get_as(&owner.token, &path).await;
    assert_eq!(project["messageRetentionDays"], json!(null), "the server's by default");

    let (status, project) =
        app.patch_as(&owner.token, &path, json!({"messageRetentionDays": 7})).await;
    assert_eq!(status, 200, "{project}");
    assert_eq!(project["messageRetentionDays"], 7);
    // other changes leave it alone; null returns to the server's
    let (_, project) = app.patch_as(&owner.token, &path, json!({"name": "Renamed"})).await;
    assert_eq!(project["messageRetentionDays"], 7);
    let (_, project) =
        app.patch_as(&owner.token, &path, json!({"messageRetentionDays": null})).await;
    assert_eq!(project["messageRetentionDays"], json!(null));
    let (_, project) = app.patch_as(&owner.token, &path, json!({"messageRetentionDays": 0})).await;
    assert_eq!(project["messageRetentionDays"], 0, "0 keeps for ever");

    for bad in [json!(-1), json!(36_501), json!("30"), json!(1.5)] {
        let (status, body) =
            app.patch_as(&owner.token, &path, json!({"messageRetentionDays": bad})).await;
        assert_eq!(
            crate::harness::validation_fields(status, &body),
            ["messageRetentionDays"],
            "{bad}"
        );
        let (status, body) = app
            .post_as(
                &owner.token,
                "/v1/projects",
                json!({"name": "X", "messageRetentionDays": bad}),
            )
            .await;
        assert_eq!(crate::harness::validation_fields(status, &body), ["messageRetentionDays"]);
    }
    // a member may read it, not change it
    let member = app.add_member(&owner, "Mo", "member").await;
    let (status, _) = app.patch_as(&member.token, &path, json!({"messageRetentionDays": 1})).await;
    assert_eq!(status, 403);
    let (_, project) = app.get_as(&member.token, &path).await;
    assert_eq!(project["messageRetentionDays"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_at_once_share_the_work() {
    let app = app().await;
    let owner = app.sign_up("Sam").await;
    let hook = endpoint(&app, &owner, &owner.project_id).await;
    let now = Utc::now();
    app.sql(&format!(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status,
             content, created_at, updated_at)
         SELECT 'msg_' || g, '{org}', '{project}', 'sms', '+1415555' || g, 'delivered', '{{}}',
             {old}, {old}
         FROM generate_series(1, 300) g",
        org = owner.org_id,
        project = owner.project_id,
        old = ago(now, 31 * DAY)
    ))
    .await;
    app.sql(&format!(
        "INSERT INTO message_events (id, message_id, status, created_at)
         SELECT 'evt_msg_' || g || '_2', 'msg_' || g, 'delivered', {old}
         FROM generate_series(1, 300) g",
        old = ago(now, 31 * DAY)
    ))
    .await;
    for n in 1..=300 {
        if n % 3 == 0 {
            attempt(&app, &owner, &hook, &format!("msg_{n}"), &format!("whd_{n}"), &ago(now, DAY))
                .await;
        }
    }
    let config = RetentionConfig { batch_size: 7, ..RetentionConfig::default() };
    let runs = futures::future::join_all((0..3).map(|_| run(&app, &config, now))).await;
    let total: usize = runs.iter().map(|d| d.messages).sum();
    assert_eq!(total, 300, "each message deleted once, by one run or another: {runs:?}");
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(app.count("message_events").await, 0);
    assert_eq!(app.count("message_search").await, 0);
    assert_eq!(app.count("webhook_deliveries").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_receipts_go_within_their_hold() {
    let app = app().await;
    let owner = app.sign_up("Hal").await;
    let now = Utc::now();
    let hold = HOLD_RECEIPTS_FOR.as_secs() as i64 / 60;
    // more than a batch of receipts held past the hold and matching nothing, one still within
    app.sql(&format!(
        "INSERT INTO held_receipts (organization_id, channel, provider_message_id, from_statuses,
             to_status, details, received_at)
         SELECT '{org}', 'email', 'stranger-' || g, ARRAY['sent'], 'delivered', '{{}}', {old}
         FROM generate_series(1, 2500) g",
        org = owner.org_id,
        old = ago(now, hold + 1),
    ))
    .await;
    app.sql(&format!(
        "INSERT INTO held_receipts (organization_id, channel, provider_message_id, from_statuses,
             to_status, details, received_at)
         VALUES ('{org}', 'email', 'early', ARRAY['sent'], 'delivered', '{{}}', {young})",
        org = owner.org_id,
        young = ago(now, hold - 1)
    ))
    .await;
    let mut conn = app.connect().await;
    let expire_before = now - Duration::from_std(HOLD_RECEIPTS_FOR).unwrap();
    let round = receipts::apply_held(&mut conn, now, expire_before).await.unwrap();
    assert_eq!(round, HeldRound { expired: 2500, ..HeldRound::default() });
    assert_eq!(
        names(&app, "SELECT provider_message_id AS name FROM held_receipts").await,
        ["early"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_skips_rows_others_hold_instead_of_waiting() {
    use diesel_async::SimpleAsyncConnection;
    let app = app().await;
    let owner = app.sign_up("Kit").await;
    let hook = endpoint(&app, &owner, &owner.project_id).await;
    let now = Utc::now();
    for id in ["msg_held", "msg_free"] {
        message(
            &app,
            &owner,
            (&owner.project_id, &hook),
            id,
            "delivered",
            (31 * DAY, 31 * DAY),
            now,
        )
        .await;
    }
    app.sql(&format!(
        "INSERT INTO idempotency_keys (project_id, key, request_hash, status, response_status,
             response_body, expires_at)
         VALUES ('{}', 'held', sha256('held'::bytea), 'completed', 202, '{{}}', {})",
        owner.project_id,
        ago(now, 1)
    ))
    .await;
    // another transaction holds the message and the key (a retry, a claim taking the key over)
    let mut holder = app.connect().await;
    holder
        .batch_execute(
            "BEGIN; SELECT 1 FROM messages WHERE id = 'msg_held' FOR UPDATE;
             SELECT 1 FROM idempotency_keys WHERE key = 'held' FOR UPDATE;",
        )
        .await
        .unwrap();
    // a run that waited for them would fail here instead
    let mut conn = app.connect().await;
    conn.batch_execute("SET lock_timeout = '2s'").await.unwrap();
    let config = policy(30, 0);
    let deleted = retention::run_once(&mut conn, &config, now).await.unwrap();
    assert_eq!(deleted, Deleted { messages: 1, ..Deleted::default() });
    assert_eq!(names(&app, "SELECT id AS name FROM messages").await, ["msg_held"]);
    holder.batch_execute("COMMIT").await.unwrap();
    let deleted = retention::run_once(&mut conn, &config, now).await.unwrap();
    assert_eq!(deleted, Deleted { messages: 1, idempotency_keys: 1, ..Deleted::default() });
    assert_eq!(app.count("messages").await, 0);
}
