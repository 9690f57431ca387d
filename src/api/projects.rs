//! `/v1/projects`: the containers of credentials, webhooks and messages in an organization.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page};
use crate::auth::{Access, Action};
use crate::db::projects::{self, NewProject, Project, ProjectChanges};
use crate::db::{Cursor, PooledConnection};
use crate::domain::validate::Validator;
use crate::domain::{ids, slug};
use crate::error::conflict_on_unique;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

const MAX_METADATA_BYTES: usize = 16 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/generate-slug").post(generate_slug))
        .service(web::resource("/projects").get(list).post(create))
        .service(web::resource("/projects/{projectId}").get(get).patch(update).delete(delete));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub slug: String,
    pub metadata: serde_json::Value,
    /// Days its messages are kept once final (sent, delivered, failed or canceled); `0` keeps
    /// them for ever; `null`: the server's `retention.messages`.
    pub message_retention_days: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            organization_id: p.organization_id,
            name: p.name,
            slug: p.slug,
            metadata: p.metadata,
            message_retention_days: p.message_retention_days,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateSlug {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlugView {
    pub slug: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProject {
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
    /// Derived from the name when absent.
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
    /// At most 16 KiB.
    #[schema(value_type = Option<crate::domain::schema::JsonObject>)]
    pub metadata: Option<serde_json::Value>,
    /// Absent or `null`: the server's `retention.messages` (30 days by default).
    #[schema(value_type = Option<RetentionDays>)]
    pub message_retention_days: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProject {
    #[schema(value_type = Option<crate::domain::schema::DisplayName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
    /// Replaces the metadata; at most 16 KiB.
    #[schema(value_type = Option<crate::domain::schema::JsonObject>)]
    pub metadata: Option<serde_json::Value>,
    /// As on create; `null` returns to the server's `retention.messages`.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<RetentionDays>)]
    pub message_retention_days: Option<Option<i32>>,
}

/// The longest message retention a project may ask for, in days (a hundred years; 0 is for
/// ever anyway).
const MAX_RETENTION_DAYS: i32 = 36_500;

crate::json_schema! {
    /// `messageRetentionDays`, as [`check_retention`] takes it.
    RetentionDays => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_RETENTION_DAYS))
        .description(Some(format!(
            "Days its messages are kept once final (sent, delivered, failed or canceled), \
             0 to {MAX_RETENTION_DAYS}; 0 keeps them for ever."
        )))
}

fn check_retention(check: &mut Validator, days: Option<i32>) {
    if days.is_some_and(|d| !(0..=MAX_RETENTION_DAYS).contains(&d)) {
        check.error(
            "messageRetentionDays",
            format!("must be between 0 (keep for ever) and {MAX_RETENTION_DAYS} days, or null"),
        );
    }
}

pub use crate::manage::projects::visible;

async fn free_slug(
    conn: &mut PooledConnection,
    org_id: &str,
    name: &str,
) -> Result<String, ApiError> {
    let base = slug::slugify(name, "project");
    let taken = projects::slugs_like(conn, org_id, &base).await?;
    Ok(slug::first_free(&base, &taken))
}

/// Suggests a free slug for a project name.
#[utoipa::path(post, path = "/v1/projects/generate-slug", tag = "projects", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(crate::api::openapi::OrganizationHeader), request_body = GenerateSlug, responses((status = 200, body = SlugView)))]
pub async fn generate_slug(
    state: web::Data<AppState>,
    access: Access,
    body: Json<GenerateSlug>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let mut conn = state.db.get().await?;
    let slug = free_slug(&mut conn, &access.org.id, &body.0.name).await?;
    Ok(HttpResponse::Ok().json(SlugView { slug }))
}

/// Creates a project (owner or admin).
#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = CreateProject,
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(crate::api::openapi::OrganizationHeader),
    responses((status = 201, body = ProjectView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    body: Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Write)?;
    access.require_org_wide()?;
    let body = body.0;
    let mut check = Validator::new();
    check.name("name", &body.name);
    if let Some(slug) = &body.slug {
        check.slug("slug", slug);
    }
    let metadata = body.metadata.unwrap_or_else(|| serde_json::json!({}));
    check.object("metadata", &metadata, MAX_METADATA_BYTES);
    check_retention(&mut check, body.message_retention_days);
    check.finish()?;

    let mut conn = state.db.get().await?;
    let slug = match body.slug {
        Some(slug) => slug,
        None => free_slug(&mut conn, &access.org.id, &body.name).await?,
    };
    let id = ids::new_id(ids::PROJECT);
    let new = NewProject {
        id: &id,
        organization_id: &access.org.id,
        name: body.name.trim(),
        slug: &slug,
        metadata: &metadata,
        message_retention_days: body.message_retention_days,
    };
    let project = conflict_on_unique(
        projects::insert(&mut conn, new).await,
        "a project with this slug already exists",
    )?;
    Ok(HttpResponse::Created().json(ProjectView::from(project)))
}

/// Lists the organization's projects, newest first.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", params(ListQuery, crate::api::openapi::OrganizationHeader),
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), responses((status = 200, body = Page<ProjectView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let rows = projects::list(
        &mut conn,
        &access.org.id,
        access.project_scope(),
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |p: &Project| Cursor { created_at: p.created_at, id: p.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, ProjectView::from)))
}

/// One project, by id or slug.
#[utoipa::path(get, path = "/v1/projects/{projectId}", tag = "projects", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 200, body = ProjectView)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Renames a project, changes its slug, replaces its metadata or changes how long its messages
/// are kept (owner or admin).
#[utoipa::path(patch, path = "/v1/projects/{projectId}", tag = "projects", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), request_body = UpdateProject,
    responses((status = 200, body = ProjectView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn update(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    body: Json<UpdateProject>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Write)?;
    let body = body.0;
    let mut check = Validator::new();
    if let Some(name) = &body.name {
        check.name("name", name);
    }
    if let Some(slug) = &body.slug {
        check.slug("slug", slug);
    }
    if let Some(metadata) = &body.metadata {
        check.object("metadata", metadata, MAX_METADATA_BYTES);
    }
    check_retention(&mut check, body.message_retention_days.flatten());
    check.finish()?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    let changes = ProjectChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        slug: body.slug,
        metadata: body.metadata,
        message_retention_days: body.message_retention_days,
        updated_at: Utc::now(),
    };
    let updated = conflict_on_unique(
        projects::update(&mut conn, &access.org.id, &project.id, changes).await,
        "a project with this slug already exists",
    )?
    .ok_or_else(|| ApiError::not_found("project"))?;
    // its old slug may be cached as a name for it
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(HttpResponse::Ok().json(ProjectView::from(updated)))
}

/// Deletes a project and everything in it (owner or admin).
#[utoipa::path(delete, path = "/v1/projects/{projectId}", tag = "projects", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 204, description = "deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    projects::delete(&mut conn, &access.org.id, &project.id).await?;
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(HttpResponse::NoContent().finish())
}
