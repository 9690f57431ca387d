//! Accounts: sign-up, sign-in (and the throttling of both), sessions by bearer token and by cookie
//! (with CSRF protection), sign-out and the active organization.

use crate::harness::{PASSWORD, TestApp};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_creates_user_organization_and_default_project() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/sign-up",
            None,
            Some(json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert!(body["user"]["id"].as_str().unwrap().starts_with("usr_"));
    assert!(body["user"].get("passwordHash").is_none());
    let token = body["token"].as_str().unwrap();

    let (status, session) = app.get_as(token, "/v1/auth/session").await;
    assert_eq!(status, 200);
    let orgs = session["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["name"], "Ada's Organization");
    assert_eq!(orgs[0]["slug"], "ada-s-organization");
    assert_eq!(orgs[0]["role"], "owner");
    assert_eq!(session["activeOrganizationId"], orgs[0]["id"]);
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["methods"], json!({"password": true, "passkeys": 0, "accounts": 0}));

    let (_, projects) = app.get_as(token, "/v1/projects").await;
    assert_eq!(projects["data"].as_array().unwrap().len(), 1);
    assert_eq!(projects["data"][0]["slug"], "default");

    // the same email again, in any case, is a conflict
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/sign-up",
            None,
            Some(json!({"email": "ADA@example.com", "password": PASSWORD, "name": "Other"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");

    // a second Ada gets her own organization slug
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/auth/sign-up",
            None,
            Some(json!({"email": "ada2@example.com", "password": PASSWORD, "name": "Ada"})),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_validation_names_every_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD, "name": "A"}), vec!["email"]),
        (json!({"email": "a@example.com", "password": "short", "name": "A"}), vec!["password"]),
        (json!({"email": "a@example.com", "password": PASSWORD, "name": "  "}), vec!["name"]),
        (
            json!({"email": "bad", "password": "short", "name": ""}),
            vec!["email", "password", "name"],
        ),
        (json!({"email": "a@example.com", "password": PASSWORD}), vec!["name"]),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "name": "A", "admin": true}),
            vec!["admin"],
        ),
        (json!({"email": 5, "password": PASSWORD, "name": "A"}), vec!["email"]),
    ];
    for (body, fields) in cases {
        let (status, answer) =
            app.call(Method::POST, "/v1/auth/sign-up", None, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        let named: Vec<&str> = answer["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    // not JSON at all
    let response = app
        .client
        .post(app.url("/v1/auth/sign-up"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_can_be_disabled() {
    let app = TestApp::spawn_with(|c| c.auth.allow_signup = false).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/sign-up",
            None,
            Some(json!({"email": "a@example.com", "password": PASSWORD, "name": "A"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_out() {
    let app = TestApp::spawn().await;
    let account = app.sign_up("Grace").await;
    let sign_in = |email: String, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/auth/sign-in",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await
        }
    };
    let (status, body) = sign_in(account.email.to_uppercase(), PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_ne!(token, account.token);
    assert_eq!(app.get_as(&token, "/v1/auth/session").await.0, 200);

    // wrong password and unknown email answer alike
    let (status, wrong) = sign_in(account.email.clone(), "wrong password!").await;
    assert_eq!(status, 401);
    let (status, unknown) = sign_in("nobody@example.com".into(), "wrong password!").await;
    assert_eq!(status, 401);
    assert_eq!(wrong, unknown);

    // sign-out revokes that session only
    let (status, _) = app.call(Method::POST, "/v1/auth/sign-out", Some(&token), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(&token, "/v1/auth/session").await.0, 401);
    assert_eq!(app.get_as(&account.token, "/v1/auth/session").await.0, 200);

    // no credentials, garbage credentials
    assert_eq!(app.call(Method::GET, "/v1/auth/session", None, None).await.0, 401);
    assert_eq!(app.get_as("garbage", "/v1/auth/session").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sign_in_failures_are_throttled() {
    let app = TestApp::spawn_with(|c| c.auth.sign_in_max_failures = 3).await;
    let account = app.sign_up("Mallory Target").await;
    let attempt = |password: &'static str| {
        app.client
            .post(app.url("/v1/auth/sign-in"))
            .json(&json!({"email": account.email, "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("guess guess guess").await.unwrap().status(), 401);
    }
    // now even the right password waits
    let response = attempt(PASSWORD).await.unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_a_client_cannot_choose_its_address() {
    // 2 failures per email, 8 per address
    let app = TestApp::spawn_with(|c| {
        c.auth.sign_in_max_failures = 2;
        c.server.behind_proxy = true;
        c.server.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let attempt = |n: usize, forwarded: String| {
        app.client
            .post(app.url("/v1/auth/sign-in"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": format!("nobody{n}@example.com"), "password": "guess guess"}))
            .send()
    };
    // one client guessing across many accounts, writing a new address of its own each time
    // left of what the proxies appended (the client's address, then an inner proxy's)
    for n in 0..8 {
        let forwarded = format!("198.51.100.{n}, 203.0.113.7, 10.1.2.3");
        assert_eq!(attempt(n, forwarded).await.unwrap().status(), 401, "attempt {n}");
    }
    let forwarded = "198.51.100.99, 203.0.113.7, 10.1.2.3".to_owned();
    assert_eq!(attempt(8, forwarded).await.unwrap().status(), 429);
    // another client behind the same proxies is not held up
    let forwarded = "203.0.113.8, 10.1.2.3".to_owned();
    assert_eq!(attempt(9, forwarded).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_gets_no_more_tries_than_serial_ones() {
    const LIMIT: usize = 3;
    const BURST: usize = 24;
    let app = TestApp::spawn_with(|c| c.auth.sign_in_max_failures = LIMIT as u32).await;
    let account = app.sign_up("Burst Target").await;
    let guesses = (0..BURST).map(|n| {
        app.client
            .post(app.url("/v1/auth/sign-in"))
            .json(&json!({"email": account.email, "password": format!("guess number {n}")}))
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|answer| answer.expect("an answer").status().as_u16())
        .collect();
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // each guess was counted before its password was checked: exactly LIMIT were checked
    assert_eq!((wrong, refused), (LIMIT, BURST - LIMIT), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_elsewhere_cannot_lock_the_owner_out() {
    // 2 failures per email from one address; failures from everywhere only slow the email down
    let app = TestApp::spawn_with(|c| {
        c.auth.sign_in_max_failures = 2;
        c.auth.sign_in_max_delay = std::time::Duration::from_millis(500);
        c.server.behind_proxy = true;
        c.server.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let owner = app.sign_up("Owner").await;
    let sign_in = |password: &str, client: &str| {
        app.client
            .post(app.url("/v1/auth/sign-in"))
            .header("x-forwarded-for", format!("{client}, 10.1.2.3"))
            .json(&json!({"email": owner.email, "password": password}))
            .send()
    };
    // a stranger hammers the account from address A, and from two more addresses of theirs
    let stranger = "203.0.113.7";
    for address in [stranger, "203.0.113.8", "203.0.113.9"] {
        for _ in 0..2 {
            assert_eq!(sign_in("guess guess guess", address).await.unwrap().status(), 401);
        }
        assert_eq!(sign_in("guess guess guess", address).await.unwrap().status(), 429);
    }
    // A is refused for this account, even with the right password
    let refused = sign_in(PASSWORD, stranger).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(crate::harness::error_body(refused).await["error"]["code"], "rate_limited");
    // the owner, from their own address, signs in
    let signed_in = sign_in(PASSWORD, "198.51.100.20").await.unwrap();
    assert_eq!(signed_in.status(), 200);
    // which forgives nothing of A's
    assert_eq!(sign_in(PASSWORD, stranger).await.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_limited_per_client_address() {
    let app = TestApp::spawn_with(|c| {
        c.auth.sign_up_max_per_address = 2;
        c.server.behind_proxy = true;
    })
    .await;
    let sign_up = |n: usize, password: &str, client: &str| {
        app.client
            .post(app.url("/v1/auth/sign-up"))
            .header("x-forwarded-for", client.to_owned())
            .json(
                &json!({"email": format!("new{n}@example.com"), "password": password, "name": "N"}),
            )
            .send()
    };
    let a = "203.0.113.7";
    // what fails validation hashes nothing and counts for nothing
    for n in 0..3 {
        assert_eq!(sign_up(n, "short", a).await.unwrap().status(), 400);
    }
    for n in 0..2 {
        assert_eq!(sign_up(n, PASSWORD, a).await.unwrap().status(), 201, "sign-up {n}");
    }
    let refused = sign_up(2, PASSWORD, a).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert_eq!(crate::harness::error_body(refused).await["error"]["code"], "rate_limited");
    assert_eq!(app.count("users WHERE email = 'new2@example.com'").await, 0);
    // another address is not held up
    assert_eq!(sign_up(3, PASSWORD, "203.0.113.8").await.unwrap().status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_a_matching_origin_for_writes() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/v1/auth/sign-up"))
        .json(&json!({"email": "cookie@example.com", "password": PASSWORD, "name": "Cookie"}))
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("relayit_session="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // reads work with the cookie alone
    let read =
        app.client.get(app.url("/v1/projects")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(read.status(), 200);

    let write = |origin: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/v1/projects"))
            .header("cookie", &cookie)
            .json(&json!({"name": "From the browser"}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let refused = write(None).await.unwrap();
    assert_eq!(refused.status(), 403);
    let refused = write(Some("https://evil.example".into())).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let allowed = write(Some(format!("http://{}", app.addr))).await.unwrap();
    assert_eq!(allowed.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_sign_up_take_json_from_no_other_site() {
    let app = TestApp::spawn().await;
    let lena = app.sign_up("Lena").await;
    let credentials = json!({"email": lena.email, "password": PASSWORD}).to_string();
    let sign_up = json!({"email": "csrf@example.com", "password": PASSWORD, "name": "C"});
    let post = |path: &str, content_type: &str, body: String, headers: &[(&str, String)]| {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", content_type.to_owned())
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        request.send()
    };
    let ours = format!("http://{}", app.addr);
    let foreign = ("origin", "https://evil.example".to_owned());
    let cookie = ("cookie", "relayit_session=whatever".to_owned());

    // what a form on another site can send: JSON written as text/plain
    for path in ["/v1/auth/sign-in", "/v1/auth/sign-up"] {
        let body = if path.ends_with("in") { credentials.clone() } else { sign_up.to_string() };
        let answer =
            post(path, "text/plain", body.clone(), std::slice::from_ref(&foreign)).await.unwrap();
        assert_eq!(answer.status(), 415, "{path}");
        let answer = post(path, "application/json", body.clone(), std::slice::from_ref(&foreign))
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{path}");
        // a session cookie needs our own Origin beside it
        let answer =
            post(path, "application/json", body, std::slice::from_ref(&cookie)).await.unwrap();
        assert_eq!(answer.status(), 403, "{path}");
    }
    let answer = post(
        "/v1/auth/sign-in",
        "application/json; charset=utf-8",
        credentials.clone(),
        &[cookie.clone(), ("origin", ours)],
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    // clients that are not browsers send neither
    let answer = post("/v1/auth/sign-in", "application/json", credentials, &[]).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(app.count("users WHERE email = 'csrf@example.com'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_organization_must_be_ones_own() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;
    let (status, _) = app
        .post_as(
            &alice.token,
            "/v1/auth/active-organization",
            json!({"organizationId": bob.org_id}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post_as(
            &alice.token,
            "/v1/auth/active-organization",
            json!({"organizationId": alice.org_id}),
        )
        .await;
    assert_eq!(status, 204);
}

/// Signs `email` in from a client calling itself `agent`; returns the session token.
async fn sign_in_as(app: &TestApp, email: &str, agent: &str) -> String {
    let response = app
        .client
        .post(app.url("/v1/auth/sign-in"))
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// The id of the session `token` opens.
async fn session_id(app: &TestApp, token: &str) -> String {
    let (status, body) = app.get_as(token, "/v1/auth/session").await;
    assert_eq!(status, 200, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

fn at(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_their_own_live_sessions() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let laptop = sign_in_as(&app, &alice.email, "Laptop/1.0").await;
    let phone = sign_in_as(&app, &alice.email, "Phone/2.0").await;
    let bob = app.sign_up("Bob").await;
    // an expired session of Alice's, not yet deleted, is not listed
    app.sql(&format!(
        "INSERT INTO sessions (id, user_id, token_hash, expires_at)
         VALUES ('ses_expired', '{}', sha256('x'::bytea), now() - interval '1 minute')",
        alice.user_id
    ))
    .await;

    let (status, list) = app.get_as(&laptop, "/v1/auth/sessions").await;
    assert_eq!(status, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|s| s["id"].as_str().unwrap()).collect();
    // newest first
    let expected = [
        session_id(&app, &phone).await,
        session_id(&app, &laptop).await,
        session_id(&app, &alice.token).await,
    ];
    assert_eq!(ids, expected, "{list}");
    assert_eq!(list["nextCursor"], json!(null));
    let current: Vec<bool> = data.iter().map(|s| s["current"].as_bool().unwrap()).collect();
    assert_eq!(current, [false, true, false]);
    assert_eq!(data[0]["userAgent"], "Phone/2.0");
    assert_eq!(data[1]["userAgent"], "Laptop/1.0");
    for session in data {
        assert_eq!(session["ipAddress"], "127.0.0.1", "{session}");
        let (created, seen, expires) =
            (at(&session["createdAt"]), at(&session["lastSeenAt"]), at(&session["expiresAt"]));
        assert!(created <= seen && seen < expires, "{session}");
        let mut fields: Vec<&str> =
            session.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["createdAt", "current", "expiresAt", "id", "ipAddress", "lastSeenAt", "userAgent"],
            "no token or hash"
        );
    }

    // pages
    let (_, first) = app.get_as(&laptop, "/v1/auth/sessions?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().expect("another page");
    let (_, second) =
        app.get_as(&laptop, &format!("/v1/auth/sessions?limit=2&cursor={cursor}")).await;
    assert_eq!(second["data"][0]["id"].as_str(), Some(expected[2].as_str()));
    assert_eq!(second["nextCursor"], json!(null));

    // Bob sees his own only
    let (_, list) = app.get_as(&bob.token, "/v1/auth/sessions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["current"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_routes_take_a_signed_in_user_only() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let key = app.create_api_key(&alice, &["read", "manage"], None).await;
    let other = session_id(&app, &alice.token).await;
    for (method, path) in [
        (Method::GET, "/v1/auth/sessions".to_owned()),
        (Method::DELETE, "/v1/auth/sessions".to_owned()),
        (Method::DELETE, format!("/v1/auth/sessions/{other}")),
    ] {
        let (status, body) = app.call(method.clone(), &path, Some(&key), None).await;
        assert_eq!(status, 403, "{method} {path} with an API key: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _) = app.call(method.clone(), &path, None, None).await;
        assert_eq!(status, 401, "{method} {path} without credentials");
        let (status, _) = app.call(method.clone(), &path, Some("garbage"), None).await;
        assert_eq!(status, 401, "{method} {path} with a made-up token");
    }
    assert_eq!(app.get_as(&alice.token, "/v1/auth/session").await.0, 200, "nothing revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_other_sessions_keeps_the_current_one() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let laptop = sign_in_as(&app, &alice.email, "Laptop/1.0").await;
    let phone = sign_in_as(&app, &alice.email, "Phone/2.0").await;
    let bob = app.sign_up("Bob").await;

    let (status, body) = app.delete_as(&laptop, "/v1/auth/sessions").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, json!(null));
    for gone in [&alice.token, &phone] {
        assert_eq!(app.get_as(gone, "/v1/auth/session").await.0, 401);
    }
    assert_eq!(app.get_as(&laptop, "/v1/auth/session").await.0, 200, "the current one stays");
    assert_eq!(app.get_as(&bob.token, "/v1/auth/session").await.0, 200, "another user's stay");
    let (_, list) = app.get_as(&laptop, "/v1/auth/sessions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // with nothing else left, it is still 204
    assert_eq!(app.delete_as(&laptop, "/v1/auth/sessions").await.0, 204);

    // by cookie, a write needs our Origin like any other
    let response = app
        .client
        .post(app.url("/v1/auth/sign-in"))
        .json(&json!({"email": alice.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie =
        response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let revoke = |origin: Option<String>| {
        let mut request = app.client.delete(app.url("/v1/auth/sessions")).header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(revoke(Some("https://evil.example".into())).await.unwrap().status(), 403);
    assert_eq!(app.get_as(&laptop, "/v1/auth/session").await.0, 200, "refused: nothing revoked");
    assert_eq!(revoke(Some(format!("http://{}", app.addr))).await.unwrap().status(), 204);
    assert_eq!(app.get_as(&laptop, "/v1/auth/session").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_session() {
    let app = TestApp::spawn().await;
    let alice = app.sign_up("Alice").await;
    let laptop = sign_in_as(&app, &alice.email, "Laptop/1.0").await;
    let bob = app.sign_up("Bob").await;
    let (laptop_id, bobs) = (session_id(&app, &laptop).await, session_id(&app, &bob.token).await);

    // another user's session, or none at all: not found, and nothing changes
    for id in [bobs.as_str(), "ses_0000", "not-a-session"] {
        let (status, body) = app.delete_as(&alice.token, &format!("/v1/auth/sessions/{id}")).await;
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(app.get_as(&bob.token, "/v1/auth/session").await.0, 200);

    let path = format!("/v1/auth/sessions/{laptop_id}");
    assert_eq!(app.delete_as(&alice.token, &path).await.0, 204);
    assert_eq!(app.get_as(&laptop, "/v1/auth/session").await.0, 401);
    assert_eq!(app.get_as(&alice.token, "/v1/auth/session").await.0, 200);
    assert_eq!(app.delete_as(&alice.token, &path).await.0, 404, "already gone");

    // the current session itself: signed out, the cookie cleared
    let current = session_id(&app, &alice.token).await;
    let response = app
        .client
        .delete(app.url(&format!("/v1/auth/sessions/{current}")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cleared = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.starts_with("relayit_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.get_as(&alice.token, "/v1/auth/session").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_their_absolute_lifetime_however_used() {
    let app =
        TestApp::spawn_with(|c| c.auth.session_max_lifetime = std::time::Duration::from_secs(3600))
            .await;
    let alice = app.sign_up("Alice").await;
    // a new session's expiry is its lifetime's end, not the idle time's (30 days)
    let (_, session) = app.get_as(&alice.token, "/v1/auth/session").await;
    let created = at(&session["session"]["createdAt"]);
    assert_eq!(at(&session["session"]["expiresAt"]) - created, chrono::Duration::hours(1));
    let id = session["session"]["id"].as_str().unwrap().to_owned();

    // opened 59 minutes ago, last written long ago: in use, it slides, but only to its end
    app.sql(&format!(
        "UPDATE sessions SET created_at = now() - interval '59 minutes',
             last_seen_at = now() - interval '50 minutes', expires_at = now() + interval '1 minute'
         WHERE id = '{id}'"
    ))
    .await;
    let (status, list) = app.get_as(&alice.token, "/v1/auth/sessions").await;
    assert_eq!(status, 200, "{list}");
    let listed = &list["data"][0];
    let created = at(&listed["createdAt"]);
    assert_eq!(at(&listed["expiresAt"]), created + chrono::Duration::hours(1), "{listed}");
    let seen = chrono::Utc::now() - at(&listed["lastSeenAt"]);
    assert!(seen < chrono::Duration::minutes(1), "the use was recorded: {listed}");

    // opened over an hour ago: refused, however recently used and whatever its expiry says
    app.sql(&format!(
        "UPDATE sessions SET created_at = now() - interval '61 minutes',
             last_seen_at = now(), expires_at = now() + interval '29 days'
         WHERE id = '{id}'"
    ))
    .await;
    let (status, body) = app.get_as(&alice.token, "/v1/auth/session").await;
    assert_eq!(status, 401, "{body}");
    // and no longer listed among the user's sessions
    let other = sign_in_as(&app, &alice.email, "Other/1.0").await;
    let (_, list) = app.get_as(&other, "/v1/auth/sessions").await;
    let ids: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&id.as_str()), "{list}");
    assert_eq!(ids.len(), 1);
}
