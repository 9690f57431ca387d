//! The signed-in person's own sessions: where and when each was opened and last used, and
//! ending one, or every other one (a lost laptop), as `/v1/auth/sessions` does.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use maud::html;

use crate::auth::accounts::{self, removal_cookie};
use crate::auth::{Access, Principal, SessionLifetime};
use crate::db::users;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, layout, page, reader, see_other};

/// Sessions listed at most, the latest first.
const SHOWN: i64 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/account/sessions").get(sessions))
        .service(web::resource("/account/sessions/others/revoke").post(revoke_others))
        .service(web::resource("/account/sessions/{sessionId}/revoke").post(revoke));
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
