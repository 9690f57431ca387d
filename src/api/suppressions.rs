//! `/v1/projects/{projectId}/suppressions`: the addresses a project's messages may not go to.
//! The rules live in `crate::manage::suppressions`; these handlers parse and render.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::api::json::Json;
use crate::api::pagination::{Page, PageCursor, PageLimit, PageRequest};
use crate::api::send::recipient_schema;
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::suppressions::{self, Suppression};
use crate::domain::channel::Channel;
use crate::domain::content;
use crate::domain::suppression::Reason;
use crate::error::ApiError;
use crate::manage::projects::visible;
use crate::manage::suppressions::{self as manage, MAX_SEARCH_CHARS, NewEntry};
use crate::state::AppState;

crate::json_schema! {
    /// `?search=` of the suppression list.
    AddressSearch => crate::domain::schema::text(0, MAX_SEARCH_CHARS)
        .description(Some(format!("Part of the address, case-insensitive; at most {MAX_SEARCH_CHARS} characters.")))
}

crate::json_schema! {
    /// A suppression's note.
    SuppressionNote => crate::domain::schema::text(0, crate::domain::suppression::MAX_NOTE_CHARS)
        .description(Some(format!("At most {} characters.", crate::domain::suppression::MAX_NOTE_CHARS)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/suppressions").get(list).post(create))
        .service(
            web::resource("/projects/{projectId}/suppressions/{suppressionId}")
                .get(get)
                .delete(delete),
        );
}

/// An address no message of the project is sent to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionView {
    pub id: String,
    pub project_id: String,
    pub channel: Channel,
    /// As compared: an email trimmed and lower-cased, without its display name.
    pub address: String,
    pub reason: Reason,
    /// The message whose bounce, complaint or unsubscribe added it.
    pub message_id: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Suppression> for SuppressionView {
    fn from(s: Suppression) -> Self {
        Self {
            id: s.id,
            project_id: s.project_id,
            channel: Channel::parse(&s.channel).unwrap_or(Channel::Email),
            address: s.address,
            reason: Reason::parse(&s.reason).unwrap_or(Reason::Manual),
            message_id: s.message_id,
            note: s.note,
            created_at: s.created_at,
        }
    }
}

/// The body of `POST .../suppressions`, as the document states it: one alternative per channel,
/// with that channel's address (as `to` of a send).
pub struct SuppressionBody;

impl utoipa::PartialSchema for SuppressionBody {
    fn schema() -> RefOr<Schema> {
        content::per_channel(|channel| {
            ObjectBuilder::new()
                .property("address", recipient_schema(channel))
                .required("address")
                .property("note", content::or_null(SuppressionNote::schema()))
        })
    }
}

impl ToSchema for SuppressionBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "CreateSuppression".into()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSuppression {
    pub channel: Channel,
    /// An email address, E.164 phone number or Discord target, as `to` of a send.
    pub address: String,
    pub note: Option<String>,
}

/// The query string of the suppression list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    #[param(value_type = Option<Channel>, inline)]
    pub channel: Option<String>,
    #[param(value_type = Option<Reason>, inline)]
    pub reason: Option<String>,
    #[param(value_type = Option<AddressSearch>, inline)]
    pub search: Option<String>,
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<i64>,
    #[param(value_type = Option<PageCursor>, inline)]
    pub cursor: Option<String>,
}

/// Suppresses an address by hand (`reason: manual`; owner or admin).
#[utoipa::path(post, path = "/v1/projects/{projectId}/suppressions", tag = "suppressions", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = SuppressionBody,
    responses((status = 201, body = SuppressionView),
        (status = 409, description = "`conflict`: the address is suppressed already", body = crate::error::ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    body: Json<CreateSuppression>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let entry = NewEntry {
        channel: body.channel.as_str().to_owned(),
        address: body.address,
        note: body.note,
    };
    let mut conn = state.db.get().await?;
    let added = manage::add(&mut conn, &access, &path, entry).await?;
    Ok(HttpResponse::Created().json(SuppressionView::from(added)))
}

/// The project's suppression list, newest first, by channel, reason or part of the address.
#[utoipa::path(get, path = "/v1/projects/{projectId}/suppressions", tag = "suppressions", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), SuppressionQuery, crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = Page<SuppressionView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    query: web::Query<SuppressionQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let filter =
        manage::filter(query.channel.as_deref(), query.reason.as_deref(), query.search.as_deref())?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    let rows = suppressions::list(
        &mut conn,
        &access.org.id,
        &project.id,
        &filter,
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |s: &Suppression| Cursor { created_at: s.created_at, id: s.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, SuppressionView::from)))
}

/// One entry.
#[utoipa::path(get, path = "/v1/projects/{projectId}/suppressions/{suppressionId}", tag = "suppressions", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("suppressionId" = String, Path, example = "sup_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = SuppressionView)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project, id) = path.into_inner();
    let mut conn = state.db.get().await?;
    let (_, found) = manage::entry(&mut conn, &access, &project, &id).await?;
    Ok(HttpResponse::Ok().json(SuppressionView::from(found)))
}

/// Removes an entry, so that its address may be sent to again (owner or admin).
#[utoipa::path(delete, path = "/v1/projects/{projectId}/suppressions/{suppressionId}", tag = "suppressions", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("suppressionId" = String, Path, example = "sup_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 204, description = "removed")))]
pub async fn delete(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.db.get().await?;
    manage::remove(&mut conn, &access, &project, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
