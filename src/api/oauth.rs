//! `/v1/auth/methods`, `/v1/auth/oauth/{providerId}/...` and `/v1/auth/accounts`: the ways to
//! sign in this server offers, signing in with (or linking) an OAuth / OpenID Connect provider
//! configured in `[[auth.oauth]]`, and the user's linked accounts.
//!
//! The flow itself is `auth::oauth`; this layer checks the request (`redirectTo`, the session
//! for linking), carries the browser binding cookie, and answers a browser's failed callback
//! with a page rather than JSON.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use maud::html;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::pagination::{ListQuery, Page};
use crate::auth::accounts::{self, Client, Method, session_cookie};
use crate::auth::oauth::{Callback, PENDING_TTL};
use crate::auth::{Principal, throttle};
use crate::config::{OAuthKind, OAuthProviderConfig};
use crate::db::Cursor;
use crate::db::linked_accounts::{self, LinkedAccount};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::web::prefers_html;

/// The cookie binding a started sign-in to the browser that started it.
const BINDING_COOKIE: &str = "relayit_oauth";
/// Where the binding cookie is sent: the callbacks only.
const BINDING_PATH: &str = "/v1/auth/oauth/";
/// The longest `redirectTo` taken.
const MAX_REDIRECT_CHARS: usize = 2048;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/methods").get(methods))
        .service(web::resource("/auth/oauth/{providerId}/start").get(start))
        .service(web::resource("/auth/oauth/{providerId}/callback").get(callback))
        .service(web::resource("/auth/accounts").get(list_accounts))
        .service(web::resource("/auth/accounts/{accountId}").delete(unlink_account));
}

crate::json_schema! {
    /// The kind of a provider, as `[[auth.oauth]] kind` names it.
    OAuthKindName => crate::domain::schema::one_of(
        &[OAuthKind::Github, OAuthKind::Google, OAuthKind::Oidc].map(OAuthKind::as_str),
    )
}

/// An OAuth / OpenID Connect provider people may sign in with.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthProviderView {
    /// The operator's id (`[[auth.oauth]] id`), as in `/v1/auth/oauth/{providerId}/start`.
    #[schema(example = "github")]
    pub id: String,
    /// The button label.
    #[schema(example = "GitHub")]
    pub name: String,
    #[schema(value_type = OAuthKindName, example = "github")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignInMethods {
    /// Email and password (always offered).
    pub password: bool,
    /// Whether passkeys are offered (`auth.passkeys` with `server.public_url`).
    pub passkeys: bool,
    pub oauth: Vec<OAuthProviderView>,
}

/// The ways to sign in this server offers.
#[utoipa::path(get, path = "/v1/auth/methods", tag = "auth",
    responses((status = 200, body = SignInMethods)))]
pub async fn methods(state: web::Data<AppState>) -> HttpResponse {
    let oauth = state
        .config
        .auth
        .oauth
        .iter()
        .map(|p| OAuthProviderView {
            id: p.id.clone(),
            name: p.display_name().to_owned(),
            kind: p.kind.as_str(),
        })
        .collect();
    HttpResponse::Ok().json(SignInMethods {
        password: true,
        passkeys: state.config.passkeys_enabled(),
        oauth,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where to go once signed in: a path on this server (`/projects`), default `/`.
    #[param(
        example = "/projects",
        max_length = 2048,
        pattern = r"^/([^/\\\x00-\x1f\x7f-\x9f][^\\\x00-\x1f\x7f-\x9f]*)?$"
    )]
    pub redirect_to: Option<String>,
    /// Link the provider's account to the signed-in user instead of signing in (needs a
    /// session).
    pub link: Option<bool>,
}

fn provider<'a>(state: &'a AppState, id: &str) -> Result<&'a OAuthProviderConfig, ApiError> {
    state
        .config
        .auth
        .oauth
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found("sign-in provider"))
}

/// `redirectTo` when it is a path on this server: one `/`, then no `/` or `\` (which browsers
/// read as another host), no control characters.
fn local_path(raw: Option<&str>) -> Result<String, ApiError> {
    let Some(path) = raw else { return Ok("/".to_owned()) };
    let local =
        crate::web::auth::local_path(path).is_some() && path.chars().count() <= MAX_REDIRECT_CHARS;
    if local {
        Ok(path.to_owned())
    } else {
        Err(ApiError::invalid_field(
            "redirectTo",
            "must be a path on this server starting with a single `/`, such as /projects",
        ))
    }
}

/// Our callback for `provider`: `server.public_url`'s, or else the one this request came to.
fn redirect_uri(req: &HttpRequest, state: &AppState, provider: &OAuthProviderConfig) -> String {
    let public = state.config.server.public_url.trim_end_matches('/');
    let base =
        if public.is_empty() { crate::auth::own_origin(req, state) } else { public.to_owned() };
    format!("{base}/v1/auth/oauth/{}/callback", provider.id)
}

fn binding_cookie(req: &HttpRequest, state: &AppState, value: &str) -> Cookie<'static> {
    let secure = session_cookie(req, state, "").secure().unwrap_or(false);
    Cookie::build(BINDING_COOKIE, value.to_owned())
        .path(BINDING_PATH)
        .http_only(true)
        // Lax: sent on the provider's top-level redirect back to us
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(PENDING_TTL.as_secs() as i64))
        .finish()
}

/// Starts signing in with a provider: 302 to its authorization page, which sends the browser
/// back to the callback. With `link=true` (signed in), the provider's account is linked to
/// the user instead; a browser must then come from this server's own pages (`Sec-Fetch-Site`).
#[utoipa::path(get, path = "/v1/auth/oauth/{providerId}/start", tag = "auth",
    params(("providerId" = String, Path, description = "An `id` of `GET /v1/auth/methods`", example = "github"), StartQuery),
    responses(
        (status = 302, description = "to the provider's authorization page (with `state`, a PKCE \
            S256 `code_challenge` and, for OpenID Connect, a `nonce`)",
            headers(("Location" = String, description = "the provider's authorization URL"),
                ("Set-Cookie" = String, description = "`relayit_oauth`: binds the sign-in to this browser"))),
        (status = 400, description = "`validation_failed`: `redirectTo` is not a path on this server, \
            or `link` is not a boolean", body = ErrorBody),
        (status = 401, description = "`unauthorized`: `link=true` without a session (the session \
            token as `Authorization: Bearer`, or the session cookie; nothing else needs one)", body = ErrorBody),
        (status = 403, description = "`forbidden`: `link=true` with an API key, or from another \
            site's page", body = ErrorBody),
        (status = 404, description = "`not_found`: no provider with this id is configured", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ins started from this address \
            (`auth.sign_in_starts_per_address`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "`unavailable`: the provider's discovery document cannot be \
            fetched, or Redis is away", body = ErrorBody)))]
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider(&state, &path)?;
    let redirect_to = local_path(query.redirect_to.as_deref())?;
    let link_user = if query.link.unwrap_or(false) {
        let principal = Principal::extract(&req).await?;
        let (user, _) = principal.user()?;
        let site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if site.is_some_and(|s| s != "same-origin" && s != "none") {
            return Err(ApiError::forbidden(
                "linking an account must start from this server's own pages",
            ));
        }
        Some(user.id.clone())
    } else {
        None
    };
    throttle::count_start(&state, &Client::of(&req, &state).ip).await?;
    let callback = redirect_uri(&req, &state, provider);
    let started =
        state.oauth.start(&state, provider, &callback, &redirect_to, link_user.as_deref()).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, started.url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(binding_cookie(&req, &state, &started.binding))
        .finish())
}

/// What the provider sends back. Providers add parameters of their own; they are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` of the authorization request.
    pub state: Option<String>,
    /// The provider's refusal (`access_denied` when the person declined).
    pub error: Option<String>,
}

/// The provider's redirect back: on success, the session cookie and a 302 to `redirectTo`. A
/// failure (a bad, expired or reused `state`, a sign-in started in another browser, a refused
/// code, an ID token that fails its checks, an email that is not verified where linking needs
/// it, sign-up disabled) is 400 `oauth_failed` and opens no session; a browser gets a page.
#[utoipa::path(get, path = "/v1/auth/oauth/{providerId}/callback", tag = "auth",
    params(("providerId" = String, Path, example = "github"), CallbackQuery),
    responses(
        (status = 302, description = "signed in (or the account linked): to `redirectTo`",
            headers(("Location" = String, description = "`redirectTo` of the start, default `/`"),
                ("Set-Cookie" = String, description = "the session cookie (not when linking)"))),
        (status = 400, description = "`oauth_failed`: the sign-in did not happen and no session \
            was opened; the message says why. `text/html` when the request prefers it.",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`not_found`: no provider with this id is configured", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed sign-ins from this address",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> HttpResponse {
    let outcome = finish(&req, &state, &path, query.into_inner()).await;
    let mut gone = binding_cookie(&req, &state, "");
    gone.make_removal();
    match outcome {
        Ok(response) => {
            let mut response = response;
            // the flow is over either way; a removal cannot fail on a fresh response
            let _ = response.add_cookie(&gone);
            response
        }
        Err(error) => {
            let mut response =
                if prefers_html(&req) { failure_page(&error) } else { error.error_response() };
            let _ = response.add_cookie(&gone);
            response
        }
    }
}

async fn finish(
    req: &HttpRequest,
    state: &AppState,
    provider_id: &str,
    query: CallbackQuery,
) -> Result<HttpResponse, ApiError> {
    let provider = provider(state, provider_id)?;
    let client = Client::of(req, state);
    let callback = Callback {
        code: query.code,
        state: query.state,
        error: query.error,
        binding: req.cookie(BINDING_COOKIE).map(|c| c.value().to_owned()),
    };
    let finished = state.oauth.finish(state, &client, provider, callback).await?;
    let mut response = HttpResponse::Found();
    response
        .insert_header((header::LOCATION, finished.redirect_to))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some((_, token)) = finished.session {
        response.cookie(session_cookie(req, state, &token));
    }
    Ok(response.finish())
}

/// The page a browser gets when the callback fails.
fn failure_page(error: &ApiError) -> HttpResponse {
    let body = html! {
        main.narrow {
            h1 { "Sign-in failed" }
            p.error role="alert" { (error.message()) }
            p { a href="/sign-in" { "Back to sign-in" } }
        }
    };
    let mut response =
        crate::web::page(error.status_code(), crate::web::layout("Sign-in failed", None, body));
    if let Some(after) = error.error_response().headers().get(header::RETRY_AFTER).cloned() {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}

/// An account at a provider linked to the user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAccountView {
    #[schema(example = "acc_01jf3q6zvqe3f7m1s9gkxw5h2c")]
    pub id: String,
    /// The operator's provider id (`[[auth.oauth]] id`).
    #[schema(example = "github")]
    pub provider: String,
    #[schema(value_type = OAuthKindName, example = "github")]
    pub kind: String,
    /// The email the provider gave when the account was linked (empty when it gave none).
    pub email: String,
    pub created_at: DateTime<Utc>,
}

impl From<LinkedAccount> for LinkedAccountView {
    fn from(a: LinkedAccount) -> Self {
        Self {
            id: a.id,
            provider: a.provider_id,
            kind: a.kind,
            email: a.email,
            created_at: a.created_at,
        }
    }
}

/// The signed-in user's linked accounts, newest first.
#[utoipa::path(get, path = "/v1/auth/accounts", tag = "auth", params(ListQuery),
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, body = Page<LinkedAccountView>)))]
pub async fn list_accounts(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let rows =
        linked_accounts::list(&mut conn, &user.id, page.after.as_ref(), page.fetch()).await?;
    let key = |a: &LinkedAccount| Cursor { created_at: a.created_at, id: a.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, LinkedAccountView::from)))
}

/// Unlinks one of the signed-in user's accounts; another user's is not found (404). Refused
/// (409) when it is the user's last way to sign in.
#[utoipa::path(delete, path = "/v1/auth/accounts/{accountId}", tag = "auth",
    security(("session" = []), ("sessionCookie" = [])),
    params(("accountId" = String, Path, example = "acc_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 204, description = "unlinked"),
        (status = 409, description = "`conflict`: the user's last way to sign in (no password, \
            passkey or other account would be left)", body = ErrorBody)))]
pub async fn unlink_account(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    accounts::remove_method(&state, &user.id, Method::Account(&path)).await?;
    Ok(HttpResponse::NoContent().finish())
}
