//! The page an invitation's link opens (`/invitations/{token}`, the link the members page shows
//! the inviter): the organization and the role on offer, and a button that accepts. Someone
//! not signed in is sent to sign in (or up) and brought back. Whether the invitation can be
//! accepted is decided by `manage::members`, as `/v1/invitations/{token}/accept` decides it, and
//! a refusal is shown with its status and what to do about it. Accepting makes the
//! organization the session's active one, so the person sees it at once.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};

use crate::auth::{Principal, accounts};
use crate::db::users::User;
use crate::error::ApiError;
use crate::manage::members;
use crate::state::AppState;
use crate::web::auth::with_next;
use crate::web::{WebError, form_error, layout, page, see_other};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/invitations/{token}").get(show))
        .service(web::resource("/invitations/{token}/accept").post(accept));
}

/// For someone not signed in who posted the form: to sign in (or up), and back to `token`'s
/// page.
fn to_sign_in(token: &str) -> HttpResponse {
    see_other(&with_next("/sign-in", &format!("/invitations/{token}")))
}

async fn show(
    state: web::Data<AppState>,
    principal: Result<Principal, ApiError>,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    // not signed in: to sign in, and back here (`web::back_after_sign_in`)
    let principal = principal?;
    let (user, _) = principal.user()?;
    Ok(match members::invitation_for(&state, user, &token).await {
        Ok((invitation, org)) => {
            let body = html! {
                h1 { "Join " (org.name) }
                div.card {
                    p { "You are invited to join " strong { (org.name) } " as " strong { (invitation.role) } "." }
                    p.muted { "Signed in as " (user.email) ". The invitation expires on " (invitation.expires_at.format("%Y-%m-%d %H:%M UTC")) "." }
                    form method="post" action=(format!("/invitations/{}/accept", token.as_str())) {
                        button type="submit" { "Accept the invitation" }
                    }
                }
            };
            page(StatusCode::OK, invitation_page(body))
        }
        Err(error) => refused(user, &error),
    })
}

async fn accept(
    state: web::Data<AppState>,
    principal: Result<Principal, ApiError>,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let principal = match principal {
        Err(error) if error.status_code() == StatusCode::UNAUTHORIZED => {
            return Ok(to_sign_in(&token));
        }
        principal => principal?,
    };
    let (user, session) = principal.user()?;
    match members::accept(&state, user, &token).await {
        Ok(member) => {
            accounts::set_active_organization(
                &state,
                &user.id,
                &session.id,
                &member.organization_id,
            )
            .await?;
            Ok(see_other("/"))
        }
        Err(error) => Ok(refused(user, &error)),
    }
}

/// Why the invitation cannot be accepted, with the status accepting gave, and what to do.
fn refused(user: &User, error: &ApiError) -> HttpResponse {
    let status = error.status_code();
    let body = html! {
        h1 { "Invitation" }
        div.card {
            (form_error(error))
            @match status {
                StatusCode::FORBIDDEN => {
                    p { "You are signed in as " (user.email) ". Sign out, then sign in (or sign up) with the address the invitation was sent to, and open the link again." }
                    form method="post" action="/sign-out" { button type="submit" { "Sign out" } }
                }
                StatusCode::GONE => p { "Ask whoever invited you for a new invitation." },
                StatusCode::NOT_FOUND => p { "Check that the link is complete, or ask whoever invited you for a new one." },
                _ => p { a href="/" { "Go to the overview" } },
            }
        }
    };
    page(status, invitation_page(body))
}

fn invitation_page(body: Markup) -> Markup {
    layout("Invitation", None, html! { main.narrow { (body) } })
}
