//! The projects pages (create, settings, deletion with its confirmation) and what the message
//! log's page does besides reading: a test message, a failed message sent again, a scheduled
//! one canceled.

use serde_json::json;

use super::{get_page, post_as, rows};
use crate::harness::{TestApp, sandbox_provider};

/// The id in the `Location` of a 303 to `/<prefix>/<id>`.
fn located(response: &reqwest::Response, prefix: &str) -> String {
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().expect("a location");
    location.strip_prefix(prefix).expect(prefix).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_created_changed_and_deleted_from_their_pages() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (status, html) = get_page(&app, &owner.token, "/projects").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html, "projects").len(), 1, "the default project: {html}");
    assert!(html.contains(r#"data-slug-for="slug""#), "the slug suggestion: {html}");

    // the slug derived from the name when left empty; what was typed is escaped
    let form = [("name", "Shop <EU>"), ("slug", ""), ("metadata", r#"{"team": "\"q\""}"#)];
    let created = post_as(&app, &owner.token, "/projects", &form).await;
    let id = located(&created, "/projects/");
    let (status, project) = app.get_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(project["slug"], "shop-eu");
    assert_eq!(project["metadata"], json!({"team": "\"q\""}));
    let (_, html) = get_page(&app, &owner.token, &format!("/projects/{id}")).await;
    assert!(html.contains("Shop &lt;EU&gt;") && !html.contains("<EU>"), "{html}");
    assert!(html.contains("0 messages, 0 webhook endpoints"), "{html}");

    // refused input, named as the API names it, nothing created
    for (form, field, status) in [
        (vec![("name", "x"), ("metadata", "not json")], "metadata", 400),
        (vec![("name", "x"), ("retention", "-1")], "messageRetentionDays", 400),
        (vec![("name", ""), ("slug", "")], "name", 400),
        (vec![("name", "Again"), ("slug", "shop-eu")], "slug", 409),
    ] {
        let refused = post_as(&app, &owner.token, "/projects", &form).await;
        assert_eq!(refused.status(), status, "{form:?}");
        let html = refused.text().await.unwrap();
        assert!(html.contains(field), "{field}: {html}");
    }
    let (_, list) = app.get_as(&owner.token, "/v1/projects").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    // renamed, retention set
    let form = [("name", "Shop"), ("slug", "shop"), ("metadata", ""), ("retention", "7")];
    let saved = post_as(&app, &owner.token, &format!("/projects/{id}"), &form).await;
    assert_eq!(located(&saved, "/projects/"), id);
    let (_, project) = app.get_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!((project["name"].as_str(), project["slug"].as_str()), (Some("Shop"), Some("shop")));
    assert_eq!(project["messageRetentionDays"], 7);

    // a member reads, without a control, and is refused the writes
    let member = app.add_member(&owner, "Member", "member").await;
    let (status, html) = get_page(&app, &member.token, &format!("/projects/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("7 days") && !html.contains("<form method=\"post\" action=\"/projects"));
    let (_, html) = get_page(&app, &member.token, "/projects").await;
    assert!(!html.contains("Create a project"), "{html}");
    for path in
        ["/projects".to_owned(), format!("/projects/{id}"), format!("/projects/{id}/delete")]
    {
        let refused =
            post_as(&app, &member.token, &path, &[("name", "m"), ("confirm", "shop")]).await;
        assert_eq!(refused.status(), 403, "{path}");
    }

    // another tenant: not found, and nothing changes
    let stranger = app.sign_up("Stranger").await;
    let (status, _) = get_page(&app, &stranger.token, &format!("/projects/{id}")).await;
    assert_eq!(status, 404);
    for path in [format!("/projects/{id}"), format!("/projects/{id}/delete")] {
        let refused = post_as(&app, &stranger.token, &path, &[("name", "s"), ("confirm", "shop")]);
        assert_eq!(refused.await.status(), 404, "{path}");
    }

    // deletion needs the slug typed
    let delete = format!("/projects/{id}/delete");
    let refused = post_as(&app, &owner.token, &delete, &[("confirm", "")]).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("confirm"));
    let (status, _) = app.get_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!(status, 200, "still there");
    let deleted = post_as(&app, &owner.token, &delete, &[("confirm", "shop")]).await;
    assert_eq!(deleted.status(), 303);
    let (status, _) = app.get_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!(status, 404, "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_goes_out_a_failed_one_again_and_a_scheduled_one_is_canceled() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let log = format!("/projects/{}/messages", owner.project_id);
    let (_, html) = get_page(&app, &owner.token, &log).await;
    assert!(html.contains("No message yet.") && html.contains(r#"href="/providers""#), "{html}");
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "email")).await;

    let test =
        [("channel", "email"), ("to", "ada@example.com"), ("subject", "Hi <b>"), ("text", "t")];
    let sent = post_as(&app, &owner.token, &format!("{log}/test"), &test).await;
    assert_eq!(sent.status(), 303);
    assert_eq!(sent.headers()["location"], log.as_str());
    let (_, html) = get_page(&app, &owner.token, &log).await;
    let listed = rows(&html, "messages");
    assert_eq!(listed.len(), 1, "{html}");
    assert!(listed[0][3].contains("Hi &lt;b&gt;"), "{listed:?}");
    let id = html
        .split(r#"href="/messages/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the message")
        .to_owned();
    let message = app.wait_for_status(&owner.token, &id, "sent").await;
    assert_eq!(message["apiKeyId"], serde_json::Value::Null, "sent by a person, not a key");

    // refused: named on the page, the form kept open with what was typed
    let bad = [("channel", "email"), ("to", "not an address"), ("subject", "s"), ("text", "t")];
    let refused = post_as(&app, &owner.token, &format!("{log}/test"), &bad).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("to:") && html.contains(r#"value="not an address""#), "{html}");

    // no SMS provider: the message fails, and is sent again from its page
    let sms = json!({"channel": "sms", "to": "+15550000001", "content": {"text": "hi"}});
    let failed = app.send_message(&key, sms).await;
    app.wait_for_status(&key, &failed, "failed").await;
    let (_, html) = get_page(&app, &owner.token, &format!("/messages/{failed}")).await;
    assert!(html.contains(&format!(r#"action="/messages/{failed}/retry""#)), "{html}");
    let member = app.add_member(&owner, "Member", "member").await;
    let (_, html) = get_page(&app, &member.token, &format!("/messages/{failed}")).await;
    assert!(!html.contains("/retry"), "no control for a member: {html}");
    let refused = post_as(&app, &member.token, &format!("/messages/{failed}/retry"), &[]).await;
    assert_eq!(refused.status(), 403);
    let again = post_as(&app, &owner.token, &format!("/messages/{failed}/retry"), &[]).await;
    assert_eq!(again.status(), 303);
    let (_, detail) = app.get_as(&owner.token, &format!("/v1/messages/{failed}")).await;
    let retried =
        detail["events"].as_array().expect("events").iter().any(|e| e["details"]["retry"] == true);
    assert!(retried, "{detail}");

    // a scheduled message canceled; a second cancel is refused with the reason
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = json!({"channel": "email", "to": "b@example.com", "sendAt": later,
                           "content": {"subject": "later", "text": "t"}});
    let scheduled = app.send_message(&key, scheduled).await;
    let canceled = post_as(&app, &owner.token, &format!("/messages/{scheduled}/cancel"), &[]).await;
    assert_eq!(canceled.status(), 303);
    let (_, detail) = app.get_as(&owner.token, &format!("/v1/messages/{scheduled}")).await;
    assert_eq!(detail["status"], "canceled");
    let twice = post_as(&app, &owner.token, &format!("/messages/{scheduled}/cancel"), &[]).await;
    assert_eq!(twice.status(), 409);
    assert!(twice.text().await.unwrap().contains("only a received message can be canceled"));

    // another tenant: not found
    let stranger = app.sign_up("Stranger").await;
    let refused = post_as(&app, &stranger.token, &format!("/messages/{failed}/retry"), &[]).await;
    assert_eq!(refused.status(), 404);
    let refused = post_as(&app, &stranger.token, &format!("{log}/test"), &test).await;
    assert_eq!(refused.status(), 404);
}
