//! The template pages of a project: a template created through the form (its draft checked
//! by the API's rules, each refused field named on the page), its draft edited, published
//! into versions, a version's page, previews with variables and the errors a send would get,
//! deleting it; a message's page naming the template it was rendered from; what members and
//! other organizations may see and do; and, in a real browser, a template created, published
//! and previewed by clicking. The JSON API behind the same rules is tested in `templates.rs`.

use reqwest::header;
use serde_json::{Value, json};

use super::{get_page, post_as, rows};
use crate::harness::browser::Browser;
use crate::harness::{Account, PASSWORD, TestApp, sandbox_provider};

fn list(account: &Account) -> String {
    format!("/projects/{}/templates", account.project_id)
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    html.split(start).nth(1).and_then(|rest| rest.split(end).next())
}

/// Creates a template through the list page's form; returns its page's path.
async fn create(app: &TestApp, owner: &Account, form: &[(&str, &str)]) -> String {
    let created = post_as(app, &owner.token, &list(owner), form).await;
    assert_eq!(created.status(), 303, "{}", created.text().await.unwrap_or_default());
    let page = created.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(page.starts_with(&format!("{}/tpl_", list(owner))), "{page}");
    page
}

/// The template behind the page `page`, as the API shows it.
async fn api_view(app: &TestApp, owner: &Account, page: &str) -> (u16, Value) {
    app.get_as(&owner.token, &format!("/v1{page}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_created_edited_published_previewed_and_deleted_on_its_pages() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Owner").await;
    let (status, html) = get_page(&app, &owner.token, &list(&owner)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("No template yet. Create one below."), "{html}");

    // a bad draft: each field named, what was typed kept (escaped), nothing created
    let bad = [
        ("name", "Welcome <b>"),
        ("slug", ""),
        ("channel", "email"),
        ("subject", ""),
        ("text", "Hi {{ name"),
        ("html", ""),
        ("other", ""),
    ];
    let refused = post_as(&app, &owner.token, &list(&owner), &bad).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("<li>content.subject: "), "{html}");
    assert!(html.contains("<li>content.text: "), "{html}");
    assert!(html.contains(r#"value="Welcome &lt;b&gt;""#), "{html}");
    assert!(html.contains(">Hi {{ name</textarea>"), "{html}");
    // a field the channel does not have, typed anyway: refused by its name
    let sms = [("name", "Code"), ("channel", "sms"), ("subject", "Hi"), ("text", "{{ code }}")];
    let refused = post_as(&app, &owner.token, &list(&owner), &sms).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("<li>content.subject: is not a known field"), "{html}");
    // text PostgreSQL cannot store, typed or escaped in JSON: refused by its field's name
    for (text, other, field) in [
        ("a\0b", "", "content.text: must not contain the character U+0000"),
        ("ab", r#"{"embeds": [{"title": "\u0000"}]}"#, "content: must not contain"),
    ] {
        let form = [("name", "Nul"), ("channel", "discord"), ("text", text), ("other", other)];
        let refused = post_as(&app, &owner.token, &list(&owner), &form).await;
        assert_eq!(refused.status(), 400, "{field}");
        assert!(refused.text().await.unwrap().contains(field), "{field}");
    }
    assert_eq!(app.count("templates").await, 0);

    let good = [
        ("name", "Welcome <b>"),
        ("slug", ""),
        ("channel", "email"),
        ("subject", "Welcome, {{ name }}"),
        ("text", "Hi {{ name }},\r\nsee you"),
        ("html", "<p>Hi {{ name }}</p>"),
        ("other", ""),
    ];
    let page = create(&app, &owner, &good).await;
    let (_, view) = api_view(&app, &owner, &page).await;
    assert_eq!(view["slug"], "welcome-b");
    assert_eq!(view["latestVersion"], Value::Null);
    // line breaks as the API would have them
    assert_eq!(
        view["content"],
        json!({"subject": "Welcome, {{ name }}", "text": "Hi {{ name }},\nsee you",
               "html": "<p>Hi {{ name }}</p>"})
    );
    let (_, html) = get_page(&app, &owner.token, &list(&owner)).await;
    let listed = rows(&html, "templates");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0][0], format!(r#"<a href="{page}">Welcome &lt;b&gt;</a>"#));
    assert_eq!(
        listed[0][1..4],
        [
            "<code>welcome-b</code>".to_owned(),
            "email".to_owned(),
            r#"<span class="muted">none yet</span>"#.to_owned()
        ]
    );

    // the draft in its form; edits refused are named and change nothing
    let (status, html) = get_page(&app, &owner.token, &page).await;
    assert_eq!(status, 200);
    assert!(html.contains(">&lt;p&gt;Hi {{ name }}&lt;/p&gt;</textarea>"), "{html}");
    assert!(html.contains(&format!(r#"action="{page}/publish""#)), "{html}");
    let edit = |subject: &'static str, other: &'static str| {
        [
            ("name", "Welcome"),
            ("slug", "welcome"),
            ("subject", subject),
            ("text", "Hi {{ name }}"),
            ("html", ""),
            ("other", other),
        ]
    };
    for (form, field) in [
        (edit("Welcome, {{ name }}", "[1]"), "content: the other fields must be a JSON object"),
        (edit("{% if %}", ""), "content.subject: "),
        (edit("Hi", r#"{"from": "not an address"}"#), "content.from: must be an email address"),
    ] {
        let refused = post_as(&app, &owner.token, &page, &form).await;
        assert_eq!(refused.status(), 400, "{form:?}");
        let html = refused.text().await.unwrap();
        assert!(html.contains(field), "{field} in {html}");
    }
    assert_eq!(api_view(&app, &owner, &page).await.1["name"], "Welcome <b>");
    // saved: an emptied field removed, the other fields kept
    let saved = post_as(
        &app,
        &owner.token,
        &page,
        &edit("Welcome, {{ name }}", r#"{"from": "news@example.com"}"#),
    )
    .await;
    assert_eq!(saved.status(), 303);
    let (_, view) = api_view(&app, &owner, &page).await;
    assert_eq!(
        (&view["name"], &view["slug"], &view["content"]),
        (
            &json!("Welcome"),
            &json!("welcome"),
            &json!({"subject": "Welcome, {{ name }}", "text": "Hi {{ name }}",
                    "from": "news@example.com"})
        )
    );
    let (_, html) = get_page(&app, &owner.token, &page).await;
    assert!(html.contains("&quot;from&quot;: &quot;news@example.com&quot;"), "{html}");

    // published: version 1, by the owner
    let published = post_as(&app, &owner.token, &format!("{page}/publish"), &[]).await;
    assert_eq!(published.status(), 303);
    let location = published.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{page}?published=1"));
    let (_, html) = get_page(&app, &owner.token, &location).await;
    assert!(html.contains("Version 1 published"), "{html}");
    assert_eq!(between(&html, r#"<dd id="latest-version">"#, "</dd>"), Some("1"));
    let versions = rows(&html, "versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0][0], format!(r#"<a href="{page}/versions/1">1</a>"#));
    assert_eq!(versions[0][2], "Owner");
    assert!(html.contains("Publish the draft as version 2"), "{html}");
    let (status, html) = get_page(&app, &owner.token, &format!("{page}/versions/1")).await;
    assert_eq!(status, 200);
    let content = between(&html, r#"id="version-content""#, "</dl>").expect("the content");
    assert!(content.contains("<pre class=\"content\">Welcome, {{ name }}</pre>"), "{content}");
    assert_eq!(get_page(&app, &owner.token, &format!("{page}/versions/2")).await.0, 404);
    assert_eq!(get_page(&app, &owner.token, &format!("{page}/versions/one")).await.0, 400);

    // previews: rendered with the variables, or the errors a send would get
    let preview = format!("{page}/preview");
    let form = [("variables", r#"{"name": "<Ann>"}"#), ("version", "")];
    let shown = post_as(&app, &owner.token, &preview, &form).await;
    assert_eq!(shown.status(), 200);
    let html = shown.text().await.unwrap();
    let rendered = between(&html, r#"id="rendered""#, "</dl>").expect("what it rendered");
    assert!(rendered.contains("<pre class=\"content\">Welcome, &lt;Ann&gt;</pre>"), "{rendered}");
    assert!(html.contains(">{&quot;name&quot;: &quot;&lt;Ann&gt;&quot;}</textarea>"), "{html}");
    let form = [("variables", "{}"), ("version", "1")];
    let refused = post_as(&app, &owner.token, &preview, &form).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("variables.name: is required"), "{html}");
    assert!(!html.contains(r#"id="rendered""#), "{html}");
    let form = [("variables", "[1]"), ("version", "0")];
    let html = post_as(&app, &owner.token, &preview, &form).await.text().await.unwrap();
    assert!(html.contains("<li>variables: ") && html.contains("<li>version: "), "{html}");
    let form = [("variables", r#"{"name": "Ann"}"#), ("version", "7")];
    let refused = post_as(&app, &owner.token, &preview, &form).await;
    assert_eq!(refused.status(), 404);
    assert!(
        refused.text().await.unwrap().contains("template.version: this template has no version 7")
    );

    // a message rendered from it names it on its page, also once the template is gone
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "email")).await;
    let send = json!({"channel": "email", "to": "ann@example.com",
                      "template": {"id": "welcome", "variables": {"name": "Ann"}}});
    let message = app.send_message(&key, send).await;
    app.wait_for_status(&key, &message, "sent").await;
    let (_, html) = get_page(&app, &owner.token, &format!("/messages/{message}")).await;
    let named = between(&html, r#"<dd id="template">"#, "</dd>").expect("the template");
    assert!(named.contains(&format!(r#"<a href="{page}">Welcome</a>"#)), "{named}");
    assert!(named.contains(&format!(r#"<a href="{page}/versions/1">version 1</a>"#)), "{named}");

    // deleted after a page that names it
    let (status, html) = get_page(&app, &owner.token, &format!("{page}/delete")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete Welcome"), "{html}");
    let deleted = post_as(&app, &owner.token, &format!("{page}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(deleted.headers()[header::LOCATION], list(&owner).as_str());
    assert_eq!(api_view(&app, &owner, &page).await.0, 404);
    assert_eq!(get_page(&app, &owner.token, &page).await.0, 404);
    let (_, html) = get_page(&app, &owner.token, &format!("/messages/{message}")).await;
    let named = between(&html, r#"<dd id="template">"#, "</dd>").expect("the template");
    assert!(named.contains("version 1") && named.contains("deleted since"), "{named}");

    // a long body fits a form (more than actix takes by default); a far longer one is refused
    // on a page
    let long = format!("<p>{}</p>", "x".repeat(100_000));
    let form = [("name", "Long"), ("channel", "email"), ("subject", "Hi"), ("html", &long)];
    create(&app, &owner, &form).await;
    let longer = "x".repeat(300 * 1024);
    let form = [("name", "Longer"), ("channel", "email"), ("subject", "Hi"), ("html", &longer)];
    let refused = post_as(&app, &owner.token, &list(&owner), &form).await;
    assert_eq!(refused.status(), 413);
    assert!(refused.text().await.unwrap().contains("exceeds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_and_preview_but_change_nothing_and_other_organizations_get_404() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let form = [("name", "Code"), ("channel", "sms"), ("text", "Your code: {{ code }}")];
    let page = create(&app, &owner, &form).await;
    assert_eq!(post_as(&app, &owner.token, &format!("{page}/publish"), &[]).await.status(), 303);
    let member = app.add_member(&owner, "Member", "member").await;

    for path in [list(&owner), page.clone(), format!("{page}/versions/1")] {
        let (status, html) = get_page(&app, &member.token, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(!html.contains("/publish") && !html.contains("/delete"), "{html}");
        assert!(!html.contains("Create a template") && !html.contains("Save the draft"), "{html}");
    }
    // the draft is shown as text; a preview is reading
    let (_, html) = get_page(&app, &member.token, &page).await;
    let draft = between(&html, r#"id="draft""#, "</dl>").expect("the draft");
    assert!(draft.contains("Your code: {{ code }}"), "{draft}");
    let form = [("variables", r#"{"code": "123"}"#), ("version", "1")];
    let shown = post_as(&app, &member.token, &format!("{page}/preview"), &form).await;
    assert_eq!(shown.status(), 200);
    assert!(shown.text().await.unwrap().contains("Your code: 123"));

    // every write refused
    let (status, _) = get_page(&app, &member.token, &format!("{page}/delete")).await;
    assert_eq!(status, 403);
    let draft: &[(&str, &str)] = &[("name", "Mine"), ("channel", "sms"), ("text", "mine")];
    let none: &[(&str, &str)] = &[];
    let writes = [
        (list(&owner), draft),
        (page.clone(), draft),
        (format!("{page}/publish"), none),
        (format!("{page}/delete"), none),
    ];
    for (path, form) in &writes {
        let refused = post_as(&app, &member.token, path, form).await;
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.text().await.unwrap().contains("admin"), "{path}");
    }
    let (_, view) = api_view(&app, &owner, &page).await;
    assert_eq!((view["name"].as_str(), view["latestVersion"].as_i64()), (Some("Code"), Some(1)));
    assert_eq!(app.count("templates").await, 1);

    // another organization: not found, through its own project either, and nothing changes
    let stranger = app.sign_up("Stranger").await;
    let through_theirs = page.replace(&owner.project_id, &stranger.project_id);
    for path in [
        list(&owner),
        page.clone(),
        through_theirs.clone(),
        format!("{page}/versions/1"),
        format!("{page}/delete"),
    ] {
        let (status, _) = get_page(&app, &stranger.token, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    let preview: &[(&str, &str)] = &[("variables", "{}")];
    let mut attempts = writes.to_vec();
    attempts.push((format!("{page}/preview"), preview));
    attempts.push((format!("{through_theirs}/publish"), none));
    for (path, form) in &attempts {
        let refused = post_as(&app, &stranger.token, path, form).await;
        assert_eq!(refused.status(), 404, "{path}");
    }
    assert_eq!(app.count("templates").await, 1);
    assert_eq!(app.count("template_versions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_created_published_and_previewed_in_the_browser() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Ada").await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/sign-in")).await;
    browser.fill("#email", &owner.email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Ada's Organization").await;

    // from the project's page to its templates
    browser.goto(&app.url(&format!("/projects/{}", owner.project_id))).await;
    browser.click(&format!("main a[href='{}']", list(&owner))).await;
    browser.wait_for_text("h1", "templates").await;
    browser.fill("#name", "Welcome").await;
    browser.click("#channel option[value='email']").await;
    browser.fill("#subject", "Welcome, {{ name }}").await;
    browser.fill("#text", "Hi {{ name }}, your code is {{ code }}.").await;
    browser.click("#create-template button[type=submit]").await;
    browser.wait_for_text("#latest-version", "none yet").await;
    assert!(browser.path().await.starts_with(&format!("{}/tpl_", list(&owner))));

    // published: the first version is listed, by its publisher
    browser.click("#publish button").await;
    browser.wait_for_text("[role=status]", "Version 1 published").await;
    assert_eq!(browser.text("#latest-version").await, "1");
    let versions = browser.text("#versions").await;
    assert!(versions.contains("Ada"), "{versions}");

    // previewed: a variable missing is named, then the content rendered
    browser.fill("#variables", r#"{"name": "Ann"}"#).await;
    browser.click("#preview button[type=submit]").await;
    browser.wait_for_text("#preview [role=alert]", "variables.code: is required").await;
    browser.find("#variables").await.clear().await.expect("clear the variables");
    browser.fill("#variables", r#"{"name": "Ann", "code": "123 456"}"#).await;
    browser.fill("#preview-version", "1").await;
    browser.click("#preview button[type=submit]").await;
    let rendered = browser.wait_for_text("#rendered", "Welcome, Ann").await;
    assert!(rendered.contains("Hi Ann, your code is 123 456."), "{rendered}");
    browser.scroll_to("#preview").await;
    browser.screenshot("template").await;
    browser.close().await;
}
