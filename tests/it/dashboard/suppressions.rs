//! The suppression list page of a project: addresses added through the form (kept in the form
//! they are compared in), listed newest first with filters, search and pages, removed after a
//! page that names them; the API's validation named on the page; what members and other
//! organizations may see and do; hostile notes escaped. The JSON API behind the same rules is
//! tested in `suppressions.rs`.

use reqwest::header;

use super::{get_page, post_as, rows};
use crate::harness::{Account, TestApp};

const HOSTILE: &str = r#"<script>alert("x")</script>'"&"#;

fn list(account: &Account) -> String {
    format!("/projects/{}/suppressions", account.project_id)
}

/// The addresses of the list on `html`, in order.
fn addresses(html: &str) -> Vec<String> {
    rows(html, "suppressions").into_iter().map(|row| row[0].clone()).collect()
}

/// The path of the first remove link on `html`.
fn remove_link(html: &str) -> String {
    html.split(r#"class="danger" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a remove link")
        .to_owned()
}

/// Lists `address` through the page's form; asserts it is taken.
async fn add(app: &TestApp, owner: &Account, channel: &str, address: &str, note: &str) {
    let form = [("channel", channel), ("address", address), ("note", note)];
    let added = post_as(app, &owner.token, &list(owner), &form).await;
    assert_eq!(added.status(), 303, "{}", added.text().await.unwrap_or_default());
    assert_eq!(added.headers()[header::LOCATION], list(owner).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_added_filtered_paged_and_removed_on_the_page() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (status, html) = get_page(&app, &owner.token, &list(&owner)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("No address is suppressed. Add one above"), "{html}");

    add(&app, &owner, "email", "Alice <Alice@Example.com>", HOSTILE).await;
    add(&app, &owner, "sms", "+14155550123", "").await;
    // a bounce the provider reported, naming its message
    app.sql(&format!(
        "INSERT INTO suppressions (id, organization_id, project_id, channel, address, reason,
                                   message_id)
         VALUES ('sup_bounced', '{}', '{}', 'email', 'bob@example.com', 'hard_bounce',
                 'msg_bounced')",
        owner.org_id, owner.project_id
    ))
    .await;

    // newest first, each with its channel, reason, message and note (escaped)
    let (_, html) = get_page(&app, &owner.token, &list(&owner)).await;
    let listed = rows(&html, "suppressions");
    assert_eq!(
        addresses(&html),
        [
            "<code>bob@example.com</code>",
            "<code>+14155550123</code>",
            "<code>alice@example.com</code>"
        ]
    );
    assert_eq!(
        listed[0][1..4],
        [
            "email".to_owned(),
            "hard_bounce".to_owned(),
            r#"<a href="/messages/msg_bounced"><code>msg_bounced</code></a>"#.to_owned()
        ]
    );
    assert_eq!((listed[2][2].as_str(), listed[2][3].as_str()), ("manual", ""));
    assert_eq!(listed[2][4], "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'&quot;&amp;");
    assert!(listed[2][5].ends_with(" UTC"), "{:?}", listed[2]);
    assert!(listed[2][6].contains("Remove…"), "{:?}", listed[2]);
    assert!(!html.contains("<script>"), "{html}");

    // the same address again, in another spelling: refused naming the entry, as typed
    let again = [("channel", "email"), ("address", "ALICE@example.com"), ("note", "")];
    let refused = post_as(&app, &owner.token, &list(&owner), &again).await;
    assert_eq!(refused.status(), 409);
    let html = refused.text().await.unwrap();
    assert!(html.contains("address: this address is suppressed already (sup_"), "{html}");
    assert!(html.contains(r#"value="ALICE@example.com""#), "{html}");
    // bad input: each field named, nothing added
    let bad = [("channel", "sms"), ("address", "not a number"), ("note", &"n".repeat(501))];
    let refused = post_as(&app, &owner.token, &list(&owner), &bad).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("<li>address: ") && html.contains("<li>note: "), "{html}");
    assert!(html.contains(r#"<option value="sms" selected>"#), "{html}");
    // text PostgreSQL cannot store: refused by its field's name, as the API does
    let nul = [("channel", "email"), ("address", "nul@example.com"), ("note", "a\0b")];
    let refused = post_as(&app, &owner.token, &list(&owner), &nul).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("note: must not contain the character U+0000"), "{html}");
    assert_eq!(app.count("suppressions").await, 3);

    // filters: reason, channel, part of the address (any case)
    let filtered = |query: &str| {
        let (app, token, path) = (&app, owner.token.clone(), format!("{}?{query}", list(&owner)));
        async move { get_page(app, &token, &path).await }
    };
    let (_, html) = filtered("reason=hard_bounce").await;
    assert_eq!(addresses(&html), ["<code>bob@example.com</code>"]);
    assert!(html.contains(r#"<option value="hard_bounce" selected>"#), "{html}");
    let (_, html) = filtered("reason=manual&channel=email").await;
    assert_eq!(addresses(&html), ["<code>alice@example.com</code>"]);
    let (_, html) = filtered("search=ALICE").await;
    assert_eq!(addresses(&html), ["<code>alice@example.com</code>"]);
    let (_, html) = filtered("reason=complaint").await;
    assert!(html.contains("No entry matches."), "{html}");
    // what the API refuses, named on the page
    let (status, html) = filtered("reason=bored&search=").await;
    assert_eq!(status, 400);
    assert!(html.contains("reason: must be hard_bounce, complaint, unsubscribe or manual"));
    let (status, html) = filtered(&format!("search={}", "x".repeat(101))).await;
    assert_eq!(status, 400);
    assert!(html.contains("search: must be at most 100 characters"), "{html}");

    // fifty a page, then the rest with the same filter
    app.sql(&format!(
        "INSERT INTO suppressions (id, organization_id, project_id, channel, address, reason,
                                   created_at)
         SELECT 'sup_old' || n, '{}', '{}', 'email', 'old' || n || '@example.com', 'complaint',
                now() - n * interval '1 minute'
         FROM generate_series(1, 55) AS n",
        owner.org_id, owner.project_id
    ))
    .await;
    let (_, html) = filtered("reason=complaint").await;
    assert_eq!(rows(&html, "suppressions").len(), 50);
    let older = html
        .split(r#"class="next" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to older entries")
        .replace("&amp;", "&");
    assert!(older.contains("reason=complaint"), "{older}");
    let (_, html) = get_page(&app, &owner.token, &format!("{}{older}", list(&owner))).await;
    assert_eq!(addresses(&html).len(), 5);
    assert_eq!(addresses(&html)[4], "<code>old55@example.com</code>");
    for query in ["cursor=nonsense", "search=a%00"] {
        let (status, html) = filtered(query).await;
        assert_eq!(status, 400, "{query}: {html}");
    }

    // removed after a page that names the address: then it may be sent to again
    let (_, html) = filtered("search=alice").await;
    let confirm = remove_link(&html);
    let (status, html) = get_page(&app, &owner.token, &confirm).await;
    assert_eq!(status, 200);
    assert!(html.contains("Remove alice@example.com"), "{html}");
    assert!(html.contains(&format!(r#"action="{confirm}""#)), "{html}");
    let removed = post_as(&app, &owner.token, &confirm, &[]).await;
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()[header::LOCATION], list(&owner).as_str());
    let (_, html) = filtered("search=alice").await;
    assert!(html.contains("No entry matches."), "{html}");
    let id = confirm.trim_end_matches("/remove").rsplit('/').next().unwrap();
    let api = format!("/v1/projects/{}/suppressions/{id}", owner.project_id);
    assert_eq!(app.get_as(&owner.token, &api).await.0, 404);
    // twice: not found
    assert_eq!(post_as(&app, &owner.token, &confirm, &[]).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_the_list_without_controls_and_other_organizations_get_404() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    add(&app, &owner, "email", "carol@example.com", "").await;
    let (_, html) = get_page(&app, &owner.token, &list(&owner)).await;
    let confirm = remove_link(&html);
    let member = app.add_member(&owner, "Member", "member").await;

    let (status, html) = get_page(&app, &member.token, &list(&owner)).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(addresses(&html), ["<code>carol@example.com</code>"]);
    // the only form a member gets posts nothing but signing out (the filters are a GET)
    assert_eq!(html.matches(r#"<form method="post""#).count(), 1, "{html}");
    assert!(!html.contains("Remove…") && !html.contains("Add an address"), "{html}");
    let (status, _) = get_page(&app, &member.token, &confirm).await;
    assert_eq!(status, 403);
    let entry = [("channel", "email"), ("address", "dave@example.com"), ("note", "")];
    let refused = post_as(&app, &member.token, &list(&owner), &entry).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("admin"));
    assert_eq!(post_as(&app, &member.token, &confirm, &[]).await.status(), 403);
    assert_eq!(app.count("suppressions").await, 1);

    // another organization: the project and the entry are not found, and nothing changes
    let stranger = app.sign_up("Stranger").await;
    let through_theirs = confirm.replace(&owner.project_id, &stranger.project_id);
    for path in [list(&owner), confirm.clone(), through_theirs.clone()] {
        let (status, _) = get_page(&app, &stranger.token, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    for path in [confirm.clone(), through_theirs] {
        assert_eq!(post_as(&app, &stranger.token, &path, &[]).await.status(), 404, "{path}");
    }
    let refused = post_as(&app, &stranger.token, &list(&owner), &entry).await;
    assert_eq!(refused.status(), 404);
    assert_eq!(app.count("suppressions").await, 1);
}
