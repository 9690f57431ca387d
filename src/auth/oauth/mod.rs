//! Signing in with an OAuth 2 / OpenID Connect provider (`[[auth.oauth]]`): GitHub, Google or
//! any OpenID Connect provider, by the authorization code flow with PKCE.
//!
//! [`OAuth::start`] makes the provider's authorization URL and keeps what the callback needs
//! (the PKCE verifier, the nonce, where to go afterwards, the user to link to) in Redis under
//! the random `state`, for ten minutes and for one use: only `state` travels through the
//! browser. It also binds the flow to the browser that started it (a random value whose hash
//! is kept with the state, sent back as a cookie by the API layer), so a callback URL carrying
//! someone else's code cannot sign a victim's browser in to the attacker's account (login CSRF).
//!
//! [`OAuth::finish`] takes the state back (`GETDEL`: a replayed callback finds nothing),
//! exchanges the code, learns who the provider says the person is (`oidc`: the ID token, its
//! signature checked against the provider's keys, with issuer, audience, expiry and nonce;
//! `github`: its REST API) and applies the linking rules of [`sign_in_as`]. Every failure is
//! `oauth_failed` and counts against the client address like a failed password sign-in.
//!
//! Nothing secret is logged: not the client secret, the code, the tokens or the ID token, only
//! the provider id and why a sign-in failed.

mod github;
mod oidc;

use std::time::Duration;

use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::accounts::{self, Client, LinkTo, NewAccount};
use crate::auth::{pending, throttle, tokens};
use crate::config::{OAuthKind, OAuthProviderConfig};
use crate::db::linked_accounts;
use crate::db::users::{self, User};
use crate::domain::recipient::{is_email_address, normalize_email};
use crate::domain::validate::Validator;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a started sign-in may take before its `state` is forgotten.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long discovered provider metadata (and its keys) are reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// The longest any request to a provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The `oauth_failed` error: the sign-in did not happen, and `message` says why.
pub fn failed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "oauth_failed", message)
}

/// Logs why a sign-in with `provider` failed (never a secret) and answers `message`.
fn refuse(provider: &str, reason: impl std::fmt::Display, message: &str) -> ApiError {
    tracing::info!(provider, %reason, "sign-in with a provider failed");
    failed(message)
}

/// Who the provider says signed in.
#[derive(Debug)]
pub struct Identity {
    /// The provider's stable id of the person: `sub`, or GitHub's numeric user id.
    pub subject: String,
    /// Normalized and a valid address, or none.
    pub email: Option<String>,
    /// Whether the provider vouches for `email`.
    pub email_verified: bool,
    pub name: Option<String>,
}

/// What the callback needs, kept in Redis under the state's hash.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    provider: String,
    /// The PKCE code verifier.
    verifier: String,
    /// OpenID Connect's nonce.
    nonce: Option<String>,
    redirect_to: String,
    /// Link the account to this user instead of signing in.
    link_user: Option<String>,
    /// The redirect URI given to the provider, which the token request must repeat.
    redirect_uri: String,
    /// Hex SHA-256 of the browser binding value (the cookie).
    binding: String,
}

/// A started sign-in: send the browser to `url`, with `binding` in a cookie.
pub struct Started {
    pub url: String,
    pub binding: String,
}

/// What the provider sent back to the callback.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// The binding cookie.
    pub binding: Option<String>,
}

/// A finished sign-in: where to send the browser, and the new session's token (none when an
/// account was linked to the user who is signed in already).
pub struct Finished {
    pub redirect_to: String,
    pub session: Option<(User, String)>,
}

/// The providers' HTTP client (no redirects followed, bounded in time) and what discovery
/// found about each OpenID Connect provider.
pub struct OAuth {
    http: reqwest::Client,
    discovery: oidc::Discovery,
}

impl OAuth {
    pub fn new() -> anyhow::Result<OAuth> {
        let http = reqwest::Client::builder()
            // a redirect from a token endpoint would carry the code and secret elsewhere
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // Sign-ins are rare: a connection kept between them is more likely closed by the
            // provider than reused, and a code sent down one the provider is closing that
            // moment is lost (it cannot be sent again). A new connection each time.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("RelayIt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OAuth { http, discovery: oidc::Discovery::new(DISCOVERY_TTL) })
    }

    /// Starts signing in with `provider`, coming back to `redirect_uri` (our callback) and
    /// then to `redirect_to`; with `link_user`, links the account to that user instead.
    pub async fn start(
        &self,
        state: &AppState,
        provider: &OAuthProviderConfig,
        redirect_uri: &str,
        redirect_to: &str,
        link_user: Option<&str>,
    ) -> Result<Started, ApiError> {
        let csrf = tokens::new_token();
        let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
        let secret = secret_of(provider)?;
        let (url, nonce) = match provider.kind {
            OAuthKind::Github => {
                let url = github::authorize_url(provider, &secret, redirect_uri, &csrf, challenge)?;
                (url, None)
            }
            OAuthKind::Google | OAuthKind::Oidc => {
                let nonce = tokens::new_token();
                let metadata = self.discovery.get(&self.http, provider).await?;
                let url = oidc::authorize_url(
                    provider,
                    &secret,
                    &metadata,
                    redirect_uri,
                    &csrf,
                    &nonce,
                    challenge,
                )?;
                (url, Some(nonce))
            }
        };
        let binding = tokens::new_token();
        let pending = Pending {
            provider: provider.id.clone(),
            verifier: verifier.secret().clone(),
            nonce,
            redirect_to: redirect_to.to_owned(),
            link_user: link_user.map(str::to_owned),
            redirect_uri: redirect_uri.to_owned(),
            binding: hex(&tokens::hash(&binding)),
        };
        pending::keep(state, pending_key(state, &csrf), &pending, PENDING_TTL).await?;
        Ok(Started { url, binding })
    }

    /// Finishes signing in with `provider` (the callback), under the client address's sign-in
    /// throttle: 429 when it failed too often, `oauth_failed` for any failure of the flow.
    pub async fn finish(
        &self,
        state: &AppState,
        client: &Client,
        provider: &OAuthProviderConfig,
        callback: Callback,
    ) -> Result<Finished, ApiError> {
        let attempt = throttle::reserve_address(state, &client.ip).await?;
        let outcome = self.finish_flow(state, client, provider, callback).await;
        let settled = match &outcome {
            Ok(_) => attempt.succeeded(state).await,
            Err(e) if e.code() == "oauth_failed" => attempt.failed(state).await,
            Err(_) => attempt.untested(state).await,
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "could not settle a sign-in throttle count");
        }
        outcome
    }

    async fn finish_flow(
        &self,
        state: &AppState,
        client: &Client,
        provider: &OAuthProviderConfig,
        callback: Callback,
    ) -> Result<Finished, ApiError> {
        let id = provider.id.as_str();
        let restart = "this sign-in expired or was already used; start again";
        let Some(csrf) = callback.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Err(refuse(id, "no state", restart));
        };
        let taken: Option<Pending> = pending::take(state, pending_key(state, &csrf)).await?;
        let Some(pending) = taken else {
            return Err(refuse(id, "unknown, expired or used state", restart));
        };
        if pending.provider != provider.id {
            return Err(refuse(id, "state of another provider", restart));
        }
        let bound = callback.binding.is_some_and(|b| hex(&tokens::hash(&b)) == pending.binding);
        if !bound {
            return Err(refuse(
                id,
                "browser binding cookie missing or different",
                "this sign-in was started in another browser; start again",
            ));
        }
        if let Some(error) = callback.error {
            // the provider's error code only, bounded: it is the client's to write
            let code: String =
                error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            return Err(refuse(
                id,
                format_args!("provider answered error {code}"),
                &format!("{} did not sign you in ({code})", provider.display_name()),
            ));
        }
        let Some(code) = callback.code.filter(|c| !c.is_empty()) else {
            return Err(refuse(id, "no code", "the provider sent no authorization code"));
        };
        let secret = secret_of(provider)?;
        let identity = match provider.kind {
            OAuthKind::Github => {
                github::identify(
                    &self.http,
                    provider,
                    &secret,
                    &pending.redirect_uri,
                    code,
                    pending.verifier,
                )
                .await?
            }
            OAuthKind::Google | OAuthKind::Oidc => {
                let nonce = pending.nonce.clone().unwrap_or_default();
                let exchange = oidc::Exchange {
                    redirect_uri: &pending.redirect_uri,
                    code,
                    verifier: pending.verifier,
                    nonce,
                };
                oidc::identify(&self.http, &self.discovery, provider, &secret, exchange).await?
            }
        };
        let session =
            sign_in_as(state, client, provider, &identity, pending.link_user.as_deref()).await?;
        Ok(Finished { redirect_to: pending.redirect_to, session })
    }
}

/// The linking rules, in order:
/// 1. the account is linked already: its user signs in (or, linking, it must be the user's);
/// 2. linking (`link_user`): the account is linked to that user;
/// 3. a user has the email: the account is linked to them and they sign in, but only when the
///    provider says the email is verified (else anyone who can make an account with that
///    address at the provider would take the user over);
/// 4. otherwise a new user (with an organization and its default project) is created, when
///    `auth.allow_signup` permits.
async fn sign_in_as(
    state: &AppState,
    client: &Client,
    provider: &OAuthProviderConfig,
    identity: &Identity,
    link_user: Option<&str>,
) -> Result<Option<(User, String)>, ApiError> {
    let id = provider.id.as_str();
    let mut conn = state.db.get().await?;
    if let Some(account) =
        linked_accounts::find_by_subject(&mut conn, id, &identity.subject).await?
    {
        return match link_user {
            Some(user) if user == account.user_id => Ok(None),
            Some(_) => Err(refuse(
                id,
                "account linked to another user",
                &format!(
                    "this {} account is linked to another user already",
                    provider.display_name()
                ),
            )),
            None => {
                let user = users::find(&mut conn, &account.user_id).await?.ok_or_else(|| {
                    refuse(id, "linked user gone", "the linked user no longer exists")
                })?;
                drop(conn);
                let token = accounts::open_session_for(state, client, &user).await?;
                Ok(Some((user, token)))
            }
        };
    }
    let email = identity.email.as_deref().unwrap_or_default();
    let link =
        LinkTo { provider_id: id, subject: &identity.subject, email, kind: provider.kind.as_str() };
    let taken = |e: &diesel::result::Error| {
        matches!(
            e,
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            )
        )
    };
    let linked_meanwhile = || {
        refuse(id, "account linked concurrently", "this account was linked meanwhile; try again")
    };
    if let Some(user_id) = link_user {
        // the user may have been deleted since the sign-in started
        users::find(&mut conn, user_id)
            .await?
            .ok_or_else(|| refuse(id, "linking user gone", "your user no longer exists"))?;
        return match link.insert(&mut conn, user_id).await {
            Ok(_) => {
                tracing::info!(provider = id, user = user_id, "linked an account");
                Ok(None)
            }
            Err(e) if taken(&e) => Err(linked_meanwhile()),
            Err(e) => Err(e.into()),
        };
    }
    if email.is_empty() {
        return Err(refuse(
            id,
            "no usable email",
            &format!("{} shared no verified email address", provider.display_name()),
        ));
    }
    if let Some(user) = users::find_by_email(&mut conn, email).await? {
        if !identity.email_verified {
            return Err(refuse(
                id,
                "email of an existing user not verified by the provider",
                &format!(
                    "a user with this email exists, and {} does not say the email is verified: \
                     sign in another way and link {} from your account settings",
                    provider.display_name(),
                    provider.display_name()
                ),
            ));
        }
        match link.insert(&mut conn, &user.id).await {
            Ok(_) => {}
            Err(e) if taken(&e) => return Err(linked_meanwhile()),
            Err(e) => return Err(e.into()),
        }
        drop(conn);
        tracing::info!(provider = id, user = %user.id, "linked an account by its verified email");
        let token = accounts::open_session_for(state, client, &user).await?;
        return Ok(Some((user, token)));
    }
    drop(conn);
    if !state.config.auth.allow_signup {
        return Err(refuse(
            id,
            "sign-up disabled",
            "sign-up is disabled on this server: ask an administrator to invite you",
        ));
    }
    throttle::reserve_sign_up(state, &client.ip).await?;
    let fallback = email.split('@').next().unwrap_or(email);
    let name = identity
        .name
        .as_deref()
        .map(str::trim)
        .filter(|name| {
            let mut check = Validator::new();
            check.name("name", name);
            check.finish().is_ok()
        })
        .unwrap_or(fallback);
    let new = NewAccount {
        email,
        name,
        password_hash: None,
        email_verified: identity.email_verified,
        linked: Some(link),
    };
    match accounts::create_user(state, client, new).await {
        Ok(created) => {
            tracing::info!(provider = id, user = %created.0.id, "signed up with a provider");
            Ok(Some(created))
        }
        // a user took the email (or the account was linked) meanwhile
        Err(e) if e.code() == "conflict" => Err(linked_meanwhile()),
        Err(e) => Err(e),
    }
}

/// The provider's email, normalized, when it is a valid address.
pub(crate) fn usable_email(raw: Option<&str>) -> Option<String> {
    let email = normalize_email(raw?);
    is_email_address(&email).then_some(email)
}

fn secret_of(provider: &OAuthProviderConfig) -> Result<String, ApiError> {
    // validated at start-up; an environment variable unset since is the operator's problem
    provider.secret(&format!("auth.oauth[{}]", provider.id)).map_err(ApiError::internal)
}

fn pending_key(state: &AppState, csrf: &str) -> String {
    // only a digest of the state is stored: a look at Redis yields no usable callback
    state.redis.keys().oauth_state(&hex(&tokens::hash(csrf)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
