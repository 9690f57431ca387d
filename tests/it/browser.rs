//! The dashboard in a real browser (headless Chromium, `harness::browser`): a person's journey
//! through the pages, clicking and typing as they would, with a screenshot of each step.

use std::time::{Duration, Instant};

use crate::harness::browser::Browser;
use crate::harness::{PASSWORD, TestApp};
use serde_json::json;

/// A session token for `email` (the API's sign-in), for what the dashboard cannot do yet.
async fn sign_in_token(app: &TestApp, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(app.url("/v1/auth/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_sees_their_organization_creates_a_key_signs_out_and_in_again() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;

    // the dashboard sends a stranger to sign in, and from there to sign up
    browser.goto(&app.url("/")).await;
    assert_eq!(browser.path().await, "/sign-in");
    browser.screenshot("sign-in").await;
    browser.click("a[href='/sign-up']").await;
    browser.fill("#name", "Grace Hopper").await;
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.screenshot("sign-up").await;
    browser.click("button[type=submit]").await;

    // the overview of the organization sign-up made, with its default project
    browser.wait_for_text("h1", "Grace Hopper's Organization").await;
    assert_eq!(browser.path().await, "/");
    let projects = browser.text("#projects").await;
    assert!(projects.contains("default"), "{projects}");
    browser.screenshot("overview").await;

    // an API key: created, shown once, copied with the button (the page's own script)
    browser.click("nav a[href='/keys']").await;
    browser.fill("#name", "Production").await;
    browser.click("input[name=scope_read]").await;
    browser.click("#project option:nth-child(2)").await;
    browser.click("form[action='/keys'] button[type=submit]").await;
    let key = browser.text("#new-key").await;
    assert!(key.len() > 20, "{key}");
    browser.click("button[data-copy]").await;
    let copied = browser.text("button[data-copy]").await;
    assert_ne!(copied, "Copy", "the copy button did nothing");
    let listed = browser.text("#keys").await;
    assert!(listed.contains("Production") && listed.contains("send, read"), "{listed}");
    assert!(listed.contains("Default"), "bound to the default project: {listed}");
    browser.screenshot("keys").await;
    assert_eq!(app.get_as(&key, "/v1/projects").await.0, 200, "the key shown works");

    // messages sent with it through a slow provider appear in the project's log, still on
    // their way, and the open page follows them to `sent` without being reloaded
    let token = sign_in_token(&app, "grace@example.com").await;
    let sandbox = json!({"name": "Sandbox", "channel": "email", "providerType": "sandbox",
                         "credentials": {}, "config": {"latencyMs": 3000}});
    app.create_provider(&token, sandbox).await;
    for n in 0..2 {
        let email = json!({"channel": "email", "to": format!("reader{n}@example.com"),
                           "content": {"subject": "Welcome aboard", "text": "Hi"}});
        app.send_message(&key, email).await;
    }
    browser.click("nav a[href='/']").await;
    browser.click("#projects a").await;
    let first = browser.text("#messages tbody").await;
    assert!(!first.contains("sent"), "already settled when the page loaded: {first}");
    browser.wait_for_text("#messages tbody", "sent").await;
    let settled = Instant::now();
    while browser.text("#messages tbody").await.matches("sent").count() < 2 {
        assert!(settled.elapsed() < Duration::from_secs(30), "the log never showed both sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("messages").await;
    browser.click("#messages tbody a").await;
    let timeline = browser.text("#timeline").await;
    for status in ["received", "queued", "processing", "sent"] {
        assert!(timeline.contains(status), "{status}: {timeline}");
    }
    browser.screenshot("message").await;

    // signing out, then in again
    browser.click("header form button").await;
    browser.find("#email").await;
    assert_eq!(browser.path().await, "/sign-in");
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", "not her password").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("[role=alert]", "invalid email or password").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Grace Hopper's Organization").await;
    browser.close().await;
}
