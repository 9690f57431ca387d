//! The organization's members with their roles, and its pending invitations. Reading only,
//! for now: inviting, changing roles and removing members stay with `/v1/organizations/...`
//! (the page says so to those who may do it).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use maud::html;

use crate::auth::{Access, Action};
use crate::db::{invitations, organizations};
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, layout, page, reader};

/// Members and invitations listed at most.
const SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/members").get(members));
}

async fn members(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let me = access.user().map(|u| u.id.as_str());
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let members = organizations::list_members(&mut conn, &access.org.id, None, SHOWN)
        .await
        .map_err(ApiError::from)?;
    let invitations =
        invitations::list(&mut conn, &access.org.id, None, SHOWN).await.map_err(ApiError::from)?;
    drop(conn);
    let pending: Vec<_> = invitations.iter().filter(|i| i.status == "pending").collect();
    let may_write = access.require(Action::Write).is_ok();
    let body = html! {
        main {
            h1 { "Members" }
            @if may_write {
                p.muted { "Invite people and change roles with the API (" code { "/v1/organizations/" (access.org.id) "/invitations" } "); an organization keeps at least one owner." }
            }
            table #members {
                thead { tr { th { "Name" } th { "Email" } th { "Role" } th { "Since" } } }
                tbody {
                    @for (member, person) in &members {
                        tr {
                            td { (person.name) @if Some(member.user_id.as_str()) == me { " (you)" } }
                            td { (person.email) }
                            td { (member.role) }
                            td { (member.created_at.format("%Y-%m-%d")) }
                        }
                    }
                }
            }
            h2 { "Pending invitations" }
            @if pending.is_empty() {
                p.muted { "None." }
            } @else {
                table #invitations {
                    thead { tr { th { "Email" } th { "Role" } th { "Expires" } } }
                    tbody {
                        @for invitation in &pending {
                            tr {
                                td { (invitation.email) }
                                td { (invitation.role) }
                                td { (invitation.expires_at.format("%Y-%m-%d %H:%M UTC")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Members", Some(&viewer), body)))
}
