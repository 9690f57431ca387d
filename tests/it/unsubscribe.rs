//! One-click unsubscribe end to end: a project switches it on, its emails (through the SMTP
//! test server here; through moto for SES in aws.rs) carry `List-Unsubscribe` and
//! `List-Unsubscribe-Post`, and the link takes a POST from a client with no session or cookie,
//! as mail providers make it: once suppressed, the next send to the address fails. The link's
//! page only asks; forged links are refused; the project's switch and address are validated.

use std::time::Duration;

use crate::harness::smtp_sink::SmtpSink;
use crate::harness::{TestApp, validation_fields};
use relayit::unsubscribe::{Link, Signer};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://relay.example.com";

/// An app that knows its public URL and reads a project's settings at every batch (the worker
/// otherwise keeps them for `delivery.credential_cache_ttl`, 30 s, and the test switches them
/// on and sends at once).
async fn spawn_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.server.public_url = PUBLIC_URL.to_owned();
        c.delivery.credential_cache_ttl = Duration::ZERO;
        // the SMTP test server is on this machine
        c.providers.allow_private_targets = true;
    })
    .await
}

/// The token of a `List-Unsubscribe` value that lists our link first.
fn token_of(list: &str) -> String {
    let prefix = format!("<{PUBLIC_URL}/u/");
    let rest = list.strip_prefix(&prefix).unwrap_or_else(|| panic!("not our link: {list}"));
    rest.split('>').next().unwrap().to_owned()
}

fn email(to: &str) -> Value {
    json!({"channel": "email", "to": to, "content": {"subject": "News", "text": "Hello"}})
}

const ONE_CLICK_FORM: &str = "application/x-www-form-urlencoded";

/// A client as a mail provider's server is: no cookie store, no session, no `Origin`.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn one_click(app: &TestApp, token: &str) -> reqwest::Response {
    bare_client()
        .post(app.url(&format!("/u/{token}")))
        .header("content-type", ONE_CLICK_FORM)
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_click_post_suppresses_the_address_once_and_the_next_send_fails() {
    let sink = SmtpSink::start(None).await;
    let app = spawn_app().await;
    let (owner, key) = app.sender("Sender").await;
    app.create_provider(
        &owner.token,
        json!({"name": "SMTP", "channel": "email", "providerType": "smtp", "credentials": {},
            "config": {"host": "127.0.0.1", "port": sink.port(), "tls": "none",
                       "fromAddress": "news@example.com"}}),
    )
    .await;
    let project = format!("/v1/projects/{}", owner.project_id);
    let suppressions = format!("{project}/suppressions");

    // switched off (the default): no header fields
    let (_, view) = app.get_as(&owner.token, &project).await;
    assert_eq!(
        (&view["oneClickUnsubscribe"], &view["unsubscribeMailto"]),
        (&json!(false), &Value::Null)
    );
    let id = app.send_message(&key, email("carol@example.org")).await;
    app.wait_for_status(&key, &id, "sent").await;
    let plain = &sink.messages()[0];
    assert_eq!(plain.header("List-Unsubscribe"), None, "{}", plain.data);
    assert_eq!(plain.header("List-Unsubscribe-Post"), None);

    // switched on, with a mailto address
    let (status, view) = app
        .patch_as(
            &owner.token,
            &project,
            json!({"oneClickUnsubscribe": true, "unsubscribeMailto": "unsubscribe@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["oneClickUnsubscribe"], true);
    assert_eq!(view["unsubscribeMailto"], "unsubscribe@example.com");
    let id = app.send_message(&key, email("Alice <Alice@Example.org>")).await;
    app.wait_for_status(&key, &id, "sent").await;
    let received = sink.messages();
    let sent = received.last().unwrap();
    let list = sent.header("List-Unsubscribe").expect("List-Unsubscribe");
    assert!(list.ends_with(">, <mailto:unsubscribe@example.com?subject=unsubscribe>"), "{list}");
    assert_eq!(sent.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let token = token_of(&list);
    let path = format!("/u/{token}");

    // an email with copies carries none: a copy's recipient would unsubscribe the `to` address
    let copied = json!({"channel": "email", "to": "erin@example.org",
        "content": {"subject": "Hi", "text": "x", "cc": ["frank@example.org"]}});
    let copied = app.send_message(&key, copied).await;
    app.wait_for_status(&key, &copied, "sent").await;
    assert_eq!(sink.messages().last().unwrap().header("List-Unsubscribe"), None);

    // the link's page asks, and changes nothing (link scanners open it)
    for _ in 0..2 {
        let page = bare_client().get(app.url(&path)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(html.contains("alice@example.org"), "{html}");
        assert!(html.contains(&format!("<form method=\"post\" action=\"/u/{token}\">")), "{html}");
        assert!(
            html.contains("name=\"List-Unsubscribe\" value=\"One-Click\""),
            "the form posts the one-click body: {html}"
        );
    }
    assert_eq!(app.count("suppressions").await, 0, "a GET unsubscribes nothing");

    // the mail provider's POST: no cookie, no Origin, no credentials
    let answer = one_click(&app, &token).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"address": "alice@example.org", "added": true}));
    let (_, list) = app.get_as(&owner.token, &suppressions).await;
    let entries = list["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["address"], "alice@example.org");
    assert_eq!(entries[0]["channel"], "email");
    assert_eq!(entries[0]["reason"], "unsubscribe");
    assert_eq!(entries[0]["messageId"], id.as_str());

    // again (a person clicking twice, a provider retrying): 200, nothing added
    let again = one_click(&app, &token).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["added"], false);
    // from the page's form, a browser gets a page
    let page = bare_client()
        .post(app.url(&path))
        .header("content-type", ONE_CLICK_FORM)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("You are unsubscribed"));
    assert_eq!(app.count("suppressions").await, 1);
    // the page now says so instead of asking
    let html = bare_client().get(app.url(&path)).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("You are unsubscribed")
            && !html.contains("<form method=\"post\" action=\"/u/"),
        "{html}"
    );

    // the next send to that address (in another spelling) is not made
    let taken = sink.messages().len();
    let next = app.send_message(&key, email("ALICE@example.org")).await;
    let failed = app.wait_for_status(&key, &next, "failed").await;
    let reason = failed["statusReason"].as_str().unwrap();
    assert!(reason.contains("because its recipient unsubscribed"), "{reason}");
    assert_eq!(failed["attempts"], 0);
    assert_eq!(sink.messages().len(), taken, "the SMTP server received nothing more");

    // as multipart/form-data, as RFC 8058 has mail clients send it
    let id = app.send_message(&key, email("bob@example.org")).await;
    app.wait_for_status(&key, &id, "sent").await;
    let list = sink.messages().last().unwrap().header("List-Unsubscribe").unwrap();
    let bob = token_of(&list);
    assert_ne!(bob, token, "each email has its own link");
    let multipart = "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\
                     \r\nOne-Click\r\n--b0undary--\r\n";
    let answer = bare_client()
        .post(app.url(&format!("/u/{bob}")))
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["address"], "bob@example.org");
    assert_eq!(app.count("suppressions WHERE reason = 'unsubscribe'").await, 2);

    // a POST without the one-click body is refused, naming it
    let answer = bare_client()
        .post(app.url(&format!("/u/{bob}")))
        .header("content-type", ONE_CLICK_FORM)
        .body("List-Unsubscribe=Please")
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(validation_fields(status, &body), ["List-Unsubscribe"]);

    // switched off: the emails go out without the link, and links sent before still work
    let (status, view) = app
        .patch_as(
            &owner.token,
            &project,
            json!({"oneClickUnsubscribe": false, "unsubscribeMailto": null}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (&view["oneClickUnsubscribe"], &view["unsubscribeMailto"]),
        (&json!(false), &Value::Null)
    );
    let id = app.send_message(&key, email("dave@example.org")).await;
    app.wait_for_status(&key, &id, "sent").await;
    assert_eq!(sink.messages().last().unwrap().header("List-Unsubscribe"), None);
    assert_eq!(one_click(&app, &token).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_altered_and_orphaned_links_are_refused() {
    let app = spawn_app().await;
    let owner = app.sign_up("Owner").await;
    let signer = Signer::new(&app.running().state().keys);
    let (status, other) =
        app.post_as(&owner.token, "/v1/projects", json!({"name": "Newsletter"})).await;
    assert_eq!(status, 201, "{other}");
    let other_project = other["id"].as_str().unwrap();
    let link = |project: &str| Link {
        project_id: project.to_owned(),
        message_id: "msg_01jf3q6zvqe3f7m1s9gkxw5h2c".to_owned(),
        address: "alice@example.org".to_owned(),
    };
    let token = signer.sign(&link(&owner.project_id));

    // altered in its last character (the address), cut short, signed by another server, junk
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let foreign = Signer::new(&relayit::crypto::MasterKeys {
        current: relayit::crypto::MasterKey::from_bytes([9; 32]),
        previous: vec![],
    })
    .sign(&link(&owner.project_id));
    // U+0000 is refused before any route, naming the path, as everywhere
    let answer = one_click(&app, "%00").await;
    let status = answer.status().as_u16();
    assert_eq!(validation_fields(status, &crate::harness::error_body(answer).await), ["path"]);
    for bad in [altered.as_str(), &token[..token.len() / 2], foreign.as_str(), "nope"] {
        let answer = one_click(&app, bad).await;
        let status = answer.status().as_u16();
        let body = crate::harness::error_body(answer).await;
        assert_eq!(validation_fields(status, &body), ["token"], "{bad}: {body}");
        let page = bare_client().get(app.url(&format!("/u/{bad}"))).send().await.unwrap();
        assert_eq!(page.status(), 400, "{bad}");
        // a browser gets a page saying so
        let page = bare_client()
            .get(app.url(&format!("/u/{bad}")))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 400);
        assert!(page.text().await.unwrap().contains("This link does not work"));
    }
    assert_eq!(app.count("suppressions").await, 0);

    // a link of a project since deleted
    let orphan = signer.sign(&link(other_project));
    let (status, _) = app.delete_as(&owner.token, &format!("/v1/projects/{other_project}")).await;
    assert_eq!(status, 204);
    for answer in [
        one_click(&app, &orphan).await,
        bare_client().get(app.url(&format!("/u/{orphan}"))).send().await.unwrap(),
    ] {
        assert_eq!(answer.status(), 404);
        let body = crate::harness::error_body(answer).await;
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(app.count("suppressions").await, 0);

    // the genuine one works, with a session cookie of someone else's or none
    assert_eq!(one_click(&app, &token).await.status(), 200);
    let answer = bare_client()
        .post(app.url(&format!("/u/{token}")))
        .header("content-type", ONE_CLICK_FORM)
        .header("origin", "https://mail.example.net")
        .header("cookie", "relayit_session=whatever")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "no CSRF or Origin check");
    assert_eq!(app.count("suppressions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_needs_a_public_url_and_the_mailto_an_address() {
    // without server.public_url no link can be made: switching it on is refused
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let project = format!("/v1/projects/{}", owner.project_id);
    let (status, body) =
        app.patch_as(&owner.token, &project, json!({"oneClickUnsubscribe": true})).await;
    assert_eq!(validation_fields(status, &body), ["oneClickUnsubscribe"]);
    assert!(body["error"]["message"].as_str().unwrap().contains("server.public_url"), "{body}");
    let (status, body) = app
        .post_as(&owner.token, "/v1/projects", json!({"name": "News", "oneClickUnsubscribe": true}))
        .await;
    assert_eq!(validation_fields(status, &body), ["oneClickUnsubscribe"]);
    // off, or the address alone, is fine
    let (status, body) = app
        .patch_as(
            &owner.token,
            &project,
            json!({"oneClickUnsubscribe": false, "unsubscribeMailto": "stop@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    drop(app);

    let app = spawn_app().await;
    let owner = app.sign_up("Owner").await;
    let mallory = app.sign_up("Mallory").await;
    let project = format!("/v1/projects/{}", owner.project_id);
    for mailto in ["not an address", "Stop <stop@example.com>", "stöp@example.com", ""] {
        let (status, body) = app
            .patch_as(
                &owner.token,
                &project,
                json!({"oneClickUnsubscribe": true, "unsubscribeMailto": mailto}),
            )
            .await;
        assert_eq!(validation_fields(status, &body), ["unsubscribeMailto"], "{mailto}");
    }
    let (status, body) =
        app.patch_as(&owner.token, &project, json!({"oneClickUnsubscribe": "yes"})).await;
    assert_eq!(validation_fields(status, &body), ["oneClickUnsubscribe"]);
    let (_, view) = app.get_as(&owner.token, &project).await;
    assert_eq!(view["oneClickUnsubscribe"], false, "nothing changed: {view}");

    let (status, created) = app
        .post_as(
            &owner.token,
            "/v1/projects",
            json!({"name": "News", "oneClickUnsubscribe": true,
                   "unsubscribeMailto": " stop@example.com "}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["oneClickUnsubscribe"], true);
    assert_eq!(created["unsubscribeMailto"], "stop@example.com");

    // another tenant's project does not exist for Mallory; a member may not switch it
    let (status, body) =
        app.patch_as(&mallory.token, &project, json!({"oneClickUnsubscribe": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let member = app.add_member(&owner, "Member", "member").await;
    let (status, _) =
        app.patch_as(&member.token, &project, json!({"oneClickUnsubscribe": true})).await;
    assert_eq!(status, 403);
    let (_, view) = app.get_as(&owner.token, &project).await;
    assert_eq!(view["oneClickUnsubscribe"], false);
}
