//! The dashboard's pages, as HTTP answers: signing up, in and out through forms, the overview
//! of the active organization, the headers every page carries, escaping of what tenants write,
//! and the static files. `browser.rs` drives the same pages in a real browser. The helpers here serve the
//! files beside this one, one per page family.

mod members;
mod projects;
mod providers;
mod sign_in_methods;
mod suppressions;
mod templates;
mod webhooks;

use crate::harness::TestApp;
use reqwest::header;
use reqwest::redirect::Policy;

/// A client that keeps cookies and shows redirects instead of following them.
pub(crate) fn browser_like() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().expect("client")
}

/// The `Origin` a browser sends with the app's forms.
pub(crate) fn origin(app: &TestApp) -> String {
    app.url("")
}

pub(crate) async fn post_form(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = client.post(app.url(path)).form(form);
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.send().await.expect("request")
}

pub(crate) async fn sign_up(client: &reqwest::Client, app: &TestApp, name: &str, email: &str) {
    let form = [("name", name), ("email", email), ("password", "correct horse battery")];
    let response = post_form(client, app, "/sign-up", &form, Some(&origin(app))).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap_or_default());
    assert_eq!(response.headers()[header::LOCATION], "/");
}

pub(crate) fn assert_page_headers(response: &reqwest::Response) {
    let headers = response.headers();
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_in_the_browser_lands_on_the_overview_of_a_new_organization() {
    let app = TestApp::spawn().await;
    let client = browser_like();

    let form = client.get(app.url("/sign-up")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert_page_headers(&form);
    assert!(form.text().await.unwrap().contains(r#"action="/sign-up""#));

    sign_up(&client, &app, "Ada", "ada@example.com").await;
    let overview = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(overview.status(), 200);
    assert_page_headers(&overview);
    let html = overview.text().await.unwrap();
    assert!(
        html.contains("Ada&#39;s Organization") || html.contains("Ada's Organization"),
        "{html}"
    );
    assert!(html.contains("<code>default</code>"), "the default project: {html}");
    assert!(html.contains("(owner)"), "{html}");

    // signing out ends the session: the overview sends to the sign-in page again
    let out = post_form(&client, &app, "/sign-out", &[], Some(&origin(&app))).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()[header::LOCATION], "/sign-in");
    let after = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(after.status(), 303);
    assert_eq!(after.headers()[header::LOCATION], "/sign-in?next=%2F");
    // a deeper page is named as where to come back to
    let asked = client.get(app.url("/projects?x=1")).send().await.unwrap();
    assert_eq!(asked.status(), 303);
    let location = asked.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, "/sign-in?next=%2Fprojects%3Fx%3D1");
    let form = client.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
    assert!(form.contains(r#"name="next" value="/projects?x=1""#), "{form}");

    // and signing in again opens a new one, back on the page asked for
    let form = [
        ("email", "ada@example.com"),
        ("password", "correct horse battery"),
        ("next", "/projects?x=1"),
    ];
    let back = post_form(&client, &app, "/sign-in", &form, Some(&origin(&app))).await;
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()[header::LOCATION], "/projects?x=1");
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_from_other_sites_and_bad_input_are_refused_on_the_page() {
    let app = TestApp::spawn().await;
    let client = browser_like();
    let fields = [("name", "Eve"), ("email", "eve@example.com"), ("password", "correct horse b")];

    // login CSRF: a form on another site, or one without Origin
    for origin in [Some("https://evil.example"), None] {
        let refused = post_form(&client, &app, "/sign-up", &fields, origin).await;
        assert_eq!(refused.status(), 403, "{origin:?}");
        assert_page_headers(&refused);
        assert!(refused.text().await.unwrap().contains("Origin does not match"));
    }
    assert_eq!(app.count("users").await, 0, "nobody signed up");

    // validation: the page names the fields, keeps what was typed, escaped
    let hostile = r#"<script>alert("x")</script>"#;
    let bad = [("name", hostile), ("email", "not an email"), ("password", "short")];
    let page = post_form(&client, &app, "/sign-up", &bad, Some(&origin(&app))).await;
    assert_eq!(page.status(), 400);
    let html = page.text().await.unwrap();
    for field in ["email:", "password:"] {
        assert!(html.contains(field), "{field} in {html}");
    }
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");

    // a wrong password: 401 on the page, not a redirect
    sign_up(&client, &app, "Eve", "eve@example.com").await;
    let wrong = [("email", "eve@example.com"), ("password", "wrong password!")];
    let page = post_form(&browser_like(), &app, "/sign-in", &wrong, Some(&origin(&app))).await;
    assert_eq!(page.status(), 401);
    assert!(page.text().await.unwrap().contains("invalid email or password"));

    // signing out needs our Origin too
    let out = post_form(&client, &app, "/sign-out", &[], Some("https://evil.example")).await;
    assert_eq!(out.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_tenant_wrote_is_escaped_on_the_overview() {
    let app = TestApp::spawn().await;
    let client = browser_like();
    let hostile = r#"<img src=x onerror="alert(1)">'"&"#;
    sign_up(&client, &app, hostile, "mallory@example.com").await;
    let html = client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stylesheet_is_served_under_its_content_hash_for_a_year() {
    let app = TestApp::spawn().await;
    let html = app.get("/sign-in").await.text().await.unwrap();
    let href = html
        .split(r#"rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stylesheet link");
    assert!(href.starts_with("/assets/app.") && href.ends_with(".css"), "{href}");
    let css = app.get(href).await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    assert_eq!(css.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert!(css.text().await.unwrap().contains("--accent"));

    // another version's name is not this file
    let stale = app.get("/assets/app.000000000000.css").await;
    assert_eq!(stale.status(), 404);
    assert!(stale.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
}

/// The overview as the owner behind `token` sees it.
pub(crate) async fn overview_html(app: &TestApp, token: &str) -> String {
    let response =
        reqwest::Client::new().get(app.url("/")).bearer_auth(token).send().await.expect("request");
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The rows of the table `id` on `html` (whatever other attributes it has), each as its
/// cells' text.
pub(crate) fn rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let table = html
        .split(&format!(r#"<table id="{id}""#))
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no table {id} in {html}"));
    let body = table.split("<tbody>").nth(1).unwrap_or_default();
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|cell| cell.split("</td>").next().unwrap_or_default().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_the_days_messages_and_shows_what_went_wrong() {
    use serde_json::json;
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let sandbox = |channel: &str, config: serde_json::Value| {
        json!({"name": format!("Sandbox {channel}"), "channel": channel, "providerType": "sandbox",
               "credentials": {}, "config": config})
    };
    // every email is refused for good, every SMS sent
    app.create_provider(
        &owner.token,
        sandbox("email", json!({"failFirst": 1, "failMode": "permanent"})),
    )
    .await;
    app.create_provider(&owner.token, sandbox("sms", json!({}))).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let email = json!({"channel": "email", "to": format!("user{n}@example.com"),
                           "content": {"subject": "Hi", "text": "Hello"}});
        ids.push((app.send_message(&key, email).await, "failed"));
    }
    for n in 0..3 {
        let sms =
            json!({"channel": "sms", "to": format!("+1555000000{n}"), "content": {"text": "Hi"}});
        ids.push((app.send_message(&key, sms).await, "sent"));
    }
    for (id, status) in &ids {
        app.wait_for_status(&key, id, status).await;
    }
    // one endpoint disabled, with its reason
    let hooks = format!("/v1/projects/{}/webhooks", owner.project_id);
    let body = json!({"url": "https://hooks.example.com/<b>", "eventTypes": ["message.sent"]});
    let (status, _) = app.post_as(&owner.token, &hooks, body).await;
    assert_eq!(status, 201);
    app.sql("UPDATE webhook_endpoints SET is_active = false, disabled_reason = 'gone <for> good'")
        .await;

    let html = overview_html(&app, &owner.token).await;
    let cells = |id: &str| rows(&html, id);
    assert_eq!(cells("by-status"), [["sent", "3"], ["failed", "2"]]);
    assert_eq!(cells("by-channel"), [["sms", "3"], ["email", "2"]]);
    assert!(html.contains("<svg class=\"chart\""), "{html}");
    let failures = html.split(r#"id="failures""#).nth(1).unwrap();
    assert!(failures.contains("user1@example.com") && failures.contains("simulated rejection"));
    let endpoints = html.split(r#"id="endpoints""#).nth(1).unwrap();
    assert!(endpoints.contains("disabled: gone &lt;for&gt; good"), "{endpoints}");
    // stored normalized: the angle brackets percent-encoded
    assert!(endpoints.contains("https://hooks.example.com/%3Cb%3E"), "{endpoints}");
    let waiting = html.split(r#"id="waiting""#).nth(1).unwrap();
    assert!(waiting.contains("<strong>0</strong> messages"), "{waiting}");

    // another organization sees none of it
    let stranger = app.sign_up("Stranger").await;
    let theirs = overview_html(&app, &stranger.token).await;
    assert!(theirs.contains("No message in the last 24 hours."), "{theirs}");
    assert!(!theirs.contains("user1@example.com") && !theirs.contains("gone &lt;for&gt; good"));
}

/// A form post as the signed-in `token` (a session token, sent as the browser's cookie).
pub(crate) async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    post_from(app, token, path, form, &origin(app)).await
}

/// [`post_as`] from a page of `origin` (the server's public URL, when it has one).
pub(crate) async fn post_from(
    app: &TestApp,
    token: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: &str,
) -> reqwest::Response {
    browser_like()
        .post(app.url(path))
        .header(header::COOKIE, format!("relayit_session={token}"))
        .header(header::ORIGIN, origin)
        .form(form)
        .send()
        .await
        .expect("request")
}

pub(crate) async fn get_page(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let response = browser_like()
        .get(app.url(path))
        .header(header::COOKIE, format!("relayit_session={token}"))
        .send()
        .await
        .expect("request");
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_shown_once_and_revoked_from_the_keys_page() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (_, html) = get_page(&app, &owner.token, "/keys").await;
    assert!(html.contains("No key yet. Create one above"), "{html}");

    let form = [("name", "CI <deploy>"), ("scope_read", "on"), ("project", ""), ("expires", "")];
    let created = post_as(&app, &owner.token, "/keys", &form).await;
    assert_eq!(created.status(), 201);
    let html = created.text().await.unwrap();
    let key = html
        .split(r#"<code id="new-key">"#)
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .expect("the new key, shown once")
        .to_owned();
    assert!(html.contains(r##"data-copy="#new-key""##), "{html}");
    assert!(html.contains("CI &lt;deploy&gt;"), "{html}");
    // the key works, with the scopes chosen
    let (status, _) = app.get_as(&key, "/v1/projects").await;
    assert_eq!(status, 200, "a read key reads");
    // and is never shown again
    let (_, listed) = get_page(&app, &owner.token, "/keys").await;
    assert!(!listed.contains(&key) && !listed.contains("new-key"), "{listed}");
    let row = rows(&listed, "keys").pop().expect("one key");
    assert_eq!(row[0], "CI &lt;deploy&gt;");
    assert_eq!(row[2], "read");
    assert_eq!(row[3], "every project");

    // bad input: named on the page, nothing created
    let bad = [("name", ""), ("expires", "yesterday")];
    let refused = post_as(&app, &owner.token, "/keys", &bad).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("expires"));

    // revoked: gone from the list, and refused at once
    let id = listed
        .split(r#"action="/keys/"#)
        .nth(1)
        .and_then(|rest| rest.split("/revoke").next())
        .expect("a revoke form")
        .to_owned();
    let revoked = post_as(&app, &owner.token, &format!("/keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status(), 303);
    let (status, _) = app.get_as(&key, "/v1/projects").await;
    assert_eq!(status, 401, "a revoked key");
    let (_, listed) = get_page(&app, &owner.token, "/keys").await;
    assert!(listed.contains("No key yet"), "{listed}");

    // another tenant's key: 404, and it stays
    let stranger = app.sign_up("Stranger").await;
    let theirs = app.create_api_key(&stranger, &["send"], None).await;
    let (status, keys) = app.get_as(&stranger.token, "/v1/api-keys").await;
    assert_eq!(status, 200);
    let their_id = keys["data"][0]["id"].as_str().expect("their key").to_owned();
    let refused = post_as(&app, &owner.token, &format!("/keys/{their_id}/revoke"), &[]).await;
    assert_eq!(refused.status(), 404);
    let (status, _) = app.get_as(&theirs, "/v1/messages/msg_x").await;
    assert_ne!(status, 401, "their key still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_the_keys_without_any_control_and_cannot_write() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    app.create_api_key(&owner, &["send"], None).await;
    let member = app.add_member(&owner, "Member", "member").await;
    let (status, html) = get_page(&app, &member.token, "/keys").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html, "keys").len(), 1, "{html}");
    assert!(!html.contains("<form method=\"post\" action=\"/keys"), "no control: {html}");
    // the server refuses the writes anyway
    let form = [("name", "mine"), ("scope_send", "on")];
    let refused = post_as(&app, &member.token, "/keys", &form).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_filters_pages_and_opens_a_message_with_its_timeline() {
    use serde_json::json;
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let sandbox = json!({"name": "Sandbox", "channel": "email", "providerType": "sandbox",
                         "credentials": {}, "config": {}});
    app.create_provider(&owner.token, sandbox).await;
    let mut ids = Vec::new();
    for n in 0..55 {
        let email = json!({"channel": "email", "to": format!("user{n}@example.com"),
                           "content": {"subject": format!("Hello <{n}>"), "text": "Hi"}});
        ids.push(app.send_message(&key, email).await);
    }
    let sms = json!({"channel": "sms", "to": "+15550000001", "content": {"text": "no provider"}});
    app.send_message(&key, sms).await;
    for id in &ids {
        app.wait_for_status(&key, id, "sent").await;
    }

    // newest first, fifty a page, then the rest
    let log = format!("/projects/{}/messages", owner.project_id);
    let (status, html) = get_page(&app, &owner.token, &log).await;
    assert_eq!(status, 200, "{html}");
    let first = rows(&html, "messages");
    assert_eq!(first.len(), 50);
    assert!(first[0][2].contains("+15550000001"), "{:?}", first[0]);
    assert!(first[1][3].contains("Hello &lt;54&gt;"), "{:?}", first[1]);
    let older = html
        .split(r#"class="next" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to older messages")
        .replace("&amp;", "&");
    let (_, html) = get_page(&app, &owner.token, &format!("{log}{older}")).await;
    assert_eq!(rows(&html, "messages").len(), 6);

    // filters: channel, status, search
    let (_, html) = get_page(&app, &owner.token, &format!("{log}?channel=sms")).await;
    assert_eq!(rows(&html, "messages").len(), 1);
    let (_, html) =
        get_page(&app, &owner.token, &format!("{log}?status=sent&search=user7%40")).await;
    let found = rows(&html, "messages");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0][2].contains("user7@example.com"));
    let (status, html) = get_page(&app, &owner.token, &format!("{log}?status=lost")).await;
    assert_eq!(status, 400);
    assert!(html.contains("status"), "{html}");
    // the API's limit on a search, named on the page
    let long = "x".repeat(201);
    let (status, html) = get_page(&app, &owner.token, &format!("{log}?search={long}")).await;
    assert_eq!(status, 400);
    assert!(html.contains("search: must be at most 200 characters"), "{html}");

    // the message page: content (escaped), routing, the timeline
    let (status, html) = get_page(&app, &owner.token, &format!("/messages/{}", ids[3])).await;
    assert_eq!(status, 200);
    assert!(html.contains("Hello &lt;3&gt;"), "{html}");
    let timeline = html.split(r#"id="timeline""#).nth(1).expect("a timeline");
    for status in ["received", "queued", "processing", "sent"] {
        assert!(timeline.contains(&format!(r#"class="status {status}""#)), "{status}: {timeline}");
    }
    // every message on the page has settled: nothing to refresh (the browser test watches a
    // page that has some on their way)
    let (_, html) = get_page(&app, &owner.token, &format!("{log}?channel=email")).await;
    assert!(!html.contains("data-refresh"), "{html}");

    // another tenant's project and message: 404
    let stranger = app.sign_up("Stranger").await;
    for path in [log.clone(), format!("/messages/{}", ids[0])] {
        let (status, _) = get_page(&app, &stranger.token, &path).await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_in_several_organizations_switches_between_them_on_the_overview() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (_, html) = get_page(&app, &owner.token, "/").await;
    assert!(!html.contains(r#"action="/organization""#), "one organization, no switcher");
    let (status, second) = app
        .post_as(&owner.token, "/v1/organizations", serde_json::json!({"name": "Second & Co"}))
        .await;
    assert_eq!(status, 201, "{second}");
    let second_id = second["id"].as_str().expect("an id").to_owned();

    let (_, html) = get_page(&app, &owner.token, "/").await;
    assert!(html.contains(r#"action="/organization""#) && html.contains("Second &amp; Co (owner)"));
    let switched =
        post_as(&app, &owner.token, "/organization", &[("organization", &second_id)]).await;
    assert_eq!(switched.status(), 303);
    let (_, html) = get_page(&app, &owner.token, "/").await;
    assert!(html.contains("<h1>Second &amp; Co</h1>"), "{html}");

    // an organization that is not theirs: 404, and nothing changes
    let stranger = app.sign_up("Stranger").await;
    let refused =
        post_as(&app, &owner.token, "/organization", &[("organization", &stranger.org_id)]).await;
    assert_eq!(refused.status(), 404);
    let (_, html) = get_page(&app, &owner.token, "/").await;
    assert!(html.contains("<h1>Second &amp; Co</h1>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_lists_their_sessions_and_ends_the_others() {
    let app = TestApp::spawn().await;
    let first = app.sign_up("Owner").await;
    // a second session, in a browser
    let form = [("email", first.email.as_str()), ("password", crate::harness::PASSWORD)];
    let signed_in = post_form(&browser_like(), &app, "/sign-in", &form, Some(&origin(&app))).await;
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    let browser_token = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("relayit_session="))
        .expect("the session cookie")
        .to_owned();

    let (status, html) = get_page(&app, &browser_token, "/account/sessions").await;
    assert_eq!(status, 200);
    let sessions = rows(&html, "sessions");
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions.iter().filter(|row| row[5].contains("this one")).count(), 1);

    // another person's session: 404
    let stranger = app.sign_up("Stranger").await;
    let (_, theirs) = app.get_as(&stranger.token, "/v1/auth/sessions").await;
    let their_id = theirs["data"][0]["id"].as_str().expect("their session").to_owned();
    let refused =
        post_as(&app, &browser_token, &format!("/account/sessions/{their_id}/revoke"), &[]).await;
    assert_eq!(refused.status(), 404);
    assert_eq!(app.get_as(&stranger.token, "/v1/auth/session").await.0, 200);

    // every other one: the first session ends, this one stays
    let ended = post_as(&app, &browser_token, "/account/sessions/others/revoke", &[]).await;
    assert_eq!(ended.status(), 303);
    assert_eq!(app.get_as(&first.token, "/v1/auth/session").await.0, 401);
    let (_, html) = get_page(&app, &browser_token, "/account/sessions").await;
    assert_eq!(rows(&html, "sessions").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_says_what_to_do_next_until_a_provider_and_a_key_exist() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let member = app.add_member(&owner, "Member", "member").await;
    let html = overview_html(&app, &owner.token).await;
    let steps = html.split(r#"id="next-steps""#).nth(1).expect("the next steps");
    assert!(steps.contains(r#"No provider yet: <a href="/providers">add one</a>"#), "{steps}");
    assert!(steps.contains(r#"No API key yet: <a href="/keys">create one</a>"#), "{steps}");
    let theirs = overview_html(&app, &member.token).await;
    assert!(theirs.contains("an admin or owner adds one"), "a member is told who can: {theirs}");

    app.create_provider(&owner.token, crate::harness::sandbox_provider("S", "email")).await;
    let html = overview_html(&app, &owner.token).await;
    assert!(!html.contains("No provider yet") && html.contains("No API key yet"), "{html}");
    app.create_api_key(&owner, &["send"], None).await;
    let html = overview_html(&app, &owner.token).await;
    assert!(!html.contains("next-steps"), "{html}");
}

/// PostgreSQL stores no U+0000: a page's form or address carrying one is a 400, never a 500,
/// on the pages that check their fields by name and on those that leave it to the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_holding_nul_is_refused_on_every_page() {
    let app = TestApp::spawn().await;
    let client = browser_like();
    sign_up(&client, &app, "Ada", "ada-nul@example.com").await;
    let created =
        post_form(&client, &app, "/projects", &[("name", "a\0b")], Some(&origin(&app))).await;
    assert_eq!(created.status(), 400, "{}", created.text().await.unwrap_or_default());
    let page = client
        .get(app.url("/projects/default/messages?search=a%00"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert_page_headers(&page);
    assert!(page.text().await.unwrap().contains("query: must not contain the character U+0000"));
    assert_eq!(app.count("projects").await, 1, "only the default project");
}
