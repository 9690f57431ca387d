//! `/v1/api-keys`: keys for applications, shown once at creation and stored as hashes.
//!
//! Lookups are not cached, so a revoked key is refused on the very next request on every API
//! process; `lastUsedAt` is gathered in memory and written in batches (see `auth::usage`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::Json;
use crate::api::pagination::ListQuery;
use crate::api::pagination::Page;
use crate::auth::keys::KeySpec;
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::api_keys::{self, ApiKey};
use crate::error::ApiError;
use crate::manage::projects;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api-keys").get(list).post(create))
        .service(web::resource("/api-keys/{keyId}").delete(revoke));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognize it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub project_id: Option<String>,
    /// Sends per second allowed on `/v1/send`; null for no limit.
    pub rate_limit: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The full key: only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            project_id: k.project_id,
            rate_limit: k.rate_limit,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            created_at: k.created_at,
            key: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateApiKey {
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
    /// Binds the key to one project (id or slug); absent for an organization-wide key.
    pub project_id: Option<String>,
    /// Default `["send"]`.
    #[schema(value_type = Option<Vec<crate::auth::keys::Scope>>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// When the key stops working; must be in the future. Absent: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Sends per second on `/v1/send`; absent for the server's `api.send_rate_limit`.
    #[schema(minimum = 1)]
    pub rate_limit: Option<i32>,
}

/// Creates a key (owner or admin). The full key is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(crate::api::openapi::OrganizationHeader), responses((status = 201, body = ApiKeyView)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    body: Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Write)?;
    access.require_org_wide()?;
    let body = body.0;
    let spec = KeySpec::check(&body.name, body.scopes, body.expires_at, body.rate_limit)?;
    let mut conn = state.db.get().await?;
    let project_id = match body.project_id {
        Some(p) => Some(projects::visible(&mut conn, &access, &p).await?.id),
        None => None,
    };
    let created_by = access.user().map(|u| u.id.clone());
    let (row, key) = spec
        .create(&mut conn, &access.org.id, project_id.as_deref(), created_by.as_deref())
        .await?;
    let mut view = ApiKeyView::from(row);
    view.key = Some(key);
    Ok(HttpResponse::Created().json(view))
}

/// The organization's live keys, newest first (no secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(ListQuery, crate::api::openapi::OrganizationHeader),
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), responses((status = 200, body = Page<ApiKeyView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    access.require_org_wide()?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let rows = api_keys::list(&mut conn, &access.org.id, page.after.as_ref(), page.fetch()).await?;
    let key = |k: &ApiKey| Cursor { created_at: k.created_at, id: k.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, ApiKeyView::from)))
}

/// Revokes a key at once (owner or admin).
#[utoipa::path(delete, path = "/v1/api-keys/{keyId}", tag = "api-keys", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("keyId" = String, Path, example = "key_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 204, description = "revoked")))]
pub async fn revoke(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Write)?;
    access.require_org_wide()?;
    let mut conn = state.db.get().await?;
    if !api_keys::revoke(&mut conn, &access.org.id, &path).await? {
        return Err(ApiError::not_found("API key"));
    }
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(HttpResponse::NoContent().finish())
}
