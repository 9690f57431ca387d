//! An identity provider for the sign-in tests, on a local port: OpenID Connect (discovery,
//! keys, authorize, token, userinfo) or GitHub-shaped (authorize, token, `/user`,
//! `/user/emails`), over the recording [`Stub`].
//!
//! It checks what a real provider checks and answers as one would: `/authorize` wants our
//! client id, the redirect URI, `state`, an S256 `code_challenge` (and a `nonce` for OpenID
//! Connect) and redirects back with a single-use code; `/token` wants that code, the same
//! redirect URI, the verifier matching the challenge and the client's credentials (Basic for
//! OpenID Connect, form fields for GitHub), else 400 `invalid_grant`/`invalid_client`. ID tokens
//! are signed RS256 with a key made for the test run; [`Tamper`] makes the next one wrong in
//! one way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{
    CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde_json::json;

use super::stub::{Recorded, Reply, Stub};

pub const CLIENT_ID: &str = "relayit-test-client";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789";

/// Who signs in at the provider next.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: String,
}

impl Person {
    pub fn new(subject: &str, email: &str, verified: bool) -> Person {
        Person {
            subject: subject.to_owned(),
            email: Some(email.to_owned()),
            email_verified: verified,
            name: format!("Person {subject}"),
        }
    }
}

/// One way the next ID token is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    Nonce,
    Expired,
    Issuer,
    Audience,
    /// HS256 with the client secret as the key (the algorithm confusion attack).
    Hs256,
    /// `alg: none`, unsigned.
    AlgNone,
    /// Signed by a key the provider does not publish.
    ForeignKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Oidc,
    Github,
}

struct Grant {
    person: Person,
    challenge: String,
    nonce: Option<String>,
    redirect_uri: String,
    tamper: Option<Tamper>,
}

struct State {
    flavor: Flavor,
    issuer: String,
    person: Person,
    tamper: Option<Tamper>,
    codes: HashMap<String, Grant>,
    /// Access token -> person.
    tokens: HashMap<String, Person>,
    /// What the provider refused and why, for the test to show.
    refusals: Vec<String>,
    counter: u64,
}

pub struct IdentityProvider {
    pub stub: Stub,
    state: Arc<Mutex<State>>,
}

/// The provider's signing key, made once per test run (RSA key generation is slow).
fn signing_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key")
    })
}

fn rsa_signer(kid: &str, key: &rsa::RsaPrivateKey) -> CoreRsaPrivateSigningKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let pem = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("PEM");
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.to_owned())))
        .expect("a signing key")
}

fn foreign_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key")
    })
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(relayit::auth::tokens::hash(verifier))
}

impl IdentityProvider {
    pub async fn start(flavor: Flavor) -> IdentityProvider {
        // made before the server answers: no request may wait for them (RSA key generation
        // takes long and varies, and relayit gives a provider 10 s)
        let _ = (signing_key(), foreign_key());
        let state = Arc::new(Mutex::new(State {
            flavor,
            issuer: String::new(),
            person: Person::new("alice", "alice@example.com", true),
            tamper: None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            refusals: Vec::new(),
            counter: 0,
        }));
        let shared = state.clone();
        let stub = Stub::start(move |request| answer(&shared, request)).await;
        state.lock().unwrap().issuer = stub.url();
        IdentityProvider { stub, state }
    }

    pub fn issuer(&self) -> String {
        self.stub.url()
    }

    /// The person who signs in next.
    pub fn sign_in_as(&self, person: Person) {
        self.state.lock().unwrap().person = person;
    }

    /// Spoils the ID token of the next authorization.
    pub fn tamper(&self, tamper: Option<Tamper>) {
        self.state.lock().unwrap().tamper = tamper;
    }

    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.stub.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

fn refuse(state: &mut State, status: u16, error: &str, why: String) -> Reply {
    state.refusals.push(why);
    Reply::json(status, json!({"error": error}))
}

fn answer(shared: &Mutex<State>, request: &Recorded) -> Reply {
    let mut state = shared.lock().unwrap();
    let issuer = state.issuer.clone();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => Reply::json(
            200,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                // advertised, and still never accepted by RelayIt
                "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
            }),
        ),
        ("GET", "/jwks") => {
            let key = rsa_signer("k1", signing_key()).as_verification_key();
            Reply::json(200, serde_json::to_value(CoreJsonWebKeySet::new(vec![key])).unwrap())
        }
        ("GET", "/authorize") => authorize(&mut state, request),
        ("POST", "/token") => token(&mut state, request),
        ("GET", "/userinfo") => match bearer(&state, request) {
            Some(person) => Reply::json(
                200,
                json!({"sub": person.subject, "email": person.email,
                    "email_verified": person.email_verified, "name": person.name}),
            ),
            None => Reply::json(401, json!({"error": "invalid_token"})),
        },
        ("GET", "/user") | ("GET", "/user/emails") => github_api(&mut state, request),
        _ => Reply::json(404, json!({"error": "not_found"})),
    }
}

fn authorize(state: &mut State, request: &Recorded) -> Reply {
    let query = form(&request.query);
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if get("response_type") != "code" {
        problems.push("response_type is not code");
    }
    if get("client_id") != CLIENT_ID {
        problems.push("wrong client_id");
    }
    if get("state").len() < 32 {
        problems.push("no state, or a short one");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        problems.push("no S256 code_challenge");
    }
    let nonce = query.get("nonce").cloned();
    if state.flavor == Flavor::Oidc && nonce.as_deref().is_none_or(|n| n.len() < 32) {
        problems.push("no nonce");
    }
    let redirect_uri = get("redirect_uri");
    if !redirect_uri.ends_with("/callback") {
        problems.push("no redirect_uri");
    }
    if !problems.is_empty() {
        return refuse(state, 400, "invalid_request", format!("authorize: {problems:?}"));
    }
    state.counter += 1;
    let code = format!("code-{}-{}", state.counter, uuid::Uuid::now_v7().simple());
    let grant = Grant {
        person: state.person.clone(),
        challenge: get("code_challenge"),
        nonce,
        redirect_uri: redirect_uri.clone(),
        tamper: state.tamper.take(),
    };
    state.codes.insert(code.clone(), grant);
    let mut back = url::Url::parse(&redirect_uri).expect("redirect_uri is a URL");
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state"));
    Reply::text(302, "").with_header("location", back.as_str())
}

fn token(state: &mut State, request: &Recorded) -> Reply {
    let body = form(&String::from_utf8_lossy(&request.body));
    let get = |k: &str| body.get(k).cloned().unwrap_or_default();
    // client authentication: Basic for OpenID Connect, form fields for GitHub
    let (id, secret) = match state.flavor {
        Flavor::Oidc => {
            let basic = request.header("authorization").and_then(|h| h.strip_prefix("Basic "));
            let decoded = basic
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (id, secret) = decoded.split_once(':').unwrap_or_default();
            (id.to_owned(), secret.to_owned())
        }
        Flavor::Github => (get("client_id"), get("client_secret")),
    };
    if id != CLIENT_ID || secret != CLIENT_SECRET {
        return refuse(state, 401, "invalid_client", "token: client authentication".into());
    }
    if get("grant_type") != "authorization_code" {
        return refuse(state, 400, "unsupported_grant_type", "token: grant_type".into());
    }
    let Some(grant) = state.codes.remove(&get("code")) else {
        return refuse(state, 400, "invalid_grant", "token: unknown or used code".into());
    };
    if grant.redirect_uri != get("redirect_uri") {
        return refuse(state, 400, "invalid_grant", "token: redirect_uri differs".into());
    }
    if s256(&get("code_verifier")) != grant.challenge {
        return refuse(state, 400, "invalid_grant", "token: code_verifier".into());
    }
    state.counter += 1;
    let access = format!("access-{}", state.counter);
    state.tokens.insert(access.clone(), grant.person.clone());
    match state.flavor {
        Flavor::Github => Reply::json(
            200,
            json!({"access_token": access, "token_type": "bearer", "scope": "read:user,user:email"}),
        ),
        Flavor::Oidc => {
            let id_token = id_token(&state.issuer, &grant);
            Reply::json(
                200,
                json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                    "id_token": id_token}),
            )
        }
    }
}

fn id_token(issuer: &str, grant: &Grant) -> String {
    let now = chrono::Utc::now();
    let tamper = grant.tamper;
    let issuer = if tamper == Some(Tamper::Issuer) { "http://127.0.0.1:9/evil" } else { issuer };
    let audience = if tamper == Some(Tamper::Audience) { "another-client" } else { CLIENT_ID };
    let (issued, expires) = if tamper == Some(Tamper::Expired) {
        (now - chrono::Duration::hours(2), now - chrono::Duration::hours(1))
    } else {
        (now, now + chrono::Duration::minutes(10))
    };
    let nonce = if tamper == Some(Tamper::Nonce) {
        Some("a-nonce-from-another-sign-in".to_owned())
    } else {
        grant.nonce.clone()
    };
    let person = &grant.person;
    let mut standard = StandardClaims::new(SubjectIdentifier::new(person.subject.clone()))
        .set_email_verified(Some(person.email_verified))
        .set_name(Some(EndUserName::new(person.name.clone()).into()));
    if let Some(email) = &person.email {
        standard = standard.set_email(Some(EndUserEmail::new(email.clone())));
    }
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer.to_owned()).unwrap(),
        vec![Audience::new(audience.to_owned())],
        expires,
        issued,
        standard,
        EmptyAdditionalClaims {},
    )
    .set_nonce(nonce.map(Nonce::new));
    let signed = match tamper {
        Some(Tamper::Hs256) => CoreIdToken::new(
            claims,
            &CoreHmacKey::new(CLIENT_SECRET.as_bytes()),
            CoreJwsSigningAlgorithm::HmacSha256,
            None,
            None,
        ),
        Some(Tamper::AlgNone) => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
            return format!("{header}.{payload}.");
        }
        Some(Tamper::ForeignKey) => CoreIdToken::new(
            claims,
            &rsa_signer("k1", foreign_key()),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        ),
        _ => CoreIdToken::new(
            claims,
            &rsa_signer("k1", signing_key()),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        ),
    };
    signed.expect("a signed ID token").to_string()
}

fn bearer(state: &State, request: &Recorded) -> Option<Person> {
    let token = request.header("authorization")?.strip_prefix("Bearer ")?;
    state.tokens.get(token).cloned()
}

fn github_api(state: &mut State, request: &Recorded) -> Reply {
    if request.header("accept") != Some("application/vnd.github+json")
        || request.header("user-agent").is_none_or(|a| !a.starts_with("RelayIt/"))
    {
        return refuse(state, 400, "bad_request", format!("{}: headers", request.path));
    }
    let Some(person) = bearer(state, request) else {
        return Reply::json(401, json!({"message": "Bad credentials"}));
    };
    let id: u64 = person.subject.parse().expect("GitHub subjects are numbers");
    if request.path == "/user" {
        return Reply::json(
            200,
            json!({"id": id, "login": format!("user{id}"), "name": person.name, "email": null}),
        );
    }
    // a verified secondary address first: only the primary one may be used
    let mut emails = vec![json!({"email": format!("secondary-{id}@example.org"),
        "primary": false, "verified": true, "visibility": null})];
    if let Some(email) = &person.email {
        emails.push(json!({"email": email, "primary": true,
            "verified": person.email_verified, "visibility": "private"}));
    }
    Reply::json(200, json!(emails))
}
