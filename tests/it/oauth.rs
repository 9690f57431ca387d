//! Signing in with OAuth / OpenID Connect providers, end to end against local providers
//! (`harness::identity_provider`): the browser's part (following the redirects, carrying the
//! binding cookie) is played here, step by step.

use reqwest::Method;
use serde_json::json;

use crate::harness::identity_provider::{
    CLIENT_ID, CLIENT_SECRET, Flavor, IdentityProvider, Person, Tamper,
};
use crate::harness::{PASSWORD, TestApp};
use relayit::config::{Config, OAuthKind, OAuthProviderConfig};

fn provider(id: &str, kind: OAuthKind, idp: &IdentityProvider) -> OAuthProviderConfig {
    let base = idp.issuer();
    let github = kind == OAuthKind::Github;
    OAuthProviderConfig {
        id: id.to_owned(),
        kind,
        name: None,
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(CLIENT_SECRET.to_owned()),
        client_secret_env: None,
        issuer: (!github).then(|| base.clone()),
        authorization_url: github.then(|| format!("{base}/authorize")),
        token_url: github.then(|| format!("{base}/token")),
        userinfo_url: None,
        api_url: github.then(|| base.clone()),
        scopes: None,
    }
}

/// An app with the OpenID Connect provider `corp` and the GitHub-shaped `github`.
async fn spawn(
    oidc: &IdentityProvider,
    github: &IdentityProvider,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let providers = vec![
        provider("corp", OAuthKind::Oidc, oidc),
        provider("github", OAuthKind::Github, github),
    ];
    TestApp::spawn_with(move |c| {
        c.auth.oauth = providers;
        adjust(c);
    })
    .await
}

/// A sign-in that reached the callback.
struct Callback {
    status: u16,
    location: Option<String>,
    /// The session cookie's value, when one was set.
    session: Option<String>,
    body: String,
    content_type: String,
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all("set-cookie").iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let value = text.strip_prefix(&format!("{name}="))?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

fn location(response: &reqwest::Response) -> Option<String> {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_owned())
}

/// Starts a sign-in: the provider's authorization URL and the binding cookie.
async fn start(
    app: &TestApp,
    provider: &str,
    query: &str,
    token: Option<&str>,
) -> (String, String) {
    let mut request = app.client.get(app.url(&format!("/v1/auth/oauth/{provider}/start{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 302, "start: {}", response.text().await.unwrap());
    let binding = cookie(&response, "relayit_oauth").expect("the binding cookie");
    (location(&response).expect("Location"), binding)
}

/// The provider's authorization page: the callback URL it redirects to.
async fn authorize(app: &TestApp, url: &str) -> String {
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 302, "authorize: {}", response.text().await.unwrap());
    location(&response).expect("the provider redirects back")
}

async fn callback(app: &TestApp, url: &str, binding: Option<&str>, accept: &str) -> Callback {
    let mut request = app.client.get(url).header("accept", accept);
    if let Some(binding) = binding {
        request = request.header("cookie", format!("relayit_oauth={binding}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let session = cookie(&response, "relayit_session");
    let location = location(&response);
    let body = response.text().await.unwrap();
    Callback { status, location, session, body, content_type }
}

/// A whole sign-in, as a browser does it.
async fn sign_in(app: &TestApp, provider: &str, query: &str) -> Callback {
    let (url, binding) = start(app, provider, query, None).await;
    let back = authorize(app, &url).await;
    callback(app, &back, Some(&binding), "application/json").await
}

fn assert_failed(done: &Callback, words: &str) {
    assert_eq!(done.status, 400, "{}", done.body);
    assert!(done.session.is_none(), "no session on failure");
    let body: serde_json::Value = serde_json::from_str(&done.body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "oauth_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(words), "`{message}` lacks `{words}`");
}

/// Users, linked accounts and sessions.
async fn counts(app: &TestApp) -> [i64; 3] {
    [app.count("users").await, app.count("accounts").await, app.count("sessions").await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sign_in_creates_the_user_and_the_next_finds_them() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;

    let (_, methods) = app.call(Method::GET, "/v1/auth/methods", None, None).await;
    assert_eq!(
        methods,
        json!({"password": true, "passkeys": false, "oauth": [
            {"id": "corp", "name": "corp", "kind": "oidc"},
            {"id": "github", "name": "GitHub", "kind": "github"},
        ]})
    );

    oidc.sign_in_as(Person::new("sub-1", "New.Person@Example.com", true));
    let (url, binding) = start(&app, "corp", "?redirectTo=/projects", None).await;
    let authorization = url::Url::parse(&url).unwrap();
    assert!(url.starts_with(&format!("{}/authorize?", oidc.issuer())), "{url}");
    let params: std::collections::HashMap<_, _> =
        authorization.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["scope"], "openid email profile");
    assert_eq!(params["redirect_uri"], app.url("/v1/auth/oauth/corp/callback"));
    // only the state, the nonce and the challenge travel: never the verifier
    assert!(!params.contains_key("code_verifier"));
    let back = authorize(&app, &url).await;
    let done = callback(&app, &back, Some(&binding), "application/json").await;
    assert_eq!(done.status, 302, "{} {:?}", done.body, oidc.refusals());
    assert_eq!(done.location.as_deref(), Some("/projects"));
    let token = done.session.expect("the session cookie");

    let (status, session) = app.get_as(&token, "/v1/auth/session").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["email"], "new.person@example.com");
    assert_eq!(session["user"]["emailVerified"], true);
    assert_eq!(session["user"]["name"], "Person sub-1");
    assert_eq!(session["methods"], json!({"password": false, "passkeys": 0, "accounts": 1}));
    assert_eq!(session["organizations"].as_array().unwrap().len(), 1);
    let (_, projects) = app.get_as(&token, "/v1/projects").await;
    assert_eq!(projects["data"][0]["slug"], "default", "{projects}");

    // the token request carried the code, the verifier and the client's credentials
    let token_requests = oidc.requests_to("/token");
    assert_eq!(token_requests.len(), 1);
    let form = String::from_utf8(token_requests[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=authorization_code") && form.contains("code_verifier="));
    assert!(token_requests[0].header("authorization").is_some_and(|a| a.starts_with("Basic ")));

    let (status, accounts) = app.get_as(&token, "/v1/auth/accounts").await;
    assert_eq!(status, 200);
    let account = &accounts["data"][0];
    assert_eq!(account["provider"], "corp");
    assert_eq!(account["kind"], "oidc");
    assert_eq!(account["email"], "new.person@example.com");
    assert!(account["id"].as_str().unwrap().starts_with("acc_"));
    assert_eq!(accounts["nextCursor"], serde_json::Value::Null);

    // again: the same user, a new session, no new account; discovery was not fetched again
    let before = counts(&app).await;
    let again = sign_in(&app, "corp", "").await;
    assert_eq!(again.status, 302, "{}", again.body);
    assert_eq!(again.location.as_deref(), Some("/"));
    let (_, session2) = app.get_as(&again.session.unwrap(), "/v1/auth/session").await;
    assert_eq!(session2["user"]["id"], session["user"]["id"]);
    assert_eq!(counts(&app).await, [before[0], before[1], before[2] + 1]);
    assert_eq!(oidc.requests_to("/.well-known/openid-configuration").len(), 1);
    assert_eq!(oidc.requests_to("/jwks").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_user_is_linked_by_a_verified_email_only() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;
    let owner = app.sign_up("Owner").await;

    oidc.sign_in_as(Person::new("sub-owner", &owner.email.to_uppercase(), false));
    let before = counts(&app).await;
    let refused = sign_in(&app, "corp", "").await;
    assert_failed(&refused, "link corp from your account settings");
    assert_eq!(counts(&app).await, before, "nothing created");

    oidc.sign_in_as(Person::new("sub-owner", &owner.email, true));
    let linked = sign_in(&app, "corp", "").await;
    assert_eq!(linked.status, 302, "{}", linked.body);
    let (_, session) = app.get_as(&linked.session.unwrap(), "/v1/auth/session").await;
    assert_eq!(session["user"]["id"], owner.user_id.as_str());
    assert_eq!(session["methods"], json!({"password": true, "passkeys": 0, "accounts": 1}));
    assert_eq!(app.count("users").await, before[0]);

    // the password remains a way in, so the account may go
    let (_, accounts) = app.get_as(&owner.token, "/v1/auth/accounts").await;
    let id = accounts["data"][0]["id"].as_str().unwrap();
    let (status, _) = app.delete_as(&owner.token, &format!("/v1/auth/accounts/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(app.count("accounts").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_or_spoiled_callbacks_change_nothing() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;
    oidc.sign_in_as(Person::new("sub-x", "x@example.com", true));
    let before = counts(&app).await;

    // a state we never issued
    let (url, binding) = start(&app, "corp", "", None).await;
    let back = authorize(&app, &url).await;
    let mut forged = url::Url::parse(&back).unwrap();
    let code = forged.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    forged.query_pairs_mut().clear().append_pair("code", &code).append_pair("state", "forged");
    assert_failed(&callback(&app, forged.as_str(), Some(&binding), "*/*").await, "start again");
    // the real state without the binding cookie (another browser) fails, and is used up
    assert_failed(&callback(&app, &back, None, "*/*").await, "another browser");
    assert_failed(&callback(&app, &back, Some(&binding), "*/*").await, "start again");

    // replayed: the first callback succeeds, the same callback again fails
    let (url, binding) = start(&app, "corp", "", None).await;
    let back = authorize(&app, &url).await;
    let first = callback(&app, &back, Some(&binding), "*/*").await;
    assert_eq!(first.status, 302, "{}", first.body);
    let after_first = counts(&app).await;
    assert_failed(&callback(&app, &back, Some(&binding), "*/*").await, "already used");
    assert_eq!(counts(&app).await, after_first);
    let after_first = counts(&app).await;

    // ID tokens wrong in one way each
    for tamper in [
        Tamper::Nonce,
        Tamper::Expired,
        Tamper::Issuer,
        Tamper::Audience,
        Tamper::Hs256,
        Tamper::AlgNone,
        Tamper::ForeignKey,
    ] {
        oidc.tamper(Some(tamper));
        let done = sign_in(&app, "corp", "").await;
        assert_failed(&done, "ID token");
        assert_eq!(counts(&app).await, after_first, "{tamper:?} changed something");
    }

    // the person declined at the provider; a browser gets a page
    let (url, binding) = start(&app, "corp", "", None).await;
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let declined =
        app.url(&format!("/v1/auth/oauth/corp/callback?error=access_denied&state={state}"));
    let page = callback(&app, &declined, Some(&binding), "text/html,application/xhtml+xml").await;
    assert_eq!(page.status, 400);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    assert!(page.body.contains("access_denied") && page.body.contains("href=\"/sign-in\""));
    assert!(page.session.is_none());
    assert_eq!(counts(&app).await, after_first);
    assert!(before[0] < after_first[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_callbacks_are_throttled_per_address() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    // one failure per email, so four per address
    let app = spawn(&oidc, &github, |c| c.auth.sign_in_max_failures = 1).await;
    let forged = app.url("/v1/auth/oauth/corp/callback?code=c&state=forged-state");
    for _ in 0..4 {
        assert_failed(&callback(&app, &forged, None, "*/*").await, "start again");
    }
    let limited = app.client.get(&forged).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // a good sign-in is refused too while the address is over its limit
    let done = sign_in(&app, "corp", "").await;
    assert_eq!(done.status, 429, "{}", done.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sign_up_a_new_person_is_refused() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |c| c.auth.allow_signup = false).await;
    oidc.sign_in_as(Person::new("sub-new", "new@example.com", true));
    let before = counts(&app).await;
    assert_failed(&sign_in(&app, "corp", "").await, "sign-up is disabled");
    assert_eq!(counts(&app).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_linked_listed_and_unlinked_while_one_way_in_remains() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;
    oidc.sign_in_as(Person::new("sub-linker", "linker@example.com", true));
    let first = sign_in(&app, "corp", "").await;
    let token = first.session.expect("signed up");

    // linking needs a session
    let (status, body) =
        app.call(Method::GET, "/v1/auth/oauth/github/start?link=true", None, None).await;
    assert_eq!(status, 401, "{body}");
    // and, from a browser, this server's own page
    let response = app
        .client
        .get(app.url("/v1/auth/oauth/github/start?link=true"))
        .bearer_auth(&token)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    github.sign_in_as(Person::new("4242", "linker-gh@example.com", true));
    let sessions = app.count("sessions").await;
    let (url, binding) =
        start(&app, "github", "?link=true&redirectTo=/account", Some(&token)).await;
    let back = authorize(&app, &url).await;
    let linked = callback(&app, &back, Some(&binding), "*/*").await;
    assert_eq!(linked.status, 302, "{} {:?}", linked.body, github.refusals());
    assert_eq!(linked.location.as_deref(), Some("/account"));
    assert!(linked.session.is_none(), "linking opens no session");
    assert_eq!(app.count("sessions").await, sessions);

    let (_, accounts) = app.get_as(&token, "/v1/auth/accounts?limit=1").await;
    assert_eq!(accounts["data"].as_array().unwrap().len(), 1);
    assert_eq!(accounts["data"][0]["provider"], "github", "newest first: {accounts}");
    assert_eq!(accounts["data"][0]["email"], "linker-gh@example.com");
    let cursor = accounts["nextCursor"].as_str().expect("a second page");
    let (_, rest) = app.get_as(&token, &format!("/v1/auth/accounts?limit=1&cursor={cursor}")).await;
    assert_eq!(rest["data"][0]["provider"], "corp");
    let github_account = accounts["data"][0]["id"].as_str().unwrap().to_owned();
    let corp_account = rest["data"][0]["id"].as_str().unwrap().to_owned();

    // signing in with the linked GitHub account is signing in as the user
    let via_github = sign_in(&app, "github", "").await;
    let (_, session) = app.get_as(&via_github.session.unwrap(), "/v1/auth/session").await;
    let (_, mine) = app.get_as(&token, "/v1/auth/session").await;
    assert_eq!(session["user"]["id"], mine["user"]["id"]);

    // another user cannot link the same account, nor see or remove ours
    let other = app.sign_up("Other").await;
    let (url, binding) = start(&app, "github", "?link=true", Some(&other.token)).await;
    let back = authorize(&app, &url).await;
    assert_failed(&callback(&app, &back, Some(&binding), "*/*").await, "another user");
    let (status, _) =
        app.delete_as(&other.token, &format!("/v1/auth/accounts/{github_account}")).await;
    assert_eq!(status, 404);
    let (_, theirs) = app.get_as(&other.token, "/v1/auth/accounts").await;
    assert_eq!(theirs["data"], json!([]));

    // unlinking: fine while another way in remains, refused for the last one
    let (status, _) = app.delete_as(&token, &format!("/v1/auth/accounts/{github_account}")).await;
    assert_eq!(status, 204);
    let (status, body) = app.delete_as(&token, &format!("/v1/auth/accounts/{corp_account}")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(app.count("accounts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_uses_the_primary_verified_email() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;
    github.sign_in_as(Person::new("777", "Octo@Example.com", true));
    let (url, _) = start(&app, "github", "", None).await;
    let params: std::collections::HashMap<_, _> =
        url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(params["scope"], "read:user user:email");
    assert!(!params.contains_key("nonce"));
    let done = sign_in(&app, "github", "").await;
    assert_eq!(done.status, 302, "{} {:?}", done.body, github.refusals());
    let (_, session) = app.get_as(&done.session.unwrap(), "/v1/auth/session").await;
    assert_eq!(session["user"]["email"], "octo@example.com");
    let token_request = &github.requests_to("/token")[0];
    let form = String::from_utf8(token_request.body.clone()).unwrap();
    assert!(form.contains(&format!("client_id={CLIENT_ID}")) && form.contains("code_verifier="));
    assert_eq!(token_request.header("accept"), Some("application/json"));
    let user_request = &github.requests_to("/user")[0];
    assert!(user_request.header("authorization").is_some_and(|a| a.starts_with("Bearer ")));

    // no verified primary email: no account can be made or found by email
    github.sign_in_as(Person::new("778", "unverified@example.com", false));
    let before = counts(&app).await;
    assert_failed(&sign_in(&app, "github", "").await, "no verified email");
    assert_eq!(counts(&app).await, before);
    assert!(github.refusals().is_empty(), "{:?}", github.refusals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_checks_its_parameters() {
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |_| {}).await;
    for bad in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "projects"] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("redirectTo", bad)
            .finish();
        let (status, body) =
            app.call(Method::GET, &format!("/v1/auth/oauth/corp/start?{query}"), None, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "redirectTo", "{body}");
    }
    let (status, _) = app.call(Method::GET, "/v1/auth/oauth/gitlab/start", None, None).await;
    assert_eq!(status, 404);
    let (status, _) =
        app.call(Method::GET, "/v1/auth/oauth/gitlab/callback?state=x", None, None).await;
    assert_eq!(status, 404);
    let (status, _) =
        app.call(Method::GET, "/v1/auth/oauth/corp/start?link=maybe", None, None).await;
    assert_eq!(status, 400);
    // a password user signs in as before, and the session says how
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/auth/sign-in",
            None,
            Some(json!({"email": app.sign_up("Pat").await.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_started_are_limited_per_address() {
    // each start keeps its state in Redis for minutes: a flood of them is refused
    let (oidc, github) = (
        IdentityProvider::start(Flavor::Oidc).await,
        IdentityProvider::start(Flavor::Github).await,
    );
    let app = spawn(&oidc, &github, |c| c.auth.sign_in_starts_per_address = 2).await;
    for _ in 0..2 {
        let (status, body) = app.call(Method::GET, "/v1/auth/oauth/github/start", None, None).await;
        assert_eq!(status, 302, "{body}");
    }
    let response = app.client.get(app.url("/v1/auth/oauth/corp/start")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}
