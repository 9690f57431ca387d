//! The dashboard in a real browser (headless Chromium, `harness::browser`): a person's journey
//! through the pages, clicking and typing as they would, with a screenshot of each step
//! (`scripts/screenshots` copies the README's from them).

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use crate::harness::browser::Browser;
use crate::harness::stub::{Reply, Stub};
use crate::harness::{Account, PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_sets_relayit_up_and_sends_a_first_message_entirely_in_the_browser() {
    let app = TestApp::spawn_with(|c| {
        // the webhook receiver of the journey listens on 127.0.0.1
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let receiver = Stub::start(|_| Reply::text(200, "thanks")).await;
    let browser = Browser::start().await;

    // the dashboard sends a stranger to sign in, and from there to sign up
    browser.goto(&app.url("/")).await;
    assert_eq!(browser.path().await, "/sign-in");
    browser.screenshot("sign-in").await;
    browser.click("a[href^='/sign-up']").await;
    browser.fill("#name", "Grace Hopper").await;
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.screenshot("sign-up").await;
    browser.click("button[type=submit]").await;

    // the overview of the organization sign-up made, saying what to do first
    browser.wait_for_text("h1", "Grace Hopper's Organization").await;
    assert_eq!(browser.path().await, "/");
    let steps = browser.text("#next-steps").await;
    assert!(steps.contains("No provider yet") && steps.contains("No API key yet"), "{steps}");

    // a project, its slug suggested by the page's script as the name is typed
    browser.click("nav a[href='/projects']").await;
    browser.fill("#name", "Web Shop").await;
    wait_for_attribute(&browser, "#slug", "placeholder", "web-shop").await;
    browser.click("form[action='/projects'] button[type=submit]").await;
    browser.wait_for_text("h1", "Web Shop").await;
    let project = browser.path().await.trim_start_matches("/projects/").to_owned();
    assert!(project.starts_with("prj_"), "{project}");

    // an API key for it: created, shown once, copied with the button
    browser.click("nav a[href='/keys']").await;
    browser.fill("#name", "Production").await;
    browser.click("input[name=scope_read]").await;
    browser.click(&format!("#project option[value='{project}']")).await;
    browser.click("form[action='/keys'] button[type=submit]").await;
    let key = browser.text("#new-key").await;
    assert!(key.len() > 20, "{key}");
    browser.click("button[data-copy]").await;
    // the copy is asynchronous (the clipboard's promise): its label changes once it settles
    let clicked = Instant::now();
    while browser.text("button[data-copy]").await == "Copy" {
        assert!(clicked.elapsed() < Duration::from_secs(20), "the copy button did nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = browser.text("#keys").await;
    assert!(listed.contains("Production") && listed.contains("send, read"), "{listed}");
    assert!(listed.contains("Web Shop"), "bound to the project: {listed}");
    browser.screenshot("keys").await;
    assert_eq!(app.get_as(&key, "/v1/projects").await.0, 200, "the key shown works");

    // a sandbox provider, slow enough that the log shows messages on their way; verified
    browser.click("nav a[href='/providers']").await;
    browser.click("a[href='/providers/new?type=sandbox']").await;
    browser.fill("#provider-form input[name=name]", "Sandbox").await;
    browser.fill("input[name='config.latencyMs']", "3000").await;
    browser.click("#provider-form button[type=submit]").await;
    browser.wait_for_text("#state", "active").await;
    browser.click("form[action$='/verify'] button").await;
    browser.wait_for_text("#verified", "Verified").await;
    browser.screenshot("provider").await;

    // a webhook endpoint for the project's sent messages, its secret shown once
    browser.goto(&app.url(&format!("/projects/{project}/webhooks"))).await;
    browser.fill("#url", &format!("{}/hooks", receiver.url())).await;
    browser.click("input[name=eventTypes][value='message.sent']").await;
    browser
        .click(&format!("form[action='/projects/{project}/webhooks'] button[type=submit]"))
        .await;
    let secret = browser.text("#new-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint = format!("/projects/{project}/webhooks/");
    browser.click(&format!("main a[href^='{endpoint}']")).await;
    browser.find("#state").await;
    let endpoint_page = browser.path().await;

    // a test message from the project's log, followed to `sent` without reloading the page
    browser.goto(&app.url(&format!("/projects/{project}/messages"))).await;
    browser.click("#send-test summary").await;
    browser.fill("#test-to", "ada@example.com").await;
    browser.fill("#test-subject", "Welcome aboard").await;
    browser.fill("#test-text", "Hi").await;
    browser.click("#send-test button[type=submit]").await;
    let first = browser.wait_for_text("#messages tbody", "ada@example.com").await;
    assert!(!first.contains("sent"), "already settled when the page loaded: {first}");
    browser.wait_for_text("#messages tbody", "sent").await;
    browser.screenshot("messages").await;
    browser.click("#messages tbody a").await;
    let timeline = browser.text("#timeline").await;
    for status in ["received", "queued", "processing", "sent"] {
        assert!(timeline.contains(status), "{status}: {timeline}");
    }
    browser.screenshot("message").await;

    // the endpoint's delivery log shows the signed event the receiver got
    let deliveries = wait_for_deliveries(&browser, &app.url(&endpoint_page)).await;
    assert!(deliveries.contains("message.sent") && deliveries.contains("200"), "{deliveries}");
    browser.scroll_to("#deliveries").await;
    browser.screenshot("webhook").await;
    assert!(!receiver.requests().is_empty(), "the receiver got nothing");

    // the overview now has nothing left to ask for
    browser.click("nav a[href='/']").await;
    browser.wait_for_text("h1", "Grace Hopper's Organization").await;
    assert!(browser.client.find(Locator::Css("#next-steps")).await.is_err());
    browser.screenshot("overview").await;

    // a member sees the same pages without one control to change them
    let owner = account(&app, "grace@example.com").await;
    let member = app.add_member(&owner, "Member", "member").await;
    browser.click("header form button").await;
    browser.find("#email").await;
    browser.fill("#email", &member.email).await;
    browser.fill("#password", "not their password").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("[role=alert]", "invalid email or password").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    // signed in to their own organization: they switch to Grace's
    browser.wait_for_text("h1", "Member's Organization").await;
    browser.click(&format!("#organization option[value='{}']", owner.org_id)).await;
    browser.click("form.switch button").await;
    browser.wait_for_text("h1", "Grace Hopper's Organization").await;
    for page in [
        "/projects".to_owned(),
        format!("/projects/{project}"),
        "/keys".to_owned(),
        "/providers".to_owned(),
        format!("/projects/{project}/messages"),
        format!("/projects/{project}/webhooks"),
        endpoint_page.clone(),
        "/members".to_owned(),
    ] {
        browser.goto(&app.url(&page)).await;
        browser.find("main h1").await;
        let controls = browser.client.find_all(Locator::Css("main form[method=post]")).await;
        let controls = controls.expect("a query of the page");
        assert!(controls.is_empty(), "{page}: {} controls for a member", controls.len());
    }
    browser.screenshot("member").await;
    browser.close().await;
}

/// Waits until the element `css` has `name` = `expected` (what the page's script set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_a_passkey_and_then_signs_in_with_it_alone() {
    // passkeys are bound to a host name: browsers take no IP address as relying party
    let port = crate::harness::free_port();
    let site = format!("http://localhost:{port}");
    let app = TestApp::spawn_with(|c| {
        c.server.bind = format!("127.0.0.1:{port}");
        c.server.public_url = site.clone();
    })
    .await;
    let ada = app.sign_up("Ada").await;
    let browser = Browser::start().await;
    let authenticator = browser.add_virtual_authenticator().await;

    // signed in with the password, a passkey is added on the sign-in methods page
    browser.goto(&format!("{site}/sign-in")).await;
    browser.fill("#email", &ada.email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Ada's Organization").await;
    browser.click("a[href='/account/sign-in-methods']").await;
    browser.wait_for_text("h1", "Sign-in methods").await;
    browser.fill("#passkey-name", "Work laptop").await;
    browser.click("[data-passkey-register] button").await;
    browser.wait_for_text("#passkeys", "never").await;
    wait_for_attribute(&browser, "#passkeys input[name=name]", "value", "Work laptop").await;
    let held = browser.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["isResidentCredential"], true, "a discoverable credential: {held:?}");
    browser.screenshot("passkeys").await;

    // signed out, the sign-in page offers the passkey in the email field's autofill
    // (conditional mediation), where the virtual authenticator picks it as its owner would:
    // signed in again with no email typed, and back to the page asked for
    let sessions = app.count("sessions").await;
    browser.click("form[action='/sign-out'] button").await;
    browser.wait_for_text("h1", "Ada's Organization").await;
    assert_eq!(app.count("sessions").await, sessions, "one ended, one opened by the passkey");
    browser.goto(&format!("{site}/sign-in?next=/account/sign-in-methods")).await;
    browser.wait_for_text("h1", "Sign-in methods").await;
    assert_eq!(app.count("sessions").await, sessions + 1);
    let listed = browser.text("#passkeys").await;
    assert!(!listed.contains("never"), "its last use is shown: {listed}");
    let (_, keys) = app.get_as(&ada.token, "/v1/auth/passkeys").await;
    assert_eq!(keys["data"][0]["name"], "Work laptop", "{keys}");
    assert!(keys["data"][0]["lastUsedAt"].is_string(), "{keys}");
    browser.close().await;
}

async fn wait_for_attribute(browser: &Browser, css: &str, name: &str, expected: &str) {
    let started = Instant::now();
    loop {
        let value = browser.find(css).await.attr(name).await.ok().flatten();
        if value.as_deref() == Some(expected) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{css} {name}: {value:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads the endpoint's page until its delivery log shows an attempt; returns the log.
async fn wait_for_deliveries(browser: &Browser, url: &str) -> String {
    let started = Instant::now();
    loop {
        browser.goto(url).await;
        browser.find("#state").await;
        if let Ok(table) = browser.client.find(Locator::Css("#deliveries")).await {
            return table.text().await.expect("the delivery log");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no delivery in the log");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Grace, as the harness knows accounts: her session (the API's sign-in) and organization.
async fn account(app: &TestApp, email: &str) -> Account {
    let response = reqwest::Client::new()
        .post(app.url("/v1/auth/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    let token = body["token"].as_str().expect("a token").to_owned();
    let (_, session) = app.get_as(&token, "/v1/auth/session").await;
    Account {
        user_id: session["user"]["id"].as_str().unwrap_or_default().to_owned(),
        org_id: session["activeOrganizationId"].as_str().expect("an organization").to_owned(),
        project_id: String::new(),
        email: email.to_owned(),
        token,
    }
}
