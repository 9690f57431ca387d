//! Tenant isolation, route by route: another organization's user or API key gets 404 for every
//! id of this organization (never 403, never the data), and a member gets 403 on every write
//! that needs an admin.

use crate::harness::TestApp;
use crate::harness::sandbox_provider;
use reqwest::Method;
use serde_json::{Value, json};

struct Tenant {
    org: String,
    project: String,
    member_id: String,
    invitation: String,
    key_id: String,
    provider: String,
    webhook: String,
    delivery: String,
    message: String,
}

async fn arrange(app: &TestApp, owner: &crate::harness::Account) -> Tenant {
    let (_, invitation) = app
        .post_as(
            &owner.token,
            &format!("/v1/organizations/{}/invitations", owner.org_id),
            json!({"email": "someone@example.com", "role": "member"}),
        )
        .await;
    let (_, key) = app.post_as(&owner.token, "/v1/api-keys", json!({"name": "k"})).await;
    let (_, members) =
        app.get_as(&owner.token, &format!("/v1/organizations/{}/members", owner.org_id)).await;
    let (status, provider) =
        app.post_as(&owner.token, "/v1/providers", sandbox_provider("Sandbox", "email")).await;
    assert_eq!(status, 201, "{provider}");
    let (status, webhook) = app
        .post_as(
            &owner.token,
            &format!("/v1/projects/{}/webhooks", owner.project_id),
            json!({"url": "https://hooks.example.com/relayit", "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    let sender = app.create_api_key(owner, &["send"], Some(&owner.project_id)).await;
    let (status, message) = app
        .post_as(
            &sender,
            "/v1/send",
            json!({"channel": "sms", "to": "+14155550123", "content": {"text": "hi"}}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    // an attempt in the endpoint's delivery log (no receiver answers hooks.example.com here)
    let delivery = crate::harness::unique("whd_isolation");
    app.sql(&format!(
        "INSERT INTO webhook_deliveries (id, organization_id, webhook_endpoint_id, message_id, \
             event_id, event_type, attempt, succeeded, error) \
         SELECT '{delivery}', m.organization_id, '{}', m.id, e.id, 'message.received', 1, false, \
             'arranged' \
         FROM messages m JOIN message_events e ON e.message_id = m.id WHERE m.id = '{}' LIMIT 1",
        webhook["id"].as_str().unwrap(),
        message["id"].as_str().unwrap(),
    ))
    .await;
    Tenant {
        org: owner.org_id.clone(),
        project: owner.project_id.clone(),
        member_id: members["data"][0]["id"].as_str().unwrap().to_owned(),
        invitation: invitation["id"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        provider: provider["id"].as_str().unwrap().to_owned(),
        webhook: webhook["id"].as_str().unwrap().to_owned(),
        delivery,
        message: message["id"].as_str().unwrap().to_owned(),
    }
}

/// Every route that names one of the tenant's resources, with a body that would be valid.
fn routes(t: &Tenant) -> Vec<(Method, String, Option<Value>)> {
    let org = format!("/v1/organizations/{}", t.org);
    let project = format!("/v1/projects/{}", t.project);
    vec![
        (Method::GET, org.clone(), None),
        (Method::PATCH, org.clone(), Some(json!({"name": "Taken over"}))),
        (Method::DELETE, org.clone(), None),
        (Method::GET, format!("{org}/members"), None),
        (Method::PATCH, format!("{org}/members/{}", t.member_id), Some(json!({"role": "member"}))),
        (Method::DELETE, format!("{org}/members/{}", t.member_id), None),
        (Method::GET, format!("{org}/invitations"), None),
        (
            Method::POST,
            format!("{org}/invitations"),
            Some(json!({"email": "spy@example.com", "role": "admin"})),
        ),
        (Method::DELETE, format!("{org}/invitations/{}", t.invitation), None),
        (Method::GET, project.clone(), None),
        (Method::PATCH, project.clone(), Some(json!({"name": "Taken over"}))),
        (Method::DELETE, project.clone(), None),
        (Method::DELETE, format!("/v1/api-keys/{}", t.key_id), None),
        (Method::POST, "/v1/api-keys".into(), Some(json!({"name": "k", "projectId": t.project}))),
        (Method::GET, format!("/v1/providers/{}", t.provider), None),
        (Method::PATCH, format!("/v1/providers/{}", t.provider), Some(json!({"priority": 9}))),
        (Method::DELETE, format!("/v1/providers/{}", t.provider), None),
        (Method::POST, format!("/v1/providers/{}/verify", t.provider), None),
        (
            Method::POST,
            "/v1/providers".into(),
            Some(
                json!({"name": "S", "channel": "sms", "providerType": "sandbox", "credentials": {}, "projectId": t.project}),
            ),
        ),
        (Method::GET, format!("{project}/webhooks"), None),
        (
            Method::POST,
            format!("{project}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/x", "eventTypes": ["message.failed"]})),
        ),
        (Method::GET, format!("{project}/webhooks/{}", t.webhook), None),
        (
            Method::PATCH,
            format!("{project}/webhooks/{}", t.webhook),
            Some(json!({"isActive": false})),
        ),
        (Method::DELETE, format!("{project}/webhooks/{}", t.webhook), None),
        (Method::POST, format!("{project}/webhooks/{}/rotate-secret", t.webhook), None),
        (Method::GET, format!("{project}/webhooks/{}/deliveries", t.webhook), None),
        (
            Method::POST,
            format!("{project}/webhooks/{}/deliveries/{}/retry", t.webhook, t.delivery),
            None,
        ),
        (
            Method::POST,
            format!("{project}/webhooks/{}/replay", t.webhook),
            Some(json!({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"})),
        ),
        (Method::GET, format!("/v1/messages/{}", t.message), None),
        (Method::GET, format!("{project}/messages"), None),
        (Method::POST, format!("/v1/messages/{}/retry", t.message), None),
        (Method::POST, format!("/v1/messages/{}/cancel", t.message), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_gets_404_on_every_route() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let tenant = arrange(&app, &alice).await;
    let mallory = app.sign_up("Mallory").await;
    let mallory_key = app.create_api_key(&mallory, &["send", "read", "manage"], None).await;

    for token in [&mallory.token, &mallory_key] {
        for (method, path, body) in routes(&tenant) {
            let (status, answer) = app.call(method.clone(), &path, Some(token), body).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found");
        }
        // naming the organization in the header does not help either
        let response = app
            .client
            .get(app.url("/v1/projects"))
            .bearer_auth(token)
            .header("Relayit-Organization", &tenant.org)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let (status, _) = app
        .post_as(
            &mallory.token,
            "/v1/auth/active-organization",
            json!({"organizationId": tenant.org}),
        )
        .await;
    assert_eq!(status, 404);

    // and nothing of Alice's changed
    let (_, org) = app.get_as(&alice.token, &format!("/v1/organizations/{}", tenant.org)).await;
    assert_eq!(org["name"], "Alice's Organization");
    let (_, projects) = app.get_as(&alice.token, "/v1/projects").await;
    assert_eq!(projects["data"].as_array().unwrap().len(), 1);
    let (_, keys) = app.get_as(&alice.token, "/v1/api-keys").await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 2, "the two keys arrange made");
    let (_, invitations) =
        app.get_as(&alice.token, &format!("/v1/organizations/{}/invitations", tenant.org)).await;
    assert_eq!(invitations["data"][0]["status"], "pending");
    let (_, provider) =
        app.get_as(&alice.token, &format!("/v1/providers/{}", tenant.provider)).await;
    assert_eq!(provider["priority"], 0);
    let (_, webhook) = app
        .get_as(
            &alice.token,
            &format!("/v1/projects/{}/webhooks/{}", tenant.project, tenant.webhook),
        )
        .await;
    assert_eq!(webhook["isActive"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_403_on_admin_writes() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let tenant = arrange(&app, &alice).await;
    let member = app.add_member(&alice, "Member", "member").await;
    for (method, path, body) in routes(&tenant) {
        let (status, answer) = app.call(method.clone(), &path, Some(&member.token), body).await;
        let expected = if method == Method::GET { 200 } else { 403 };
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
}
