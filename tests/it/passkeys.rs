//! Passkeys end to end: a software authenticator (webauthn-authenticator-rs's `SoftPasskey`,
//! real keys and signatures) registers and signs in against the running server, whose relying
//! party is `http://localhost:<port>`, the origin the authenticator is told it runs on.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use diesel_async::RunQueryDsl;

use crate::harness::{Account, TestApp, free_port, validation_fields};

/// An app whose public URL (the relying party) is `http://localhost:<its port>`.
async fn spawn_with(adjust: impl FnOnce(&mut relayit::config::Config)) -> (TestApp, Url) {
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let public_url = origin.clone();
    let app = TestApp::spawn_with(move |c| {
        c.server.bind = format!("127.0.0.1:{port}");
        c.server.public_url = public_url;
        adjust(c);
    })
    .await;
    (app, Url::parse(&origin).unwrap())
}

async fn spawn() -> (TestApp, Url) {
    spawn_with(|_| {}).await
}

/// An authenticator that verifies its user (passkeys require it; the soft one just says so).
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// Registers a passkey of `key` for `account`: the registered credential's id (base64url)
/// and the passkey as the API answers it.
async fn register(
    app: &TestApp,
    origin: &Url,
    account: &Account,
    key: &mut SoftPasskey,
    name: Option<&str>,
) -> (String, Value) {
    let (status, start) = app
        .call(Method::POST, "/v1/auth/passkeys/register/start", Some(&account.token), None)
        .await;
    assert_eq!(status, 200, "{start}");
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let credential = key.do_registration(origin.clone(), options).expect("registers");
    let (status, body) = app
        .post_as(
            &account.token,
            "/v1/auth/passkeys/register/finish",
            json!({"challengeId": start["challengeId"], "name": name, "credential": credential}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (credential.id.clone(), body)
}

/// `sign-in/start` with `body`: the challenge id and the options as JSON.
async fn start_sign_in(app: &TestApp, body: Value) -> (String, Value) {
    let (status, start) =
        app.call(Method::POST, "/v1/auth/passkeys/sign-in/start", None, Some(body)).await;
    assert_eq!(status, 200, "{start}");
    (start["challengeId"].as_str().unwrap().to_owned(), start["options"].clone())
}

fn assert_with(key: &mut SoftPasskey, origin: &Url, options: &Value) -> PublicKeyCredential {
    let options: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
    key.do_authentication(origin.clone(), options).expect("the authenticator signs")
}

async fn finish_sign_in(app: &TestApp, challenge_id: &str, credential: &Value) -> (u16, Value) {
    app.call(
        Method::POST,
        "/v1/auth/passkeys/sign-in/finish",
        None,
        Some(json!({"challengeId": challenge_id, "credential": credential})),
    )
    .await
}

/// The stored sign counter of the passkey with credential id `credential_id` (base64url).
async fn stored_counter(app: &TestApp, credential_id: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Counter {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        counter: i64,
    }
    let id = URL_SAFE_NO_PAD.decode(credential_id).unwrap();
    let row: Counter = diesel::sql_query(
        "SELECT (passkey->'cred'->>'counter')::bigint AS counter FROM passkeys \
         WHERE credential_id = $1",
    )
    .bind::<diesel::sql_types::Bytea, _>(id)
    .get_result(&mut app.connect().await)
    .await
    .expect("the passkey's counter");
    row.counter
}

#[tokio::test]
async fn a_passkey_registers_is_listed_renamed_and_signs_in_by_email() {
    let (app, origin) = spawn().await;
    let account = app.sign_up("Ada").await;
    let mut key = authenticator();
    let (credential_id, created) =
        register(&app, &origin, &account, &mut key, Some("Laptop")).await;
    assert!(created["id"].as_str().unwrap().starts_with("pky_"), "{created}");
    assert_eq!(created["name"], "Laptop");
    assert_eq!(created["lastUsedAt"], Value::Null);

    let (status, list) = app.get_as(&account.token, "/v1/auth/passkeys").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["id"], created["id"]);
    assert_eq!(list["data"][0]["backupEligible"], false);
    assert_eq!(list["data"][0]["backedUp"], false);
    assert_eq!(list["nextCursor"], Value::Null);

    let path = format!("/v1/auth/passkeys/{}", created["id"].as_str().unwrap());
    let (status, renamed) =
        app.patch_as(&account.token, &path, json!({"name": " Work key "})).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Work key");
    let (status, body) = app.patch_as(&account.token, &path, json!({"name": " "})).await;
    assert_eq!(validation_fields(status, &body), ["name"]);

    // by email: the options allow this user's credential
    let (challenge_id, options) = start_sign_in(&app, json!({"email": account.email})).await;
    let allowed = &options["publicKey"]["allowCredentials"];
    assert_eq!(allowed.as_array().unwrap().len(), 1, "{options}");
    assert_eq!(allowed[0]["id"], credential_id.as_str());
    let assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
    let response = app
        .client
        .post(app.url("/v1/auth/passkeys/sign-in/finish"))
        .json(&json!({"challengeId": challenge_id, "credential": assertion}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("relayit_session="), "{cookie}");
    let signed_in: Value = response.json().await.unwrap();
    assert_eq!(signed_in["user"]["id"], account.user_id.as_str());
    let token = signed_in["token"].as_str().unwrap();
    assert!(cookie.contains(token));
    let (status, session) = app.get_as(token, "/v1/auth/session").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["id"], account.user_id.as_str());
    assert_eq!(session["methods"]["passkeys"], 1);
    assert_eq!(session["methods"]["password"], true);

    // the use is recorded: when, and the authenticator's counter
    let (_, list) = app.get_as(&account.token, "/v1/auth/passkeys").await;
    assert!(list["data"][0]["lastUsedAt"].is_string(), "{list}");
    assert_eq!(stored_counter(&app, &credential_id).await, 1);

    // the challenge is spent: the same answer again is refused, and opens no session
    let sessions = app.count("sessions").await;
    let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    assert_eq!(app.count("sessions").await, sessions);

    // a second sign-in moves the counter on
    let (challenge_id, options) = start_sign_in(&app, json!({"email": account.email})).await;
    let assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
    let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_counter(&app, &credential_id).await, 2);
}

#[tokio::test]
async fn a_discoverable_credential_names_its_user() {
    let (app, origin) = spawn().await;
    let account = app.sign_up("Grace").await;
    let other = app.sign_up("Other").await;
    let mut key = authenticator();
    // registration asks for a resident key where the authenticator can make one
    let (status, start) = app
        .call(Method::POST, "/v1/auth/passkeys/register/start", Some(&account.token), None)
        .await;
    assert_eq!(status, 200);
    let selection = &start["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "preferred", "{start}");
    assert_eq!(selection["userVerification"], "required", "{start}");
    let (credential_id, _) = register(&app, &origin, &account, &mut key, None).await;

    let handle = |user_id: &str| {
        let uuid = uuid::Uuid::parse_str(user_id.strip_prefix("usr_").unwrap()).unwrap();
        URL_SAFE_NO_PAD.encode(uuid.as_bytes())
    };
    // A resident-key authenticator finds its credential for the relying party itself and
    // answers with the user handle it stored. The soft authenticator keeps no resident keys,
    // so it is told which credential to use, and its answer gets the handle (which the
    // signature does not cover, as with any authenticator).
    let discover = |options: &Value| {
        assert!(options["publicKey"]["allowCredentials"].as_array().unwrap().is_empty());
        assert_eq!(options["mediation"], "conditional", "{options}");
        let mut options = options.clone();
        options["publicKey"]["allowCredentials"] =
            json!([{"type": "public-key", "id": credential_id}]);
        options
    };

    let (challenge_id, options) = start_sign_in(&app, json!({})).await;
    let mut assertion =
        serde_json::to_value(assert_with(&mut key, &origin, &discover(&options))).unwrap();
    assertion["response"]["userHandle"] = handle(&account.user_id).into();
    let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], account.user_id.as_str());
    let (status, _) = app.get_as(body["token"].as_str().unwrap(), "/v1/auth/session").await;
    assert_eq!(status, 200);
    assert_eq!(stored_counter(&app, &credential_id).await, 1);

    // the credential is not the other user's, and an answer without a handle names no one
    for user_handle in [json!(handle(&other.user_id)), Value::Null] {
        let (challenge_id, options) = start_sign_in(&app, json!({})).await;
        let mut assertion =
            serde_json::to_value(assert_with(&mut key, &origin, &discover(&options))).unwrap();
        assertion["response"]["userHandle"] = user_handle;
        let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
        assert_eq!(status, 401, "{body}");
    }
}

#[tokio::test]
async fn registration_challenges_are_single_use_and_their_users_own() {
    let (app, origin) = spawn().await;
    let ada = app.sign_up("Ada").await;
    let eve = app.sign_up("Eve").await;
    let mut key = authenticator();
    let (status, start) =
        app.call(Method::POST, "/v1/auth/passkeys/register/start", Some(&ada.token), None).await;
    assert_eq!(status, 200);
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let credential = key.do_registration(origin.clone(), options).unwrap();
    let body = json!({"challengeId": start["challengeId"], "credential": credential});

    // another user cannot use (or spend) it
    let (status, answer) =
        app.post_as(&eve.token, "/v1/auth/passkeys/register/finish", body.clone()).await;
    assert_eq!(validation_fields(status, &answer), ["challengeId"]);
    let (status, answer) =
        app.post_as(&ada.token, "/v1/auth/passkeys/register/finish", body.clone()).await;
    assert_eq!(status, 201, "{answer}");
    // once
    let (status, answer) = app.post_as(&ada.token, "/v1/auth/passkeys/register/finish", body).await;
    assert_eq!(validation_fields(status, &answer), ["challengeId"]);

    // an answer to another challenge does not verify
    let (_, first) =
        app.call(Method::POST, "/v1/auth/passkeys/register/start", Some(&ada.token), None).await;
    let (_, second) =
        app.call(Method::POST, "/v1/auth/passkeys/register/start", Some(&ada.token), None).await;
    let options: CreationChallengeResponse =
        serde_json::from_value(first["options"].clone()).unwrap();
    let credential = authenticator().do_registration(origin.clone(), options).unwrap();
    let (status, answer) = app
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/register/finish",
            json!({"challengeId": second["challengeId"], "credential": credential}),
        )
        .await;
    assert_eq!(validation_fields(status, &answer), ["credential"]);
    // nor does one made for another origin
    let options: CreationChallengeResponse =
        serde_json::from_value(first["options"].clone()).unwrap();
    let elsewhere = Url::parse("http://localhost:1").unwrap();
    let credential = authenticator().do_registration(elsewhere, options).unwrap();
    let (status, answer) = app
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/register/finish",
            json!({"challengeId": first["challengeId"], "credential": credential}),
        )
        .await;
    assert_eq!(validation_fields(status, &answer), ["credential"]);
    assert_eq!(app.count("passkeys").await, 1);

    // bodies of the wrong shape name the field
    let finish = "/v1/auth/passkeys/register/finish";
    let challenge = second["challengeId"].clone();
    for (body, field) in [
        (json!({"challengeId": challenge, "credential": "x"}), "credential"),
        (json!({"challengeId": challenge, "credential": {"id": 1}}), "credential.id"),
        (json!({"credential": {}}), "challengeId"),
        (json!({"challengeId": challenge, "credential": {}, "name": 5}), "name"),
        (json!({"challengeId": "nope", "credential": credential}), "challengeId"),
    ] {
        let (status, answer) = app.post_as(&ada.token, finish, body.clone()).await;
        let fields = validation_fields(status, &answer);
        assert!(fields.iter().any(|f| f.starts_with(field)), "{body}: {answer}");
    }
    let (status, answer) = app
        .post_as(
            &ada.token,
            finish,
            json!({"challengeId": challenge, "credential": credential, "name": ""}),
        )
        .await;
    assert_eq!(validation_fields(status, &answer), ["name"]);
}

#[tokio::test]
async fn failed_assertions_open_no_session() {
    let (app, origin) = spawn().await;
    let account = app.sign_up("Ada").await;
    let mut key = authenticator();
    let (credential_id, created) = register(&app, &origin, &account, &mut key, None).await;
    let by_email = json!({"email": account.email});
    let sessions = app.count("sessions").await;

    // a signature that does not match
    let (challenge_id, options) = start_sign_in(&app, by_email.clone()).await;
    let mut assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
    let mut signature =
        URL_SAFE_NO_PAD.decode(assertion["response"]["signature"].as_str().unwrap()).unwrap();
    let last = signature.len() - 1;
    signature[last] ^= 1;
    assertion["response"]["signature"] = URL_SAFE_NO_PAD.encode(&signature).into();
    let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
    assert_eq!(status, 401, "{body}");

    // an unknown challenge, and a body of the wrong shape
    let (status, _) = finish_sign_in(&app, &"A".repeat(43), &assertion).await;
    assert_eq!(status, 401);
    let (status, body) = finish_sign_in(&app, &challenge_id, &json!({"id": "x"})).await;
    assert!(validation_fields(status, &body)[0].starts_with("credential"), "{body}");

    // the counter went back: two challenges signed in turn, answered in the other order
    let (first_id, first) = start_sign_in(&app, by_email.clone()).await;
    let (second_id, second) = start_sign_in(&app, by_email.clone()).await;
    let first = serde_json::to_value(assert_with(&mut key, &origin, &first)).unwrap();
    let second = serde_json::to_value(assert_with(&mut key, &origin, &second)).unwrap();
    let (status, body) = finish_sign_in(&app, &second_id, &second).await;
    assert_eq!(status, 200, "{body}");
    let counter = stored_counter(&app, &credential_id).await;
    let (status, body) = finish_sign_in(&app, &first_id, &first).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(stored_counter(&app, &credential_id).await, counter);
    assert_eq!(app.count("sessions").await, sessions + 1);

    // a passkey removed between the challenge and the answer
    let (challenge_id, options) = start_sign_in(&app, by_email.clone()).await;
    let assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
    let path = format!("/v1/auth/passkeys/{}", created["id"].as_str().unwrap());
    let (status, body) = app.delete_as(&account.token, &path).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = finish_sign_in(&app, &challenge_id, &assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(app.count("sessions").await, sessions + 1);
}

#[tokio::test]
async fn sign_in_by_email_does_not_tell_who_has_passkeys() {
    let (app, _) = spawn().await;
    let without = app.sign_up("Plain").await;
    let allowed = |options: &Value| {
        // possibly none: some people have no passkey (webauthn-rs's distribution of them)
        let list = options["publicKey"]["allowCredentials"].as_array().unwrap().clone();
        assert!(options.get("mediation").is_none(), "{options}");
        assert_eq!(options["publicKey"]["userVerification"], "required");
        list
    };
    let (first, a) = start_sign_in(&app, json!({"email": "nobody@example.com"})).await;
    let (second, b) = start_sign_in(&app, json!({"email": "Nobody@Example.com "})).await;
    assert_ne!(first, second);
    assert_ne!(a["publicKey"]["challenge"], b["publicKey"]["challenge"]);
    // made up, but the same ones every time
    assert_eq!(allowed(&a), allowed(&b));
    let (_, c) = start_sign_in(&app, json!({"email": without.email})).await;
    let (_, again) = start_sign_in(&app, json!({"email": without.email})).await;
    assert_eq!(allowed(&c), allowed(&again));
    // and other emails get others
    let mut seen = std::collections::HashSet::new();
    for n in 0..8 {
        let (_, options) = start_sign_in(&app, json!({"email": format!("p{n}@example.com")})).await;
        seen.insert(Value::Array(allowed(&options)).to_string());
    }
    assert!(seen.len() > 1, "every email got the same made-up ids: {seen:?}");
    // and answering them signs no one in
    let (status, _) = finish_sign_in(
        &app,
        &first,
        &json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {
            "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}}),
    )
    .await;
    assert_eq!(status, 401);

    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/passkeys/sign-in/start",
            None,
            Some(json!({"email": "not an email"})),
        )
        .await;
    assert_eq!(validation_fields(status, &body), ["email"]);
    let (status, body) = app
        .call(Method::POST, "/v1/auth/passkeys/sign-in/start", None, Some(json!({"emial": "x"})))
        .await;
    assert_eq!(validation_fields(status, &body), ["emial"]);
}

#[tokio::test]
async fn failed_passkey_sign_ins_are_throttled() {
    let (app, origin) = spawn_with(|c| c.auth.sign_in_max_failures = 2).await;
    let account = app.sign_up("Ada").await;
    let mut key = authenticator();
    register(&app, &origin, &account, &mut key, None).await;
    let mut last = (0, Value::Null);
    for _ in 0..3 {
        let (challenge_id, options) = start_sign_in(&app, json!({"email": account.email})).await;
        let mut assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
        assertion["response"]["signature"] = "AAAA".into();
        last = finish_sign_in(&app, &challenge_id, &assertion).await;
    }
    assert_eq!(last.0, 429, "{}", last.1);
    // even the right answer, from this address, until the window ends
    let (challenge_id, options) = start_sign_in(&app, json!({"email": account.email})).await;
    let assertion = serde_json::to_value(assert_with(&mut key, &origin, &options)).unwrap();
    let response = app
        .client
        .post(app.url("/v1/auth/passkeys/sign-in/finish"))
        .json(&json!({"challengeId": challenge_id, "credential": assertion}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn passkeys_are_their_users_own_and_never_the_last_way_in() {
    let (app, origin) = spawn().await;
    let ada = app.sign_up("Ada").await;
    let eve = app.sign_up("Eve").await;
    let (_, created) = register(&app, &origin, &ada, &mut authenticator(), None).await;
    let path = format!("/v1/auth/passkeys/{}", created["id"].as_str().unwrap());

    let (status, _) = app.patch_as(&eve.token, &path, json!({"name": "mine"})).await;
    assert_eq!(status, 404);
    let (status, _) = app.delete_as(&eve.token, &path).await;
    assert_eq!(status, 404);
    let (_, list) = app.get_as(&eve.token, "/v1/auth/passkeys").await;
    assert_eq!(list["data"], json!([]));
    let (status, _) = app.delete_as(&ada.token, "/v1/auth/passkeys/pky_unknown").await;
    assert_eq!(status, 404);

    // without a password, the only passkey stays
    app.sql(&format!("UPDATE users SET password_hash = NULL WHERE id = '{}'", ada.user_id)).await;
    let (status, body) = app.delete_as(&ada.token, &path).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    // with a second one, it goes
    let (_, second) = register(&app, &origin, &ada, &mut authenticator(), None).await;
    let (status, body) = app.delete_as(&ada.token, &path).await;
    assert_eq!(status, 204, "{body}");
    let second_path = format!("/v1/auth/passkeys/{}", second["id"].as_str().unwrap());
    let (status, _) = app.delete_as(&ada.token, &second_path).await;
    assert_eq!(status, 409);

    // every route of the user's own needs a session
    for (method, route) in [
        (Method::POST, "/v1/auth/passkeys/register/start".to_owned()),
        (Method::POST, "/v1/auth/passkeys/register/finish".to_owned()),
        (Method::GET, "/v1/auth/passkeys".to_owned()),
        (Method::PATCH, second_path.clone()),
        (Method::DELETE, second_path.clone()),
    ] {
        let body =
            (method != Method::GET && method != Method::DELETE).then(|| json!({"name": "x"}));
        let (status, answer) = app.call(method, &route, None, body).await;
        assert_eq!(status, 401, "{route}: {answer}");
    }
}

#[tokio::test]
async fn without_a_public_url_with_a_domain_there_are_no_passkeys() {
    for public_url in ["", "http://127.0.0.1:8080"] {
        let app = TestApp::spawn_with(|c| c.server.public_url = public_url.into()).await;
        let account = app.sign_up("Ada").await;
        for (method, route, token, body) in [
            (Method::POST, "/v1/auth/passkeys/register/start", Some(&account.token), None),
            (Method::GET, "/v1/auth/passkeys", Some(&account.token), None),
            (Method::POST, "/v1/auth/passkeys/sign-in/start", None, Some(json!({}))),
            (
                Method::POST,
                "/v1/auth/passkeys/sign-in/finish",
                None,
                Some(json!({"challengeId": "x", "credential": {}})),
            ),
        ] {
            let (status, answer) = app.call(method, route, token.map(|t| t.as_str()), body).await;
            assert_eq!(status, 404, "{public_url} {route}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found");
        }
    }
}

#[tokio::test]
async fn sign_ins_started_are_limited_per_address() {
    // each start keeps its challenge in Redis for minutes: a flood of them is refused
    let (app, _) = spawn_with(|c| c.auth.sign_in_starts_per_address = 3).await;
    for _ in 0..3 {
        start_sign_in(&app, json!({})).await;
    }
    let response = app
        .client
        .post(app.url("/v1/auth/passkeys/sign-in/start"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}
