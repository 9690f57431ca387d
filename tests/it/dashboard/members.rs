//! The members page (roles, removal, the last-owner rule, invitations made and canceled), the
//! page an invitation's link opens, signing in on the way there (`next`), and changing one's
//! password.

use reqwest::header;
use serde_json::json;

use super::{browser_like, get_page, origin, post_as, post_form, rows};
use crate::harness::{Account, PASSWORD, TestApp};

/// The member id of `account` in `owner`'s organization, through the API.
async fn member_id(app: &TestApp, owner: &Account, account: &Account) -> String {
    let (status, members) =
        app.get_as(&owner.token, &format!("/v1/organizations/{}/members", owner.org_id)).await;
    assert_eq!(status, 200, "{members}");
    members["data"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["userId"] == account.user_id.as_str()))
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("{} is not a member: {members}", account.email))
        .to_owned()
}

/// The role `account` has in `owner`'s organization, through the API; None once removed.
async fn role_of(app: &TestApp, owner: &Account, account: &Account) -> Option<String> {
    let (_, members) =
        app.get_as(&owner.token, &format!("/v1/organizations/{}/members", owner.org_id)).await;
    members["data"]
        .as_array()?
        .iter()
        .find(|m| m["userId"] == account.user_id.as_str())
        .and_then(|m| m["role"].as_str())
        .map(str::to_owned)
}

/// The pending invitations of `owner`'s organization (id, email), through the API.
async fn pending_invitations(app: &TestApp, owner: &Account) -> Vec<(String, String)> {
    let (status, list) =
        app.get_as(&owner.token, &format!("/v1/organizations/{}/invitations", owner.org_id)).await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|i| i["status"] == "pending")
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i["email"].as_str().unwrap().to_owned()))
        .collect()
}

/// The text of the element with `id` opening as `<tag id="id">`.
fn element_text(html: &str, tag: &str, id: &str) -> String {
    html.split(&format!(r#"<{tag} id="{id}">"#))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{tag}>")).next())
        .unwrap_or_else(|| panic!("no {tag}#{id} in {html}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_made_on_the_page_is_accepted_through_its_link() {
    let app = TestApp::spawn().await;
    // the organization's name and the guest's are hostile
    let owner = app.sign_up("Owner").await;
    let rename = json!({"name": r#"<script>alert("o")</script> & Co"#});
    let org = format!("/v1/organizations/{}", owner.org_id);
    assert_eq!(app.patch_as(&owner.token, &org, rename).await.0, 200);
    let org_name = "&lt;script&gt;alert(&quot;o&quot;)&lt;/script&gt; &amp; Co";
    let guest = app.sign_up("Guest").await;
    app.sql(&format!(
        r#"UPDATE users SET name = 'Guest <img src=x onerror="alert(1)">' WHERE id = '{}'"#,
        guest.user_id
    ))
    .await;

    let (_, html) = get_page(&app, &owner.token, "/members").await;
    assert!(html.contains(r#"action="/members/invitations""#), "an invite form: {html}");
    assert!(html.contains("No pending invitation. Invite someone above"), "{html}");

    let form = [("email", guest.email.as_str()), ("role", "admin")];
    let invited = post_as(&app, &owner.token, "/members/invitations", &form).await;
    assert_eq!(invited.status(), 201);
    let html = invited.text().await.unwrap();
    let link = element_text(&html, "code", "invite-link");
    let path = link.strip_prefix(&origin(&app)).expect("a link to this site").to_owned();
    assert!(path.starts_with("/invitations/"), "{link}");
    let pending = rows(&html, "invitations");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!((pending[0][0].as_str(), pending[0][1].as_str()), (guest.email.as_str(), "admin"));
    // shown once: the list afterwards has no link
    let (_, listed) = get_page(&app, &owner.token, "/members").await;
    assert!(!listed.contains(&path) && !listed.contains("invite-link"), "{listed}");

    // not signed in: to sign in, with the way back
    let browser = browser_like();
    let away = browser.get(app.url(&path)).send().await.unwrap();
    assert_eq!(away.status(), 303);
    let sign_in = away.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>();
    assert_eq!(sign_in, format!("/sign-in?next={encoded}"));
    let form_page = browser.get(app.url(&sign_in)).send().await.unwrap().text().await.unwrap();
    assert!(form_page.contains(&format!(r#"name="next" value="{path}""#)), "{form_page}");
    assert!(form_page.contains(&format!(r#"href="/sign-up?next={encoded}""#)), "{form_page}");
    let credentials = [("email", guest.email.as_str()), ("password", PASSWORD), ("next", &path)];
    let back = post_form(&browser, &app, "/sign-in", &credentials, Some(&origin(&app))).await;
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()[header::LOCATION].to_str().unwrap(), path);

    // the page names the organization and the role, escaped
    let offer = browser.get(app.url(&path)).send().await.unwrap();
    assert_eq!(offer.status(), 200);
    let html = offer.text().await.unwrap();
    assert!(html.contains(&format!("Join {org_name}")), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("<strong>admin</strong>"), "{html}");
    assert!(html.contains(&format!(r#"action="{path}/accept""#)), "{html}");

    let accepted =
        post_form(&browser, &app, &format!("{path}/accept"), &[], Some(&origin(&app))).await;
    assert_eq!(accepted.status(), 303);
    assert_eq!(accepted.headers()[header::LOCATION], "/");
    // they see the organization they joined, as an admin
    let members = browser.get(app.url("/members")).send().await.unwrap();
    assert_eq!(members.status(), 200);
    let html = members.text().await.unwrap();
    assert!(html.contains(&format!("{org_name} · ")), "the organization in the header: {html}");
    let people = rows(&html, "members");
    assert_eq!(people.len(), 2, "{people:?}");
    let me = people.iter().find(|row| row[0].ends_with("(you)")).expect("the guest");
    assert_eq!(me[0], "Guest &lt;img src=x onerror=&quot;alert(1)&quot;&gt; (you)");
    assert_eq!(me[2], "admin");
    assert!(!html.contains("<img"), "{html}");
    assert_eq!(role_of(&app, &owner, &guest).await.as_deref(), Some("admin"));

    // the link once used: refused with the API's status and why
    let again =
        post_form(&browser, &app, &format!("{path}/accept"), &[], Some(&origin(&app))).await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("the invitation was already accepted"));
    // someone else's link, or none
    let (status, html) = get_page(&app, &owner.token, "/invitations/not-a-token").await;
    assert_eq!(status, 404, "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_for_another_address_is_not_accepted_on_the_page() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let other = app.sign_up("Other").await;
    let form = [("email", "someone.else@example.com"), ("role", "member")];
    let invited = post_as(&app, &owner.token, "/members/invitations", &form).await;
    assert_eq!(invited.status(), 201);
    let link = element_text(&invited.text().await.unwrap(), "code", "invite-link");
    let path = link.strip_prefix(&origin(&app)).expect("a local link").to_owned();

    let (status, html) = get_page(&app, &other.token, &path).await;
    assert_eq!(status, 403);
    assert!(html.contains("sent to another email address"), "{html}");
    assert!(!html.contains("Owner&#39;s Organization") && !html.contains("Owner's Organization"));
    let refused = post_as(&app, &other.token, &format!("{path}/accept"), &[]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(pending_invitations(&app, &owner).await.len(), 1, "still pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_change_members_are_removed_and_the_last_owner_rule_is_explained() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let admin = app.add_member(&owner, "Admin", "admin").await;
    let member = app.add_member(&owner, "Member", "member").await;
    let (owner_mid, admin_mid, member_mid) = (
        member_id(&app, &owner, &owner).await,
        member_id(&app, &owner, &admin).await,
        member_id(&app, &owner, &member).await,
    );

    // the owner has the controls on every row, owner among the roles
    let (_, html) = get_page(&app, &owner.token, "/members").await;
    for mid in [&owner_mid, &admin_mid, &member_mid] {
        assert!(html.contains(&format!(r#"action="/members/{mid}/role""#)), "{mid}: {html}");
        assert!(html.contains(&format!(r#"action="/members/{mid}/remove""#)), "{mid}: {html}");
    }
    assert!(html.contains(r#"<option value="owner""#), "{html}");

    // a role changed
    let changed =
        post_as(&app, &owner.token, &format!("/members/{member_mid}/role"), &[("role", "admin")])
            .await;
    assert_eq!(changed.status(), 303);
    assert_eq!(changed.headers()[header::LOCATION], "/members");
    assert_eq!(role_of(&app, &owner, &member).await.as_deref(), Some("admin"));
    let (_, html) = get_page(&app, &owner.token, "/members").await;
    let row = rows(&html, "members").into_iter().find(|r| r[0] == "Member").expect("a row");
    assert_eq!(row[2], "admin");
    // a role that is none: named
    let bad =
        post_as(&app, &owner.token, &format!("/members/{member_mid}/role"), &[("role", "king")])
            .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("role: must be owner, admin or member"));

    // the last owner can be neither demoted nor removed: refused, with what to do instead
    let explanation = "make someone else owner first";
    let demoted =
        post_as(&app, &owner.token, &format!("/members/{owner_mid}/role"), &[("role", "admin")])
            .await;
    assert_eq!(demoted.status(), 409);
    let html = demoted.text().await.unwrap();
    assert!(html.contains("an organization must keep at least one owner"), "{html}");
    assert!(html.contains(explanation), "{html}");
    let left = post_as(&app, &owner.token, &format!("/members/{owner_mid}/remove"), &[]).await;
    assert_eq!(left.status(), 409);
    assert!(left.text().await.unwrap().contains(explanation));
    assert_eq!(role_of(&app, &owner, &owner).await.as_deref(), Some("owner"));

    // an admin manages the others, not the owner, and cannot make owners
    let (_, html) = get_page(&app, &admin.token, "/members").await;
    assert!(!html.contains(&format!(r#"action="/members/{owner_mid}/role""#)), "{html}");
    assert!(html.contains(&format!(r#"action="/members/{member_mid}/role""#)), "{html}");
    assert!(!html.contains(r#"<option value="owner""#), "{html}");
    let refused =
        post_as(&app, &admin.token, &format!("/members/{owner_mid}/role"), &[("role", "member")])
            .await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("this needs the owner role"));

    // a member removed: gone from the list and from the organization
    let removed = post_as(&app, &owner.token, &format!("/members/{member_mid}/remove"), &[]).await;
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()[header::LOCATION], "/members");
    assert_eq!(role_of(&app, &owner, &member).await, None);
    let (_, html) = get_page(&app, &owner.token, "/members").await;
    assert_eq!(rows(&html, "members").len(), 2);
    let (status, _) =
        app.get_as(&member.token, &format!("/v1/organizations/{}", owner.org_id)).await;
    assert_eq!(status, 404);

    // an admin who leaves goes on to an organization of their own
    let gone = post_as(&app, &admin.token, &format!("/members/{admin_mid}/remove"), &[]).await;
    assert_eq!(gone.status(), 303);
    assert_eq!(gone.headers()[header::LOCATION], "/");
    let (status, html) = get_page(&app, &admin.token, "/members").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html, "members").len(), 1, "their own organization: {html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_canceled_and_other_tenants_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let hostile = r#""<script>alert(1)</script>"@example.com"#;
    let invited = post_as(
        &app,
        &owner.token,
        "/members/invitations",
        &[("email", hostile), ("role", "member")],
    )
    .await;
    assert_eq!(invited.status(), 201);
    let html = invited.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;@example.com"));
    // the same address again: the API's conflict, on the page
    let twice = post_as(
        &app,
        &owner.token,
        "/members/invitations",
        &[("email", hostile), ("role", "member")],
    )
    .await;
    assert_eq!(twice.status(), 409);
    assert!(twice.text().await.unwrap().contains("a pending invitation for this email exists"));
    let bad =
        post_as(&app, &owner.token, "/members/invitations", &[("email", "nope"), ("role", "")])
            .await;
    assert_eq!(bad.status(), 400);
    let html = bad.text().await.unwrap();
    assert!(html.contains("email: is not a valid email address") && html.contains("role: "));

    let pending = pending_invitations(&app, &owner).await;
    assert_eq!(pending.len(), 1);
    let invitation_id = pending[0].0.clone();

    // another tenant's invitation and member: 404, and they stay
    let stranger = app.sign_up("Stranger").await;
    let stranger_mid = member_id(&app, &stranger, &stranger).await;
    let theirs = post_as(
        &app,
        &stranger.token,
        "/members/invitations",
        &[("email", "friend@example.com"), ("role", "member")],
    )
    .await;
    assert_eq!(theirs.status(), 201);
    let their_invitation = pending_invitations(&app, &stranger).await[0].0.clone();
    let attempts = [
        format!("/members/invitations/{their_invitation}/cancel"),
        format!("/members/{stranger_mid}/remove"),
        format!("/members/{stranger_mid}/role"),
    ];
    for path in &attempts {
        let refused = post_as(&app, &owner.token, path, &[("role", "member")]).await;
        assert_eq!(refused.status(), 404, "{path}");
    }
    assert_eq!(pending_invitations(&app, &stranger).await.len(), 1);
    assert_eq!(role_of(&app, &stranger, &stranger).await.as_deref(), Some("owner"));

    // canceled: gone from the page; canceling again is the API's conflict
    let cancel = format!("/members/invitations/{invitation_id}/cancel");
    let canceled = post_as(&app, &owner.token, &cancel, &[]).await;
    assert_eq!(canceled.status(), 303);
    let (_, html) = get_page(&app, &owner.token, "/members").await;
    assert!(html.contains("No pending invitation."), "{html}");
    assert!(pending_invitations(&app, &owner).await.is_empty());
    let again = post_as(&app, &owner.token, &cancel, &[]).await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("no longer pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_the_people_without_any_control_and_cannot_write() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let member = app.add_member(&owner, "Member", "member").await;
    let admin = app.add_member(&owner, "Admin", "admin").await;
    let stranger = app.sign_up("Stranger").await;
    let (status, _) = app
        .post_as(
            &owner.token,
            &format!("/v1/organizations/{}/invitations", owner.org_id),
            json!({"email": "guest@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(status, 201);

    let (status, html) = get_page(&app, &member.token, "/members").await;
    assert_eq!(status, 200);
    let people = rows(&html, "members");
    assert_eq!(people.len(), 3, "{people:?}");
    assert!(people.iter().any(|row| row[0] == "Owner" && row[2] == "owner"));
    assert!(people.iter().any(|row| row[0] == "Member (you)" && row[2] == "member"));
    assert!(!html.contains("Stranger"), "{html}");
    assert_eq!(rows(&html, "invitations").len(), 1);
    assert!(!html.contains(r#"method="post" action="/members"#), "no control: {html}");
    assert!(!html.contains("<select"), "{html}");

    // the server refuses the writes anyway
    let admin_mid = member_id(&app, &owner, &admin).await;
    let invitation_id = pending_invitations(&app, &owner).await[0].0.clone();
    let writes: [(String, &[(&str, &str)]); 4] = [
        ("/members/invitations".into(), &[("email", "x@example.com"), ("role", "member")]),
        (format!("/members/invitations/{invitation_id}/cancel"), &[]),
        (format!("/members/{admin_mid}/role"), &[("role", "member")]),
        (format!("/members/{admin_mid}/remove"), &[]),
    ];
    for (path, form) in &writes {
        let refused = post_as(&app, &member.token, path, form).await;
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.text().await.unwrap().contains("this needs the admin role"), "{path}");
    }
    assert_eq!(pending_invitations(&app, &owner).await.len(), 1);
    assert_eq!(role_of(&app, &owner, &admin).await.as_deref(), Some("admin"));

    let (_, theirs) = get_page(&app, &stranger.token, "/members").await;
    assert_eq!(rows(&theirs, "members").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_changes_their_password_and_only_the_new_one_signs_in() {
    let app = TestApp::spawn().await;
    let account = app.sign_up("Owner").await;
    let sign_in = |password: &str| json!({"email": account.email, "password": password});
    let (status, other) =
        app.call(reqwest::Method::POST, "/v1/auth/sign-in", None, Some(sign_in(PASSWORD))).await;
    assert_eq!(status, 200);
    let other_session = other["token"].as_str().expect("a token").to_owned();

    let (_, sessions) = get_page(&app, &account.token, "/account/sessions").await;
    assert!(sessions.contains(r#"href="/account/password""#), "{sessions}");
    let (status, html) = get_page(&app, &account.token, "/account/password").await;
    assert_eq!(status, 200);
    for field in [r#"name="current_password""#, r#"name="new_password""#] {
        assert!(html.contains(field), "{field}: {html}");
    }

    // a wrong current password, a new one too short: named, nothing changes
    let new = "a much better passphrase";
    let wrong = [("current_password", "not my password"), ("new_password", new)];
    let refused = post_as(&app, &account.token, "/account/password", &wrong).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("current_password: is not your password"));
    let short = [("current_password", PASSWORD), ("new_password", "short")];
    let refused = post_as(&app, &account.token, "/account/password", &short).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("new_password: must be at least 10 characters"));
    assert_eq!(app.get_as(&other_session, "/v1/auth/session").await.0, 200);

    // changed: the other session ends, this one stays
    let right = [("current_password", PASSWORD), ("new_password", new)];
    let changed = post_as(&app, &account.token, "/account/password", &right).await;
    assert_eq!(changed.status(), 303);
    let location = changed.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let (_, html) = get_page(&app, &account.token, &location).await;
    assert!(html.contains("Your password was changed"), "{html}");
    assert_eq!(app.get_as(&other_session, "/v1/auth/session").await.0, 401);
    assert_eq!(app.get_as(&account.token, "/v1/auth/session").await.0, 200);

    // only the new password signs in
    let old =
        app.call(reqwest::Method::POST, "/v1/auth/sign-in", None, Some(sign_in(PASSWORD))).await;
    assert_eq!(old.0, 401);
    let fresh = app.call(reqwest::Method::POST, "/v1/auth/sign-in", None, Some(sign_in(new))).await;
    assert_eq!(fresh.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_returns_only_to_a_page_of_this_site() {
    let app = TestApp::spawn().await;
    let account = app.sign_up("Owner").await;
    for (next, expected) in [
        ("/members", "/members"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("", "/"),
    ] {
        let form = [("email", account.email.as_str()), ("password", PASSWORD), ("next", next)];
        let signed_in =
            post_form(&browser_like(), &app, "/sign-in", &form, Some(&origin(&app))).await;
        assert_eq!(signed_in.status(), 303, "{next}");
        assert_eq!(signed_in.headers()[header::LOCATION], expected, "{next}");
    }
    // nor does the form carry one along
    let page = app.get("/sign-in?next=%2F%2Fevil.example").await.text().await.unwrap();
    assert!(!page.contains(r#"name="next""#) && !page.contains("evil.example"), "{page}");
    let page = app.get("/sign-up?next=%2F%2Fevil.example").await.text().await.unwrap();
    assert!(!page.contains(r#"name="next""#) && !page.contains("evil.example"), "{page}");
}
