//! Signing up and in, changing a password, choosing the active organization and ending
//! sessions, once for every surface that offers them: the JSON API (`/v1/auth/...`) and the
//! dashboard's forms. Each surface checks that the request is its kind (JSON, or a form from
//! our own origin) and turns the result into its answer; the rules (validation, throttles, the
//! hashing bound, the organization a new user gets, the session) are here, and so are those
//! every way of signing in shares: a new user's organization, opening a session, and the rule
//! that a user always keeps one way to sign in ([`remove_method`]).

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::auth::{SESSION_COOKIE, SessionLifetime, password, throttle, tokens};
use crate::db::users::{self, NewSession, NewUser, User};
use crate::db::{linked_accounts, organizations, passkeys};
use crate::domain::ids;
use crate::domain::recipient::normalize_email;
use crate::domain::validate::Validator;
use crate::error::ApiError;
use crate::state::AppState;

/// Where a sign-in came from, recorded on the session.
pub struct Client {
    pub ip: String,
    pub agent: Option<String>,
}

impl Client {
    pub fn of(req: &HttpRequest, state: &AppState) -> Client {
        let agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(|a| {
            // bounded: the header is the client's to fill
            a.chars().take(512).collect()
        });
        Client { ip: crate::auth::client_ip(req, &state.config.server), agent }
    }
}

/// The session cookie carrying `token` (empty, with [`Cookie::make_removal`], to sign out).
pub fn session_cookie(req: &HttpRequest, state: &AppState, token: &str) -> Cookie<'static> {
    let https = req.connection_info().scheme() == "https"
        || state.config.server.public_url.starts_with("https://");
    // the session itself may end sooner (unused for auth.session_ttl), never later
    let max_age = actix_web::cookie::time::Duration::seconds(
        state.config.auth.session_max_lifetime.as_secs().min(i64::MAX as u64) as i64,
    );
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https)
        .max_age(max_age)
        .finish()
}

/// The cookie that takes the session cookie away (signing out, ending the current session).
pub fn removal_cookie(req: &HttpRequest, state: &AppState) -> Cookie<'static> {
    let mut gone = session_cookie(req, state, "");
    gone.make_removal();
    gone
}

/// Makes `organization` (an id or slug), one the user belongs to, the active organization of
/// their session `session_id`; 404 for any other.
pub async fn set_active_organization(
    state: &AppState,
    user_id: &str,
    session_id: &str,
    organization: &str,
) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    let (org, _) = organizations::find_membership(&mut conn, organization, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    users::set_active_organization(&mut conn, session_id, &org.id).await?;
    Ok(())
}

/// Ends the session `session_id` of `user_id`; 404 for another user's, or one already ended.
pub async fn end_session(
    state: &AppState,
    user_id: &str,
    session_id: &str,
) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    if users::delete_user_session(&mut conn, user_id, session_id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("session"))
    }
}

/// Opens a session for `user`, who has just proved who they are (a password, a provider, a
/// passkey), in their first organization: the new session's token.
pub async fn open_session_for(
    state: &AppState,
    client: &Client,
    user: &User,
) -> Result<String, ApiError> {
    let mut conn = state.db.get().await?;
    let active = organizations::first_for_user(&mut conn, &user.id).await?.map(|(org, _)| org.id);
    Ok(open_session(&mut conn, state, client, &user.id, active.as_deref()).await?)
}

/// Opens a session for `user_id`, returning its token.
async fn open_session(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    client: &Client,
    user_id: &str,
    active_org: Option<&str>,
) -> diesel::QueryResult<String> {
    let token = tokens::new_token();
    let hash = tokens::hash(&token);
    let id = ids::new_id(ids::SESSION);
    let now = Utc::now();
    let session = NewSession {
        id: &id,
        user_id,
        token_hash: &hash,
        active_organization_id: active_org,
        expires_at: SessionLifetime::of(&state.config.auth).expiry(now, now),
        ip_address: Some(&client.ip),
        user_agent: client.agent.as_deref(),
        created_at: now,
        last_seen_at: now,
    };
    users::create_session(conn, session).await?;
    Ok(token)
}

/// Creates a user with an organization of their own (owner) and its `default` project, and
/// opens their first session: the user and the session's token.
pub async fn sign_up(
    state: &AppState,
    client: &Client,
    email: &str,
    password: String,
    name: &str,
) -> Result<(User, String), ApiError> {
    if !state.config.auth.allow_signup {
        return Err(ApiError::forbidden("sign-up is disabled on this server"));
    }
    let email = normalize_email(email);
    let mut check = Validator::new();
    check.email("email", &email);
    password::check(&mut check, "password", &password);
    check.name("name", name);
    check.finish()?;

    let counted = throttle::reserve_sign_up(state, &client.ip).await?;
    let hash = match state.passwords.hash(password).await {
        Ok(hash) => hash,
        Err(busy) => {
            give_back(counted.untested(state).await);
            return Err(busy.into());
        }
    };
    let new = NewAccount {
        email: &email,
        name,
        password_hash: Some(&hash),
        email_verified: false,
        linked: None,
    };
    create_user(state, client, new).await
}

/// A user about to be created.
pub struct NewAccount<'a> {
    /// Normalized (`normalize_email`) and valid.
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub email_verified: bool,
    /// The provider account they signed up with, linked in the same transaction.
    pub linked: Option<LinkTo<'a>>,
}

/// An OAuth / OpenID Connect account to link to a user.
#[derive(Clone, Copy)]
pub struct LinkTo<'a> {
    pub provider_id: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub kind: &'a str,
}

impl LinkTo<'_> {
    /// Links the account to `user_id`.
    pub async fn insert(
        self,
        conn: &mut AsyncPgConnection,
        user_id: &str,
    ) -> diesel::QueryResult<linked_accounts::LinkedAccount> {
        let id = ids::new_id(ids::ACCOUNT);
        let row = linked_accounts::NewLinkedAccount {
            id: &id,
            user_id,
            provider_id: self.provider_id,
            account_id: self.subject,
            email: self.email,
            kind: self.kind,
        };
        linked_accounts::insert(conn, row).await
    }
}

/// Creates a user with an organization of their own (owner) and its `default` project, links
/// the account they signed up with if any, and opens their first session: the user and the
/// session's token. 409 when the email is taken.
pub async fn create_user(
    state: &AppState,
    client: &Client,
    new: NewAccount<'_>,
) -> Result<(User, String), ApiError> {
    let name = new.name.trim();
    let mut conn = state.db.get().await?;
    // Two sign-ups racing for the same derived organization slug: the loser retries.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn
            .transaction::<(User, String), diesel::result::Error, _>(async |conn| {
                let user_id = ids::new_id(ids::USER);
                let row = NewUser {
                    id: &user_id,
                    email: new.email,
                    name,
                    password_hash: new.password_hash,
                    email_verified: new.email_verified,
                };
                let user = users::insert(conn, row).await?;
                let org_name = format!("{name}'s Organization");
                let (org, _) =
                    organizations::create_with_owner(conn, &org_name, None, &user.id).await?;
                if let Some(link) = new.linked {
                    link.insert(conn, &user.id).await?;
                }
                let token = open_session(conn, state, client, &user.id, Some(&org.id)).await?;
                Ok((user, token))
            })
            .await;
        match result {
            Ok(done) => return Ok(done),
            Err(e) if unique_violation_on(&e, "users_email_key") => {
                return Err(ApiError::conflict("an account with this email already exists"));
            }
            Err(e) if attempt < 3 && unique_violation_on(&e, "organizations_slug_key") => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The ways a user can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Methods {
    /// Whether they have a password.
    pub password: bool,
    /// How many passkeys they have.
    pub passkeys: i64,
    /// How many OAuth / OpenID Connect accounts are linked to them.
    pub accounts: i64,
}

impl Methods {
    pub async fn of(conn: &mut AsyncPgConnection, user: &User) -> diesel::QueryResult<Methods> {
        Ok(Methods {
            password: user.password_hash.is_some(),
            passkeys: passkeys::count(conn, &user.id).await?,
            accounts: linked_accounts::count(conn, &user.id).await?,
        })
    }

    fn total(self) -> i64 {
        i64::from(self.password) + self.passkeys + self.accounts
    }
}

/// A way of signing in to remove.
pub enum Method<'a> {
    /// A linked account, by id.
    Account(&'a str),
    /// A passkey, by id.
    Passkey(&'a str),
}

/// Removes one of `user_id`'s ways of signing in: 404 when they have no such one, 409 when it
/// is their last (no password, no other account, no passkey would be left). The user's row is
/// locked meanwhile, so two removals at once cannot both pass the check.
pub async fn remove_method(
    state: &AppState,
    user_id: &str,
    method: Method<'_>,
) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        users::lock(conn, user_id).await?;
        let user = users::find(conn, user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
        let (removed, what) = match method {
            Method::Account(id) => (linked_accounts::delete(conn, user_id, id).await?, "account"),
            Method::Passkey(id) => (passkeys::delete(conn, user_id, id).await?, "passkey"),
        };
        if !removed {
            return Err(ApiError::not_found(what));
        }
        // counted after the removal, in the same transaction: none left rolls it back
        if Methods::of(conn, &user).await?.total() == 0 {
            return Err(ApiError::conflict(format!(
                "this {what} is your last way to sign in: set a password, link an account or \
                 add a passkey first"
            )));
        }
        Ok(())
    })
    .await
}

/// Signs in with email and password: the user and the new session's token. Repeated failures
/// from one address are throttled (429), failures from anywhere slow the email's sign-ins down
/// (see `auth::throttle`).
pub async fn sign_in(
    state: &AppState,
    client: &Client,
    email: &str,
    password: String,
) -> Result<(User, String), ApiError> {
    let email = normalize_email(email);
    let checked = throttled(state, client, &email, check_password(state, &email, password)).await?;
    let user = checked.ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid email or password",
        )
    })?;
    let token = open_session_for(state, client, &user).await?;
    Ok((user, token))
}

/// Changes `user`'s password from `current` to `new` (checked as sign-up checks a password),
/// and ends every session of theirs but `keep`: whoever else was signed in must sign in with
/// the new one. A wrong `current` counts as a failed sign-in of their email (the same
/// throttle), so a session cannot be used to guess the password.
pub async fn change_password(
    state: &AppState,
    client: &Client,
    user: &User,
    keep: &str,
    current: String,
    new: String,
) -> Result<(), ApiError> {
    let mut check = Validator::new();
    password::check(&mut check, "new_password", &new);
    if new == current {
        check.error("new_password", "must differ from the current password");
    }
    check.finish()?;
    let stored = user.password_hash.clone();
    let verified = async { Ok(state.passwords.verify(current, stored).await?.then_some(())) };
    throttled(state, client, &user.email, verified)
        .await?
        .ok_or_else(|| ApiError::invalid_field("current_password", "is not your password"))?;
    let hash = state.passwords.hash(new).await?;
    let mut conn = state.db.get().await?;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        users::set_password(conn, &user.id, &hash).await?;
        users::delete_other_sessions(conn, &user.id, keep).await?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Runs `check`, a password check for `email` (`Some` when the password was right), under the
/// sign-in throttle: 429 when the client is over its limit, held back after the email's
/// recent failures, and settled with the outcome.
async fn throttled<T>(
    state: &AppState,
    client: &Client,
    email: &str,
    check: impl Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Option<T>, ApiError> {
    let guess = throttle::reserve(state, email, &client.ip).await?;
    settle_guess(state, guess, check).await
}

/// Runs `check`, a sign-in check (`Some` when it passed), for the reserved `guess`: held back
/// after its email's recent failures, and settled with the outcome. Every way of signing in
/// with a secret the user proves (password, passkey) goes through here.
pub async fn settle_guess<T>(
    state: &AppState,
    guess: throttle::Guess,
    check: impl Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Option<T>, ApiError> {
    let delay = guess.delay(&state.config.auth);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match check.await {
        Ok(Some(found)) => {
            guess.succeeded(state).await?;
            Ok(Some(found))
        }
        Ok(None) => {
            guess.failed(state).await?;
            Ok(None)
        }
        Err(unchecked) => {
            give_back(guess.untested(state).await);
            Err(unchecked)
        }
    }
}

/// Whether `error` is a unique violation of constraint `name`.
pub fn unique_violation_on(error: &diesel::result::Error, name: &str) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(name)
    )
}

/// The user with `email` when `password` is theirs. No database connection is held while the
/// password is verified (which may wait for a hashing slot).
async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<Option<User>, ApiError> {
    let user = users::find_by_email(&mut *state.db.get().await?, email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    Ok(if state.passwords.verify(password, stored).await? { user } else { None })
}

/// Giving a throttle count back is a courtesy to the client: when Redis fails there, the
/// answer is still the original error, and the count expires with its window.
fn give_back(result: Result<(), ApiError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not give a throttle count back");
    }
}
