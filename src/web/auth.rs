//! Signing up, in and out in the browser. The forms post to the dashboard, which takes them
//! only from our own origin (login CSRF), and signs up and in through `auth::accounts`: the
//! same validation, throttles and hashing bound as `/v1/auth`.
//!
//! A page that needs a signed-in person (an invitation's) sends there with `next`, the page to
//! come back to; only a path of this site is followed ([`local_path`]), so a link cannot use
//! the sign-in to send someone elsewhere (an open redirect).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::accounts::{self, Client, removal_cookie, session_cookie};
use crate::auth::{Principal, check_origin};
use crate::db::users;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, see_other};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sign-in").get(sign_in_page).post(sign_in))
        .service(web::resource("/sign-up").get(sign_up_page).post(sign_up))
        .service(web::resource("/sign-out").post(sign_out));
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    email: String,
    password: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignUpForm {
    name: String,
    email: String,
    password: String,
    next: String,
}

/// The page to return to after signing in or up.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Next {
    next: String,
}

/// `next` when it is a path of this site: it starts with one `/` (`//host` and `/\host` are
/// other hosts to a browser) and holds no backslash or control character.
pub fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_control());
    local.then_some(next)
}

/// `page` (the sign-in or sign-up page) asked to come back to `next` afterwards.
pub fn with_next(page: &str, next: &str) -> String {
    match local_path(next) {
        Some(next) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish();
            format!("{page}?{query}")
        }
        None => page.to_owned(),
    }
}

async fn sign_in_page(state: web::Data<AppState>, next: web::Query<Next>) -> HttpResponse {
    page(StatusCode::OK, sign_in_form(&state, "", &next.next, None))
}

async fn sign_up_page(state: web::Data<AppState>, next: web::Query<Next>) -> HttpResponse {
    page(StatusCode::OK, sign_up_form(&state, "", "", &next.next, None))
}

async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let SignInForm { email, password, next } = form.into_inner();
    let signed_in = async {
        check_origin(&req, &state)?;
        accounts::sign_in(&state, &Client::of(&req, &state), &email, password).await
    };
    match signed_in.await {
        Ok((_, token)) => signed_in_response(&req, &state, &token, &next),
        Err(error) => page(error.status_code(), sign_in_form(&state, &email, &next, Some(&error))),
    }
}

async fn sign_up(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignUpForm>,
) -> HttpResponse {
    let SignUpForm { name, email, password, next } = form.into_inner();
    let signed_up = async {
        check_origin(&req, &state)?;
        accounts::sign_up(&state, &Client::of(&req, &state), &email, password, &name).await
    };
    match signed_up.await {
        Ok((_, token)) => signed_in_response(&req, &state, &token, &next),
        Err(error) => {
            page(error.status_code(), sign_up_form(&state, &name, &email, &next, Some(&error)))
        }
    }
}

/// Signed in: the session cookie, and on to `next` (when local) or the overview.
fn signed_in_response(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    next: &str,
) -> HttpResponse {
    let mut response = see_other(local_path(next).unwrap_or("/"));
    if let Err(error) = response.add_cookie(&session_cookie(req, state, token)) {
        tracing::error!(%error, "cannot set the session cookie");
        return WebError::from(ApiError::internal("cannot set the session cookie"))
            .error_response();
    }
    response
}

/// Ends the session (the `Origin` check comes with the cookie's authentication).
async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, WebError> {
    let (_, session) = principal.user()?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    users::delete_session(&mut conn, &session.id).await.map_err(ApiError::from)?;
    let mut response = see_other("/sign-in");
    response
        .add_cookie(&removal_cookie(&req, &state))
        .map_err(|_| ApiError::internal("cannot clear the cookie"))?;
    Ok(response)
}

/// The hidden field that carries `next` through a form, when it is local.
fn next_field(next: &str) -> Markup {
    html! {
        @if let Some(next) = local_path(next) {
            input type="hidden" name="next" value=(next);
        }
    }
}

/// Where signing in with the configured provider `id` starts, coming back to `next`.
fn oauth_start(id: &str, next: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirectTo", local_path(next).unwrap_or("/"))
        .finish();
    format!("/v1/auth/oauth/{id}/start?{query}")
}

fn sign_in_form(state: &AppState, email: &str, next: &str, error: Option<&ApiError>) -> Markup {
    let passkeys = state.config.passkeys_enabled();
    let providers = &state.config.auth.oauth;
    let body = html! {
        main.narrow {
            h1 { "Sign in" }
            @if local_path(next).is_some() {
                p.muted { "Sign in, or sign up, to continue." }
            }
            div.card {
                @if let Some(error) = error { (form_error(error)) }
                form method="post" action="/sign-in" {
                    (next_field(next))
                    label for="email" { "Email" }
                    // "webauthn": the browser may offer its passkeys in the field's autofill
                    input #email type="email" name="email" value=(email) required
                        autocomplete=(if passkeys { "username webauthn" } else { "username" });
                    label for="password" { "Password" }
                    input #password type="password" name="password" required autocomplete="current-password";
                    button type="submit" { "Sign in" }
                }
            }
            @if passkeys || !providers.is_empty() {
                div.card.alternatives {
                    @if passkeys {
                        div data-passkey-sign-in data-next=(local_path(next).unwrap_or("/")) {
                            button type="button" { "Sign in with a passkey" }
                            p.error role="alert" hidden data-passkey-error {}
                        }
                    }
                    @for provider in providers {
                        p { a.button href=(oauth_start(&provider.id, next)) { "Continue with " (provider.display_name()) } }
                    }
                }
            }
            p.muted { "No account yet? " a href=(with_next("/sign-up", next)) { "Sign up" } }
        }
    };
    layout("Sign in", None, body)
}

fn sign_up_form(
    state: &AppState,
    name: &str,
    email: &str,
    next: &str,
    error: Option<&ApiError>,
) -> Markup {
    let body = html! {
        main.narrow {
            h1 { "Create your account" }
            div.card {
                @if !state.config.auth.allow_signup {
                    p.error { "Sign-up is disabled on this server: ask its operator for an invitation." }
                } @else {
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action="/sign-up" {
                        (next_field(next))
                        label for="name" { "Your name" }
                        input #name type="text" name="name" value=(name) required autocomplete="name";
                        label for="email" { "Email" }
                        input #email type="email" name="email" value=(email) required autocomplete="username";
                        label for="password" { "Password" }
                        input #password type="password" name="password" required autocomplete="new-password";
                        button type="submit" { "Sign up" }
                    }
                }
            }
            p.muted { "Already have an account? " a href=(with_next("/sign-in", next)) { "Sign in" } }
        }
    };
    layout("Sign up", None, body)
}
