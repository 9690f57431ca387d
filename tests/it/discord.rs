//! The Discord connector against a Discord API stub: channel messages and direct messages
//! (the DM channel opened first, once per user), text and embeds, with the bot token; every
//! documented error answer mapped to its kind (429 with `retry_after` as throttled); `/verify`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::stub::{Recorded, Reply, Stub};
use crate::harness::{TestApp, message_for, opened_credential};
use relayit::domain::provider_types::ProviderType;
use relayit::providers::connector::{Connector, ProviderError};
use relayit::providers::discord::Discord;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.test-bot-token";
const CHANNEL: &str = "1098765432109876543";
const USER: &str = "80351110224678912";
const DM_CHANNEL: &str = "1200000000000000001";

/// A Discord API stub: DM channels open as `DM_CHANNEL`, messages get fresh ids, `users/@me`
/// is the bot.
async fn discord() -> Stub {
    let counter = AtomicU64::new(0);
    Stub::start(move |request: &Recorded| match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/api/v10/users/@me/channels") => Reply::json(
            200,
            json!({"id": DM_CHANNEL, "type": 1, "last_message_id": null, "flags": 0,
                "recipients": [{"id": USER, "username": "ada", "discriminator": "0"}]}),
        ),
        ("POST", path) if path.ends_with("/messages") => {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let channel = path.trim_start_matches("/api/v10/channels/").trim_end_matches("/messages");
            let body = request.json();
            Reply::json(
                200,
                json!({"id": format!("13000000000000000{n:02}"), "type": 0, "channel_id": channel,
                    "content": body["content"], "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
                    "author": {"id": "80351110224678000", "username": "relaybot", "bot": true},
                    "timestamp": "2026-11-27T10:00:00.000000+00:00"}),
            )
        }
        _ => Reply::json(
            200,
            json!({"id": "80351110224678000", "username": "relaybot", "discriminator": "0",
                "bot": true, "verified": true}),
        ),
    })
    .await
}

fn assert_bot_request(request: &Recorded, method: &str, path: &str) {
    assert_eq!((request.method.as_str(), request.path.as_str()), (method, path), "{request:?}");
    assert_eq!(request.header("authorization"), Some(format!("Bot {TOKEN}").as_str()));
    if method == "POST" {
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_direct_messages_reach_discord_as_documented() {
    let stub = discord().await;
    let app = TestApp::spawn_with(|c| c.providers.allow_endpoint_overrides = true).await;
    let (owner, key) = app.sender("Dora").await;
    let provider = app
        .create_provider(
            &owner.token,
            json!({"name": "Bot", "channel": "discord", "providerType": "discord_bot",
            "credentials": {"botToken": TOKEN}, "config": {"baseUrl": stub.url()}}),
        )
        .await;
    let send = async |to: &str, content: Value| {
        let body = json!({"channel": "discord", "to": to, "content": content});
        let id = app.send_message(&key, body).await;
        app.wait_for_status(&key, &id, "sent").await
    };

    let embed = json!({"title": "Deploy finished", "description": "v1.4.2 is live",
        "color": 5763719, "fields": [{"name": "Duration", "value": "3m 12s", "inline": true}]});
    let sent = send(CHANNEL, json!({"text": "Build **green**", "embeds": [embed]})).await;
    assert_eq!(sent["providerMessageId"], "1300000000000000000");
    let dm = send(&format!("user:{USER}"), json!({"text": "Your order shipped"})).await;
    assert_eq!(dm["providerMessageId"], "1300000000000000001");
    let again = send(&format!("user:{USER}"), json!({"embeds": [{"title": "Again"}]})).await;
    assert_eq!(again["providerMessageId"], "1300000000000000002");

    let requests = stub.requests();
    assert_eq!(requests.len(), 4, "the DM channel is opened once: {requests:?}");
    assert_bot_request(&requests[0], "POST", &format!("/api/v10/channels/{CHANNEL}/messages"));
    assert_eq!(requests[0].json(), json!({"content": "Build **green**", "embeds": [embed]}));
    assert_bot_request(&requests[1], "POST", "/api/v10/users/@me/channels");
    assert_eq!(requests[1].json(), json!({"recipient_id": USER}));
    assert_bot_request(&requests[2], "POST", &format!("/api/v10/channels/{DM_CHANNEL}/messages"));
    assert_eq!(requests[2].json(), json!({"content": "Your order shipped"}));
    assert_bot_request(&requests[3], "POST", &format!("/api/v10/channels/{DM_CHANNEL}/messages"));
    assert_eq!(requests[3].json(), json!({"embeds": [{"title": "Again"}]}));

    // verify: users/@me with the same token
    let path = format!("/v1/providers/{provider}/verify");
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["detail"].as_str().unwrap().contains("relaybot"), "{result}");
    assert_bot_request(stub.requests().last().unwrap(), "GET", "/api/v10/users/@me");
    stub.push(Reply::json(401, json!({"message": "401: Unauthorized", "code": 0})));
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result,
        json!({"ok": false, "detail": "credential: Discord 401: 401: Unauthorized"})
    );
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_errors_map_to_their_kinds() {
    let stub = discord().await;
    let connector = Discord::new(true).unwrap();
    let credential = opened_credential(
        ProviderType::DiscordBot,
        json!({"botToken": TOKEN}),
        json!({"baseUrl": stub.url()}),
    );
    let message = message_for("discord", CHANNEL, json!({"text": "hi"}));

    stub.push(
        Reply::json(
            429,
            json!({"message": "You are being rate limited.", "retry_after": 2.5, "global": false}),
        )
        .with_header("retry-after", "3")
        .with_header("x-ratelimit-scope", "user"),
    );
    assert_eq!(
        connector.send(&message, &credential).await.unwrap_err(),
        ProviderError::Throttled {
            message: "Discord 429: You are being rate limited.".into(),
            retry_after: Some(Duration::from_millis(2500)),
        }
    );
    // without a body, the header says how long
    stub.push(Reply {
        status: 429,
        headers: vec![("retry-after".into(), "4".into())],
        body: String::new(),
    });
    assert!(matches!(
        connector.send(&message, &credential).await.unwrap_err(),
        ProviderError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(4)
    ));
    let cases = [
        (401, json!({"message": "401: Unauthorized", "code": 0}), "credential"),
        (403, json!({"message": "Missing Access", "code": 50001}), "permanent"),
        (403, json!({"message": "Missing Permissions", "code": 50013}), "permanent"),
        (403, json!({"message": "Cannot send messages to this user", "code": 50007}), "permanent"),
        (404, json!({"message": "Unknown Channel", "code": 10003}), "permanent"),
        (
            400,
            json!({"message": "Invalid Form Body", "code": 50035,
            "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}),
            "permanent",
        ),
        (500, json!({"message": "500: Internal Server Error", "code": 0}), "retryable"),
        (502, json!({"message": "502: Bad Gateway", "code": 0}), "retryable"),
    ];
    for (status, body, kind) in cases {
        stub.push(Reply::json(status, body.clone()));
        let error = connector.send(&message, &credential).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{status} {body} -> {error}");
        assert!(error.to_string().starts_with(&format!("Discord {status}")), "{error}");
    }
    // a DM to a user who cannot be reached fails while opening the channel
    stub.push(Reply::json(
        400,
        json!({"message": "Cannot send messages to this user", "code": 50007}),
    ));
    let dm = message_for("discord", &format!("user:{USER}"), json!({"text": "hi"}));
    assert_eq!(connector.send(&dm, &credential).await.unwrap_err().kind(), "permanent");
    let requests = stub.requests();
    assert_eq!(requests.last().unwrap().path, "/api/v10/users/@me/channels");
    assert!(requests.iter().all(|r| r.header("authorization") == Some(&format!("Bot {TOKEN}"))));

    // overrides off: refused without a call
    let before = stub.requests().len();
    let strict = Discord::new(false).unwrap();
    assert_eq!(strict.send(&message, &credential).await.unwrap_err().kind(), "credential");
    assert_eq!(stub.requests().len(), before);
    stub.stop().await;
}
