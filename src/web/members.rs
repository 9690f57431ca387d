//! The organization's members with their roles, and its pending invitations. Those who may
//! write (admins and owners) get a role select and a remove button on each member they may
//! manage (owners for owners), the invitation form (the link shown once, as a key is) and a
//! cancel button per invitation; members see the lists only, and the server refuses their
//! writes anyway. The rules are `manage::members`', as through `/v1/organizations/...`; a
//! refusal re-renders the page with the API's status, and the last-owner rule says what to
//! do instead.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Access, Action, Role, own_origin};
use crate::db::{invitations, organizations, users};
use crate::error::ApiError;
use crate::manage::members::{self, is_last_owner, may_manage};
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Members and invitations listed at most.
const SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/members").get(list))
        .service(web::resource("/members/invitations").post(invite))
        .service(web::resource("/members/invitations/{invitationId}/cancel").post(cancel))
        .service(web::resource("/members/{memberId}/role").post(set_role))
        .service(web::resource("/members/{memberId}/remove").post(remove));
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    role: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoleForm {
    role: String,
}

/// A new invitation, shown once: who it is for and the link that accepts it.
struct Invited {
    email: String,
    link: String,
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, members_page(&state, &access, None, None).await?))
}

/// The page again, with `error` at the top and its status.
async fn refused(
    state: &AppState,
    access: &Access,
    error: &ApiError,
) -> Result<HttpResponse, WebError> {
    Ok(page(error.status_code(), members_page(state, access, None, Some(error)).await?))
}

async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    match members::invite(&state, &access, &form.email, &form.role).await {
        Ok((invitation, token)) => {
            let link = format!("{}/invitations/{token}", own_origin(&req, &state));
            let invited = Invited { email: invitation.email, link };
            let body = members_page(&state, &access, Some(&invited), None).await?;
            Ok(page(StatusCode::CREATED, body))
        }
        Err(error) => refused(&state, &access, &error).await,
    }
}

async fn cancel(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    match members::cancel_invitation(&state, &access, &path).await {
        Ok(()) => Ok(see_other("/members")),
        Err(error) => refused(&state, &access, &error).await,
    }
}

async fn set_role(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    match members::set_role(&state, &access, &path, &form.role).await {
        Ok(_) => Ok(see_other("/members")),
        Err(error) => refused(&state, &access, &error).await,
    }
}

/// Removes a member; one who removed themselves (left) goes on to another organization of
/// theirs, since this one is no longer theirs to see.
async fn remove(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let removed = match members::remove(&state, &access, &path).await {
        Ok(removed) => removed,
        Err(error) => return refused(&state, &access, &error).await,
    };
    let (user, session) = access.principal.user()?;
    if removed.user_id != user.id {
        return Ok(see_other("/members"));
    }
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    if let Some((org, _)) =
        organizations::first_for_user(&mut conn, &user.id).await.map_err(ApiError::from)?
    {
        users::set_active_organization(&mut conn, &session.id, &org.id)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(see_other("/"))
}

/// The roles `access` may give: owners give any, admins all but owner.
fn roles_to_give(access: &Access) -> Vec<&'static str> {
    let may_own = access.require(Action::Own).is_ok();
    [Role::Member, Role::Admin, Role::Owner]
        .into_iter()
        .filter(|role| *role != Role::Owner || may_own)
        .map(Role::as_str)
        .collect()
}

/// The page: a new invitation's link once (`invited`), `error` (with what the last-owner rule
/// asks), the members with their controls, the invitation form and the pending invitations.
async fn members_page(
    state: &AppState,
    access: &Access,
    invited: Option<&Invited>,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let me = access.user().map(|u| u.id.as_str());
    let mut conn = state.db.get().await?;
    let members = organizations::list_members(&mut conn, &access.org.id, None, SHOWN).await?;
    let invitations = invitations::list(&mut conn, &access.org.id, None, SHOWN).await?;
    drop(conn);
    let pending: Vec<_> = invitations.iter().filter(|i| i.status == "pending").collect();
    let may_write = access.require(Action::Write).is_ok();
    let roles = roles_to_give(access);
    let now = Utc::now();
    let body = html! {
        main {
            h1 { "Members" }
            @if let Some(error) = error {
                (form_error(error))
                @if is_last_owner(error) {
                    p.hint { "An organization keeps at least one owner: make someone else owner first, then change your role or leave." }
                }
            }
            @if let Some(invited) = invited {
                div.card.shown role="status" {
                    p { strong { "Invitation created for " (invited.email) ". " } "Send them this link: it is shown only this once, and works for 7 days for whoever signs in with that address." }
                    p { code #invite-link { (invited.link) } " " button.small type="button" data-copy="#invite-link" { "Copy" } }
                }
            }
            table #members {
                thead { tr {
                    th { "Name" } th { "Email" } th { "Role" } th { "Since" }
                    @if may_write { th {} }
                } }
                tbody {
                    @for (member, person) in &members {
                        @let mine = Some(member.user_id.as_str()) == me;
                        tr {
                            td { (person.name) @if mine { " (you)" } }
                            td { (person.email) }
                            td { (member.role) }
                            td { (member.created_at.format("%Y-%m-%d")) }
                            @if may_write {
                                td {
                                    @if may_manage(access, member) {
                                        form.inline method="post" action=(format!("/members/{}/role", member.id)) {
                                            select name="role" aria-label="Role" {
                                                @for role in &roles {
                                                    option value=(role) selected[*role == member.role] { (role) }
                                                }
                                            }
                                            " "
                                            button.small type="submit" { "Change role" }
                                        }
                                        " "
                                        form.inline method="post" action=(format!("/members/{}/remove", member.id)) {
                                            button.link type="submit" { @if mine { "Leave" } @else { "Remove" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if may_write {
                section.card {
                    h2 { "Invite someone" }
                    form method="post" action="/members/invitations" {
                        label for="email" { "Email" }
                        input #email type="email" name="email" required;
                        label for="role" { "Role" }
                        select #role name="role" {
                            @for role in &roles { option value=(role) { (role) } }
                        }
                        button type="submit" { "Invite" }
                    }
                }
            }
            h2 { "Pending invitations" }
            @if pending.is_empty() {
                div.card.empty {
                    "No pending invitation. "
                    @if may_write { "Invite someone above: they get a link to join with." }
                    @else { "An admin or owner of the organization can invite people." }
                }
            } @else {
                table #invitations {
                    thead { tr {
                        th { "Email" } th { "Role" } th { "Expires" }
                        @if may_write { th {} }
                    } }
                    tbody {
                        @for invitation in &pending {
                            tr {
                                td { (invitation.email) }
                                td { (invitation.role) }
                                td {
                                    @if invitation.expires_at <= now { "expired" }
                                    @else { (invitation.expires_at.format("%Y-%m-%d %H:%M UTC")) }
                                }
                                @if may_write {
                                    td {
                                        form method="post" action=(format!("/members/invitations/{}/cancel", invitation.id)) {
                                            button.link type="submit" { "Cancel" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Members", Some(&viewer), body))
}
