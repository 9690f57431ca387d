//! Invitations: `/v1/organizations/{orgId}/invitations` to invite by email with a role, and
//! `/v1/invitations/{token}/accept` for the invited, signed-in user.
//!
//! The token is shown once, in the creation response (for the inviter to pass on); only its
//! hash is stored.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::organizations::org_access;
use crate::api::pagination::ListQuery;
use crate::api::pagination::Page;
use crate::auth::accounts::unique_violation_on;
use crate::auth::{Action, Principal, Role, tokens};
use crate::db::invitations::{self, Invitation, NewInvitation};
use crate::db::organizations::{self, NewMember};
use crate::db::{Cursor, users};
use crate::domain::ids;
use crate::domain::recipient::normalize_email;
use crate::domain::validate::Validator;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

const VALID_FOR: chrono::Duration = chrono::Duration::days(7);

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
    let body = body.0;
    let email = normalize_email(&body.email);
    let mut check = Validator::new();
    check.email("email", &email);
    let role = Role::parse(&body.role);
    if role.is_none() {
        check.error("role", "must be owner, admin or member");
    }
    check.finish()?;
    let role = role.ok_or_else(|| ApiError::internal("role checked above"))?;
    if role == Role::Owner {
        access.require(Action::Own)?;
    }
    let mut conn = state.db.get().await?;
    if let Some(user) = users::find_by_email(&mut conn, &email).await?
        && organizations::is_member(&mut conn, &access.org.id, &user.id).await?
    {
        return Err(ApiError::conflict("this person is already a member"));
    }
    let token = tokens::new_token();
    let hash = tokens::hash(&token);
    let id = ids::new_id(ids::INVITATION);
    let new = NewInvitation {
        id: &id,
        organization_id: &access.org.id,
        email: &email,
        role: role.as_str(),
        token_hash: &hash,
        inviter_id: access.user().map(|u| u.id.as_str()),
        expires_at: Utc::now() + VALID_FOR,
    };
    let invitation = match invitations::insert(&mut conn, new).await {
        Err(e) if unique_violation_on(&e, "invitations_pending_email_idx") => {
            return Err(ApiError::conflict(
                "a pending invitation for this email exists; cancel it first",
            ));
        }
        other => other?,
    };
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
    let mut conn = state.db.get().await?;
    let org_id = access.org.id.clone();
    let canceled = conn
        .transaction::<_, ApiError, _>(async |conn| {
            Ok(invitations::cancel(conn, &org_id, &invitation_id).await?)
        })
        .await?;
    match canceled {
        None => Err(ApiError::not_found("invitation")),
        Some(false) => Err(ApiError::conflict("the invitation is no longer pending")),
        Some(true) => Ok(HttpResponse::NoContent().finish()),
    }
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
    let hash = tokens::hash(&path);
    let mut conn = state.db.get().await?;
    let member = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let invitation = invitations::find_by_token_for_update(conn, &hash)
                .await?
                .ok_or_else(|| ApiError::not_found("invitation"))?;
            match invitation.status.as_str() {
                "pending" => {}
                "accepted" => {
                    return Err(ApiError::conflict("the invitation was already accepted"));
                }
                _ => return Err(ApiError::conflict("the invitation was canceled")),
            }
            if invitation.expires_at <= Utc::now() {
                return Err(ApiError::new(StatusCode::GONE, "gone", "the invitation has expired"));
            }
            if invitation.email != user.email {
                return Err(ApiError::forbidden(
                    "the invitation was sent to another email address",
                ));
            }
            if organizations::is_member(conn, &invitation.organization_id, &user.id).await? {
                return Err(ApiError::conflict("you are already a member of this organization"));
            }
            let id = ids::new_id(ids::MEMBER);
            let member = organizations::insert_member(
                conn,
                NewMember {
                    id: &id,
                    organization_id: &invitation.organization_id,
                    user_id: &user.id,
                    role: &invitation.role,
                },
            )
            .await?;
            invitations::mark_accepted(conn, &invitation.id).await?;
            Ok(member)
        })
        .await?;
    Ok(HttpResponse::Ok().json(MembershipView {
        id: member.id,
        organization_id: member.organization_id,
        user_id: member.user_id,
        role: member.role,
        created_at: member.created_at,
    }))
}
