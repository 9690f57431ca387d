//! Invitations: `/v1/organizations/{orgId}/invitations` to invite by email with a role, and
//! `/v1/invitations/{token}/accept` for the invited, signed-in user.
//!
//! The token is shown once, in the creation response (for the inviter to pass on); only its
//! hash is stored.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::organizations::org_access;
use crate::api::pagination::ListQuery;
use crate::api::pagination::Page;
use crate::auth::{Action, Principal};
use crate::db::Cursor;
use crate::db::invitations::{self, Invitation};
use crate::error::{ApiError, ErrorBody};
use crate::manage::members;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/organizations/{orgId}/invitations").get(list).post(create))
        .service(web::resource("/organizations/{orgId}/invitations/{invitationId}").delete(cancel))
        .service(web::resource("/invitations/{token}/accept").post(accept));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub role: String,
    /// `pending`, `accepted`, `canceled`, or `expired` (pending past `expiresAt`).
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<Invitation> for InvitationView {
    fn from(i: Invitation) -> Self {
        let status = if i.status == "pending" && i.expires_at <= Utc::now() {
            "expired".to_owned()
        } else {
            i.status
        };
        Self {
            id: i.id,
            organization_id: i.organization_id,
            email: i.email,
            role: i.role,
            status,
            expires_at: i.expires_at,
            created_at: i.created_at,
            token: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Compared trimmed and lower-cased.
    #[schema(value_type = crate::domain::schema::EmailAddress)]
    pub email: String,
    #[schema(value_type = crate::auth::RoleName)]
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// Invites an email address to the organization (owner or admin; only owners invite owners).
#[utoipa::path(post, path = "/v1/organizations/{orgId}/invitations", tag = "invitations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c")), request_body = CreateInvitation,
    responses((status = 201, body = InvitationView),
        (status = 409, description = "`conflict`: already a member, or a pending invitation for \
            this email exists", body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    body: Json<CreateInvitation>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Write).await?;
    let (invitation, token) = members::invite(&state, &access, &body.0.email, &body.0.role).await?;
    let mut view = InvitationView::from(invitation);
    view.token = Some(token);
    Ok(HttpResponse::Created().json(view))
}

/// The organization's invitations, newest first.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/invitations", tag = "invitations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"), ListQuery), responses((status = 200, body = Page<InvitationView>)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Read).await?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let rows =
        invitations::list(&mut conn, &access.org.id, page.after.as_ref(), page.fetch()).await?;
    let key = |i: &Invitation| Cursor { created_at: i.created_at, id: i.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, InvitationView::from)))
}

/// Cancels a pending invitation (owner or admin); 409 once it was accepted or canceled.
#[utoipa::path(delete, path = "/v1/organizations/{orgId}/invitations/{invitationId}", tag = "invitations",
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("invitationId" = String, Path, example = "inv_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 204, description = "canceled"),
        (status = 409, description = "`conflict`: no longer pending", body = ErrorBody)))]
pub async fn cancel(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org_id, invitation_id) = path.into_inner();
    let access = org_access(&state, principal, &org_id, Action::Write).await?;
    members::cancel_invitation(&state, &access, &invitation_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invitation as the signed-in user it was sent to.
#[utoipa::path(post, path = "/v1/invitations/{token}/accept", tag = "invitations", security(("session" = []), ("sessionCookie" = [])),
    params(("token" = String, Path, description = "the invitation's `token`")),
    responses((status = 200, body = MembershipView),
        (status = 409, description = "`conflict`: accepted or canceled already, or already a member", body = ErrorBody),
        (status = 410, description = "`gone`: the invitation has expired", body = ErrorBody)))]
pub async fn accept(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let member = members::accept(&state, user, &path).await?;
    Ok(HttpResponse::Ok().json(MembershipView {
        id: member.id,
        organization_id: member.organization_id,
        user_id: member.user_id,
        role: member.role,
        created_at: member.created_at,
    }))
}
