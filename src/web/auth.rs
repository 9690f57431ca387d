//! Signing up, in and out in the browser. The forms post to the dashboard, which takes them
//! only from our own origin (login CSRF), and signs up and in through `auth::accounts`: the
//! same validation, throttles and hashing bound as `/v1/auth`.

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignUpForm {
    name: String,
    email: String,
    password: String,
}

async fn sign_in_page() -> HttpResponse {
    page(StatusCode::OK, sign_in_form("", None))
}

async fn sign_up_page(state: web::Data<AppState>) -> HttpResponse {
    page(StatusCode::OK, sign_up_form(&state, "", "", None))
}

async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let SignInForm { email, password } = form.into_inner();
    let signed_in = async {
        check_origin(&req, &state)?;
        accounts::sign_in(&state, &Client::of(&req, &state), &email, password).await
    };
    match signed_in.await {
        Ok((_, token)) => signed_in_response(&req, &state, &token),
        Err(error) => page(error.status_code(), sign_in_form(&email, Some(&error))),
    }
}

async fn sign_up(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignUpForm>,
) -> HttpResponse {
    let SignUpForm { name, email, password } = form.into_inner();
    let signed_up = async {
        check_origin(&req, &state)?;
        accounts::sign_up(&state, &Client::of(&req, &state), &email, password, &name).await
    };
    match signed_up.await {
        Ok((_, token)) => signed_in_response(&req, &state, &token),
        Err(error) => page(error.status_code(), sign_up_form(&state, &name, &email, Some(&error))),
    }
}

fn signed_in_response(req: &HttpRequest, state: &AppState, token: &str) -> HttpResponse {
    let mut response = see_other("/");
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

fn sign_in_form(email: &str, error: Option<&ApiError>) -> Markup {
    let body = html! {
        main.narrow {
            h1 { "Sign in" }
            div.card {
                @if let Some(error) = error { (form_error(error)) }
                form method="post" action="/sign-in" {
                    label for="email" { "Email" }
                    input #email type="email" name="email" value=(email) required autocomplete="username";
                    label for="password" { "Password" }
                    input #password type="password" name="password" required autocomplete="current-password";
                    button type="submit" { "Sign in" }
                }
            }
            p.muted { "No account yet? " a href="/sign-up" { "Sign up" } }
        }
    };
    layout("Sign in", None, body)
}

fn sign_up_form(state: &AppState, name: &str, email: &str, error: Option<&ApiError>) -> Markup {
    let body = html! {
        main.narrow {
            h1 { "Create your account" }
            div.card {
                @if !state.config.auth.allow_signup {
                    p.error { "Sign-up is disabled on this server: ask its operator for an invitation." }
                } @else {
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action="/sign-up" {
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
            p.muted { "Already have an account? " a href="/sign-in" { "Sign in" } }
        }
    };
    layout("Sign up", None, body)
}
