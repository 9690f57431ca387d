//! Webhook endpoints: create, read, update, delete and secret rotation; URL and SSRF checks;
//! sealing of secrets at rest; permissions and tenant isolation.

use crate::harness::validation_fields;
use crate::harness::{Account, TestApp};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use diesel_async::RunQueryDsl;
use relayit::db::webhook_endpoints::{self, WebhookEndpoint};
use relayit::webhooks::secret::signing_secrets;
use reqwest::Method;
use serde_json::{Value, json};

const URL: &str = "https://hooks.example.com/relayit";

fn hooks(project: &str) -> String {
    format!("/v1/projects/{project}/webhooks")
}

fn hook(project: &str, id: &str) -> String {
    format!("/v1/projects/{project}/webhooks/{id}")
}

fn rotate(project: &str, id: &str) -> String {
    format!("/v1/projects/{project}/webhooks/{id}/rotate-secret")
}

/// Creates an endpoint with `body` and returns its answer, asserting 201.
async fn create(app: &TestApp, account: &Account, body: Value) -> Value {
    let (status, created) = app.post_as(&account.token, &hooks(&account.project_id), body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn create_default(app: &TestApp, account: &Account) -> Value {
    create(app, account, json!({"url": URL, "eventTypes": ["message.sent"]})).await
}

/// The endpoint's row as stored.
async fn row(app: &TestApp, account: &Account, id: &str) -> WebhookEndpoint {
    webhook_endpoints::find(&mut app.connect().await, &account.org_id, &account.project_id, id)
        .await
        .unwrap()
        .expect("the endpoint's row")
}

/// The secrets the endpoint signs with now, opened with the app's own keys.
async fn secrets_of(app: &TestApp, account: &Account, id: &str) -> Vec<String> {
    let endpoint = row(app, account, id).await;
    signing_secrets(&app.running().state().keys, &endpoint, Utc::now()).unwrap()
}

fn assert_secret_shape(secret: &str) {
    let encoded = secret.strip_prefix("whsec_").unwrap_or_else(|| panic!("{secret}"));
    assert_eq!(BASE64.decode(encoded).unwrap().len(), 32, "{secret}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_the_secret_once_and_seals_it_at_rest() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;

    let created = create(
        &app,
        &owner,
        json!({
            "url": URL,
            "eventTypes": ["message.sent", "message.failed", "message.sent"],
            "description": "CRM sync",
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whk_"), "{created}");
    assert_eq!(created["projectId"], owner.project_id.as_str());
    assert_eq!(created["url"], URL);
    assert_eq!(created["description"], "CRM sync");
    assert_eq!(created["eventTypes"], json!(["message.sent", "message.failed"]));
    assert_eq!(created["isActive"], true);
    assert_eq!(created["disabledReason"], Value::Null);
    assert_eq!(created["disabledAt"], Value::Null);
    assert!(created["createdAt"].is_string() && created["updatedAt"].is_string());
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_secret_shape(&secret);

    // reads never contain the secret
    let (status, one) = app.get_as(&owner.token, &hook(&owner.project_id, &id)).await;
    assert_eq!(status, 200, "{one}");
    assert!(one.get("secret").is_none(), "{one}");
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("secret");
    assert_eq!(one, expected);
    let (status, list) = app.get_as(&owner.token, &hooks(&owner.project_id)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"], json!([expected]));
    assert_eq!(list["nextCursor"], Value::Null);
    assert!(!list.to_string().contains(&secret));

    // at rest: sealed, bound to the row, opening to the secret that was returned
    let stored = row(&app, &owner, &id).await;
    let encoded = secret.strip_prefix("whsec_").unwrap();
    assert!(!stored.sealed_secret.windows(encoded.len()).any(|w| w == encoded.as_bytes()));
    let key = BASE64.decode(encoded).unwrap();
    assert!(!stored.sealed_secret.windows(key.len()).any(|w| w == key.as_slice()));
    let keys = &app.running().state().keys;
    let aad = format!("webhook_endpoints:{}:{id}", owner.org_id);
    assert_eq!(
        keys.open(&stored.sealed_secret, &stored.secret_key_id, &aad).unwrap(),
        secret.as_bytes()
    );
    assert!(stored.previous_sealed_secret.is_none());
    assert_eq!(secrets_of(&app, &owner, &id).await, [secret.as_str()]);

    // a secret of one's own is kept as given
    let given = format!("whsec_{}", BASE64.encode([42u8; 24]));
    let created = create(
        &app,
        &owner,
        json!({"url": URL, "eventTypes": ["message.delivered"], "secret": given}),
    )
    .await;
    assert_eq!(created["secret"], given.as_str());
    assert_eq!(created["description"], Value::Null);
    let id = created["id"].as_str().unwrap();
    assert_eq!(secrets_of(&app, &owner, id).await, [given]);

    // each endpoint gets its own generated secret
    let other = create_default(&app, &owner).await;
    assert_secret_shape(other["secret"].as_str().unwrap());
    assert_ne!(other["secret"], secret.as_str());

    // the project's slug addresses it too
    let (status, list) = app.get_as(&owner.token, &hooks("default")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_field_is_named() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let path = hooks(&owner.project_id);
    let short_secret = format!("whsec_{}", BASE64.encode([1u8; 16]));
    let long_url = format!("https://example.com/{}", "a".repeat(2048));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": URL}), vec!["eventTypes"]),
        (json!({"url": "ftp://example.com/", "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": "not a url", "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": "https://", "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": "", "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": long_url, "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": 5, "eventTypes": ["message.sent"]}), vec!["url"]),
        (json!({"url": URL, "eventTypes": []}), vec!["eventTypes"]),
        (json!({"url": URL, "eventTypes": "message.sent"}), vec!["eventTypes"]),
        (
            json!({"url": URL, "eventTypes": ["message.sent", "message.bounced"]}),
            vec!["eventTypes.1"],
        ),
        (json!({"url": URL, "eventTypes": ["message.sent", 7]}), vec!["eventTypes.1"]),
        (
            json!({"url": URL, "eventTypes": ["nope", "message.sent", "message.retrying"]}),
            vec!["eventTypes.0", "eventTypes.2"],
        ),
        (json!({"url": URL, "eventTypes": ["message.sent"], "secret": "hunter2"}), vec!["secret"]),
        (
            json!({"url": URL, "eventTypes": ["message.sent"], "secret": short_secret}),
            vec!["secret"],
        ),
        (
            json!({"url": URL, "eventTypes": ["message.sent"], "secret": "whsec_***"}),
            vec!["secret"],
        ),
        (
            json!({"url": URL, "eventTypes": ["message.sent"], "description": "d".repeat(501)}),
            vec!["description"],
        ),
        (json!({"url": URL, "eventTypes": ["message.sent"], "isActive": "yes"}), vec!["isActive"]),
        (json!({"url": URL, "eventTypes": ["message.sent"], "events": ["x"]}), vec!["events"]),
        (
            json!({"url": "gopher://x", "eventTypes": ["message.sent", "bad"], "secret": "x"}),
            vec!["url", "eventTypes.1", "secret"],
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = app.post_as(&owner.token, &path, body.clone()).await;
        assert_eq!(validation_fields(status, &answer), expected, "{body}");
    }
    // not JSON at all
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&owner.token)
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(crate::harness::error_body(response).await["error"]["code"], "malformed_json");

    // nothing was created by any of them
    let (_, list) = app.get_as(&owner.token, &path).await;
    assert_eq!(list["data"], json!([]));

    // the same rules on PATCH and rotate-secret
    let created = create_default(&app, &owner).await;
    let id = created["id"].as_str().unwrap();
    let one = hook(&owner.project_id, id);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"url": "mailto:a@example.com"}), vec!["url"]),
        (json!({"url": "http://127.0.0.1/"}), vec!["url"]),
        (json!({"eventTypes": []}), vec!["eventTypes"]),
        (json!({"eventTypes": ["message.queued", "message"]}), vec!["eventTypes.1"]),
        (json!({"secret": "whsec_x"}), vec!["secret"]),
        (json!({"isActive": 1}), vec!["isActive"]),
    ];
    for (body, expected) in cases {
        let (status, answer) = app.patch_as(&owner.token, &one, body.clone()).await;
        assert_eq!(validation_fields(status, &answer), expected, "{body}");
    }
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"secret": "whsec_x"}), vec!["secret"]),
        (json!({"secret": 5}), vec!["secret"]),
        (json!({"url": URL}), vec!["url"]),
    ];
    for (body, expected) in cases {
        let (status, answer) =
            app.post_as(&owner.token, &rotate(&owner.project_id, id), body.clone()).await;
        assert_eq!(validation_fields(status, &answer), expected, "{body}");
    }
    // none of them changed it
    let (_, now) = app.get_as(&owner.token, &one).await;
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("secret");
    assert_eq!(now, expected);
    assert_eq!(secrets_of(&app, &owner, id).await, [created["secret"].as_str().unwrap()]);
}

const PRIVATE_URLS: [&str; 11] = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://localhost:3000/hook",
    "http://100.64.0.1/hook",
    "http://192.168.1.10/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[fd00::1]/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://api.localhost/hook",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    for url in PRIVATE_URLS {
        let (status, body) = app
            .post_as(
                &owner.token,
                &hooks(&owner.project_id),
                json!({"url": url, "eventTypes": ["message.sent"]}),
            )
            .await;
        assert_eq!(validation_fields(status, &body), ["url"], "{url}");
        assert!(body["error"]["details"][0]["message"].as_str().unwrap().contains("private"));
    }
    // public addresses pass, as do names that do not resolve (the worker checks again)
    for url in ["https://1.1.1.1/hook", "https://[2606:4700:4700::1111]/hook", URL] {
        create(&app, &owner, json!({"url": url, "eventTypes": ["message.sent"]})).await;
    }
    let created = create_default(&app, &owner).await;
    let (status, body) = app
        .patch_as(
            &owner.token,
            &hook(&owner.project_id, created["id"].as_str().unwrap()),
            json!({"url": "http://169.254.169.254/"}),
        )
        .await;
    assert_eq!(validation_fields(status, &body), ["url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_accepted_when_the_operator_allows_them() {
    let app = TestApp::spawn_with(|c| c.webhooks.allow_private_targets = true).await;
    let owner = app.sign_up("Ada").await;
    for url in PRIVATE_URLS {
        let created =
            create(&app, &owner, json!({"url": url, "eventTypes": ["message.sent"]})).await;
        assert!(created["url"].as_str().unwrap().starts_with("http://"), "{created}");
    }
    // the other rules still hold
    let (status, body) = app
        .post_as(
            &owner.token,
            &hooks(&owner.project_id),
            json!({"url": "file:///etc/passwd", "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(validation_fields(status, &body), ["url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_fields_and_disables_and_re_enables() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let created = create(
        &app,
        &owner,
        json!({"url": URL, "eventTypes": ["message.sent"], "description": "first"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let one = hook(&owner.project_id, id);

    let (status, updated) = app
        .patch_as(
            &owner.token,
            &one,
            json!({
                "url": "https://other.example.com/events",
                "eventTypes": ["message.failed", "message.delivered", "message.failed"],
                "description": "second",
            }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated.get("secret").is_none());
    assert_eq!(updated["url"], "https://other.example.com/events");
    assert_eq!(updated["eventTypes"], json!(["message.failed", "message.delivered"]));
    assert_eq!(updated["description"], "second");
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert_ne!(updated["updatedAt"], created["updatedAt"]);
    let (_, read) = app.get_as(&owner.token, &one).await;
    assert_eq!(read, updated);

    // a field left out keeps its value; null clears the description
    let (status, updated) = app.patch_as(&owner.token, &one, json!({"description": null})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["description"], Value::Null);
    assert_eq!(updated["url"], "https://other.example.com/events");
    let (status, same) = app.patch_as(&owner.token, &one, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(same["eventTypes"], updated["eventTypes"]);

    // disabled by request
    let (status, disabled) = app.patch_as(&owner.token, &one, json!({"isActive": false})).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["isActive"], false);
    assert!(disabled["disabledReason"].is_string(), "{disabled}");
    assert!(disabled["disabledAt"].is_string(), "{disabled}");
    let (_, read) = app.get_as(&owner.token, &one).await;
    assert_eq!(read, disabled);

    // disabled by the webhook worker (as after a 410): the reason reads back, and survives
    // another isActive: false
    app.sql(&format!(
        "UPDATE webhook_endpoints SET disabled_reason = 'the endpoint answered 410 Gone', \
             failing_since = now() - interval '1 hour' WHERE id = '{id}'"
    ))
    .await;
    let (_, read) = app.get_as(&owner.token, &one).await;
    assert_eq!(read["isActive"], false);
    assert_eq!(read["disabledReason"], "the endpoint answered 410 Gone");
    let (_, again) = app.patch_as(&owner.token, &one, json!({"isActive": false})).await;
    assert_eq!(again["disabledReason"], "the endpoint answered 410 Gone");
    assert_eq!(again["disabledAt"], disabled["disabledAt"]);

    // re-enabled: the reason, time and failure streak are cleared
    let (status, enabled) = app.patch_as(&owner.token, &one, json!({"isActive": true})).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["isActive"], true);
    assert_eq!(enabled["disabledReason"], Value::Null);
    assert_eq!(enabled["disabledAt"], Value::Null);
    let stored = row(&app, &owner, id).await;
    assert!(stored.is_active && stored.failing_since.is_none() && stored.disabled_at.is_none());

    // created disabled
    let created = create(
        &app,
        &owner,
        json!({"url": URL, "eventTypes": ["message.sent"], "isActive": false}),
    )
    .await;
    assert_eq!(created["isActive"], false);
    assert!(created["disabledReason"].is_string() && created["disabledAt"].is_string());

    // deleted
    let (status, body) = app.delete_as(&owner.token, &one).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null);
    assert_eq!(app.get_as(&owner.token, &one).await.0, 404);
    assert_eq!(app.delete_as(&owner.token, &one).await.0, 404);
    assert_eq!(app.patch_as(&owner.token, &one, json!({})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_keep_the_old_one_signing_for_a_day() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let created = create_default(&app, &owner).await;
    let id = created["id"].as_str().unwrap();
    let first = created["secret"].as_str().unwrap().to_owned();
    let path = rotate(&owner.project_id, id);

    // no body at all
    let (status, rotated) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["id"], id);
    assert_eq!(rotated["url"], URL);
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_secret_shape(&second);
    assert_ne!(second, first);
    assert_eq!(secrets_of(&app, &owner, id).await, [second.clone(), first.clone()]);
    let stored = row(&app, &owner, id).await;
    let expires = stored.previous_secret_expires_at.unwrap();
    let in_a_day = Utc::now() + chrono::Duration::hours(24);
    assert!((in_a_day - expires).num_seconds().abs() < 60, "{expires}");
    // the previous secret is sealed under the same row binding
    let keys = &app.running().state().keys;
    let aad = format!("webhook_endpoints:{}:{id}", owner.org_id);
    let previous = keys
        .open(
            stored.previous_sealed_secret.as_ref().unwrap(),
            stored.previous_secret_key_id.as_ref().unwrap(),
            &aad,
        )
        .unwrap();
    assert_eq!(previous, first.as_bytes());

    // reads still omit it
    let (_, read) = app.get_as(&owner.token, &hook(&owner.project_id, id)).await;
    assert!(read.get("secret").is_none());

    // a given secret, then an empty object: each rotation keeps only the one before
    let given = format!("whsec_{}", BASE64.encode([9u8; 64]));
    let (status, rotated) = app.post_as(&owner.token, &path, json!({"secret": given})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret"], given.as_str());
    assert_eq!(secrets_of(&app, &owner, id).await, [given.clone(), second.clone()]);
    let (status, rotated) = app.post_as(&owner.token, &path, json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let fourth = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(secrets_of(&app, &owner, id).await, [fourth.clone(), given.clone()]);

    // once the previous secret expires, only the current one signs
    app.sql(&format!(
        "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' \
             WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(secrets_of(&app, &owner, id).await, [fourth]);

    assert_eq!(
        app.post_as(&owner.token, &rotate(&owner.project_id, "whk_nope"), json!({})).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_newest_first() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create_default(&app, &owner).await["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{}?limit=2", hooks(&owner.project_id));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get_as(&owner.token, &path).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        for item in data {
            assert!(item.get("secret").is_none());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let (status, body) =
        app.get_as(&owner.token, &format!("{}?limit=0", hooks(&owner.project_id))).await;
    assert_eq!(validation_fields(status, &body), ["limit"]);
    let (status, body) =
        app.get_as(&owner.token, &format!("{}?cursor=zzz", hooks(&owner.project_id))).await;
    assert_eq!(validation_fields(status, &body), ["cursor"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_and_other_projects_see_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("Ada").await;
    let bob = app.sign_up("Bob").await;
    let created = create_default(&app, &ada).await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let valid = json!({"url": URL, "eventTypes": ["message.sent"]});

    // Bob, owner of his own organization, with Ada's project id, and with Ada's webhook id
    // under his own project
    for project in [ada.project_id.as_str(), bob.project_id.as_str()] {
        let calls = [
            app.get_as(&bob.token, &hook(project, id)).await,
            app.patch_as(&bob.token, &hook(project, id), json!({"isActive": false})).await,
            app.post_as(&bob.token, &rotate(project, id), json!({})).await,
            app.delete_as(&bob.token, &hook(project, id)).await,
        ];
        for (status, body) in calls {
            assert_eq!(status, 404, "{project}: {body}");
            assert_eq!(body["error"]["code"], "not_found");
        }
    }
    assert_eq!(app.get_as(&bob.token, &hooks(&ada.project_id)).await.0, 404);
    assert_eq!(app.post_as(&bob.token, &hooks(&ada.project_id), valid.clone()).await.0, 404);
    // even naming Ada's organization does not help
    let response = app
        .client
        .get(app.url(&hooks(&ada.project_id)))
        .bearer_auth(&bob.token)
        .header("relayit-organization", &ada.org_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (_, bobs) = app.get_as(&bob.token, &hooks(&bob.project_id)).await;
    assert_eq!(bobs["data"], json!([]));

    // another project of the same organization
    let (status, second) = app.post_as(&ada.token, "/v1/projects", json!({"name": "Second"})).await;
    assert_eq!(status, 201, "{second}");
    let second = second["id"].as_str().unwrap();
    assert_eq!(app.get_as(&ada.token, &hook(second, id)).await.0, 404);
    assert_eq!(app.patch_as(&ada.token, &hook(second, id), json!({})).await.0, 404);
    assert_eq!(app.post_as(&ada.token, &rotate(second, id), json!({})).await.0, 404);
    assert_eq!(app.delete_as(&ada.token, &hook(second, id)).await.0, 404);
    let (_, list) = app.get_as(&ada.token, &hooks(second)).await;
    assert_eq!(list["data"], json!([]));

    // Ada's endpoint is untouched
    let (status, read) = app.get_as(&ada.token, &hook(&ada.project_id, id)).await;
    assert_eq!(status, 200);
    assert_eq!(read["isActive"], true);
    assert_eq!(secrets_of(&app, &ada, id).await, [secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_bound_api_keys_see_only_their_project() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("Ada").await;
    let created = create_default(&app, &ada).await;
    let id = created["id"].as_str().unwrap();
    let (_, second) = app.post_as(&ada.token, "/v1/projects", json!({"name": "Second"})).await;
    let second = second["id"].as_str().unwrap();

    let (key, prefix) = relayit::auth::tokens::new_api_key();
    diesel::sql_query(
        "INSERT INTO api_keys (id, organization_id, project_id, name, key_hash, prefix, scopes) \
         VALUES ($1, $2, $3, 'second only', $4, $5, ARRAY['read', 'manage'])",
    )
    .bind::<diesel::sql_types::Text, _>(crate::harness::unique("key"))
    .bind::<diesel::sql_types::Text, _>(&ada.org_id)
    .bind::<diesel::sql_types::Text, _>(second)
    .bind::<diesel::sql_types::Binary, _>(relayit::auth::tokens::hash(&key))
    .bind::<diesel::sql_types::Text, _>(prefix)
    .execute(&mut app.connect().await)
    .await
    .unwrap();

    assert_eq!(app.get_as(&key, &hooks(&ada.project_id)).await.0, 404);
    assert_eq!(app.get_as(&key, &hook(&ada.project_id, id)).await.0, 404);
    assert_eq!(app.post_as(&key, &rotate(&ada.project_id, id), json!({})).await.0, 404);
    let (status, own) = app
        .post_as(&key, &hooks(second), json!({"url": URL, "eventTypes": ["message.sent"]}))
        .await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["projectId"], second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_admins_write_strangers_authenticate() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let member = app.add_member(&owner, "Mel", "member").await;
    let admin = app.add_member(&owner, "Al", "admin").await;
    let created = create_default(&app, &owner).await;
    let id = created["id"].as_str().unwrap();
    let project = owner.project_id.as_str();
    let valid = json!({"url": URL, "eventTypes": ["message.sent"]});

    let writes = [
        app.post_as(&member.token, &hooks(project), valid.clone()).await,
        app.patch_as(&member.token, &hook(project, id), json!({"isActive": false})).await,
        app.post_as(&member.token, &rotate(project, id), json!({})).await,
        app.delete_as(&member.token, &hook(project, id)).await,
    ];
    for (status, body) in writes {
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, list) = app.get_as(&member.token, &hooks(project)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none());
    let (status, one) = app.get_as(&member.token, &hook(project, id)).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["isActive"], true);
    assert!(one.get("secret").is_none());
    assert_eq!(secrets_of(&app, &owner, id).await, [created["secret"].as_str().unwrap()]);

    // admins write
    create(&app, &admin, valid.clone()).await;
    let (status, _) =
        app.patch_as(&admin.token, &hook(project, id), json!({"description": "x"})).await;
    assert_eq!(status, 200);
    let (status, rotated) = app.post_as(&admin.token, &rotate(project, id), json!({})).await;
    assert_eq!(status, 200, "{rotated}");

    // no credentials
    let anonymous = [
        app.call(Method::GET, &hooks(project), None, None).await,
        app.call(Method::POST, &hooks(project), None, Some(valid.clone())).await,
        app.call(Method::GET, &hook(project, id), None, None).await,
        app.call(Method::PATCH, &hook(project, id), None, Some(json!({}))).await,
        app.call(Method::DELETE, &hook(project, id), None, None).await,
        app.call(Method::POST, &rotate(project, id), None, None).await,
    ];
    for (status, body) in anonymous {
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert_eq!(app.get_as("not-a-token", &hooks(project)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_are_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    let list = &paths["/v1/projects/{projectId}/webhooks"];
    assert!(list["get"].is_object() && list["post"].is_object(), "{list}");
    let one = &paths["/v1/projects/{projectId}/webhooks/{webhookId}"];
    for method in ["get", "patch", "delete"] {
        assert!(one[method].is_object(), "{method}: {one}");
    }
    assert!(
        paths["/v1/projects/{projectId}/webhooks/{webhookId}/rotate-secret"]["post"].is_object()
    );
}
