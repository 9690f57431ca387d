//! `/v1/organizations`: the tenants, and their members.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page};
use crate::auth::accounts::unique_violation_on;
use crate::auth::{Access, Action, Principal, Role};
use crate::db::Cursor;
use crate::db::organizations::{self, Member, MemberUser, Organization, OrganizationChanges};
use crate::domain::validate::Validator;
use crate::error::conflict_on_unique;
use crate::error::{ApiError, ErrorBody};
use crate::manage::members;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/organizations").get(list).post(create))
        .service(web::resource("/organizations/{orgId}").get(get).patch(update).delete(delete))
        .service(web::resource("/organizations/{orgId}/members").get(list_members))
        .service(
            web::resource("/organizations/{orgId}/members/{memberId}")
                .patch(update_member)
                .delete(remove_member),
        );
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub logo: Option<String>,
    pub metadata: serde_json::Value,
    /// The caller's role in it.
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrganizationView {
    fn new(org: Organization, role: Role) -> Self {
        Self {
            id: org.id,
            name: org.name,
            slug: org.slug,
            logo: org.logo,
            metadata: org.metadata,
            role: role.as_str().to_owned(),
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

impl MemberView {
    fn new(member: Member, user: MemberUser) -> Self {
        Self {
            id: member.id,
            organization_id: member.organization_id,
            user_id: member.user_id,
            email: user.email,
            name: user.name,
            role: member.role,
            created_at: member.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
    /// Derived from the name when absent.
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    #[schema(value_type = Option<crate::domain::schema::DisplayName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    #[schema(value_type = crate::auth::RoleName)]
    pub role: String,
}

fn check_name_and_slug(name: Option<&str>, slug: Option<&str>) -> Result<(), ApiError> {
    let mut check = Validator::new();
    if let Some(name) = name {
        check.name("name", name);
    }
    if let Some(slug) = slug {
        check.slug("slug", slug);
    }
    Ok(check.finish()?)
}

/// Creates an organization; the caller becomes its owner. It starts with a `default` project.
#[utoipa::path(post, path = "/v1/organizations", tag = "organizations", security(("session" = []), ("sessionCookie" = [])),
    request_body = CreateOrganization,
    responses((status = 201, body = OrganizationView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: Json<CreateOrganization>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = principal.user()?;
    let body = body.0;
    check_name_and_slug(Some(&body.name), body.slug.as_deref())?;
    let name = body.name.trim().to_owned();
    let mut conn = state.db.get().await?;
    // a derived slug can race with another creation; an explicit one is the caller's conflict
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                organizations::create_with_owner(conn, &name, body.slug.as_deref(), &user.id).await
            })
            .await;
        match result {
            Ok((org, _)) => {
                return Ok(HttpResponse::Created().json(OrganizationView::new(org, Role::Owner)));
            }
            Err(e) if unique_violation_on(&e, "organizations_slug_key") => {
                if body.slug.is_some() {
                    return Err(ApiError::conflict(
                        "an organization with this slug already exists",
                    ));
                }
                if attempt >= 3 {
                    return Err(ApiError::conflict("could not find a free slug; give one"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The caller's organizations (an API key's: its own), newest first.
#[utoipa::path(get, path = "/v1/organizations", tag = "organizations", params(ListQuery), security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    responses((status = 200, body = Page<OrganizationView>)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let key =
        |(org, _): &(Organization, Role)| Cursor { created_at: org.created_at, id: org.id.clone() };
    let view = |(org, role): (Organization, Role)| OrganizationView::new(org, role);
    let rows: Vec<(Organization, Role)> = match &principal {
        Principal::User { user, .. } => {
            let mut conn = state.db.get().await?;
            organizations::list_for_user(&mut conn, &user.id, page.after.as_ref(), page.fetch())
                .await?
                .into_iter()
                .map(|(org, member)| (org, Role::parse(&member.role).unwrap_or(Role::Member)))
                .collect()
        }
        Principal::Key(key) => {
            let org_id = key.organization_id.clone();
            let access = Access::to_org(&state, principal.clone(), &org_id).await?;
            access.require(Action::Read)?;
            access.require_org_wide()?;
            let after = page.after.as_ref();
            let visible = after
                .is_none_or(|c| (access.org.created_at, &access.org.id) < (c.created_at, &c.id));
            if visible { vec![(access.org, access.role)] } else { vec![] }
        }
    };
    Ok(HttpResponse::Ok().json(page.page(rows, key, view)))
}

/// The caller's access to the organization in the path, checked for `action`. Project-bound
/// API keys have no business with organization-wide resources.
pub(crate) async fn org_access(
    state: &AppState,
    principal: Principal,
    org_id: &str,
    action: Action,
) -> Result<Access, ApiError> {
    let access = Access::to_org(state, principal, org_id).await?;
    access.require_org_wide()?;
    access.require(action)?;
    Ok(access)
}

/// One organization.
#[utoipa::path(get, path = "/v1/organizations/{orgId}", tag = "organizations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c")), responses((status = 200, body = OrganizationView)))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Read).await?;
    Ok(HttpResponse::Ok().json(OrganizationView::new(access.org, access.role)))
}

/// Renames an organization or changes its slug (owner or admin).
#[utoipa::path(patch, path = "/v1/organizations/{orgId}", tag = "organizations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c")), request_body = UpdateOrganization,
    responses((status = 200, body = OrganizationView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    body: Json<UpdateOrganization>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Write).await?;
    let body = body.0;
    check_name_and_slug(body.name.as_deref(), body.slug.as_deref())?;
    let mut conn = state.db.get().await?;
    let changes = OrganizationChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        slug: body.slug,
        updated_at: Some(Utc::now()),
    };
    let org = conflict_on_unique(
        organizations::update(&mut conn, &access.org.id, changes).await,
        "an organization with this slug already exists",
    )?;
    Ok(HttpResponse::Ok().json(OrganizationView::new(org, access.role)))
}

/// Deletes an organization and everything it owns (owner only).
#[utoipa::path(delete, path = "/v1/organizations/{orgId}", tag = "organizations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c")), responses((status = 204, description = "deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Own).await?;
    let mut conn = state.db.get().await?;
    organizations::delete(&mut conn, &access.org.id).await?;
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The organization's members, newest first.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/members", tag = "organizations", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"), ListQuery), responses((status = 200, body = Page<MemberView>)))]
pub async fn list_members(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let access = org_access(&state, principal, &path, Action::Read).await?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let rows =
        organizations::list_members(&mut conn, &access.org.id, page.after.as_ref(), page.fetch())
            .await?;
    let key = |(m, _): &(Member, MemberUser)| Cursor { created_at: m.created_at, id: m.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, |(m, u)| MemberView::new(m, u))))
}

/// Changes a member's role. Owners manage owners; the last owner cannot be demoted (409).
#[utoipa::path(patch, path = "/v1/organizations/{orgId}/members/{memberId}", tag = "organizations",
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("memberId" = String, Path, example = "mem_01jf3q6zvqe3f7m1s9gkxw5h2c")), request_body = UpdateMember,
    responses((status = 200, body = MemberView),
        (status = 409, description = "`conflict`: the last owner cannot be demoted", body = ErrorBody)))]
pub async fn update_member(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    body: Json<UpdateMember>,
) -> Result<HttpResponse, ApiError> {
    let (org_id, member_id) = path.into_inner();
    let access = org_access(&state, principal, &org_id, Action::Write).await?;
    let (updated, user) = members::set_role(&state, &access, &member_id, &body.0.role).await?;
    Ok(HttpResponse::Ok().json(MemberView::new(updated, user)))
}

/// Removes a member (or lets a member leave). The last owner cannot be removed (409).
#[utoipa::path(delete, path = "/v1/organizations/{orgId}/members/{memberId}", tag = "organizations",
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("orgId" = String, Path, description = "id or slug", example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("memberId" = String, Path, example = "mem_01jf3q6zvqe3f7m1s9gkxw5h2c")),
    responses((status = 204, description = "removed"),
        (status = 409, description = "`conflict`: the last owner cannot be removed", body = ErrorBody)))]
pub async fn remove_member(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org_id, member_id) = path.into_inner();
    let access = org_access(&state, principal, &org_id, Action::Read).await?;
    members::remove(&state, &access, &member_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
