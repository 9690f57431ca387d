//! The dashboard in a real browser (headless Chromium, `harness::browser`): a person's journey
//! through the pages, clicking and typing as they would, with a screenshot of each step.

use crate::harness::TestApp;
use crate::harness::browser::Browser;

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
    browser.fill("#password", "correct horse battery").await;
    browser.screenshot("sign-up").await;
    browser.click("button[type=submit]").await;

    // the overview of the organization sign-up made, with its default project
    assert_eq!(browser.text("h1").await, "Grace Hopper's Organization");
    assert_eq!(browser.path().await, "/");
    let projects = browser.text("#projects").await;
    assert!(projects.contains("default"), "{projects}");
    browser.screenshot("overview").await;

    // an API key: created, shown once, copied with the button (the page's own script)
    browser.click("nav a[href='/keys']").await;
    browser.fill("#name", "Production").await;
    browser.click("input[name=scope_read]").await;
    browser.click("form[action='/keys'] button[type=submit]").await;
    let key = browser.text("#new-key").await;
    assert!(key.len() > 20, "{key}");
    browser.click("button[data-copy]").await;
    let copied = browser.text("button[data-copy]").await;
    assert_ne!(copied, "Copy", "the copy button did nothing");
    let listed = browser.text("#keys").await;
    assert!(listed.contains("Production") && listed.contains("send, read"), "{listed}");
    browser.screenshot("keys").await;
    assert_eq!(app.get_as(&key, "/v1/projects").await.0, 200, "the key shown works");

    // signing out, then in again
    browser.click("header form button").await;
    browser.find("#email").await;
    assert_eq!(browser.path().await, "/sign-in");
    browser.fill("#email", "grace@example.com").await;
    browser.fill("#password", "not her password").await;
    browser.click("button[type=submit]").await;
    let error = browser.text("[role=alert]").await;
    assert!(error.contains("invalid email or password"), "{error}");
    browser.fill("#password", "correct horse battery").await;
    browser.click("button[type=submit]").await;
    assert_eq!(browser.text("h1").await, "Grace Hopper's Organization");
    browser.close().await;
}
