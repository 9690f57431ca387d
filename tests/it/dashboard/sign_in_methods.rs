//! The sign-in page's other ways in (passkeys, the configured providers) and the sign-in
//! methods page: linked accounts and passkeys listed, unlinked, renamed and deleted, the last
//! way in kept. The passkey ceremonies themselves run in a real browser (`browser.rs`).

use relayit::config::{OAuthKind, OAuthProviderConfig};

use super::{browser_like, get_page, post_from, rows};
use crate::harness::TestApp;

/// The server's public URL: passkeys need a host name, and forms come from its origin.
const SITE: &str = "http://localhost:9";

/// A form post as the signed-in `token`, from a page of [`SITE`].
async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    post_from(app, token, path, form, SITE).await
}

fn github() -> OAuthProviderConfig {
    OAuthProviderConfig {
        id: "github".into(),
        kind: OAuthKind::Github,
        name: Some("GitHub <Enterprise>".into()),
        client_id: "client".into(),
        client_secret: Some("secret".into()),
        client_secret_env: None,
        issuer: None,
        authorization_url: None,
        token_url: None,
        userinfo_url: None,
        api_url: None,
        scopes: None,
    }
}

async fn sign_in_page(app: &TestApp) -> String {
    let response = browser_like().get(app.url("/sign-in?next=/keys")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_offers_passkeys_and_the_configured_providers() {
    let app = TestApp::spawn_with(|c| {
        c.auth.oauth = vec![github()];
        c.server.public_url = SITE.into();
    })
    .await;
    let html = sign_in_page(&app).await;
    // each provider, coming back to the page asked for; its name escaped
    assert!(html.contains(r#"href="/v1/auth/oauth/github/start?redirectTo=%2Fkeys""#), "{html}");
    assert!(html.contains("Continue with GitHub &lt;Enterprise&gt;"), "{html}");
    // a passkey button, and the browser's passkeys offered in the email field's autofill
    assert!(html.contains(r#"data-passkey-sign-in data-next="/keys""#), "{html}");
    assert!(html.contains(r#"autocomplete="username webauthn""#), "{html}");

    // neither when the server has none
    let plain = TestApp::spawn().await;
    let html = sign_in_page(&plain).await;
    assert!(!html.contains("data-passkey-sign-in") && !html.contains("Continue with"), "{html}");
    assert!(html.contains(r#"autocomplete="username""#), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_methods_page_lists_renames_removes_and_keeps_the_last_way_in() {
    let app = TestApp::spawn_with(|c| {
        c.auth.oauth = vec![github()];
        c.server.public_url = SITE.into();
    })
    .await;
    let ada = app.sign_up("Ada").await;
    let (status, html) = get_page(&app, &ada.token, "/account/sign-in-methods").await;
    assert_eq!(status, 200);
    assert!(html.contains("No account is linked") && html.contains("No passkey yet"), "{html}");
    assert!(html.contains("data-passkey-register"), "{html}");
    assert!(
        html.contains(
            r#"href="/v1/auth/oauth/github/start?redirectTo=%2Faccount%2Fsign-in-methods&amp;link=true""#
        ),
        "{html}"
    );

    // a linked account and a passkey, as a sign-in and a registration leave them
    let user = &ada.user_id;
    app.sql(&format!(
        "INSERT INTO accounts (id, user_id, provider_id, account_id, email, kind) \
         VALUES ('acc_ada', '{user}', 'github', '42', 'ada@github.example', 'github')"
    ))
    .await;
    app.sql(&format!(
        "INSERT INTO passkeys (id, user_id, name, credential_id, passkey) \
         VALUES ('pky_ada', '{user}', 'Old <laptop>', '\\x01', '{{}}')"
    ))
    .await;
    let (_, html) = get_page(&app, &ada.token, "/account/sign-in-methods").await;
    let accounts = rows(&html, "accounts");
    assert_eq!(accounts.len(), 1, "{html}");
    assert_eq!(accounts[0][0], "GitHub &lt;Enterprise&gt; (github)");
    assert_eq!(accounts[0][1], "ada@github.example");
    assert_eq!(rows(&html, "passkeys").len(), 1, "{html}");
    assert!(html.contains(r#"value="Old &lt;laptop&gt;""#), "{html}");

    // renamed; a bad name is refused naming the field
    let renamed =
        post_as(&app, &ada.token, "/account/passkeys/pky_ada/rename", &[("name", "Work laptop")])
            .await;
    assert_eq!(renamed.status(), 303);
    assert_eq!(app.count("passkeys WHERE name = 'Work laptop'").await, 1);
    let refused =
        post_as(&app, &ada.token, "/account/passkeys/pky_ada/rename", &[("name", " ")]).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("name"));

    // another person's account and passkey are not found, and stay
    let stranger = app.sign_up("Stranger").await;
    for path in [
        "/account/accounts/acc_ada/unlink",
        "/account/passkeys/pky_ada/delete",
        "/account/passkeys/pky_ada/rename",
    ] {
        let response = post_as(&app, &stranger.token, path, &[("name", "Mine")]).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(app.count("accounts").await + app.count("passkeys").await, 2);

    // with the password left, the account is unlinked; without it, the passkey is the last
    // way in and stays, the page saying why
    let unlinked = post_as(&app, &ada.token, "/account/accounts/acc_ada/unlink", &[]).await;
    assert_eq!(unlinked.status(), 303);
    assert_eq!(app.count("accounts").await, 0);
    app.sql(&format!("UPDATE users SET password_hash = NULL WHERE id = '{user}'")).await;
    let kept = post_as(&app, &ada.token, "/account/passkeys/pky_ada/delete", &[]).await;
    assert_eq!(kept.status(), 409);
    let html = kept.text().await.unwrap();
    assert!(html.contains("your last way to sign in"), "{html}");
    assert!(html.contains("You have no password"), "{html}");
    assert_eq!(app.count("passkeys").await, 1);
}
