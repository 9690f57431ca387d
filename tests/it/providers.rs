//! Provider credentials (`/v1/providers`): every type's schema, redaction on every read, secrets
//! sealed at rest, PATCH merging, lists, tenant isolation and roles, and `relayit rotate-keys`.

use std::process::{Command, Stdio};

use crate::harness::sandbox_provider;
use crate::harness::{Account, TestApp, unique};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use relayit::crypto::{MasterKey, MasterKeys};
use relayit::db::schema::{provider_credentials as pc, webhook_endpoints as we};
use reqwest::Method;
use serde_json::{Value, json};

const REDACTED: &str = "********";

/// One valid body per provider type, and the secret strings in it.
fn every_type() -> Vec<(Value, Vec<&'static str>)> {
    vec![
        (
            json!({
                "name": "Main SES", "channel": "email", "providerType": "ses",
                "credentials": {"accessKeyId": "AKIAEXAMPLEKEY01", "secretAccessKey": "ses-secret-0001"},
                "config": {"region": "eu-west-1", "fromAddress": "noreply@example.com",
                           "configurationSet": "tracking"}
            }),
            vec!["AKIAEXAMPLEKEY01", "ses-secret-0001"],
        ),
        (
            json!({
                "name": "Office SMTP", "channel": "email", "providerType": "smtp",
                "credentials": {"username": "mailer-user", "password": "smtp pass 0002"},
                "config": {"host": "smtp.example.com", "port": 587, "tls": "starttls",
                           "fromAddress": "hello@example.com"},
                "priority": 5, "isActive": false
            }),
            vec!["mailer-user", "smtp pass 0002"],
        ),
        (
            json!({
                "name": "Open relay", "channel": "email", "providerType": "smtp",
                "credentials": {},
                "config": {"host": "relay.internal", "port": 25, "tls": "none",
                           "fromAddress": "relay@example.com"}
            }),
            vec![],
        ),
        (
            json!({
                "name": "SMS", "channel": "sms", "providerType": "sns",
                "credentials": {"accessKeyId": "AKIASNSKEY000003", "secretAccessKey": "sns-secret-0003"},
                "config": {"region": "us-east-1", "senderId": "RelayIt",
                           "originationNumber": "+14155550123", "smsType": "Transactional"}
            }),
            vec!["AKIASNSKEY000003", "sns-secret-0003"],
        ),
        (
            json!({
                "name": "WhatsApp", "channel": "whatsapp", "providerType": "whatsapp_cloud",
                "credentials": {"accessToken": "EAAGwhatsapp0004", "appSecret": "app-secret-0004"},
                "config": {"phoneNumberId": "106540352242922", "apiVersion": "v21.0"}
            }),
            vec!["EAAGwhatsapp0004", "app-secret-0004"],
        ),
        (
            json!({
                "name": "Discord", "channel": "discord", "providerType": "discord_bot",
                "credentials": {"botToken": "discord.bot.token.0005"}
            }),
            vec!["discord.bot.token.0005"],
        ),
        (
            json!({
                "name": "Sandbox", "channel": "sms", "providerType": "sandbox",
                "credentials": {},
                "config": {"latencyMs": 5, "failRate": 0.25, "failMode": "retryable"}
            }),
            vec![],
        ),
    ]
}

fn ses_body() -> Value {
    every_type().remove(0).0
}

/// The fields named by an error body.
fn fields_of(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("details in {body}"))
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}

/// `view`'s credentials name exactly the fields of `given`, each redacted.
fn assert_redacted(view: &Value, given: &Value) {
    let shown = view["credentials"].as_object().unwrap_or_else(|| panic!("credentials: {view}"));
    let mut shown_fields: Vec<&String> = shown.keys().collect();
    let mut given_fields: Vec<&String> = given.as_object().unwrap().keys().collect();
    shown_fields.sort();
    given_fields.sort();
    assert_eq!(shown_fields, given_fields, "{view}");
    assert!(shown.values().all(|v| v == REDACTED), "{view}");
}

/// The raw `(sealed_secrets, secrets_key_id)` of a row.
async fn sealed_row(url: &str, id: &str) -> (Vec<u8>, String) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    pc::table
        .filter(pc::id.eq(id))
        .select((pc::sealed_secrets, pc::secrets_key_id))
        .first(&mut conn)
        .await
        .unwrap()
}

/// A row's credentials opened with `keys`.
async fn opened(url: &str, keys: &MasterKeys, org: &str, id: &str) -> Value {
    let (sealed, key_id) = sealed_row(url, id).await;
    let plain = keys
        .open(&sealed, &key_id, &format!("provider_credentials:{org}:{id}"))
        .unwrap_or_else(|e| panic!("{id} does not open: {e}"));
    serde_json::from_slice(&plain).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn create(app: &TestApp, who: &Account, body: Value) -> Value {
    let (status, created) = app.post_as(&who.token, "/v1/providers", body.clone()).await;
    assert_eq!(status, 201, "{body}: {created}");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_stored_and_every_read_redacts_the_credentials() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Olga").await;
    let mut created_ids = Vec::new();
    for (body, secrets) in every_type() {
        let (status, view) = app.post_as(&owner.token, "/v1/providers", body.clone()).await;
        assert_eq!(status, 201, "{body}: {view}");
        let id = view["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("prv_"), "{id}");
        assert_eq!(view["organizationId"], owner.org_id.as_str());
        assert_eq!(view["projectId"], Value::Null);
        assert_eq!(view["name"], body["name"]);
        assert_eq!(view["channel"], body["channel"]);
        assert_eq!(view["providerType"], body["providerType"]);
        assert_eq!(view["isActive"], body.get("isActive").cloned().unwrap_or(json!(true)));
        assert_eq!(view["priority"], body.get("priority").cloned().unwrap_or(json!(0)));
        assert_eq!(view["lastError"], Value::Null);
        assert_eq!(view["lastErrorAt"], Value::Null);
        assert!(view["createdAt"].is_string() && view["updatedAt"].is_string(), "{view}");
        let slug = view["slug"].as_str().unwrap();
        assert!(relayit::domain::slug::is_valid(slug), "{slug}");
        assert_redacted(&view, &body["credentials"]);
        assert_eq!(view["config"], body.get("config").cloned().unwrap_or(json!({})), "{view}");

        let (status, got) = app.get_as(&owner.token, &format!("/v1/providers/{id}")).await;
        assert_eq!(status, 200);
        assert_redacted(&got, &body["credentials"]);
        assert_eq!(got["config"], view["config"]);
        assert_eq!(got, view);

        // the raw row holds none of the secrets in the clear
        let (sealed, key_id) = sealed_row(&app.db.url, &id).await;
        assert_eq!(key_id, app.running().state().keys.current.id());
        for secret in &secrets {
            assert!(!contains(&sealed, secret), "{secret} in the clear");
        }
        let keys = &app.running().state().keys;
        assert_eq!(opened(&app.db.url, keys, &owner.org_id, &id).await, body["credentials"]);

        // a PATCH that changes only the name answers redacted too
        let (status, patched) = app
            .patch_as(&owner.token, &format!("/v1/providers/{id}"), json!({"name": "Renamed"}))
            .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["name"], "Renamed");
        assert_redacted(&patched, &body["credentials"]);
        assert_eq!(patched["config"], view["config"]);
        for secret in &secrets {
            assert!(!patched.to_string().contains(secret), "{secret} in {patched}");
        }
        created_ids.push((id, body, secrets));
    }

    let (status, list) = app.get_as(&owner.token, "/v1/providers").await;
    assert_eq!(status, 200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), created_ids.len());
    assert_eq!(list["nextCursor"], Value::Null);
    let text = list.to_string();
    for (id, body, secrets) in &created_ids {
        let item = data.iter().find(|v| v["id"] == id.as_str()).expect("listed");
        assert_redacted(item, &body["credentials"]);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} listed");
        }
    }

    // the generated OpenAPI document describes the routes
    let (_, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    for path in ["/v1/providers", "/v1/providers/{providerId}", "/v1/providers/{providerId}/verify"]
    {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    for schema in ["ProviderView", "CreateProvider", "UpdateProvider", "ProviderType", "Channel"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_takes_a_rate_limit_and_bad_ones_are_named() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Rita").await;
    for (mut body, _) in every_type() {
        if body.get("config").is_none() {
            body["config"] = json!({});
        }
        for bad in [json!(0), json!(-1), json!(2.5), json!("fast"), json!(100_001)] {
            let mut wrong = body.clone();
            wrong["config"]["rateLimit"] = bad.clone();
            let (status, error) = app.post_as(&owner.token, "/v1/providers", wrong).await;
            assert_eq!(status, 400, "{bad}: {error}");
            assert_eq!(fields_of(&error), ["config.rateLimit"], "{bad}: {error}");
        }
        body["config"]["rateLimit"] = json!(7);
        let created = create(&app, &owner, body.clone()).await;
        assert_eq!(created["config"]["rateLimit"], 7, "{created}");
        let path = format!("/v1/providers/{}", created["id"].as_str().unwrap());
        let mut config = body["config"].clone();
        config["rateLimit"] = json!(0);
        let (status, error) = app.patch_as(&owner.token, &path, json!({"config": config})).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(fields_of(&error), ["config.rateLimit"], "{error}");
        let (_, shown) = app.get_as(&owner.token, &path).await;
        assert_eq!(shown["config"]["rateLimit"], 7, "a refused change changes nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_name_every_field_at_fault() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Vera").await;
    let with = |changes: Value| {
        let mut body = ses_body();
        for (key, value) in changes.as_object().unwrap() {
            match key.split_once('.') {
                Some((part, field)) if value.is_null() => {
                    body[part].as_object_mut().unwrap().remove(field);
                }
                Some((part, field)) => body[part][field] = value.clone(),
                None if value.is_null() => {
                    body.as_object_mut().unwrap().remove(key);
                }
                None => body[key] = value.clone(),
            }
        }
        body
    };
    let smtp = |config: Value, credentials: Value| {
        json!({"name": "SMTP", "channel": "email", "providerType": "smtp",
               "credentials": credentials, "config": config})
    };
    let smtp_config = json!({"host": "smtp.example.com", "port": 587, "tls": "tls",
                             "fromAddress": "a@example.com"});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // missing, unknown and wrongly typed fields
        (with(json!({"credentials.secretAccessKey": null})), vec!["credentials.secretAccessKey"]),
        (with(json!({"credentials.sessionToken": "x"})), vec!["credentials.sessionToken"]),
        (with(json!({"config.bogus": true})), vec!["config.bogus"]),
        (with(json!({"config.region": null})), vec!["config.region"]),
        (with(json!({"credentials.accessKeyId": 42})), vec!["credentials.accessKeyId"]),
        (with(json!({"credentials": null})), vec!["credentials"]),
        (with(json!({"credentials": "AKIA:secret"})), vec!["credentials"]),
        (with(json!({"config": ["eu-west-1"]})), vec!["config"]),
        (with(json!({"config": null})), vec!["config.region"]),
        (with(json!({"secret": "x"})), vec!["secret"]),
        (with(json!({"providerType": "twilio"})), vec!["providerType"]),
        (with(json!({"channel": "fax"})), vec!["channel"]),
        (with(json!({"priority": "high"})), vec!["priority"]),
        // a shape error in credentials and a bad value in config are both reported
        (
            with(json!({"credentials.secretAccessKey": null, "config.fromAddress": "nobody"})),
            vec!["credentials.secretAccessKey", "config.fromAddress"],
        ),
        // bad values
        (
            with(json!({"name": " ", "slug": "Not A Slug", "credentials.accessKeyId": "AKIA\n"})),
            vec!["name", "slug", "credentials.accessKeyId"],
        ),
        (
            with(json!({"config.region": "Europe", "config.fromAddress": "not-an-email"})),
            vec!["config.region", "config.fromAddress"],
        ),
        (with(json!({"credentials.secretAccessKey": ""})), vec!["credentials.secretAccessKey"]),
        // the channel must fit the type
        (with(json!({"channel": "sms"})), vec!["channel"]),
        (
            json!({"name": "x", "channel": "email", "providerType": "discord_bot",
                   "credentials": {"botToken": "t"}}),
            vec!["channel"],
        ),
        // endpoint overrides are refused unless the server allows them
        (with(json!({"config.endpointUrl": "http://127.0.0.1:4566"})), vec!["config.endpointUrl"]),
        (
            json!({"name": "x", "channel": "whatsapp", "providerType": "whatsapp_cloud",
                   "credentials": {"accessToken": "t"},
                   "config": {"phoneNumberId": "123", "baseUrl": "http://127.0.0.1:1"}}),
            vec!["config.baseUrl"],
        ),
        (
            json!({"name": "x", "channel": "discord", "providerType": "discord_bot",
                   "credentials": {"botToken": "t"}, "config": {"baseUrl": "http://127.0.0.1:1"}}),
            vec!["config.baseUrl"],
        ),
        // smtp
        (
            smtp(
                json!({"host": "h", "port": "587", "tls": "tls", "fromAddress": "a@example.com"}),
                json!({}),
            ),
            vec!["config.port"],
        ),
        (
            smtp(
                json!({"host": "h", "port": 0, "tls": "tls", "fromAddress": "a@example.com"}),
                json!({}),
            ),
            vec!["config.port"],
        ),
        (
            smtp(
                json!({"host": "h", "port": 70000, "tls": "tls", "fromAddress": "a@example.com"}),
                json!({}),
            ),
            vec!["config.port"],
        ),
        (
            smtp(
                json!({"host": "h", "port": 25, "tls": "ssl", "fromAddress": "a@example.com"}),
                json!({}),
            ),
            vec!["config.tls"],
        ),
        (
            smtp(json!({"port": 25, "tls": "none", "fromAddress": "a@example.com"}), json!({})),
            vec!["config.host"],
        ),
        (smtp(smtp_config.clone(), json!({"username": "u"})), vec!["credentials.password"]),
        (smtp(smtp_config.clone(), json!({"password": "p"})), vec!["credentials.username"]),
        (
            smtp(smtp_config.clone(), json!({"username": "u", "password": ""})),
            vec!["credentials.password"],
        ),
        // sns
        (
            json!({"name": "x", "channel": "sms", "providerType": "sns",
                   "credentials": {"accessKeyId": "a", "secretAccessKey": "s"},
                   "config": {"region": "us-east-1", "senderId": "far-too-long-id",
                              "originationNumber": "4155550123", "smsType": "Marketing"}}),
            vec!["config.smsType"],
        ),
        (
            json!({"name": "x", "channel": "sms", "providerType": "sns",
                   "credentials": {"accessKeyId": "a", "secretAccessKey": "s"},
                   "config": {"region": "us-east-1", "senderId": "far-too-long-id",
                              "originationNumber": "4155550123"}}),
            vec!["config.senderId", "config.originationNumber"],
        ),
        // whatsapp and discord
        (
            json!({"name": "x", "channel": "whatsapp", "providerType": "whatsapp_cloud",
                   "credentials": {"appSecret": "s"}, "config": {"phoneNumberId": "12ab", "apiVersion": "21"}}),
            vec!["credentials.accessToken", "config.phoneNumberId", "config.apiVersion"],
        ),
        (
            json!({"name": "x", "channel": "discord", "providerType": "discord_bot",
                   "credentials": {"botToken": "two words"}}),
            vec!["credentials.botToken"],
        ),
        // sandbox
        (
            json!({"name": "x", "channel": "sms", "providerType": "sandbox",
                   "credentials": {"token": "x"}}),
            vec!["credentials.token"],
        ),
        (
            json!({"name": "x", "channel": "sms", "providerType": "sandbox", "credentials": {},
                   "config": {"failRate": 1.5, "latencyMs": 600000}}),
            vec!["config.latencyMs", "config.failRate"],
        ),
        (
            json!({"name": "x", "channel": "sms", "providerType": "sandbox", "credentials": {},
                   "config": {"failMode": "sometimes"}}),
            vec!["config.failMode"],
        ),
        (
            json!({"name": "x", "channel": "sms", "providerType": "sandbox", "credentials": {},
                   "config": {"latencyMs": -1}}),
            vec!["config.latencyMs"],
        ),
    ];
    for (body, fields) in cases {
        let (status, answer) = app.post_as(&owner.token, "/v1/providers", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{answer}");
        assert_eq!(fields_of(&answer), fields, "{body}: {answer}");
    }
    // nothing was stored
    let (_, list) = app.get_as(&owner.token, "/v1/providers").await;
    assert_eq!(list["data"], json!([]));

    // PATCH: the same checks, against the stored type
    let id = create(&app, &owner, ses_body()).await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/providers/{id}");
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"channel": "email"}), vec!["channel"]),
        (json!({"providerType": "smtp"}), vec!["providerType"]),
        (json!({"projectId": owner.project_id}), vec!["projectId"]),
        (json!({"credentials": {"bogus": "x"}}), vec!["credentials.bogus"]),
        (json!({"credentials": {"secretAccessKey": null}}), vec!["credentials.secretAccessKey"]),
        (json!({"credentials": {"secretAccessKey": 7}}), vec!["credentials.secretAccessKey"]),
        (json!({"credentials": "x"}), vec!["credentials"]),
        (json!({"config": {"region": "us-east-1"}}), vec!["config.fromAddress"]),
        (
            json!({"config": {"region": "us-east-1", "fromAddress": "a@example.com",
                              "endpointUrl": "http://127.0.0.1:1"}}),
            vec!["config.endpointUrl"],
        ),
        (json!({"name": "", "slug": "-x"}), vec!["name", "slug"]),
        (json!({"isActive": "yes"}), vec!["isActive"]),
    ];
    for (body, fields) in cases {
        let (status, answer) = app.patch_as(&owner.token, &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(fields_of(&answer), fields, "{body}: {answer}");
    }
    // and nothing changed
    let keys = &app.running().state().keys;
    assert_eq!(opened(&app.db.url, keys, &owner.org_id, &id).await, ses_body()["credentials"]);
    let (_, view) = app.get_as(&owner.token, &path).await;
    assert_eq!(view["config"], ses_body()["config"]);
    assert_eq!(view["name"], "Main SES");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_overrides_are_accepted_when_the_server_allows_them() {
    let app = TestApp::spawn_with(|c| c.providers.allow_endpoint_overrides = true).await;
    let owner = app.sign_up("Ezra").await;
    let mut body = ses_body();
    body["config"]["endpointUrl"] = json!("http://127.0.0.1:4566");
    let view = create(&app, &owner, body.clone()).await;
    assert_eq!(view["config"], body["config"]);
    let discord = json!({"name": "Stub", "channel": "discord", "providerType": "discord_bot",
        "credentials": {"botToken": "t"}, "config": {"baseUrl": "https://discord.local/api"}});
    assert_eq!(create(&app, &owner, discord.clone()).await["config"], discord["config"]);
    // still a URL, still http(s)
    for url in ["ftp://127.0.0.1/", "not a url", "http://"] {
        body["config"]["endpointUrl"] = json!(url);
        let (status, answer) = app.post_as(&owner.token, "/v1/providers", body.clone()).await;
        assert_eq!(status, 400, "{url}");
        assert_eq!(fields_of(&answer), ["config.endpointUrl"], "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slugs_are_generated_unique_and_conflicts_are_409() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Sam").await;
    let first = create(&app, &owner, sandbox_provider("Primary Mail!", "email")).await;
    assert_eq!(first["slug"], "primary-mail");
    let second = create(&app, &owner, sandbox_provider("Primary Mail", "email")).await;
    assert_eq!(second["slug"], "primary-mail-2");

    let mut taken = sandbox_provider("Other", "email");
    taken["slug"] = json!("primary-mail");
    let (status, answer) = app.post_as(&owner.token, "/v1/providers", taken).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "conflict");

    let path = format!("/v1/providers/{}", second["id"].as_str().unwrap());
    let (status, answer) = app.patch_as(&owner.token, &path, json!({"slug": "primary-mail"})).await;
    assert_eq!(status, 409, "{answer}");
    let (status, renamed) = app.patch_as(&owner.token, &path, json!({"slug": "backup"})).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["slug"], "backup");

    // the slug names the credential too
    let (status, got) = app.get_as(&owner.token, "/v1/providers/backup").await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], second["id"]);

    // another organization may use the same slug
    let other = app.sign_up("Sid").await;
    assert_eq!(
        create(&app, &other, sandbox_provider("Primary Mail", "email")).await["slug"],
        "primary-mail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_channel_and_project_and_page_with_cursors() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Lena").await;
    let mut ids = Vec::new();
    for (i, channel) in ["email", "sms", "email", "discord", "email"].iter().enumerate() {
        let mut body = sandbox_provider(&format!("Sandbox {i}"), channel);
        if i % 2 == 1 {
            body["projectId"] = json!(owner.project_id);
        }
        let view = create(&app, &owner, body).await;
        if i % 2 == 1 {
            assert_eq!(view["projectId"], owner.project_id.as_str());
        }
        ids.push(view["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let listed = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, all) = app.get_as(&owner.token, "/v1/providers").await;
    assert_eq!(listed(&all), newest_first);

    let (status, email) = app.get_as(&owner.token, "/v1/providers?channel=email").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&email), [ids[4].clone(), ids[2].clone(), ids[0].clone()]);

    let (_, project) =
        app.get_as(&owner.token, &format!("/v1/providers?projectId={}", owner.project_id)).await;
    assert_eq!(listed(&project), [ids[3].clone(), ids[1].clone()]);
    // by project slug too, combined with a channel
    let (_, both) = app.get_as(&owner.token, "/v1/providers?projectId=default&channel=sms").await;
    assert_eq!(listed(&both), [ids[1].clone()]);

    // pages of two, following nextCursor
    let mut seen = Vec::new();
    let mut path = "/v1/providers?limit=2".to_owned();
    loop {
        let (status, page) = app.get_as(&owner.token, &path).await;
        assert_eq!(status, 200, "{page}");
        let data = listed(&page);
        assert!(data.len() <= 2);
        seen.extend(data);
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/providers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let (_, page) = app.get_as(&owner.token, "/v1/providers?limit=2&channel=email").await;
    assert_eq!(listed(&page), [ids[4].clone(), ids[2].clone()]);
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let (_, page) = app
        .get_as(&owner.token, &format!("/v1/providers?limit=2&channel=email&cursor={cursor}"))
        .await;
    assert_eq!(listed(&page), [ids[0].clone()]);
    assert_eq!(page["nextCursor"], Value::Null);

    // bad queries name the parameter
    for (query, field) in [
        ("channel=fax", "channel"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=garbage!", "cursor"),
    ] {
        let (status, answer) = app.get_as(&owner.token, &format!("/v1/providers?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(fields_of(&answer), [field], "{query}");
    }
    let (status, _) = app.get_as(&owner.token, "/v1/providers?projectId=prj_nope").await;
    assert_eq!(status, 404);
    let (status, _) = app.get_as(&owner.token, "/v1/providers?bogus=1").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_merges_credentials_and_reseals_them() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Mara").await;
    let keys = app.running().state().keys.clone();
    let mut body = ses_body();
    body["credentials"] =
        json!({"accessKeyId": "AKIAORIGINAL0001", "secretAccessKey": "original-secret-1"});
    let view = create(&app, &owner, body).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/providers/{id}");
    let (before, _) = sealed_row(&app.db.url, &id).await;
    assert!(!contains(&before, "AKIAORIGINAL0001") && !contains(&before, "original-secret-1"));

    // one field changes, the other keeps its sealed value
    let (status, patched) = app
        .patch_as(
            &owner.token,
            &path,
            json!({"credentials": {"secretAccessKey": "rotated-secret-2"}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_redacted(&patched, &json!({"accessKeyId": 1, "secretAccessKey": 1}));
    assert!(!patched.to_string().contains("rotated-secret-2"));
    assert_eq!(
        opened(&app.db.url, &keys, &owner.org_id, &id).await,
        json!({"accessKeyId": "AKIAORIGINAL0001", "secretAccessKey": "rotated-secret-2"})
    );
    let (after, _) = sealed_row(&app.db.url, &id).await;
    assert_ne!(after, before);
    assert!(!contains(&after, "rotated-secret-2"));

    // changes without credentials leave the sealed value alone; config is replaced as given
    let config = json!({"region": "us-west-2", "fromAddress": "ops@example.com"});
    let (status, patched) = app
        .patch_as(
            &owner.token,
            &path,
            json!({"name": "  Backup SES ", "isActive": false, "priority": 7, "config": config}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Backup SES");
    assert_eq!(patched["isActive"], false);
    assert_eq!(patched["priority"], 7);
    assert_eq!(patched["config"], config);
    assert_eq!(patched["slug"], view["slug"]);
    assert_eq!(sealed_row(&app.db.url, &id).await.0, after);
    let (_, got) = app.get_as(&owner.token, &path).await;
    assert_eq!(got, patched);

    // null removes an optional field
    let smtp = create(&app, &owner, every_type().remove(1).0).await;
    let smtp_id = smtp["id"].as_str().unwrap();
    let (status, patched) = app
        .patch_as(
            &owner.token,
            &format!("/v1/providers/{smtp_id}"),
            json!({"credentials": {"username": null, "password": null}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["credentials"], json!({}));
    assert_eq!(opened(&app.db.url, &keys, &owner.org_id, smtp_id).await, json!({}));

    // delete
    let (status, _) = app.delete_as(&owner.token, &path).await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(&owner.token, &path).await.0, 404);
    assert_eq!(app.delete_as(&owner.token, &path).await.0, 404);
    assert_eq!(app.patch_as(&owner.token, &path, json!({"name": "x"})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_ok_for_the_sandbox_and_reports_a_provider_out_of_reach() {
    // the SMTP server out of reach is a closed port of this machine
    let app = TestApp::spawn_with(|c| c.providers.allow_private_targets = true).await;
    let owner = app.sign_up("Vic").await;
    let sandbox = create(&app, &owner, sandbox_provider("Sandbox", "email")).await;
    let (status, result) = app
        .call(
            Method::POST,
            &format!("/v1/providers/{}/verify", sandbox["id"].as_str().unwrap()),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true);
    assert!(result["detail"].as_str().is_some_and(|d| !d.is_empty()));

    // (each real type's own verify is tested beside its connector: tests/aws.rs, whatsapp.rs,
    // discord.rs, smtp.rs)
    // an SMTP server nobody runs: an answer all the same, `ok: false` saying why
    let closed = crate::harness::free_port();
    let smtp = create(
        &app,
        &owner,
        json!({"name": "Nowhere", "channel": "email", "providerType": "smtp", "credentials": {},
            "config": {"host": "127.0.0.1", "port": closed, "tls": "none",
                "fromAddress": "a@example.com"}}),
    )
    .await;
    let (status, answer) = app
        .call(
            Method::POST,
            &format!("/v1/providers/{}/verify", smtp["id"].as_str().unwrap()),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], false);
    assert!(
        answer["detail"].as_str().unwrap().starts_with("retryable: SMTP 127.0.0.1:"),
        "{answer}"
    );

    let (status, _) =
        app.call(Method::POST, "/v1/providers/prv_missing/verify", Some(&owner.token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_get_404_members_403_and_strangers_401() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let provider = create(&app, &owner, sandbox_provider("Ada's sandbox", "email")).await;
    let id = provider["id"].as_str().unwrap();
    let path = format!("/v1/providers/{id}");
    let verify = format!("{path}/verify");

    // another organization: not found, whatever the method
    let eve = app.sign_up("Eve").await;
    let tried = [
        app.get_as(&eve.token, &path).await,
        app.get_as(&eve.token, &format!("/v1/providers/{}", provider["slug"].as_str().unwrap()))
            .await,
        app.patch_as(&eve.token, &path, json!({"name": "mine"})).await,
        app.delete_as(&eve.token, &path).await,
        app.call(Method::POST, &verify, Some(&eve.token), None).await,
    ];
    for (status, answer) in tried {
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    let (_, list) = app.get_as(&eve.token, "/v1/providers").await;
    assert_eq!(list["data"], json!([]));
    let mut body = sandbox_provider("Into Ada's project", "email");
    body["projectId"] = json!(owner.project_id);
    let (status, answer) = app.post_as(&eve.token, "/v1/providers", body).await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) =
        app.get_as(&eve.token, &format!("/v1/providers?projectId={}", owner.project_id)).await;
    assert_eq!(status, 404);
    // still there, unchanged
    let (status, got) = app.get_as(&owner.token, &path).await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], "Ada's sandbox");

    // a member reads, without secrets, and writes nothing
    let member = app.add_member(&owner, "Max", "member").await;
    let (status, got) = app.get_as(&member.token, &path).await;
    assert_eq!(status, 200);
    assert_eq!(got, provider);
    let (status, list) = app.get_as(&member.token, "/v1/providers").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let tried = [
        app.post_as(&member.token, "/v1/providers", sandbox_provider("Max's", "sms")).await,
        app.patch_as(&member.token, &path, json!({"name": "mine"})).await,
        app.delete_as(&member.token, &path).await,
        app.call(Method::POST, &verify, Some(&member.token), None).await,
    ];
    for (status, answer) in tried {
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }

    // an admin writes
    let admin = app.add_member(&owner, "Ann", "admin").await;
    create(&app, &admin, sandbox_provider("Ann's", "sms")).await;
    let (status, _) = app.call(Method::POST, &verify, Some(&admin.token), None).await;
    assert_eq!(status, 200);
    let (status, _) = app.patch_as(&admin.token, &path, json!({"priority": 1})).await;
    assert_eq!(status, 200);

    // nobody
    for (method, target) in [
        (Method::GET, "/v1/providers".to_owned()),
        (Method::POST, "/v1/providers".to_owned()),
        (Method::GET, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, verify.clone()),
    ] {
        let (status, answer) = app.call(method.clone(), &target, None, Some(json!({}))).await;
        assert_eq!(status, 401, "{method} {target}: {answer}");
    }
}

/// An API key of `owner`'s organization, inserted directly (the API keys routes live elsewhere).
async fn api_key(app: &TestApp, owner: &Account, project: Option<&str>, scopes: &[&str]) -> String {
    let (key, prefix) = relayit::auth::tokens::new_api_key();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    relayit::db::api_keys::insert(
        &mut app.connect().await,
        relayit::db::api_keys::NewApiKey {
            id: &unique("key"),
            organization_id: &owner.org_id,
            project_id: project,
            name: "test key",
            key_hash: &relayit::auth::tokens::hash(&key),
            prefix: &prefix,
            scopes: &scopes,
            rate_limit: None,
            created_by: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_bound_keys_see_the_organization_and_their_project_only() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Pia").await;
    let (status, other_project) =
        app.post_as(&owner.token, "/v1/projects", json!({"name": "Other"})).await;
    assert_eq!(status, 201);
    let other_project = other_project["id"].as_str().unwrap().to_owned();
    let org_wide = create(&app, &owner, sandbox_provider("Org", "email")).await;
    let mut body = sandbox_provider("Mine", "email");
    body["projectId"] = json!(owner.project_id);
    let mine = create(&app, &owner, body).await;
    let mut body = sandbox_provider("Theirs", "email");
    body["projectId"] = json!(other_project);
    let theirs = create(&app, &owner, body).await;
    let path = |view: &Value| format!("/v1/providers/{}", view["id"].as_str().unwrap());

    let key = api_key(&app, &owner, Some(&owner.project_id), &["manage"]).await;
    let (status, list) = app.get_as(&key, "/v1/providers").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&Value> = list["data"].as_array().unwrap().iter().map(|v| &v["id"]).collect();
    assert_eq!(ids, [&mine["id"], &org_wide["id"]]);
    assert_eq!(app.get_as(&key, &path(&org_wide)).await.0, 200);
    assert_eq!(app.get_as(&key, &path(&mine)).await.0, 200);
    assert_eq!(app.get_as(&key, &path(&theirs)).await.0, 404);
    assert_eq!(app.patch_as(&key, &path(&theirs), json!({"priority": 2})).await.0, 404);
    assert_eq!(app.get_as(&key, &format!("/v1/providers?projectId={other_project}")).await.0, 404);

    // it changes its project's credentials, not the organization's
    assert_eq!(app.patch_as(&key, &path(&mine), json!({"priority": 2})).await.0, 200);
    assert_eq!(app.patch_as(&key, &path(&org_wide), json!({"priority": 2})).await.0, 403);
    assert_eq!(app.delete_as(&key, &path(&org_wide)).await.0, 403);
    // nor calls the provider with the organization's secrets
    let verify = |view: &Value| format!("{}/verify", path(view));
    let (status, answer) = app.post_as(&key, &verify(&org_wide), json!({})).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = app.post_as(&key, &verify(&mine), json!({})).await;
    assert_eq!((status, &answer["ok"]), (200, &json!(true)), "{answer}");
    assert_eq!(app.post_as(&key, &verify(&theirs), json!({})).await.0, 404);

    // and creates only in its project
    let (status, answer) =
        app.post_as(&key, "/v1/providers", sandbox_provider("Org 2", "sms")).await;
    assert_eq!(status, 403, "{answer}");
    let mut body = sandbox_provider("Theirs 2", "sms");
    body["projectId"] = json!(other_project);
    assert_eq!(app.post_as(&key, "/v1/providers", body).await.0, 404);
    let mut body = sandbox_provider("Mine 2", "sms");
    body["projectId"] = json!(owner.project_id);
    let (status, created) = app.post_as(&key, "/v1/providers", body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["projectId"], owner.project_id.as_str());

    // read-only keys read
    let reader = api_key(&app, &owner, None, &["read"]).await;
    let (status, list) = app.get_as(&reader, "/v1/providers").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 4);
    assert_eq!(app.post_as(&reader, "/v1/providers", sandbox_provider("No", "sms")).await.0, 403);
}

/// A webhook endpoint row with its secret (and a previous one) sealed under `keys`, as the
/// webhook endpoints module stores them.
async fn insert_webhook(
    url: &str,
    keys: &MasterKeys,
    owner: &Account,
    secret: &str,
    previous: Option<&str>,
) -> String {
    let id = unique("whk");
    let aad = format!("webhook_endpoints:{}:{id}", owner.org_id);
    let sealed = keys.seal(secret.as_bytes(), &aad);
    let previous = previous.map(|p| keys.seal(p.as_bytes(), &aad));
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::insert_into(we::table)
        .values((
            we::id.eq(&id),
            we::organization_id.eq(&owner.org_id),
            we::project_id.eq(&owner.project_id),
            we::url.eq("https://hooks.example.com/relayit"),
            we::event_types.eq(vec!["message.sent".to_owned()]),
            we::sealed_secret.eq(&sealed.bytes),
            we::secret_key_id.eq(&sealed.key_id),
            we::previous_sealed_secret.eq(previous.as_ref().map(|p| p.bytes.clone())),
            we::previous_secret_key_id.eq(previous.as_ref().map(|p| p.key_id.clone())),
            we::previous_secret_expires_at
                .eq(previous.as_ref().map(|_| chrono::Utc::now() + chrono::Duration::hours(24))),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    id
}

type WebhookRow = (Vec<u8>, String, Option<Vec<u8>>, Option<String>);

async fn webhook_row(url: &str, id: &str) -> WebhookRow {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    we::table
        .filter(we::id.eq(id))
        .select((
            we::sealed_secret,
            we::secret_key_id,
            we::previous_sealed_secret,
            we::previous_secret_key_id,
        ))
        .first(&mut conn)
        .await
        .unwrap()
}

/// `relayit rotate-keys` with a clean environment in an empty directory.
async fn rotate_keys(
    database_url: &str,
    key: Option<&str>,
    previous: &[&str],
) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_relayit"));
    command
        .env_clear()
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .arg("rotate-keys")
        .env("DATABASE_URL", database_url)
        .env("RELAYIT_SECURITY__PREVIOUS_KEYS", serde_json::to_string(previous).unwrap());
    if let Some(key) = key {
        command.env("RELAYIT_SECURITY__ENCRYPTION_KEY", key);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_reseals_every_secret_under_the_new_key() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Rita").await;
    let old_key = app.running().state().config.security.encryption_key.clone().unwrap();
    let old_keys = app.running().state().keys.clone();
    let url = app.db.url.clone();
    let (ses, _) = every_type().remove(0);
    let (smtp, _) = every_type().remove(1);
    let ses_id = create(&app, &owner, ses.clone()).await["id"].as_str().unwrap().to_owned();
    let smtp_id = create(&app, &owner, smtp.clone()).await["id"].as_str().unwrap().to_owned();
    let sandbox_id = create(&app, &owner, sandbox_provider("Sandbox", "sms")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = insert_webhook(&url, &old_keys, &owner, "whsec_current", None).await;
    let hook_with_previous =
        insert_webhook(&url, &old_keys, &owner, "whsec_new", Some("whsec_old")).await;

    // a second server on the same database with a new key; the old one only opens
    let new_key = relayit::crypto::generate_key_base64();
    let new_id = MasterKey::from_base64(&new_key).unwrap().id().to_owned();
    assert_ne!(new_id, old_keys.current.id());
    let app2 = TestApp::spawn_with(|c| {
        c.database.url = url.clone();
        c.security.encryption_key = Some(new_key.clone());
        c.security.previous_keys = vec![old_key.clone()];
    })
    .await;
    let (status, got) = app2.get_as(&owner.token, &format!("/v1/providers/{ses_id}")).await;
    assert_eq!(status, 200);
    assert_redacted(&got, &ses["credentials"]);
    let (status, verified) = app2
        .call(Method::POST, &format!("/v1/providers/{sandbox_id}/verify"), Some(&owner.token), None)
        .await;
    assert_eq!(status, 200, "{verified}");
    // a merge opens under the old key and re-seals under the new one
    let (status, patched) = app2
        .patch_as(
            &owner.token,
            &format!("/v1/providers/{ses_id}"),
            json!({"credentials": {"secretAccessKey": "after-rotation"}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(sealed_row(&url, &ses_id).await.1, new_id);
    assert_eq!(sealed_row(&url, &smtp_id).await.1, old_keys.current.id());

    // without a key the command refuses, naming the fix
    let (code, _, err) = rotate_keys(&url, None, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("relayit generate-key"), "{err}");

    let (code, out, err) = rotate_keys(&url, Some(&new_key), &[&old_key]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "re-sealed 4 row(s) under key {new_id}: 2 provider credential(s), 2 webhook endpoint(s)"
        )
    );

    // everything now opens with the new key alone
    let only_new =
        MasterKeys { current: MasterKey::from_base64(&new_key).unwrap(), previous: vec![] };
    let mut expected_ses = ses["credentials"].clone();
    expected_ses["secretAccessKey"] = json!("after-rotation");
    for (id, expected) in
        [(&ses_id, expected_ses), (&smtp_id, smtp["credentials"].clone()), (&sandbox_id, json!({}))]
    {
        assert_eq!(sealed_row(&url, id).await.1, new_id);
        assert_eq!(opened(&url, &only_new, &owner.org_id, id).await, expected);
    }
    let open_hook = |id: &str, sealed: &[u8], key_id: &str| {
        let aad = format!("webhook_endpoints:{}:{id}", owner.org_id);
        String::from_utf8(only_new.open(sealed, key_id, &aad).unwrap()).unwrap()
    };
    let (secret, key_id, previous, previous_key_id) = webhook_row(&url, &hook).await;
    assert_eq!(open_hook(&hook, &secret, &key_id), "whsec_current");
    assert_eq!((previous, previous_key_id), (None, None));
    let (secret, key_id, previous, previous_key_id) = webhook_row(&url, &hook_with_previous).await;
    assert_eq!(open_hook(&hook_with_previous, &secret, &key_id), "whsec_new");
    assert_eq!(
        open_hook(&hook_with_previous, &previous.unwrap(), &previous_key_id.unwrap()),
        "whsec_old"
    );

    // a server with only the new key serves them
    let app3 = TestApp::spawn_with(|c| {
        c.database.url = url.clone();
        c.security.encryption_key = Some(new_key.clone());
    })
    .await;
    let (status, got) = app3.get_as(&owner.token, &format!("/v1/providers/{smtp_id}")).await;
    assert_eq!(status, 200);
    assert_redacted(&got, &smtp["credentials"]);

    // nothing is left to do
    let (code, out, _) = rotate_keys(&url, Some(&new_key), &[]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("re-sealed 0 row(s)"), "{out}");
    drop((app2, app3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reports_rows_it_cannot_open_and_never_overwrites_a_concurrent_change() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Kit").await;
    let url = app.db.url.clone();
    let lost = MasterKeys { current: MasterKey::from_bytes([3; 32]), previous: vec![] };
    let old = MasterKeys { current: MasterKey::from_bytes([4; 32]), previous: vec![] };
    let new =
        MasterKeys { current: MasterKey::from_bytes([5; 32]), previous: vec![old.current.clone()] };
    let ok = create(&app, &owner, sandbox_provider("Fine", "sms")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let orphan = create(&app, &owner, sandbox_provider("Orphan", "sms")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // re-seal the two rows by hand: one under a key the rotation knows, one under a lost key
    let mut conn = app.connect().await;
    for (id, keys) in [(&ok, &old), (&orphan, &lost)] {
        let aad = format!("provider_credentials:{}:{id}", owner.org_id);
        let sealed = keys.seal(b"{}", &aad);
        diesel::update(pc::table.filter(pc::id.eq(id)))
            .set((pc::sealed_secrets.eq(sealed.bytes), pc::secrets_key_id.eq(sealed.key_id)))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let hook = insert_webhook(&url, &lost, &owner, "whsec_lost", None).await;

    // the compare-and-swap: a stale read does not overwrite what is there now
    let (current, _) = sealed_row(&url, &ok).await;
    let stale = b"not what is stored".to_vec();
    let replaced = relayit::db::providers::replace_sealed(&mut conn, &ok, &stale, b"x", "feedbeef")
        .await
        .unwrap();
    assert!(!replaced);
    assert_eq!(sealed_row(&url, &ok).await.0, current);

    let report = relayit::db::rotation::rotate(&mut conn, &new).await.unwrap();
    assert_eq!(report.providers_resealed, 1, "{report:?}");
    assert_eq!(report.webhooks_resealed, 0, "{report:?}");
    assert_eq!(report.changed_meanwhile, 0);
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(report.failed.iter().any(|f| f.contains(&orphan)), "{report:?}");
    assert!(report.failed.iter().any(|f| f.contains(&hook)), "{report:?}");
    assert_eq!(sealed_row(&url, &ok).await.1, new.current.id());
    assert_eq!(sealed_row(&url, &orphan).await.1, lost.current.id());

    // the command says so and fails, after re-sealing what it could
    let key = base64_of(&[5; 32]);
    let (code, out, err) = rotate_keys(&url, Some(&key), &[]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("re-sealed 0 row(s)"), "{out}");
    assert!(err.contains("2 row(s) could not be opened") && err.contains(&orphan), "{err}");
    assert!(err.contains("security.previous_keys"), "{err}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
