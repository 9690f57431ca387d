//! Organizations, members and invitations, with the contract's role rules.

use crate::harness::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_crud() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("Ada").await;
    let (status, org) =
        app.post_as(&ada.token, "/v1/organizations", json!({"name": "Analytical Engines"})).await;
    assert_eq!(status, 201, "{org}");
    assert_eq!(org["slug"], "analytical-engines");
    assert_eq!(org["role"], "owner");
    let id = org["id"].as_str().unwrap();
    assert!(id.starts_with("org_"));

    // a new organization starts with a default project, reachable through the header
    let response = app
        .client
        .get(app.url("/v1/projects"))
        .bearer_auth(&ada.token)
        .header("Relayit-Organization", "analytical-engines")
        .send()
        .await
        .unwrap();
    let projects: serde_json::Value = response.json().await.unwrap();
    assert_eq!(projects["data"][0]["slug"], "default");
    assert_eq!(projects["data"][0]["organizationId"], id);

    let (status, body) = app
        .post_as(
            &ada.token,
            "/v1/organizations",
            json!({"name": "X", "slug": "analytical-engines"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) =
        app.post_as(&ada.token, "/v1/organizations", json!({"name": "", "slug": "Bad Slug"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);

    let (status, list) = app.get_as(&ada.token, "/v1/organizations?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], id, "newest first");
    let cursor = list["nextCursor"].as_str().unwrap();
    let (_, next) =
        app.get_as(&ada.token, &format!("/v1/organizations?limit=1&cursor={cursor}")).await;
    assert_eq!(next["data"][0]["id"], ada.org_id.as_str());
    assert!(next["nextCursor"].is_null());

    let (status, renamed) = app
        .patch_as(
            &ada.token,
            &format!("/v1/organizations/{id}"),
            json!({"name": "Engines", "slug": "engines"}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["slug"], "engines");
    let (status, by_slug) = app.get_as(&ada.token, "/v1/organizations/engines").await;
    assert_eq!(status, 200);
    assert_eq!(by_slug["id"], id);

    let (status, _) = app.delete_as(&ada.token, &format!("/v1/organizations/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(&ada.token, &format!("/v1/organizations/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_members_may_do() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let admin = app.add_member(&owner, "Admin", "admin").await;
    let member = app.add_member(&owner, "Member", "member").await;
    let org = format!("/v1/organizations/{}", owner.org_id);

    // everyone reads
    for who in [&owner, &admin, &member] {
        let (status, members) = app.get_as(&who.token, &format!("{org}/members")).await;
        assert_eq!(status, 200);
        assert_eq!(members["data"].as_array().unwrap().len(), 3);
    }
    let (_, members) = app.get_as(&owner.token, &format!("{org}/members")).await;
    let member_id = |account: &crate::harness::Account| {
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["userId"] == account.user_id.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (owner_mid, admin_mid, member_mid) =
        (member_id(&owner), member_id(&admin), member_id(&member));

    // members write nothing
    assert_eq!(app.patch_as(&member.token, &org, json!({"name": "Mine"})).await.0, 403);
    assert_eq!(
        app.patch_as(
            &member.token,
            &format!("{org}/members/{admin_mid}"),
            json!({"role": "member"})
        )
        .await
        .0,
        403
    );
    assert_eq!(app.post_as(&member.token, "/v1/projects", json!({"name": "P"})).await.0, 403);
    assert_eq!(
        app.post_as(
            &member.token,
            &format!("{org}/invitations"),
            json!({"email": "x@example.com", "role": "member"})
        )
        .await
        .0,
        403
    );
    // admins manage non-owners, but not owners, and cannot make owners or delete the org
    assert_eq!(
        app.patch_as(
            &admin.token,
            &format!("{org}/members/{member_mid}"),
            json!({"role": "admin"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        app.patch_as(
            &admin.token,
            &format!("{org}/members/{member_mid}"),
            json!({"role": "member"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        app.patch_as(
            &admin.token,
            &format!("{org}/members/{member_mid}"),
            json!({"role": "owner"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.patch_as(
            &admin.token,
            &format!("{org}/members/{owner_mid}"),
            json!({"role": "member"})
        )
        .await
        .0,
        403
    );
    assert_eq!(app.delete_as(&admin.token, &format!("{org}/members/{owner_mid}")).await.0, 403);
    assert_eq!(app.delete_as(&admin.token, &org).await.0, 403);
    assert_eq!(app.patch_as(&admin.token, &org, json!({"name": "Renamed"})).await.0, 200);
    let (status, body) = app
        .patch_as(&admin.token, &format!("{org}/members/{member_mid}"), json!({"role": "god"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "role");

    // the last owner can be neither demoted nor removed, not even by themselves
    let (status, body) = app
        .patch_as(&owner.token, &format!("{org}/members/{owner_mid}"), json!({"role": "admin"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(app.delete_as(&owner.token, &format!("{org}/members/{owner_mid}")).await.0, 409);
    // with a second owner, the first may step down
    assert_eq!(
        app.patch_as(&owner.token, &format!("{org}/members/{admin_mid}"), json!({"role": "owner"}))
            .await
            .0,
        200
    );
    let (status, demoted) = app
        .patch_as(&owner.token, &format!("{org}/members/{owner_mid}"), json!({"role": "admin"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(demoted["role"], "admin");

    // a member may leave; an unknown member id is 404
    assert_eq!(app.delete_as(&member.token, &format!("{org}/members/{member_mid}")).await.0, 204);
    assert_eq!(app.get_as(&member.token, &org).await.0, 404);
    // the organization they left was their session's: requests go to their own one now
    let (status, projects) = app.get_as(&member.token, "/v1/projects").await;
    assert_eq!(status, 200, "{projects}");
    let theirs = projects["data"][0]["organizationId"].as_str().expect("a project of theirs");
    assert_ne!(theirs, owner.org_id);
    assert_eq!(app.delete_as(&admin.token, &format!("{org}/members/mem_nope")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_follow_their_life_cycle() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let guest = app.sign_up("Guest").await;
    let stranger = app.sign_up("Stranger").await;
    let invitations = format!("/v1/organizations/{}/invitations", owner.org_id);

    let (status, invite) = app
        .post_as(
            &owner.token,
            &invitations,
            json!({"email": guest.email.to_uppercase(), "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    assert_eq!(invite["status"], "pending");
    assert_eq!(invite["email"], guest.email.as_str());
    let token = invite["token"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> =
        invite["expiresAt"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "7 days: {days}h");

    // one pending invitation per address; lists hide tokens
    assert_eq!(
        app.post_as(&owner.token, &invitations, json!({"email": guest.email, "role": "member"}))
            .await
            .0,
        409
    );
    let (_, list) = app.get_as(&owner.token, &invitations).await;
    assert!(list["data"][0].get("token").is_none());
    // validation
    let (status, body) =
        app.post_as(&owner.token, &invitations, json!({"email": "nope", "role": "king"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);
    // existing members are not invited again
    assert_eq!(
        app.post_as(&owner.token, &invitations, json!({"email": owner.email, "role": "member"}))
            .await
            .0,
        409
    );

    let accept = |token: String, who: String| {
        let app = &app;
        async move {
            app.call(Method::POST, &format!("/v1/invitations/{token}/accept"), Some(&who), None)
                .await
        }
    };
    // only the invited email may accept; unknown tokens are 404
    assert_eq!(accept(token.clone(), stranger.token.clone()).await.0, 403);
    assert_eq!(accept("nope".into(), guest.token.clone()).await.0, 404);
    let (status, membership) = accept(token.clone(), guest.token.clone()).await;
    assert_eq!(status, 200, "{membership}");
    assert_eq!(membership["role"], "admin");
    assert_eq!(membership["organizationId"], owner.org_id.as_str());
    assert_eq!(accept(token, guest.token.clone()).await.0, 409);

    // canceled: 409 on accept; expired: 410
    let (_, canceled) = app
        .post_as(&owner.token, &invitations, json!({"email": stranger.email, "role": "member"}))
        .await;
    let canceled_id = canceled["id"].as_str().unwrap();
    assert_eq!(app.delete_as(&owner.token, &format!("{invitations}/{canceled_id}")).await.0, 204);
    assert_eq!(app.delete_as(&owner.token, &format!("{invitations}/{canceled_id}")).await.0, 409);
    assert_eq!(
        accept(canceled["token"].as_str().unwrap().into(), stranger.token.clone()).await.0,
        409
    );

    let (_, expiring) = app
        .post_as(&owner.token, &invitations, json!({"email": stranger.email, "role": "member"}))
        .await;
    app.sql(&format!(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = '{}'",
        expiring["id"].as_str().unwrap()
    ))
    .await;
    let (status, body) =
        accept(expiring["token"].as_str().unwrap().into(), stranger.token.clone()).await;
    assert_eq!(status, 410, "{body}");
    let (_, list) = app.get_as(&owner.token, &invitations).await;
    assert_eq!(list["data"][0]["status"], "expired");

    // only owners invite owners
    let admin = app.get_as(&guest.token, "/v1/auth/session").await.1;
    assert!(admin["organizations"].as_array().unwrap().iter().any(|o| o["role"] == "admin"));
    let as_admin = app
        .client
        .post(app.url(&invitations))
        .bearer_auth(&guest.token)
        .json(&json!({"email": "boss@example.com", "role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 403);
}
