//! API keys: shown once, stored hashed, scoped, optionally bound to a project, revoked and
//! expired at once, and their last use recorded without a write per request.

use std::time::Duration;

use crate::harness::TestApp;
use relayit::server::{Roles, Running};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_and_stored_hashed() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (status, created) = app
        .post_as(
            &owner.token,
            "/v1/api-keys",
            json!({"name": "backend", "scopes": ["send", "read", "send"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("rly_") && key.len() == 47, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["send", "read"]));
    assert!(created["projectId"].is_null());

    let (_, list) = app.get_as(&owner.token, "/v1/api-keys").await;
    let listed = &list["data"][0];
    assert_eq!(listed["id"], created["id"]);
    assert!(listed.get("key").is_none());
    assert!(!list.to_string().contains(key));

    // the database holds the key's SHA-256 and nothing of the key itself
    app.sql(&format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = sha256('{key}'::bytea)) THEN
                RAISE EXCEPTION 'hash not stored'; END IF;
            IF EXISTS (SELECT 1 FROM api_keys a WHERE a::text LIKE '%{}%') THEN
                RAISE EXCEPTION 'plaintext key stored'; END IF;
         END $$",
        &key[12..]
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_validation_names_fields() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "k", "scopes": []}), "scopes"),
        (json!({"name": "k", "scopes": ["send", "root"]}), "scopes.1"),
        (json!({"name": "k", "expiresAt": "2001-01-01T00:00:00Z"}), "expiresAt"),
        (json!({"name": "k", "expiresAt": "yesterday"}), "expiresAt"),
        (json!({"name": "k", "rateLimit": 0}), "rateLimit"),
        (json!({"name": "k", "owner": true}), "owner"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post_as(&owner.token, "/v1/api-keys", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["details"][0]["field"], field, "{body}: {answer}");
    }
    let other = app.sign_up("Other").await;
    let (status, _) = app
        .post_as(&owner.token, "/v1/api-keys", json!({"name": "k", "projectId": other.project_id}))
        .await;
    assert_eq!(status, 404, "another tenant's project");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_project_binding_limit_what_a_key_reaches() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let read = app.create_api_key(&owner, &["read"], None).await;
    let send = app.create_api_key(&owner, &["send"], None).await;
    let manage = app.create_api_key(&owner, &["manage"], None).await;

    assert_eq!(app.get_as(&read, "/v1/projects").await.0, 200);
    assert_eq!(app.get_as(&send, "/v1/projects").await.0, 403);
    assert_eq!(app.post_as(&read, "/v1/projects", json!({"name": "P"})).await.0, 403);
    let (status, project) = app.post_as(&manage, "/v1/projects", json!({"name": "Second"})).await;
    assert_eq!(status, 201);
    // the X-API-Key header works too
    let response =
        app.client.get(app.url("/v1/projects")).header("x-api-key", &read).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // keys are not users: no session, no organizations of their own, no owner powers
    assert_eq!(app.get_as(&manage, "/v1/auth/session").await.0, 403);
    assert_eq!(app.delete_as(&manage, &format!("/v1/organizations/{}", owner.org_id)).await.0, 403);
    let (status, orgs) = app.get_as(&read, "/v1/organizations").await;
    assert_eq!(status, 200);
    assert_eq!(orgs["data"].as_array().unwrap().len(), 1);

    // a project-bound key sees its project only, and nothing organization-wide
    let bound = app.create_api_key(&owner, &["read", "manage"], Some(&owner.project_id)).await;
    let (_, projects) = app.get_as(&bound, "/v1/projects").await;
    let ids: Vec<&str> =
        projects["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [owner.project_id.as_str()]);
    assert_eq!(
        app.get_as(&bound, &format!("/v1/projects/{}", project["id"].as_str().unwrap())).await.0,
        404
    );
    assert_eq!(app.get_as(&bound, "/v1/api-keys").await.0, 403);
    assert_eq!(
        app.get_as(&bound, &format!("/v1/organizations/{}/members", owner.org_id)).await.0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_keys_fail_on_the_next_request() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (_, created) =
        app.post_as(&owner.token, "/v1/api-keys", json!({"name": "k", "scopes": ["read"]})).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(app.get_as(key, "/v1/projects").await.0, 200);
    let (status, _) = app
        .delete_as(&owner.token, &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(key, "/v1/projects").await.0, 401);
    assert_eq!(
        app.delete_as(&owner.token, &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
            .await
            .0,
        404
    );
    let (_, list) = app.get_as(&owner.token, "/v1/api-keys").await;
    assert!(list["data"].as_array().unwrap().is_empty());

    // an expiring key is refused from its expiry on, cached or not
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let (_, expiring) = app
        .post_as(
            &owner.token,
            "/v1/api-keys",
            json!({"name": "k", "scopes": ["read"], "expiresAt": expires_at}),
        )
        .await;
    let key = expiring["key"].as_str().unwrap();
    assert_eq!(app.get_as(key, "/v1/projects").await.0, 200);
    let hash = relayit::auth::tokens::hash(key);
    wait_until_cached(app.running(), &hash, key, &app).await;
    let wait = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(app.get_as(key, "/v1/projects").await.0, 401);
}

/// Uses `key` on `running` until its process holds it in its cache.
async fn wait_until_cached(running: &Running, hash: &[u8], key: &str, app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running.state().tenants.key(hash).is_none() {
        assert!(std::time::Instant::now() < deadline, "the key never got cached");
        let url = format!("http://{}/v1/projects", running.addr());
        let status = app.client.get(url).bearer_auth(key).send().await.unwrap().status();
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_process_at_once() {
    let app = TestApp::spawn().await;
    let peer = app.spawn_peer(Roles { api: true, worker: false, webhook: false }).await;
    let owner = app.sign_up("Owner").await;
    let (_, created) =
        app.post_as(&owner.token, "/v1/api-keys", json!({"name": "k", "scopes": ["read"]})).await;
    let key = created["key"].as_str().unwrap();
    let hash = relayit::auth::tokens::hash(key);
    // the peer serves the key from memory, without asking Postgres
    wait_until_cached(&peer, &hash, key, &app).await;

    let (status, _) = app
        .delete_as(&owner.token, &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 204);
    // the announcement travels through Redis: the peer forgets the key within moments
    wait_until_forgotten(&peer, &hash, key, &app, Duration::from_secs(2)).await;
    assert_eq!(app.get_as(key, "/v1/projects").await.0, 401);
    peer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_is_recorded_in_batches() {
    let app = TestApp::spawn_with(|c| c.auth.key_usage_flush = Duration::from_millis(100)).await;
    let owner = app.sign_up("Owner").await;
    let key = app.create_api_key(&owner, &["read"], None).await;
    let (_, list) = app.get_as(&owner.token, "/v1/api-keys").await;
    assert!(list["data"][0]["lastUsedAt"].is_null());
    let before = chrono::Utc::now();
    for _ in 0..5 {
        assert_eq!(app.get_as(&key, "/v1/projects").await.0, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.get_as(&owner.token, "/v1/api-keys").await;
        if let Some(at) = list["data"][0]["lastUsedAt"].as_str() {
            let at: chrono::DateTime<chrono::Utc> = at.parse().unwrap();
            assert!(at >= before - chrono::Duration::seconds(1));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lastUsedAt never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_whose_announcement_fails_is_announced_again() {
    // a Redis of the test's own, whose writes it can pause
    let redis = crate::harness::PrivateRedis::start(crate::harness::free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::spawn_with(|c| {
        c.redis.url = url.clone();
        // long enough that only the announcement can make the peer forget the key
        c.auth.key_cache_ttl = Duration::from_secs(120);
    })
    .await;
    let peer = app.spawn_peer(Roles { api: true, worker: false, webhook: false }).await;
    let owner = app.sign_up("Owner").await;
    let (_, created) =
        app.post_as(&owner.token, "/v1/api-keys", json!({"name": "k", "scopes": ["read"]})).await;
    let key = created["key"].as_str().unwrap();
    let hash = relayit::auth::tokens::hash(key);
    wait_until_cached(&peer, &hash, key, &app).await;

    // PUBLISH refused for a moment (the subscriptions stay): the announcement fails
    use fred::prelude::ClientLike;
    let admin = fred::clients::Client::new(
        fred::prelude::Config::from_url(&url).unwrap(),
        None,
        None,
        None,
    );
    admin.init().await.unwrap();
    let acl = |rule: &'static str| {
        let admin = admin.clone();
        async move {
            let answer: String =
                admin.custom(fred::cmd!("ACL"), vec!["SETUSER", "default", rule]).await.unwrap();
            assert_eq!(answer, "OK");
        }
    };
    acl("-publish").await;
    let (status, _) = app
        .delete_as(&owner.token, &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(peer.state().tenants.key(&hash).is_some(), "announced while PUBLISH was refused");
    acl("+publish").await;
    wait_until_forgotten(&peer, &hash, key, &app, Duration::from_secs(20)).await;
    peer.shutdown().await.unwrap();
}

/// Waits (at most `within`) until `running` no longer holds the revoked `key` in its cache, then
/// checks that it refuses the key.
async fn wait_until_forgotten(
    running: &Running,
    hash: &[u8],
    key: &str,
    app: &TestApp,
    within: Duration,
) {
    let deadline = std::time::Instant::now() + within;
    while running.state().tenants.key(hash).is_some() {
        assert!(std::time::Instant::now() < deadline, "the peer kept the revoked key");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = format!("http://{}/v1/projects", running.addr());
    let status = app.client.get(url).bearer_auth(key).send().await.unwrap().status();
    assert_eq!(status, 401);
}
