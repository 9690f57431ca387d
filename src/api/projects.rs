//! `/v1/projects`: the containers of credentials, webhooks and messages in an organization.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page};
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::projects::{self, Project};
use crate::error::{ApiError, ErrorBody};
use crate::manage::projects::{self as manage, MAX_RETENTION_DAYS, NewProjectInput, ProjectUpdate};
use crate::state::AppState;

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
    /// Its emails carry a one-click unsubscribe link (`List-Unsubscribe`, RFC 8058): a POST to
    /// it adds the recipient to the project's suppression list.
    pub one_click_unsubscribe: bool,
    /// An address listed beside the link, for unsubscribing by email.
    #[schema(value_type = Option<crate::domain::schema::EmailAddress>)]
    pub unsubscribe_mailto: Option<String>,
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
            one_click_unsubscribe: p.one_click_unsubscribe,
            unsubscribe_mailto: p.unsubscribe_mailto,
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
    /// Off when absent. Switching it on needs the server's `server.public_url` (400 naming this
    /// field without it).
    pub one_click_unsubscribe: Option<bool>,
    /// A bare ASCII address (no display name), listed as `mailto:` beside the link.
    #[schema(value_type = Option<crate::domain::schema::EmailAddress>)]
    pub unsubscribe_mailto: Option<String>,
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
    /// As on create. Switched off, its emails go out without the link; links sent before
    /// still work.
    pub one_click_unsubscribe: Option<bool>,
    /// As on create; `null` removes it.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<crate::domain::schema::EmailAddress>)]
    pub unsubscribe_mailto: Option<Option<String>>,
}

crate::json_schema! {
    /// `messageRetentionDays`, as `manage::projects` takes it.
    RetentionDays => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_RETENTION_DAYS))
        .description(Some(format!(
            "Days its messages are kept once final (sent, delivered, failed or canceled), \
             0 to {MAX_RETENTION_DAYS}; 0 keeps them for ever."
        )))
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
    let slug = manage::free_slug(&mut conn, &access.org.id, &body.0.name).await?;
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
    let body = body.0;
    let input = NewProjectInput {
        name: body.name,
        slug: body.slug,
        metadata: body.metadata,
        message_retention_days: body.message_retention_days,
        one_click_unsubscribe: body.one_click_unsubscribe,
        unsubscribe_mailto: body.unsubscribe_mailto,
    };
    let project = manage::create(&state, &access, input).await?;
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
    let project = manage::visible(&mut conn, &access, &path).await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Renames a project, changes its slug, replaces its metadata, changes how long its messages
/// are kept, or switches one-click unsubscribe (owner or admin).
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
    let body = body.0;
    let changes = ProjectUpdate {
        name: body.name,
        slug: body.slug,
        metadata: body.metadata,
        message_retention_days: body.message_retention_days,
        one_click_unsubscribe: body.one_click_unsubscribe,
        unsubscribe_mailto: body.unsubscribe_mailto,
    };
    let updated = manage::update(&state, &access, &path, changes).await?;
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
    manage::delete(&state, &access, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
