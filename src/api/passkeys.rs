//! `/v1/auth/passkeys`: a signed-in user's passkeys (registered, listed, renamed, removed),
//! and signing in with one. The ceremonies are `auth::passkeys`'; here they meet HTTP. Every
//! route answers 404 when the server offers no passkeys (`auth.passkeys` off, or no
//! `server.public_url` with a domain name).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::SignedIn;
use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page};
use crate::auth::accounts::{Client, session_cookie};
use crate::auth::passkeys::{self, CredentialFacts};
use crate::auth::{Principal, throttle};
use crate::db::Cursor;
use crate::db::passkeys::StoredPasskey;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/passkeys").get(list))
        .service(web::resource("/auth/passkeys/register/start").post(register_start))
        .service(web::resource("/auth/passkeys/register/finish").post(register_finish))
        .service(web::resource("/auth/passkeys/sign-in/start").post(sign_in_start))
        .service(web::resource("/auth/passkeys/sign-in/finish").post(sign_in_finish))
        .service(web::resource("/auth/passkeys/{passkeyId}").patch(rename).delete(remove));
}

/// A passkey of the user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyView {
    #[schema(example = "pky_01jf3q6zvqe3f7m1s9gkxw5h2c")]
    pub id: String,
    /// The name the user gave it; null when none.
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last sign-in with it; null before the first.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Whether the authenticator may back it up (sync it to the user's other devices).
    pub backup_eligible: bool,
    /// Whether it is backed up, as of its last use.
    pub backed_up: bool,
}

impl PasskeyView {
    fn of(row: StoredPasskey) -> Result<PasskeyView, ApiError> {
        let facts = CredentialFacts::of(&row.passkey)?;
        Ok(PasskeyView {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            backup_eligible: facts.backup_eligible,
            backed_up: facts.backup_state,
        })
    }
}

/// A ceremony's first step: what to hand the browser's WebAuthn call, and the id to answer
/// with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// Send it back with the authenticator's answer; good for one answer within 5 minutes.
    pub challenge_id: String,
    /// For `navigator.credentials.create()` (registration) or `.get()` (sign-in):
    /// `{publicKey: {...}}` in WebAuthn's JSON form, binary values in base64url (decode them
    /// to ArrayBuffers, or use `PublicKeyCredential.parseCreationOptionsFromJSON` /
    /// `parseRequestOptionsFromJSON`). A discoverable sign-in adds `mediation: "conditional"`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterFinish {
    /// The `challengeId` of `register/start`.
    pub challenge_id: String,
    /// A name for the passkey, to tell it apart in the list.
    #[schema(value_type = Option<crate::domain::schema::DisplayName>)]
    pub name: Option<String>,
    /// The `PublicKeyCredential` that `navigator.credentials.create()` returned, as JSON
    /// (`PublicKeyCredential.toJSON()`, binary values in base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskey {
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInStart {
    /// Whose passkeys to allow. Absent: any discoverable passkey of this server, the
    /// authenticator names its user. The answer is alike whether the email is known or not.
    #[schema(value_type = Option<crate::domain::schema::EmailAddress>)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignInFinish {
    /// The `challengeId` of `sign-in/start`.
    pub challenge_id: String,
    /// The `PublicKeyCredential` that `navigator.credentials.get()` returned, as JSON
    /// (`PublicKeyCredential.toJSON()`, binary values in base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Starts registering a passkey for the signed-in user.
#[utoipa::path(post, path = "/v1/auth/passkeys/register/start", tag = "auth",
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, body = Challenge),
        (status = 404, description = "`not_found`: this server offers no passkeys", body = ErrorBody)))]
pub async fn register_start(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let (challenge_id, options) = passkeys::start_registration(&state, user).await?;
    Ok(HttpResponse::Ok().json(Challenge { challenge_id, options }))
}

/// Finishes registering a passkey: checks the authenticator's answer to the challenge and
/// stores the credential.
#[utoipa::path(post, path = "/v1/auth/passkeys/register/finish", tag = "auth",
    security(("session" = []), ("sessionCookie" = [])), request_body = RegisterFinish,
    responses((status = 201, body = PasskeyView),
        (status = 400, description = "`validation_failed`: `challengeId` is not a registration \
            of the user's in progress (unknown, expired, already used, or another user's); \
            `credential` is not a credential, or its attestation does not verify; or another \
            field is invalid. `malformed_json`: the body is not JSON.", body = ErrorBody),
        (status = 404, description = "`not_found`: this server offers no passkeys", body = ErrorBody),
        (status = 409, description = "`conflict`: this credential is already registered", body = ErrorBody)))]
pub async fn register_finish(
    state: web::Data<AppState>,
    principal: Principal,
    body: Json<RegisterFinish>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let RegisterFinish { challenge_id, name, credential } = body.0;
    let row =
        passkeys::finish_registration(&state, user, &challenge_id, name.as_deref(), &credential)
            .await?;
    Ok(HttpResponse::Created().json(PasskeyView::of(row)?))
}

/// The signed-in user's passkeys, newest first.
#[utoipa::path(get, path = "/v1/auth/passkeys", tag = "auth", params(ListQuery),
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, body = Page<PasskeyView>),
        (status = 404, description = "`not_found`: this server offers no passkeys", body = ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let page = query.page()?;
    let rows = passkeys::list(&state, user, page.after.as_ref(), page.fetch()).await?;
    let key = |p: &StoredPasskey| Cursor { created_at: p.created_at, id: p.id.clone() };
    let mut views = Vec::with_capacity(rows.len());
    let page = page.page(rows, key, |row| row);
    for row in page.data {
        views.push(PasskeyView::of(row)?);
    }
    Ok(HttpResponse::Ok().json(Page { data: views, next_cursor: page.next_cursor }))
}

/// Renames one of the signed-in user's passkeys.
#[utoipa::path(patch, path = "/v1/auth/passkeys/{passkeyId}", tag = "auth",
    security(("session" = []), ("sessionCookie" = [])), request_body = RenamePasskey,
    params(("passkeyId" = String, Path, example = "pky_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 200, body = PasskeyView),
        (status = 404, description = "`not_found`: no such passkey of the user's, or this \
            server offers no passkeys", body = ErrorBody)))]
pub async fn rename(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    body: Json<RenamePasskey>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let row = passkeys::rename(&state, user, &path, &body.0.name).await?;
    Ok(HttpResponse::Ok().json(PasskeyView::of(row)?))
}

/// Removes one of the signed-in user's passkeys, unless it is their last way to sign in.
#[utoipa::path(delete, path = "/v1/auth/passkeys/{passkeyId}", tag = "auth",
    security(("session" = []), ("sessionCookie" = [])),
    params(("passkeyId" = String, Path, example = "pky_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 204, description = "removed"),
        (status = 404, description = "`not_found`: no such passkey of the user's, or this \
            server offers no passkeys", body = ErrorBody),
        (status = 409, description = "`conflict`: it is the user's last way to sign in (no \
            password, no other passkey, no linked account)", body = ErrorBody)))]
pub async fn remove(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    passkeys::remove(&state, user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts signing in with a passkey (no credentials needed).
#[utoipa::path(post, path = "/v1/auth/passkeys/sign-in/start", tag = "auth", request_body = SignInStart,
    responses((status = 200, body = Challenge),
        (status = 403, description = "`forbidden`: the request comes from another site (`Origin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: this server offers no passkeys", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ins started from this address \
            (`auth.sign_in_starts_per_address`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn sign_in_start(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<SignInStart>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::check_credentials_request(&req, &state)?;
    let client = Client::of(&req, &state);
    throttle::count_start(&state, &client.ip).await?;
    let (challenge_id, options) = passkeys::start_sign_in(&state, body.0.email.as_deref()).await?;
    Ok(HttpResponse::Ok().json(Challenge { challenge_id, options }))
}

/// Signs in with a passkey: checks the authenticator's answer to the challenge and opens a
/// session, as password sign-in does. Failures are throttled like password sign-ins (429).
#[utoipa::path(post, path = "/v1/auth/passkeys/sign-in/finish", tag = "auth", request_body = SignInFinish,
    responses((status = 200, body = SignedIn, headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 401, description = "`unauthorized`: the passkey could not be verified (unknown, \
            expired or used challenge; unknown or removed credential; bad signature; a sign \
            counter that did not move forward)", body = ErrorBody),
        (status = 403, description = "`forbidden`: the request comes from another site (`Origin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: this server offers no passkeys", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed sign-ins from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn sign_in_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<SignInFinish>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::check_credentials_request(&req, &state)?;
    let SignInFinish { challenge_id, credential } = body.0;
    let client = Client::of(&req, &state);
    let (user, token) =
        passkeys::finish_sign_in(&state, &client, &challenge_id, &credential).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&req, &state, &token))
        .json(SignedIn { user: user.into(), token }))
}
