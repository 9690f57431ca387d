//! `/v1/projects/{projectId}/templates`: a project's message templates, their published
//! versions and previews. The rules live in `crate::manage::templates`; these handlers parse
//! and render.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::api::json::Json;
use crate::api::pagination::{ListQuery, Page, PageLimit};
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::templates::{self, Template, Version};
use crate::domain::channel::Channel;
use crate::domain::{content, schema};
use crate::error::ApiError;
use crate::manage::projects::visible;
use crate::manage::templates::{self as manage, DraftChanges, NewDraft};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/templates").get(list).post(create))
        .service(
            web::resource("/projects/{projectId}/templates/{templateId}")
                .get(get)
                .patch(update)
                .delete(delete),
        )
        .service(
            web::resource("/projects/{projectId}/templates/{templateId}/publish").post(publish),
        )
        .service(
            web::resource("/projects/{projectId}/templates/{templateId}/versions")
                .get(list_versions),
        )
        .service(
            web::resource("/projects/{projectId}/templates/{templateId}/versions/{version}")
                .get(get_version),
        )
        .service(
            web::resource("/projects/{projectId}/templates/{templateId}/preview").post(preview),
        );
}

/// A template with its draft.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub id: String,
    pub project_id: String,
    pub slug: String,
    pub name: String,
    pub channel: Channel,
    /// The draft: the channel's `content`, each string a MiniJinja template.
    pub content: Value,
    /// The latest published version; null while none is.
    pub latest_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        Self {
            id: t.id,
            project_id: t.project_id,
            slug: t.slug,
            name: t.name,
            channel: Channel::parse(&t.channel).unwrap_or(Channel::Email),
            content: t.draft,
            latest_version: (t.latest_version > 0).then_some(t.latest_version),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A published version: immutable.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub template_id: String,
    pub version: i32,
    pub content: Value,
    /// The person who published it (null when published with an API key).
    pub published_by: Option<String>,
    pub published_at: DateTime<Utc>,
}

impl From<Version> for VersionView {
    fn from(v: Version) -> Self {
        Self {
            template_id: v.template_id,
            version: v.version,
            content: v.content,
            published_by: v.published_by,
            published_at: v.published_at,
        }
    }
}

/// The body of `POST .../templates`, as the document states it: one alternative per channel,
/// whose `content` has that channel's shape (as `content` of a send; its strings are
/// templates, which must compile).
pub struct TemplateBody;

impl utoipa::PartialSchema for TemplateBody {
    fn schema() -> RefOr<Schema> {
        content::per_channel(|channel| {
            ObjectBuilder::new()
                .property("name", schema::DisplayName::schema())
                .required("name")
                .property("slug", content::or_null(schema::Slug::schema()))
                .property("content", content::content_schema(channel))
                .required("content")
        })
    }
}

impl ToSchema for TemplateBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "CreateTemplate".into()
    }
}

crate::json_schema! {
    /// `?cursor=` of a template's versions: the `nextCursor` of the previous page.
    VersionCursor => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^([1-9][0-9]{0,8})?$"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTemplate {
    pub name: String,
    pub slug: Option<String>,
    pub channel: Channel,
    pub content: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateTemplate {
    #[schema(value_type = Option<crate::domain::schema::DisplayName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
    /// A new draft; published versions do not change.
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A published version; absent: the draft.
    #[schema(minimum = 1)]
    pub version: Option<i32>,
    /// The values of the template's variables.
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Map<String, Value>>,
}

/// What a template renders: the message `content` a send with these variables would store.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub content: Value,
}

/// `?limit=&cursor=` of the versions: the cursor is a version number.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<i64>,
    #[param(value_type = Option<VersionCursor>, inline)]
    pub cursor: Option<String>,
}

/// The versions of a page, newest first, and the cursor of the next.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionPage {
    pub data: Vec<VersionView>,
    pub next_cursor: Option<String>,
}

/// Creates a template with its draft (owner or admin).
#[utoipa::path(post, path = "/v1/projects/{projectId}/templates", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = TemplateBody,
    responses((status = 201, body = TemplateView),
        (status = 409, description = "`conflict`: another template of the project has this slug", body = crate::error::ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    body: Json<CreateTemplate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let new = NewDraft {
        name: body.name,
        slug: body.slug,
        channel: body.channel.as_str().to_owned(),
        content: body.content,
    };
    let created = manage::create(&state, &access, &path, new).await?;
    Ok(HttpResponse::Created().json(TemplateView::from(created)))
}

/// The project's templates, newest first.
#[utoipa::path(get, path = "/v1/projects/{projectId}/templates", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ListQuery, crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = Page<TemplateView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    let rows =
        templates::list(&mut conn, &access.org.id, &project.id, page.after.as_ref(), page.fetch())
            .await?;
    let key = |t: &Template| Cursor { created_at: t.created_at, id: t.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, TemplateView::from)))
}

/// One template, by id or slug, with its draft.
#[utoipa::path(get, path = "/v1/projects/{projectId}/templates/{templateId}", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = TemplateView)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project, template) = path.into_inner();
    let mut conn = state.db.get().await?;
    let found = manage::find(&mut conn, &access, &project, &template).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(found)))
}

/// Changes a template's name, slug or draft (owner or admin).
#[utoipa::path(patch, path = "/v1/projects/{projectId}/templates/{templateId}", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = UpdateTemplate,
    responses((status = 200, body = TemplateView),
        (status = 409, description = "`conflict`: another template of the project has this slug", body = crate::error::ErrorBody)))]
pub async fn update(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    body: Json<UpdateTemplate>,
) -> Result<HttpResponse, ApiError> {
    let (project, template) = path.into_inner();
    let body = body.0;
    let changes = DraftChanges { name: body.name, slug: body.slug, content: body.content };
    let updated = manage::update(&state, &access, &project, &template, changes).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(updated)))
}

/// Deletes a template and its versions (owner or admin); messages rendered from it keep
/// their content.
#[utoipa::path(delete, path = "/v1/projects/{projectId}/templates/{templateId}", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 204, description = "deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, template) = path.into_inner();
    manage::delete(&state, &access, &project, &template).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Publishes the draft as the next version (owner or admin): sends that name no version use
/// it from now on.
#[utoipa::path(post, path = "/v1/projects/{projectId}/templates/{templateId}/publish", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 201, body = VersionView)))]
pub async fn publish(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, template) = path.into_inner();
    let version = manage::publish(&state, &access, &project, &template).await?;
    Ok(HttpResponse::Created().json(VersionView::from(version)))
}

/// The template's published versions, newest first.
#[utoipa::path(get, path = "/v1/projects/{projectId}/templates/{templateId}/versions", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), VersionQuery, crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = VersionPage)))]
pub async fn list_versions(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    query: web::Query<VersionQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project, template) = path.into_inner();
    let page = crate::api::pagination::PageRequest::new(query.limit, None)?;
    let before =
        match query.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<i32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor of this list")
            })?),
        };
    let mut conn = state.db.get().await?;
    let found = manage::find(&mut conn, &access, &project, &template).await?;
    let mut rows = templates::versions(&mut conn, &found.id, before, page.fetch()).await?;
    let more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit as usize);
    let next_cursor = more.then(|| rows.last().map(|v| v.version.to_string())).flatten();
    let data = rows.into_iter().map(VersionView::from).collect();
    Ok(HttpResponse::Ok().json(VersionPage { data, next_cursor }))
}

/// One published version.
#[utoipa::path(get, path = "/v1/projects/{projectId}/templates/{templateId}/versions/{version}", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("version" = i32, Path, minimum = 1, example = 1), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = VersionView)))]
pub async fn get_version(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project, template, number) = path.into_inner();
    let number =
        number.parse::<i32>().ok().filter(|v| *v > 0).ok_or_else(|| {
            ApiError::invalid_field("version", "must be a version number, from 1")
        })?;
    let mut conn = state.db.get().await?;
    let version = manage::version(&mut conn, &access, &project, &template, number).await?;
    Ok(HttpResponse::Ok().json(VersionView::from(version)))
}

/// Renders the draft (or a published version) with variables, as a send would, without
/// sending: 400 naming a missing variable or a template error, as a send answers.
#[utoipa::path(post, path = "/v1/projects/{projectId}/templates/{templateId}/preview", tag = "templates", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("templateId" = String, Path, description = "id or slug", example = "tpl_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = PreviewRequest,
    responses((status = 200, body = PreviewView)))]
pub async fn preview(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    body: Json<PreviewRequest>,
) -> Result<HttpResponse, ApiError> {
    let (project, template) = path.into_inner();
    let body = body.0;
    if body.version.is_some_and(|v| v < 1) {
        return Err(ApiError::invalid_field("version", "must be a published version, from 1"));
    }
    let variables = body.variables.unwrap_or_default();
    let mut conn = state.db.get().await?;
    let content =
        manage::preview(&mut conn, &access, &project, &template, body.version, &variables).await?;
    Ok(HttpResponse::Ok().json(PreviewView { content }))
}
