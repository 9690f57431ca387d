//! The signed-in person's own account: their sessions (where and when each was opened and
//! last used, and ending one, or every other one (a lost laptop), as `/v1/auth/sessions` does),
//! and changing their password (`auth::accounts::change_password`: the current one is asked
//! for, and every other session ends).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::accounts::{self, Client, removal_cookie};
use crate::auth::{Access, Principal, SessionLifetime, password};
use crate::db::users;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Sessions listed at most, the latest first.
const SHOWN: i64 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/account/sessions").get(sessions))
        .service(web::resource("/account/sessions/others/revoke").post(revoke_others))
        .service(web::resource("/account/sessions/{sessionId}/revoke").post(revoke))
        .service(web::resource("/account/password").get(password_page).post(change_password));
}

async fn sessions(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let (user, current) = access.principal.user()?;
    let now = Utc::now();
    let lifetime = SessionLifetime::of(&state.config.auth);
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let sessions =
        users::list_sessions(&mut conn, &user.id, now, lifetime.opened_after(now), None, SHOWN)
            .await
            .map_err(ApiError::from)?;
    drop(conn);
    let body = html! {
        main {
            h1 { "Your sessions" }
            table #sessions {
                thead { tr { th { "Signed in" } th { "Last used" } th { "From" } th { "Browser" } th { "Ends" } th {} } }
                tbody {
                    @for session in &sessions {
                        tr {
                            td { (session.created_at.format("%Y-%m-%d %H:%M UTC")) }
                            td { (session.last_seen_at.format("%Y-%m-%d %H:%M UTC")) }
                            td { (session.ip_address.as_deref().unwrap_or("")) }
                            td { (session.user_agent.as_deref().unwrap_or("")) }
                            td { (session.expires_at.format("%Y-%m-%d %H:%M UTC")) }
                            td {
                                @if session.id == current.id { strong { "this one" } }
                                @else {
                                    form method="post" action=(format!("/account/sessions/{}/revoke", session.id)) {
                                        button.link type="submit" { "End" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if sessions.len() > 1 {
                form method="post" action="/account/sessions/others/revoke" {
                    button type="submit" { "End every other session" }
                }
            }
            p { a href="/account/password" { "Change your password" } " (it ends every other session too)." }
        }
    };
    Ok(page(StatusCode::OK, layout("Sessions", Some(&viewer), body)))
}

async fn revoke_others(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, WebError> {
    let (user, current) = principal.user()?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    users::delete_other_sessions(&mut conn, &user.id, &current.id).await.map_err(ApiError::from)?;
    Ok(see_other("/account/sessions"))
}

/// Ends one of the person's sessions; 404 for one that is not theirs.
async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let (user, current) = principal.user()?;
    accounts::end_session(&state, &user.id, &path).await?;
    if *path != current.id {
        return Ok(see_other("/account/sessions"));
    }
    let mut response = see_other("/sign-in");
    response
        .add_cookie(&removal_cookie(&req, &state))
        .map_err(|_| ApiError::internal("cannot clear the cookie"))?;
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// `?changed` after a change went through.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Changed {
    changed: Option<String>,
}

async fn password_page(
    access: Result<Access, ApiError>,
    query: web::Query<Changed>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, password_form(&access, query.changed.is_some(), None)?))
}

async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (user, session) = access.principal.user()?;
    let PasswordForm { current_password, new_password } = form.into_inner();
    let client = Client::of(&req, &state);
    let changed = accounts::change_password(
        &state,
        &client,
        user,
        &session.id,
        current_password,
        new_password,
    )
    .await;
    Ok(match changed {
        Ok(()) => see_other("/account/password?changed"),
        Err(error) => page(error.status_code(), password_form(&access, false, Some(&error))?),
    })
}

/// The form, with `error`, or word that the password was `changed`.
fn password_form(
    access: &Access,
    changed: bool,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let body = html! {
        main.narrow {
            h1 { "Change your password" }
            @if changed {
                div.card.shown role="status" {
                    "Your password was changed, and your other sessions were ended: sign in there again with the new one."
                }
            }
            div.card {
                @if let Some(error) = error { (form_error(error)) }
                form method="post" action="/account/password" {
                    label for="current_password" { "Current password" }
                    input #current_password type="password" name="current_password" required autocomplete="current-password";
                    label for="new_password" { "New password (at least " (password::MIN_LENGTH) " characters)" }
                    input #new_password type="password" name="new_password" required autocomplete="new-password";
                    button type="submit" { "Change password" }
                }
            }
            p.muted { a href="/account/sessions" { "Your sessions" } }
        }
    };
    Ok(layout("Password", Some(&viewer), body))
}
