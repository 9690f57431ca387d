//! The webhook endpoint pages of a project: creating an endpoint through the form (its secret
//! shown once), changing it, switching it off and on, rotating its secret, deleting it; the
//! delivery log filled by real deliveries to a local receiver, with retry and replay; the API's
//! validation named on the page; what members and other organizations may see and do; and
//! hostile values escaped. The JSON API behind the same rules is tested in
//! `webhook_endpoints.rs` and `webhooks.rs`.

use std::time::{Duration, Instant};

use reqwest::header;
use serde_json::json;

use super::{get_page, post_as, rows};
use crate::harness::stub::{Reply, Stub};
use crate::harness::{Account, TestApp, sandbox_provider};
use relayit::config::Config;

const HOSTILE: &str = r#"<script>alert("x")</script>'"&"#;

/// Webhooks to receivers on 127.0.0.1, one attempt each (no automatic retry).
fn local(config: &mut Config) {
    config.webhooks.allow_private_targets = true;
    config.webhooks.retry_schedule = vec![Duration::ZERO];
}

fn hooks(account: &Account) -> String {
    format!("/projects/{}/webhooks", account.project_id)
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    html.split(start).nth(1).and_then(|rest| rest.split(end).next())
}

/// The secret a page shows once.
fn shown_secret(html: &str) -> String {
    let secret = between(html, r#"<code id="new-secret">"#, "</code>").expect("a secret shown");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(html.contains(r##"data-copy="#new-secret""##), "a copy button: {html}");
    secret.to_owned()
}

/// Creates an endpoint through the list page's form; returns its id and secret.
async fn create(app: &TestApp, owner: &Account, form: &[(&str, &str)]) -> (String, String) {
    let created = post_as(app, &owner.token, &hooks(owner), form).await;
    assert_eq!(created.status(), 201);
    let html = created.text().await.unwrap();
    let secret = shown_secret(&html);
    let link = format!(r#"<a href="{}/"#, hooks(owner));
    let id = between(&html, &link, "\"").expect("a link to the new endpoint").to_owned();
    (id, secret)
}

/// The endpoint's page once its delivery log has `n` attempts.
async fn wait_log(app: &TestApp, owner: &Account, page: &str, n: usize) -> String {
    let start = Instant::now();
    loop {
        let (status, html) = get_page(app, &owner.token, page).await;
        assert_eq!(status, 200, "{html}");
        if html.contains(r#"<table id="deliveries">"#) && rows(&html, "deliveries").len() >= n {
            return html;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{n} attempts never logged: {html}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_created_changed_switched_rotated_and_deleted_on_its_pages() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.sign_up("Owner").await;
    let (status, html) = get_page(&app, &owner.token, &hooks(&owner)).await;
    assert_eq!(status, 200);
    assert!(html.contains("No endpoint yet. Add one above"), "{html}");

    let form = [
        ("url", "http://127.0.0.1:9/hook?a=\"><script>"),
        ("eventTypes", "message.sent"),
        ("eventTypes", "message.failed"),
        ("description", HOSTILE),
    ];
    let (id, secret) = create(&app, &owner, &form).await;
    let page = format!("{}/{id}", hooks(&owner));

    // the secret is never shown again; the list shows the endpoint, escaped
    let (_, html) = get_page(&app, &owner.token, &hooks(&owner)).await;
    assert!(!html.contains(&secret) && !html.contains("new-secret"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), "{html}");
    let listed = rows(&html, "webhooks");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0][0].contains("http://127.0.0.1:9/hook?a=%22%3E%3Cscript%3E"), "{listed:?}");
    assert_eq!(listed[0][1], "message.sent, message.failed");
    assert_eq!(listed[0][2], "active");
    assert_eq!(listed[0][3], "none yet");
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(!html.contains(&secret) && !html.contains("<script>"), "{html}");

    // changed: URL, events, description (emptied: removed)
    let edit = [("url", "http://127.0.0.1:9/other"), ("eventTypes", "message.delivered")];
    let saved = post_as(&app, &owner.token, &page, &edit).await;
    assert_eq!(saved.status(), 303);
    assert_eq!(saved.headers()[header::LOCATION], page.as_str());
    let api = format!("/v1{page}");
    let (_, view) = app.get_as(&owner.token, &api).await;
    assert_eq!(view["url"], "http://127.0.0.1:9/other");
    assert_eq!(view["eventTypes"], json!(["message.delivered"]));
    assert_eq!(view["description"], json!(null));

    // refused: the page names the field, keeps what was typed, and nothing changes
    let bad = [("url", "ftp://example.com/x"), ("eventTypes", "message.delivered")];
    let refused = post_as(&app, &owner.token, &page, &bad).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("url: ") && html.contains(r#"value="ftp://example.com/x""#), "{html}");
    assert_eq!(app.get_as(&owner.token, &api).await.1["url"], "http://127.0.0.1:9/other");

    // deactivated with the reason shown, then active again
    let off = post_as(&app, &owner.token, &format!("{page}/deactivate"), &[]).await;
    assert_eq!(off.status(), 303);
    let (_, html) = get_page(&app, &owner.token, &page).await;
    let state = between(&html, r#"<dd id="state">"#, "</dd>").expect("the state");
    assert!(state.starts_with("disabled: disabled through the API"), "{state}");
    assert!(html.contains(&format!(r#"action="{page}/activate""#)), "{html}");
    let (_, html) = get_page(&app, &owner.token, &hooks(&owner)).await;
    assert!(rows(&html, "webhooks")[0][2].starts_with("disabled: disabled through the API"));
    let on = post_as(&app, &owner.token, &format!("{page}/activate"), &[]).await;
    assert_eq!(on.status(), 303);
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert_eq!(between(&html, r#"<dd id="state">"#, "</dd>"), Some("active"));
    assert_eq!(app.get_as(&owner.token, &api).await.1["isActive"], true);

    // a new secret, shown once
    let rotated = post_as(&app, &owner.token, &format!("{page}/rotate-secret"), &[]).await;
    assert_eq!(rotated.status(), 200);
    let new_secret = shown_secret(&rotated.text().await.unwrap());
    assert_ne!(new_secret, secret);
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(!html.contains(&new_secret) && !html.contains("new-secret"), "{html}");

    // deleted after a page that names the URL
    let (status, html) = get_page(&app, &owner.token, &format!("{page}/delete")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete http://127.0.0.1:9/other"), "{html}");
    assert!(html.contains(&format!(r#"action="{page}/delete""#)), "{html}");
    let deleted = post_as(&app, &owner.token, &format!("{page}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(deleted.headers()[header::LOCATION], hooks(&owner).as_str());
    assert_eq!(app.get_as(&owner.token, &api).await.0, 404);
    let (status, _) = get_page(&app, &owner.token, &page).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_show_in_the_log_and_are_retried_and_replayed() {
    let app = TestApp::spawn_with(local).await;
    let (owner, key) = app.sender("Owner").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "email")).await;
    let receiver = Stub::start(|_| Reply::text(200, "thanks")).await;
    // the first answer refuses, with markup of its own
    receiver.push(Reply::text(500, HOSTILE));
    let url = format!("{}/hook", receiver.url());
    let (id, secret) = create(&app, &owner, &[("url", &url), ("eventTypes", "message.sent")]).await;
    let page = format!("{}/{id}", hooks(&owner));
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(html.contains("No delivery yet"), "{html}");

    let before = chrono::Utc::now() - chrono::Duration::minutes(2);
    let email = json!({"channel": "email", "to": "alice@example.com",
                       "content": {"subject": "Hi", "text": "Hello"}});
    let message = app.send_message(&key, email).await;
    app.wait_for_status(&key, &message, "sent").await;

    // the failed attempt, its receiver's answer escaped, with a Retry button
    let html = wait_log(&app, &owner, &page, 1).await;
    let log = rows(&html, "deliveries");
    assert_eq!(log[0][0], "message.sent");
    assert_eq!(log[0][1], "1");
    assert_eq!(log[0][2], "500");
    assert!(log[0][3].ends_with(" ms"), "{:?}", log[0]);
    assert!(log[0][4].starts_with("<code>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert!(log[0][5].ends_with(" UTC"), "{:?}", log[0]);
    assert!(log[0][6].contains("Retry"), "{:?}", log[0]);
    assert!(!html.contains("<script>"), "{html}");
    // the secret the page showed signs what the receiver got
    let hit = receiver.requests().pop().expect("a request");
    let mut headers = http::HeaderMap::new();
    for (name, value) in &hit.headers {
        headers
            .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&hit.body, &headers).unwrap();
    // the list shows the failure
    let (_, list) = get_page(&app, &owner.token, &hooks(&owner)).await;
    let last = &rows(&list, "webhooks")[0][3];
    assert!(last.contains("failed") && last.contains("500"), "{last}");

    // retried: accepted, and the second attempt succeeds
    let retry = html
        .split(r#"action=""#)
        .filter_map(|rest| rest.split('"').next())
        .find(|action| action.ends_with("/retry"))
        .expect("a retry form")
        .to_owned();
    let retried = post_as(&app, &owner.token, &retry, &[]).await;
    assert_eq!(retried.status(), 303);
    let location = retried.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{page}?queued=1"));
    let (_, html) = get_page(&app, &owner.token, &location).await;
    assert!(html.contains("1 event queued for delivery"), "{html}");
    let html = wait_log(&app, &owner, &page, 2).await;
    let log = rows(&html, "deliveries");
    assert_eq!((log[0][1].as_str(), log[0][2].as_str()), ("2", "200"), "{log:?}");
    assert_eq!(log[0][4], "<code>thanks</code>");
    assert_eq!(log[0][6], "", "no Retry for a success: {:?}", log[0]);

    // replayed: the range holds the one sent event
    let minute = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M").to_string();
    let until = minute(chrono::Utc::now() + chrono::Duration::minutes(2));
    let range = [("since", minute(before)), ("until", until.clone())];
    let range: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replayed = post_as(&app, &owner.token, &format!("{page}/replay"), &range).await;
    assert_eq!(replayed.status(), 303);
    assert_eq!(replayed.headers()[header::LOCATION], format!("{page}?queued=1").as_str());
    wait_log(&app, &owner, &page, 3).await;

    // a bad range is named; a disabled endpoint refuses both, as the API does
    let bad = [("since", "yesterday"), ("until", until.as_str())];
    let refused = post_as(&app, &owner.token, &format!("{page}/replay"), &bad).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("since: must be an RFC 3339"));
    post_as(&app, &owner.token, &format!("{page}/deactivate"), &[]).await;
    let replay = format!("{page}/replay");
    let none: &[(&str, &str)] = &[];
    for (path, form) in [(retry.as_str(), none), (replay.as_str(), &range[..])] {
        let refused = post_as(&app, &owner.token, path, form).await;
        assert_eq!(refused.status(), 409, "{path}");
        assert!(refused.text().await.unwrap().contains("disabled; re-enable it first"));
    }
    let (status, html) = get_page(&app, &owner.token, &format!("{page}?cursor=nonsense")).await;
    assert_eq!(status, 400);
    assert!(html.contains("cursor"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_on_the_page_and_nothing_is_created() {
    // private targets refused, as by default
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    for (form, field) in [
        (vec![("url", "javascript:alert(1)"), ("eventTypes", "message.sent")], "url: "),
        (vec![("url", "http://127.0.0.1/hook"), ("eventTypes", "message.sent")], "url: "),
        (vec![("url", "https://1.1.1.1/hook")], "eventTypes: "),
        (vec![("url", "https://1.1.1.1/hook"), ("eventTypes", "message.nope")], "eventTypes.0: "),
    ] {
        let refused = post_as(&app, &owner.token, &hooks(&owner), &form).await;
        assert_eq!(refused.status(), 400, "{form:?}");
        let html = refused.text().await.unwrap();
        assert!(html.contains(field), "{field} in {html}");
        assert!(!html.contains("new-secret"), "{html}");
    }
    // what was typed comes back escaped, never as a link
    let form = [("url", r#"javascript:alert("x")"#), ("eventTypes", "message.sent")];
    let html = post_as(&app, &owner.token, &hooks(&owner), &form).await.text().await.unwrap();
    assert!(html.contains(r#"value="javascript:alert(&quot;x&quot;)""#), "{html}");
    assert!(!html.contains(r#"href="javascript"#), "{html}");
    assert_eq!(app.count("webhook_endpoints").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_without_controls_and_other_organizations_get_404() {
    let app = TestApp::spawn_with(local).await;
    let owner = app.sign_up("Owner").await;
    let (id, _) =
        create(&app, &owner, &[("url", "http://127.0.0.1:9/hook"), ("eventTypes", "message.sent")])
            .await;
    let page = format!("{}/{id}", hooks(&owner));
    let member = app.add_member(&owner, "Member", "member").await;

    for path in [hooks(&owner), page.clone()] {
        let (status, html) = get_page(&app, &member.token, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains("http://127.0.0.1:9/hook"), "{html}");
        // the only form a member gets is signing out
        assert_eq!(html.matches("<form").count(), 1, "no control: {html}");
        assert!(!html.contains("Delete") && !html.contains("Rotate"), "{html}");
    }
    let (status, _) = get_page(&app, &member.token, &format!("{page}/delete")).await;
    assert_eq!(status, 403);
    let endpoint: &[(&str, &str)] =
        &[("url", "http://127.0.0.1:9/mine"), ("eventTypes", "message.sent")];
    let range: &[(&str, &str)] = &[("since", "2026-01-01T00:00"), ("until", "2026-01-02T00:00")];
    let none: &[(&str, &str)] = &[];
    let writes = [
        (hooks(&owner), endpoint),
        (page.clone(), endpoint),
        (format!("{page}/deactivate"), none),
        (format!("{page}/activate"), none),
        (format!("{page}/rotate-secret"), none),
        (format!("{page}/replay"), range),
        (format!("{page}/deliveries/whd_x/retry"), none),
        (format!("{page}/delete"), none),
    ];
    for (path, form) in &writes {
        let refused = post_as(&app, &member.token, path, form).await;
        assert_eq!(refused.status(), 403, "{path}");
    }
    let (_, view) = app.get_as(&owner.token, &format!("/v1{page}")).await;
    assert_eq!(
        (view["url"].as_str(), view["isActive"].as_bool()),
        (Some("http://127.0.0.1:9/hook"), Some(true))
    );
    assert_eq!(app.count("webhook_endpoints").await, 1);

    // another organization: the owner's project and endpoint are not found, through its own
    // project either, and its writes change nothing
    let stranger = app.sign_up("Stranger").await;
    let through_theirs = format!("{}/{id}", hooks(&stranger));
    for path in [hooks(&owner), page.clone(), through_theirs.clone(), format!("{page}/delete")] {
        let (status, _) = get_page(&app, &stranger.token, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    for (path, form) in &writes {
        let refused = post_as(&app, &stranger.token, path, form).await;
        assert_eq!(refused.status(), 404, "{path}");
    }
    let refused = post_as(&app, &stranger.token, &through_theirs, endpoint).await;
    assert_eq!(refused.status(), 404);
    assert_eq!(app.count("webhook_endpoints").await, 1);
    assert_eq!(app.get_as(&owner.token, &format!("/v1{page}")).await.0, 200);
}
