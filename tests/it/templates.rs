//! Templates: drafts checked when saved, published into immutable versions, rendered when a
//! message is accepted (strict variables, a fuel limit, HTML escaped in `html` only), with
//! the version a message came from kept beside what it rendered; batches and idempotency as
//! with `content`; another tenant's templates not found.

use crate::harness::{Account, TestApp, validation_fields};
use serde_json::{Value, json};

fn templates_path(account: &Account) -> String {
    format!("/v1/projects/{}/templates", account.project_id)
}

/// Creates a template and returns it, asserting 201.
async fn create(app: &TestApp, account: &Account, body: Value) -> Value {
    let (status, created) = app.post_as(&account.token, &templates_path(account), body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn publish(app: &TestApp, account: &Account, template: &str) -> Value {
    let path = format!("{}/{template}/publish", templates_path(account));
    let (status, version) = app.post_as(&account.token, &path, json!({})).await;
    assert_eq!(status, 201, "{version}");
    version
}

async fn edit(app: &TestApp, account: &Account, template: &str, content: Value) {
    let path = format!("{}/{template}", templates_path(account));
    let (status, body) = app.patch_as(&account.token, &path, json!({"content": content})).await;
    assert_eq!(status, 200, "{body}");
}

fn welcome() -> Value {
    json!({"name": "Welcome", "channel": "email",
           "content": {"subject": "Welcome, {{ name }}", "text": "Hi {{ name }}, v1",
                       "html": "<p>Hi {{ name }}, v1</p>"}})
}

fn send_with(template: Value) -> Value {
    json!({"channel": "email", "to": "ann@example.com", "template": template})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_the_version_they_were_rendered_from() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    app.create_provider(&owner.token, crate::harness::sandbox_provider("Sandbox", "email")).await;
    let template = create(&app, &owner, welcome()).await;
    let id = template["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tpl_"));
    assert_eq!(
        (template["slug"].as_str(), &template["latestVersion"]),
        (Some("welcome"), &Value::Null)
    );

    // nothing published yet: a send cannot use it
    let (status, answer) = app.post_as(&key, "/v1/send", send_with(json!({"id": "welcome"}))).await;
    assert_eq!(validation_fields(status, &answer), ["template.id"]);

    let v1 = publish(&app, &owner, &id).await;
    assert_eq!(
        (v1["version"].as_i64(), v1["publishedBy"].as_str()),
        (Some(1), Some(owner.user_id.as_str()))
    );
    let first = app
        .send_message(
            &key,
            send_with(json!({"id": "welcome", "variables": {"name": "<Ann & Co>"}})),
        )
        .await;
    edit(&app, &owner, "welcome", json!({"subject": "Hello {{ name }}", "text": "v2 {{ name }}"}))
        .await;
    let v2 = publish(&app, &owner, "welcome").await;
    assert_eq!(v2["version"], 2);
    let second =
        app.send_message(&key, send_with(json!({"id": id, "variables": {"name": "Ann"}}))).await;
    let pinned = app
        .send_message(
            &key,
            send_with(json!({"id": "welcome", "version": 1, "variables": {"name": "Ann"}})),
        )
        .await;

    let message = app.wait_for_status(&key, &first, "sent").await;
    assert_eq!(message["template"], json!({"id": id, "version": 1}));
    // HTML escaped in html, as written in text and subject
    assert_eq!(
        message["content"],
        json!({"subject": "Welcome, <Ann & Co>", "text": "Hi <Ann & Co>, v1",
               "html": "<p>Hi &lt;Ann &amp; Co&gt;, v1</p>"})
    );
    let message = app.wait_for_status(&key, &second, "sent").await;
    assert_eq!(message["template"], json!({"id": id, "version": 2}));
    assert_eq!(message["content"], json!({"subject": "Hello Ann", "text": "v2 Ann"}));
    let message = app.wait_for_status(&key, &pinned, "sent").await;
    assert_eq!(
        (message["template"]["version"].as_i64(), message["content"]["text"].as_str()),
        (Some(1), Some("Hi Ann, v1"))
    );

    // the versions stay as published; the list is newest first, a page at a time
    let versions = format!("{}/{id}/versions", templates_path(&owner));
    let (_, page) = app.get_as(&owner.token, &format!("{versions}?limit=1")).await;
    assert_eq!(page["data"][0]["version"], 2);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = app.get_as(&owner.token, &format!("{versions}?limit=1&cursor={cursor}")).await;
    assert_eq!((rest["data"][0]["version"].as_i64(), &rest["nextCursor"]), (Some(1), &Value::Null));
    let (status, one) = app.get_as(&owner.token, &format!("{versions}/1")).await;
    assert_eq!((status, one["content"]["text"].as_str()), (200, Some("Hi {{ name }}, v1")));
    let (status, _) = app.get_as(&owner.token, &format!("{versions}/3")).await;
    assert_eq!(status, 404);
    let (status, answer) =
        app.post_as(&key, "/v1/send", send_with(json!({"id": id, "version": 3}))).await;
    assert_eq!(
        (status, answer["error"]["details"][0]["field"].as_str()),
        (404, Some("template.version")),
        "{answer}"
    );

    // deleting the template: messages keep what they rendered; sends naming it are 404
    let (status, _) =
        app.delete_as(&owner.token, &format!("{}/{id}", templates_path(&owner))).await;
    assert_eq!(status, 204);
    let (_, kept) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(kept["content"]["text"], "Hi <Ann & Co>, v1");
    let (status, answer) = app.post_as(&key, "/v1/send", send_with(json!({"id": "welcome"}))).await;
    assert_eq!(
        (status, answer["error"]["details"][0]["field"].as_str()),
        (404, Some("template.id")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_errors_are_400s_naming_the_variable_or_field() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let template = create(&app, &owner, welcome()).await;
    let id = template["id"].as_str().unwrap();
    publish(&app, &owner, id).await;

    // a variable not given: named, under the send's field and the preview's
    let (status, answer) = app.post_as(&key, "/v1/send", send_with(json!({"id": id}))).await;
    assert_eq!(
        validation_fields(status, &answer),
        ["template.variables.name", "template.variables.name", "template.variables.name"]
    );
    let preview = format!("{}/{id}/preview", templates_path(&owner));
    let (status, answer) = app.post_as(&owner.token, &preview, json!({"variables": {}})).await;
    assert!(validation_fields(status, &answer).iter().all(|f| f == "variables.name"), "{answer}");
    let (status, shown) = app
        .post_as(&owner.token, &preview, json!({"variables": {"name": "<b>"}, "version": 1}))
        .await;
    assert_eq!(
        (status, shown["content"]["html"].as_str()),
        (200, Some("<p>Hi &lt;b&gt;, v1</p>")),
        "{shown}"
    );

    // a template that loops for ever stops at the fuel limit
    let looping = create(&app, &owner, json!({"name": "Loop", "channel": "sms", "content": {
        "text": "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}"}})).await;
    let looping = looping["id"].as_str().unwrap();
    publish(&app, &owner, looping).await;
    let (status, answer) = app
        .post_as(
            &key,
            "/v1/send",
            json!({"channel": "sms", "to": "+14155550123", "template": {"id": looping}}),
        )
        .await;
    assert_eq!(validation_fields(status, &answer), ["template"], "{answer}");

    // what it renders is checked like content: an SMS over its length
    let long = create(
        &app,
        &owner,
        json!({"name": "Long", "channel": "sms",
        "content": {"text": "{{ 'x' * n }}"}}),
    )
    .await;
    let long = long["id"].as_str().unwrap();
    publish(&app, &owner, long).await;
    let sms = |n: i64| json!({"channel": "sms", "to": "+14155550123", "template": {"id": long, "variables": {"n": n}}});
    let (status, answer) = app.post_as(&key, "/v1/send", sms(2000)).await;
    assert_eq!(validation_fields(status, &answer), ["template.content.text"]);
    let (status, _) = app.post_as(&key, "/v1/send", sms(20)).await;
    assert_eq!(status, 202);

    // the body: a template of another channel, both content and template, bad references
    for (body, field) in [
        (json!({"channel": "sms", "to": "+14155550123", "template": {"id": id}}), "template.id"),
        (
            json!({"channel": "email", "to": "a@example.com", "content": {"subject": "s", "text": "t"},
                "template": {"id": id}}),
            "template",
        ),
        (json!({"channel": "email", "to": "a@example.com"}), "content"),
        (send_with(json!({"id": " "})), "template.id"),
        (send_with(json!({"id": id, "version": 0})), "template.version"),
        (send_with(json!({"id": id, "variables": [1]})), "template.variables"),
        (send_with(json!({"id": id, "extra": 1})), "template.extra"),
    ] {
        let (status, answer) = app.post_as(&key, "/v1/send", body.clone()).await;
        assert_eq!(validation_fields(status, &answer), [field], "{body}");
    }
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_checked_when_saved() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let path = templates_path(&owner);
    for (body, fields) in [
        (
            json!({"name": "A", "channel": "email", "content": {"subject": "{{ oops", "text": "t"}}),
            vec!["content.subject"],
        ),
        (
            json!({"name": "A", "channel": "email", "content": {"text": "t"}}),
            vec!["content.subject"],
        ),
        (
            json!({"name": "A", "channel": "sms", "content": {"text": "t", "html": "h"}}),
            vec!["content.html"],
        ),
        (json!({"name": "A", "channel": "email", "content": "text"}), vec!["content"]),
        (json!({"name": " ", "channel": "sms", "content": {"text": "t"}}), vec!["name"]),
        (
            json!({"name": "A", "slug": "Not A Slug", "channel": "sms", "content": {"text": "t"}}),
            vec!["slug"],
        ),
        (json!({"name": "A", "channel": "fax", "content": {"text": "t"}}), vec!["channel"]),
    ] {
        let (status, answer) = app.post_as(&owner.token, &path, body.clone()).await;
        assert_eq!(validation_fields(status, &answer), fields, "{body}");
    }
    let created = create(
        &app,
        &owner,
        json!({"name": "Code", "channel": "sms", "content": {"text": "{{ code }}"}}),
    )
    .await;
    // the same name again: the next free slug; a slug asked for that is taken: 409
    let again =
        create(&app, &owner, json!({"name": "Code", "channel": "sms", "content": {"text": "x"}}))
            .await;
    assert_eq!(again["slug"], "code-2");
    let (status, answer) = app
        .post_as(
            &owner.token,
            &path,
            json!({"name": "Other", "slug": "code", "channel": "sms", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["details"][0]["field"].as_str()),
        (409, Some("slug")),
        "{answer}"
    );
    let one = format!("{path}/{}", created["id"].as_str().unwrap());
    let (status, answer) =
        app.patch_as(&owner.token, &one, json!({"content": {"text": "{% if %}"}})).await;
    assert_eq!(validation_fields(status, &answer), ["content.text"]);
    let (status, renamed) =
        app.patch_as(&owner.token, &one, json!({"slug": "otp", "name": "One-time code"})).await;
    assert_eq!((status, renamed["slug"].as_str()), (200, Some("otp")));
    let (status, by_slug) = app.get_as(&owner.token, &format!("{path}/otp")).await;
    assert_eq!((status, by_slug["name"].as_str()), (200, Some("One-time code")));
    let (_, list) = app.get_as(&owner.token, &path).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_idempotency_work_with_templates() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let template = create(
        &app,
        &owner,
        json!({"name": "Code", "channel": "sms", "content": {"text": "Code {{ code }}"}}),
    )
    .await;
    publish(&app, &owner, template["id"].as_str().unwrap()).await;
    let sms = |code: Value| json!({"channel": "sms", "to": "+14155550123", "template": {"id": "code", "variables": {"code": code}}});
    let (status, batch) = app
        .post_as(&key, "/v1/send/batch", json!({"messages": [sms(json!(1)), {"channel": "sms", "to": "+14155550123", "template": {"id": "code"}}, sms(json!("x"))]}))
        .await;
    assert_eq!(status, 202, "{batch}");
    let data = batch["data"].as_array().unwrap();
    assert!(data[0]["id"].is_string() && data[2]["id"].is_string(), "{batch}");
    assert_eq!(data[1]["error"]["details"][0]["field"], "template.variables.code");
    let (_, message) =
        app.get_as(&key, &format!("/v1/messages/{}", data[2]["id"].as_str().unwrap())).await;
    assert_eq!(message["content"]["text"], "Code x");

    let request = |code: i64| {
        app.client
            .post(app.url("/v1/send"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "otp-1")
            .json(&sms(json!(code)))
            .send()
    };
    let first = request(7).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = request(7).await.unwrap();
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    let other = request(8).await.unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(app.count("messages").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_templates_are_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (mallory, mallory_key) = app.sender("Mallory").await;
    let template = create(&app, &owner, welcome()).await;
    let id = template["id"].as_str().unwrap();
    publish(&app, &owner, id).await;
    let theirs = templates_path(&owner);
    let mine = templates_path(&mallory);
    for (status, answer) in [
        app.get_as(&mallory.token, &format!("{theirs}/{id}")).await,
        app.get_as(&mallory.token, &format!("{mine}/{id}")).await,
        app.patch_as(&mallory.token, &format!("{mine}/{id}"), json!({"name": "x"})).await,
        app.delete_as(&mallory.token, &format!("{mine}/{id}")).await,
        app.post_as(&mallory.token, &format!("{mine}/{id}/publish"), json!({})).await,
        app.get_as(&mallory.token, &format!("{mine}/{id}/versions")).await,
        app.get_as(&mallory.token, &format!("{mine}/{id}/versions/1")).await,
        app.post_as(&mallory.token, &format!("{mine}/{id}/preview"), json!({})).await,
        app.post_as(
            &mallory_key,
            "/v1/send",
            send_with(json!({"id": id, "variables": {"name": "x"}})),
        )
        .await,
    ] {
        assert_eq!(status, 404, "{answer}");
    }
    // a member reads and previews, but does not change or publish
    let member = app.add_member(&owner, "Member", "member").await;
    let (status, _) = app
        .post_as(
            &member.token,
            &format!("{theirs}/{id}/preview"),
            json!({"variables": {"name": "m"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) =
        app.post_as(&member.token, &format!("{theirs}/{id}/publish"), json!({})).await;
    assert_eq!(status, 403);
}
