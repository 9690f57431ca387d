//! `/v1/auth`: sign-up, sign-in, sign-out, the current session and its active organization,
//! and the user's sessions (listed, and revoked one by one or all but the current one).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page};
use crate::auth::accounts::{self, Client, removal_cookie, session_cookie};
use crate::auth::{Principal, SessionLifetime};
use crate::db::users::{self, SessionListing, User};
use crate::db::{Cursor, organizations};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/sign-up").post(sign_up))
        .service(web::resource("/auth/sign-in").post(sign_in))
        .service(web::resource("/auth/sign-out").post(sign_out))
        .service(web::resource("/auth/session").get(session))
        .service(web::resource("/auth/sessions").get(list_sessions).delete(revoke_other_sessions))
        .service(web::resource("/auth/sessions/{sessionId}").delete(revoke_session))
        .service(web::resource("/auth/active-organization").post(set_active_organization));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
    pub image: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            email_verified: u.email_verified,
            image: u.image,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub user: UserView,
    /// The session token: send it as `Authorization: Bearer <token>` (it is also set as the
    /// `relayit_session` cookie).
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Compared trimmed and lower-cased.
    #[schema(value_type = crate::domain::schema::EmailAddress)]
    pub email: String,
    #[schema(value_type = crate::auth::password::Password)]
    pub password: String,
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

/// Creates a user with an organization of their own (owner) and its `default` project.
#[utoipa::path(post, path = "/v1/auth/sign-up", tag = "auth", request_body = SignUp,
    responses((status = 201, body = SignedIn, headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 403, description = "`forbidden`: sign-up is disabled on this server \
            (`auth.allow_signup`), or the request comes from another site (`Origin`)", body = ErrorBody),
        (status = 409, description = "`conflict`: an account with this email exists", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ups from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn sign_up(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<SignUp>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::check_credentials_request(&req, &state)?;
    let SignUp { email, password, name } = body.0;
    let client = Client::of(&req, &state);
    let (user, token) = accounts::sign_up(&state, &client, &email, password, &name).await?;
    Ok(HttpResponse::Created()
        .cookie(session_cookie(&req, &state, &token))
        .json(SignedIn { user: user.into(), token }))
}

/// Signs in with email and password; repeated failures from one address are throttled (429),
/// failures from anywhere slow the email's sign-ins down (see `auth::throttle`).
#[utoipa::path(post, path = "/v1/auth/sign-in", tag = "auth", request_body = SignIn,
    responses((status = 200, body = SignedIn, headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 401, description = "`unauthorized`: wrong email or password (the same answer \
            whether the email exists or not)", body = ErrorBody),
        (status = 403, description = "`forbidden`: the request comes from another site (`Origin`)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed sign-ins from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<SignIn>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::check_credentials_request(&req, &state)?;
    let SignIn { email, password } = body.0;
    let client = Client::of(&req, &state);
    let (user, token) = accounts::sign_in(&state, &client, &email, password).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&req, &state, &token))
        .json(SignedIn { user: user.into(), token }))
}

/// Revokes the current session.
#[utoipa::path(post, path = "/v1/auth/sign-out", tag = "auth", security(("session" = []), ("sessionCookie" = [])),
    responses((status = 204, description = "signed out; the cookie is removed")))]
pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (_, session) = principal.user()?;
    let mut conn = state.db.get().await?;
    users::delete_session(&mut conn, &session.id).await?;
    Ok(HttpResponse::NoContent().cookie(removal_cookie(&req, &state)).finish())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOrganization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub user: UserView,
    pub session: SessionInfo,
    pub active_organization_id: Option<String>,
    pub organizations: Vec<SessionOrganization>,
    /// The ways the user can sign in.
    pub methods: accounts::Methods,
}

/// The signed-in user, the session, and the organizations the user belongs to.
#[utoipa::path(get, path = "/v1/auth/session", tag = "auth", security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, body = SessionView)))]
pub async fn session(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (user, session) = principal.user()?;
    let mut conn = state.db.get().await?;
    // a user belongs to few organizations; 1000 bounds a pathological account
    let memberships = organizations::list_for_user(&mut conn, &user.id, None, 1000).await?;
    let organizations: Vec<SessionOrganization> = memberships
        .into_iter()
        .rev() // oldest first: the order the user joined them
        .map(|(org, member)| SessionOrganization {
            id: org.id,
            name: org.name,
            slug: org.slug,
            role: member.role,
        })
        .collect();
    let methods = accounts::Methods::of(&mut conn, user).await?;
    let active = session
        .active_organization_id
        .clone()
        .filter(|id| organizations.iter().any(|o| &o.id == id))
        .or_else(|| organizations.first().map(|o| o.id.clone()));
    Ok(HttpResponse::Ok().json(SessionView {
        user: user.clone().into(),
        session: SessionInfo {
            id: session.id.clone(),
            expires_at: session.expires_at,
            created_at: session.created_at,
        },
        active_organization_id: active,
        organizations,
        methods,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActiveOrganization {
    /// Organization id or slug.
    pub organization_id: String,
}

/// Chooses the organization that management routes address by default.
#[utoipa::path(post, path = "/v1/auth/active-organization", tag = "auth", security(("session" = []), ("sessionCookie" = [])),
    request_body = ActiveOrganization,
    responses((status = 204, description = "chosen"),
        (status = 404, description = "`not_found`: not one of the user's organizations", body = ErrorBody)))]
pub async fn set_active_organization(
    state: web::Data<AppState>,
    principal: Principal,
    body: Json<ActiveOrganization>,
) -> Result<HttpResponse, ApiError> {
    let (user, session) = principal.user()?;
    accounts::set_active_organization(&state, &user.id, &session.id, &body.0.organization_id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One of the user's sessions, as the user lists them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionListView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// When it was last used, to within five minutes.
    pub last_seen_at: DateTime<Utc>,
    /// When it ends unless used again (and at the latest `auth.session_max_lifetime` after
    /// `createdAt`).
    pub expires_at: DateTime<Utc>,
    /// The `User-Agent` it was opened with.
    pub user_agent: Option<String>,
    /// The client address it was opened from.
    pub ip_address: Option<String>,
    /// Whether this is the session of the request.
    pub current: bool,
}

/// The signed-in user's live sessions, newest first (a session, not an API key: 403).
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", params(ListQuery), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, body = Page<SessionListView>)))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (user, current) = principal.user()?;
    let page = query.page()?;
    let now = Utc::now();
    let lifetime = SessionLifetime::of(&state.config.auth);
    let mut conn = state.db.get().await?;
    let rows = users::list_sessions(
        &mut conn,
        &user.id,
        now,
        lifetime.opened_after(now),
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |s: &SessionListing| Cursor { created_at: s.created_at, id: s.id.clone() };
    let view = |s: SessionListing| SessionListView {
        current: s.id == current.id,
        id: s.id,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
        user_agent: s.user_agent,
        ip_address: s.ip_address,
    };
    Ok(HttpResponse::Ok().json(page.page(rows, key, view)))
}

/// Revokes every session of the signed-in user but the current one (signs out everywhere
/// else).
#[utoipa::path(delete, path = "/v1/auth/sessions", tag = "auth", security(("session" = []), ("sessionCookie" = [])),
    responses((status = 204, description = "every other session revoked")))]
pub async fn revoke_other_sessions(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (user, current) = principal.user()?;
    let mut conn = state.db.get().await?;
    users::delete_other_sessions(&mut conn, &user.id, &current.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes one of the signed-in user's sessions; the current one signs out. Another user's
/// session is not found (404).
#[utoipa::path(delete, path = "/v1/auth/sessions/{sessionId}", tag = "auth", security(("session" = []), ("sessionCookie" = [])),
    params(("sessionId" = String, Path, example = "ses_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 204, description = "revoked")))]
pub async fn revoke_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, current) = principal.user()?;
    accounts::end_session(&state, &user.id, &path).await?;
    let mut answer = HttpResponse::NoContent();
    if *path == current.id {
        answer.cookie(removal_cookie(&req, &state));
    }
    Ok(answer.finish())
}
