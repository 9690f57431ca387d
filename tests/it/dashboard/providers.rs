//! The providers pages: the list, the form per provider type (exactly its fields), a
//! credential's page (change, activate/deactivate, verify with the answer shown, last error),
//! deletion after a confirmation; secrets write-only; members without controls (their posts
//! refused), other tenants' credentials not found, what tenants wrote escaped.

use reqwest::header;
use serde_json::{Value, json};

use super::{get_page, post_as, rows};
use crate::harness::smtp_sink::SmtpSink;
use crate::harness::{TestApp, sandbox_provider};

/// The names of the inputs of the form `#provider-form` on `html`, in order.
fn form_fields(html: &str) -> Vec<String> {
    let form = html
        .split(r#"<form id="provider-form""#)
        .nth(1)
        .and_then(|rest| rest.split("</form>").next())
        .unwrap_or_else(|| panic!("no provider form in {html}"));
    form.split(" name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Posts `form` as `token` and expects the 303 to a credential's page; returns its id.
async fn posted(app: &TestApp, token: &str, path: &str, form: &[(&str, &str)]) -> String {
    let response = post_as(app, token, path, form).await;
    let status = response.status();
    let location = response.headers().get(header::LOCATION).cloned();
    assert_eq!(status, 303, "{path}: {}", response.text().await.unwrap_or_default());
    let location = location.expect("a location");
    let id = location.to_str().unwrap().strip_prefix("/providers/").expect("a provider's page");
    id.to_owned()
}

/// The credential as the API shows it.
async fn api_view(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, view) = app.get_as(token, &format!("/v1/providers/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view
}

const SANDBOX_FIELDS: [&str; 6] = [
    "config.failFirst",
    "config.failMode",
    "config.failRate",
    "config.latencyMs",
    "config.rateLimit",
    "config.retryAfterMs",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_adds_a_sandbox_provider_with_the_form_and_messages_go_through_it() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let (status, html) = get_page(&app, &owner.token, "/providers").await;
    assert_eq!(status, 200);
    for provider_type in ["ses", "smtp", "sns", "whatsapp_cloud", "discord_bot", "sandbox"] {
        let link = format!(r#"href="/providers/new?type={provider_type}""#);
        assert!(html.contains(&link), "{link}: {html}");
    }

    // the sandbox's form: its settings, a channel to choose, no secret
    let (status, html) = get_page(&app, &owner.token, "/providers/new?type=sandbox").await;
    assert_eq!(status, 200, "{html}");
    let mut expected = vec!["type", "name", "slug", "channel", "priority", "project"];
    expected.extend(SANDBOX_FIELDS);
    assert_eq!(form_fields(&html), expected);
    assert!(html.contains(&format!(r#"<option value="{}">"#, owner.project_id)), "{html}");

    let form = [
        ("type", "sandbox"),
        ("name", "Try it"),
        ("slug", ""),
        ("channel", "email"),
        ("priority", "3"),
        ("project", ""),
        ("config.latencyMs", "5"),
        ("config.failMode", ""),
        ("config.failRate", ""),
    ];
    let id = posted(&app, &owner.token, "/providers", &form).await;
    let view = api_view(&app, &owner.token, &id).await;
    assert_eq!(view["name"], "Try it");
    assert_eq!(view["slug"], "try-it");
    assert_eq!(view["channel"], "email");
    assert_eq!(view["providerType"], "sandbox");
    assert_eq!(view["config"], json!({"latencyMs": 5}));
    assert_eq!(view["priority"], 3);
    assert_eq!(view["projectId"], Value::Null);
    assert_eq!(view["isActive"], true);

    // it delivers
    let email = json!({"channel": "email", "to": "ada@example.com",
                       "content": {"subject": "Hi", "text": "Hello"}});
    let message = app.send_message(&key, email).await;
    let sent = app.wait_for_status(&key, &message, "sent").await;
    assert_eq!(sent["provider"]["id"], id.as_str(), "{sent}");

    // its page: the settings filled in; verified, with the answer shown
    let (status, html) = get_page(&app, &owner.token, &format!("/providers/{id}")).await;
    assert_eq!(status, 200, "{html}");
    let mut expected = vec!["name", "slug", "priority"];
    expected.extend(SANDBOX_FIELDS);
    assert_eq!(form_fields(&html), expected);
    assert!(html.contains(r#"name="config.latencyMs" value="5""#), "{html}");
    let verified = post_as(&app, &owner.token, &format!("/providers/{id}/verify"), &[]).await;
    assert_eq!(verified.status(), 200);
    let html = verified.text().await.unwrap();
    let shown = html.split(r#"id="verified""#).nth(1).expect("the verify result");
    assert!(shown.contains("Verified."), "{shown}");

    // one project only: the project chosen
    let form = [
        ("type", "sandbox"),
        ("name", "Project SMS"),
        ("channel", "sms"),
        ("project", owner.project_id.as_str()),
    ];
    let scoped = posted(&app, &owner.token, "/providers", &form).await;
    assert_eq!(api_view(&app, &owner.token, &scoped).await["projectId"], owner.project_id.as_str());
    let (_, html) = get_page(&app, &owner.token, "/providers").await;
    let listed = rows(&html, "providers");
    let sms = listed.iter().find(|row| row[2] == "sms").expect("the SMS credential");
    assert_ne!(sms[3], "every project", "{sms:?}");
}

const USER: &str = "mailer@example.com";
const PASSWORD: &str = "app password 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_kept_when_left_empty_and_verified_on_the_page() {
    let sink = SmtpSink::start(Some((USER, PASSWORD))).await;
    // the sink is on this machine
    let app = TestApp::spawn_with(|c| c.providers.allow_private_targets = true).await;
    let owner = app.sign_up("Owner").await;
    let mut pages = Vec::new();

    let (_, html) = get_page(&app, &owner.token, "/providers/new?type=smtp").await;
    let fields = form_fields(&html);
    assert_eq!(
        fields[5..],
        [
            "credentials.password",
            "credentials.username",
            "config.fromAddress",
            "config.host",
            "config.port",
            "config.tls",
            "config.rateLimit",
        ]
    );
    assert!(html.contains(r#"id="credentials.password" type="password""#), "{html}");
    // endpoint overrides are off on this server: not offered
    let (_, ses) = get_page(&app, &owner.token, "/providers/new?type=ses").await;
    assert!(form_fields(&ses).contains(&"credentials.secretAccessKey".to_owned()), "{ses}");
    assert!(!ses.contains("endpointUrl"), "{ses}");
    pages.push(html);

    let port = sink.port().to_string();
    let form = [
        ("type", "smtp"),
        ("name", "Mail"),
        ("credentials.username", USER),
        ("credentials.password", PASSWORD),
        ("config.host", "127.0.0.1"),
        ("config.port", port.as_str()),
        ("config.tls", "none"),
        ("config.fromAddress", "hello@example.com"),
    ];
    let id = posted(&app, &owner.token, "/providers", &form).await;
    let page = format!("/providers/{id}");
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(html.contains("(secret, set)"), "{html}");
    assert!(!html.contains("value=\"mailer"), "{html}");
    pages.push(html);
    let verify = format!("{page}/verify");
    let verified = post_as(&app, &owner.token, &verify, &[]).await.text().await.unwrap();
    assert!(verified.contains("Verified."), "{verified}");
    pages.push(verified);

    // changed with the secrets left empty: kept (a new client, as the config changed,
    // authenticates with them)
    let auths = sink.auths();
    let edit = [
        ("name", "Mail (main)"),
        ("slug", "mail"),
        ("priority", "1"),
        ("credentials.username", ""),
        ("credentials.password", ""),
        ("config.host", "127.0.0.1"),
        ("config.port", port.as_str()),
        ("config.tls", "none"),
        ("config.fromAddress", "noreply@example.com"),
    ];
    assert_eq!(posted(&app, &owner.token, &page, &edit).await, id);
    let view = api_view(&app, &owner.token, &id).await;
    assert_eq!((view["name"].as_str(), view["priority"].as_i64()), (Some("Mail (main)"), Some(1)));
    assert_eq!(view["config"]["fromAddress"], "noreply@example.com");
    assert_eq!(view["credentials"], json!({"username": "********", "password": "********"}));
    let verified = post_as(&app, &owner.token, &verify, &[]).await.text().await.unwrap();
    assert!(verified.contains("Verified."), "{verified}");
    assert!(sink.auths() > auths, "authenticated with the kept secrets");
    pages.push(verified);

    // a wrong secret typed in: the provider's refusal, shown
    let mut wrong = edit;
    wrong[4] = ("credentials.password", "not it");
    posted(&app, &owner.token, &page, &wrong).await;
    let refused = post_as(&app, &owner.token, &verify, &[]).await;
    assert_eq!(refused.status(), 200);
    let refused = refused.text().await.unwrap();
    let shown = refused.split(r#"id="verified""#).nth(1).expect("the verify result");
    assert!(shown.contains("The provider refused: </strong>credential: SMTP"), "{shown}");

    // the last error a delivery met, on the credential's page
    app.sql("UPDATE provider_credentials SET last_error = 'auth: <535>', last_error_at = now()")
        .await;
    let (_, html) = get_page(&app, &owner.token, &page).await;
    let last = html.split(r#"id="last-error""#).nth(1).expect("the last error");
    assert!(last.starts_with(">auth: &lt;535&gt;"), "{last}");
    pages.push(html);
    let (_, list) = get_page(&app, &owner.token, "/providers").await;
    pages.push(list);

    for html in &pages {
        assert!(!html.contains(PASSWORD) && !html.contains(USER), "a secret shown: {html}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_deactivated_activated_and_deleted_after_a_confirmation() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let id = app.create_provider(&owner.token, sandbox_provider("Spare", "email")).await;
    let page = format!("/providers/{id}");

    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(html.contains(&format!(r#"action="{page}/deactivate""#)), "{html}");
    assert_eq!(posted(&app, &owner.token, &format!("{page}/deactivate"), &[]).await, id);
    assert_eq!(api_view(&app, &owner.token, &id).await["isActive"], false);
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(html.contains(r#"<dd id="state">inactive</dd>"#), "{html}");
    assert!(html.contains(&format!(r#"action="{page}/activate""#)), "{html}");
    assert_eq!(posted(&app, &owner.token, &format!("{page}/activate"), &[]).await, id);
    assert_eq!(api_view(&app, &owner.token, &id).await["isActive"], true);

    // deleting asks first, naming the credential
    let (status, html) = get_page(&app, &owner.token, &format!("{page}/delete")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete <strong>Spare</strong>"), "{html}");
    assert!(html.contains(&format!(r#"action="{page}/delete""#)), "{html}");
    assert_eq!(api_view(&app, &owner.token, &id).await["id"], id.as_str(), "not yet");
    let deleted = post_as(&app, &owner.token, &format!("{page}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(deleted.headers()[header::LOCATION], "/providers");
    let (status, _) = app.get_as(&owner.token, &format!("/v1/providers/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_page(&app, &owner.token, &page).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_on_the_page_naming_the_field_and_escaped() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let hostile = r#"<script>alert("x")</script>"#;

    // text that is no number: named before anything else is checked
    let form = [
        ("type", "sandbox"),
        ("name", hostile),
        ("channel", "email"),
        ("config.latencyMs", "soon"),
    ];
    let refused = post_as(&app, &owner.token, "/providers", &form).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("config.latencyMs: must be a whole number"), "{html}");
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "kept, escaped: {html}");

    // the API's rules, named as the API names them
    let form =
        [("type", "sandbox"), ("name", " "), ("channel", "fax"), ("config.latencyMs", "99999")];
    let html = post_as(&app, &owner.token, "/providers", &form).await;
    assert_eq!(html.status(), 400);
    let html = html.text().await.unwrap();
    assert!(html.contains("channel: must be one of"), "{html}");
    let form =
        [("type", "sandbox"), ("name", " "), ("channel", "sms"), ("config.latencyMs", "99999")];
    let html = post_as(&app, &owner.token, "/providers", &form).await.text().await.unwrap();
    for field in ["name:", "config.latencyMs: must be at most 10000"] {
        assert!(html.contains(field), "{field}: {html}");
    }
    let form = [("type", "ses"), ("name", "Mail"), ("credentials.accessKeyId", "AK IA")];
    let html = post_as(&app, &owner.token, "/providers", &form).await.text().await.unwrap();
    for field in ["credentials.secretAccessKey:", "config.region:"] {
        assert!(html.contains(field), "{field}: {html}");
    }
    assert!(!html.contains("AK IA"), "a secret typed is not shown again: {html}");
    let (status, html) = get_page(&app, &owner.token, "/providers/new?type=fax").await;
    assert_eq!(status, 400);
    assert!(html.contains("type: must be one of"), "{html}");
    assert_eq!(app.count("provider_credentials").await, 0, "nothing added");

    // a hostile name, stored: escaped wherever shown
    let form = [("type", "sandbox"), ("name", hostile), ("channel", "email")];
    let id = posted(&app, &owner.token, "/providers", &form).await;
    let page = format!("/providers/{id}");
    for path in ["/providers".to_owned(), page.clone(), format!("{page}/delete")] {
        let (_, html) = get_page(&app, &owner.token, &path).await;
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)"), "{path}: {html}");
    }

    // changes refused: named, what was typed kept, nothing changed
    let edit = [("name", "Renamed"), ("priority", "first"), ("config.failRate", "2")];
    let refused = post_as(&app, &owner.token, &page, &edit).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("priority: must be a whole number"), "{html}");
    assert!(html.contains(r#"value="Renamed""#), "{html}");
    let edit = [("name", "Renamed"), ("config.failRate", "2")];
    let html = post_as(&app, &owner.token, &page, &edit).await.text().await.unwrap();
    assert!(html.contains("config.failRate: must be between 0 and 1"), "{html}");
    assert_eq!(api_view(&app, &owner.token, &id).await["name"], hostile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_the_providers_without_any_control_and_cannot_write() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let id = app.create_provider(&owner.token, sandbox_provider("Shared", "email")).await;
    let member = app.add_member(&owner, "Member", "member").await;
    let page = format!("/providers/{id}");

    let (status, html) = get_page(&app, &member.token, "/providers").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html, "providers").len(), 1);
    assert!(!html.contains("Add a provider") && !html.contains("/providers/new"), "{html}");
    let (status, html) = get_page(&app, &member.token, &page).await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Shared</h1>"), "{html}");
    assert!(!html.contains("<form method=\"post\" action=\"/providers"), "no control: {html}");
    assert!(!html.contains("provider-form") && !html.contains("/delete"), "{html}");
    for path in ["/providers/new?type=sandbox".to_owned(), format!("{page}/delete")] {
        let (status, _) = get_page(&app, &member.token, &path).await;
        assert_eq!(status, 403, "{path}");
    }

    // the server refuses the writes anyway
    let create = [("type", "sandbox"), ("name", "Mine"), ("channel", "email")];
    let refused = post_as(&app, &member.token, "/providers", &create).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("admin"));
    let edit = [("name", "Taken over")];
    for (path, form) in [
        (page.clone(), &edit[..]),
        (format!("{page}/deactivate"), &[][..]),
        (format!("{page}/verify"), &[][..]),
        (format!("{page}/delete"), &[][..]),
    ] {
        let refused = post_as(&app, &member.token, &path, form).await;
        assert_eq!(refused.status(), 403, "{path}");
    }
    let view = api_view(&app, &owner.token, &id).await;
    assert_eq!((view["name"].as_str(), view["isActive"].as_bool()), (Some("Shared"), Some(true)));
    assert_eq!(app.count("provider_credentials").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_provider_is_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let id = app.create_provider(&owner.token, sandbox_provider("Ours", "email")).await;
    let stranger = app.sign_up("Stranger").await;
    let page = format!("/providers/{id}");

    for path in [page.clone(), format!("{page}/delete")] {
        let (status, html) = get_page(&app, &stranger.token, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!html.contains("Ours"), "{html}");
    }
    let edit = [("name", "Theirs now")];
    for (path, form) in [
        (page.clone(), &edit[..]),
        (format!("{page}/deactivate"), &[][..]),
        (format!("{page}/verify"), &[][..]),
        (format!("{page}/delete"), &[][..]),
    ] {
        let refused = post_as(&app, &stranger.token, &path, form).await;
        assert_eq!(refused.status(), 404, "{path}");
    }
    // nor can one be added to another organization's project
    let form = [
        ("type", "sandbox"),
        ("name", "Sneaky"),
        ("channel", "email"),
        ("project", owner.project_id.as_str()),
    ];
    let refused = post_as(&app, &stranger.token, "/providers", &form).await;
    assert_eq!(refused.status(), 404);
    let view = api_view(&app, &owner.token, &id).await;
    assert_eq!((view["name"].as_str(), view["isActive"].as_bool()), (Some("Ours"), Some(true)));
    assert_eq!(app.count("provider_credentials").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_page_lists_credentials_without_their_secrets() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (_, html) = get_page(&app, &owner.token, "/providers").await;
    assert!(html.contains("No provider yet"), "{html}");

    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let ses = json!({"name": "Mail", "channel": "email", "providerType": "ses",
        "credentials": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": secret},
        "config": {"region": "eu-west-1", "fromAddress": "noreply@example.com"}});
    app.create_provider(&owner.token, ses).await;
    let sandbox = json!({"name": "<b>Try</b>", "channel": "sms", "providerType": "sandbox",
                         "credentials": {}, "config": {}});
    app.create_provider(&owner.token, sandbox).await;
    app.sql(
        "UPDATE provider_credentials SET last_error = 'refused: <bad key>', \
             last_error_at = now() WHERE provider_type = 'ses'",
    )
    .await;

    let (status, html) = get_page(&app, &owner.token, "/providers").await;
    assert_eq!(status, 200);
    let listed = rows(&html, "providers");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mail = listed.iter().find(|row| row[1] == "ses").expect("the SES credential");
    assert_eq!(mail[2], "email");
    assert_eq!(mail[3], "every project");
    assert!(mail[6].starts_with("refused: &lt;bad key&gt;"), "{mail:?}");
    assert!(html.contains("&lt;b&gt;Try&lt;/b&gt;"), "{html}");
    assert!(!html.contains(secret) && !html.contains("AKIAIOSFODNN7EXAMPLE"), "no secret");

    let stranger = app.sign_up("Stranger").await;
    let (_, theirs) = get_page(&app, &stranger.token, "/providers").await;
    assert!(theirs.contains("No provider yet"), "{theirs}");
}
