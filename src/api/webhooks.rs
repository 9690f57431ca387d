//! `/v1/projects/{projectId}/webhooks`: the endpoints a project's message events are POSTed to.
//!
//! The signing secret is shown twice only: when an endpoint is created and when its secret is
//! rotated; reads omit it. The rules (validation, who may, disabled endpoints refusing retries)
//! live in `crate::manage::webhook_endpoints`; these handlers parse JSON and render the answers.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::{self, DEFAULT_BODY_LIMIT, Json};
use crate::api::pagination::{ListQuery, Page};
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::webhook_endpoints::{self, WebhookEndpoint};
use crate::db::webhooks::{self as deliveries, Delivery};
use crate::error::{ApiError, ErrorBody};
use crate::manage::projects::visible as visible_project;
use crate::manage::webhook_endpoints::{
    self as manage, EndpointChanges, MAX_DESCRIPTION_CHARS, MAX_RATE_LIMIT, NewEndpoint,
    ReplayRange,
};
use crate::state::AppState;

crate::json_schema! {
    /// An endpoint's description, as `manage::webhook_endpoints` takes it.
    Description => crate::domain::schema::text(0, MAX_DESCRIPTION_CHARS)
        .description(Some(format!("At most {MAX_DESCRIPTION_CHARS} characters.")))
}

crate::json_schema! {
    /// An endpoint's rate limit, as `manage::webhook_endpoints` takes it.
    WebhookRateLimit => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_RATE_LIMIT))
        .description(Some(
            "Requests per second to the endpoint at most, over every webhook worker; its events \
             over the rate wait their turn (no attempt spent).",
        ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/webhooks").get(list).post(create))
        .service(
            web::resource("/projects/{projectId}/webhooks/{webhookId}")
                .get(get)
                .patch(update)
                .delete(delete),
        )
        .service(
            web::resource("/projects/{projectId}/webhooks/{webhookId}/rotate-secret")
                .post(rotate_secret),
        )
        .service(
            web::resource("/projects/{projectId}/webhooks/{webhookId}/deliveries")
                .get(list_deliveries),
        )
        .service(
            web::resource(
                "/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
            )
            .post(retry_delivery),
        )
        .service(web::resource("/projects/{projectId}/webhooks/{webhookId}/replay").post(replay));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub project_id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub is_active: bool,
    /// Why the endpoint is disabled (set with `isActive: false`).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Requests per second at most; `null`: no limit.
    #[schema(value_type = Option<WebhookRateLimit>)]
    pub rate_limit: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookEndpoint> for WebhookView {
    fn from(w: WebhookEndpoint) -> Self {
        Self {
            id: w.id,
            project_id: w.project_id,
            url: w.url,
            description: w.description,
            event_types: w.event_types,
            is_active: w.is_active,
            disabled_reason: w.disabled_reason,
            disabled_at: w.disabled_at,
            rate_limit: w.rate_limit,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An endpoint with its signing secret: the answer of create and rotate-secret only.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookView,
    /// `whsec_` + base64 of the HMAC key (Standard Webhooks); shown only now.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhook {
    /// Private, loopback and link-local targets are refused unless the server allows them
    /// (`webhooks.allow_private_targets`).
    #[schema(value_type = crate::ssrf::HttpUrl)]
    pub url: String,
    #[schema(value_type = Vec<crate::webhooks::EventType>, min_items = 1)]
    pub event_types: Vec<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// Generated when absent.
    #[schema(value_type = Option<crate::webhooks::secret::WebhookSecret>)]
    pub secret: Option<String>,
    /// Default `true`; `false` creates it disabled.
    pub is_active: Option<bool>,
    /// Requests per second at most; absent or `null`: no limit.
    #[schema(value_type = Option<WebhookRateLimit>)]
    pub rate_limit: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateWebhook {
    #[schema(value_type = Option<crate::ssrf::HttpUrl>)]
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<crate::webhooks::EventType>>, min_items = 1)]
    pub event_types: Option<Vec<String>>,
    /// `null` removes the description.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// `true` re-enables a disabled endpoint.
    pub is_active: Option<bool>,
    /// `null` removes the rate limit.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<WebhookRateLimit>)]
    pub rate_limit: Option<Option<i64>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateSecret {
    /// The new secret; generated when absent.
    #[schema(value_type = Option<crate::webhooks::secret::WebhookSecret>)]
    pub secret: Option<String>,
}

/// Creates an endpoint and returns it with its secret (owner or admin).
#[utoipa::path(post, path = "/v1/projects/{projectId}/webhooks", tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), request_body = CreateWebhook,
    responses((status = 201, body = WebhookWithSecret)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    body: Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let new = NewEndpoint {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        secret: body.secret,
        is_active: body.is_active,
        rate_limit: body.rate_limit,
    };
    let (endpoint, secret) = manage::create(&state, &access, &path, new).await?;
    Ok(HttpResponse::Created()
        .json(WebhookWithSecret { endpoint: WebhookView::from(endpoint), secret }))
}

/// Lists the project's endpoints, newest first.
#[utoipa::path(get, path = "/v1/projects/{projectId}/webhooks", tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ListQuery, crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = Page<WebhookView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let page = query.page()?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, &access, &path).await?;
    let rows = webhook_endpoints::list(
        &mut conn,
        &access.org.id,
        &project.id,
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |w: &WebhookEndpoint| Cursor { created_at: w.created_at, id: w.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, WebhookView::from)))
}

/// One endpoint, without its secret.
#[utoipa::path(get, path = "/v1/projects/{projectId}/webhooks/{webhookId}", tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = WebhookView)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project_id, webhook_id) = path.into_inner();
    let mut conn = state.db.get().await?;
    let endpoint = manage::endpoint(&mut conn, &access, &project_id, &webhook_id).await?;
    Ok(HttpResponse::Ok().json(WebhookView::from(endpoint)))
}

/// Changes an endpoint's URL, events or description, or disables or re-enables it (owner or
/// admin). Re-enabling clears the reason it was disabled and its failure streak.
#[utoipa::path(patch, path = "/v1/projects/{projectId}/webhooks/{webhookId}", tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = UpdateWebhook, responses((status = 200, body = WebhookView)))]
pub async fn update(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    body: Json<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, webhook_id) = path.into_inner();
    let body = body.0;
    let changes = EndpointChanges {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        is_active: body.is_active,
        rate_limit: body.rate_limit,
    };
    let updated = manage::update(&state, &access, &project_id, &webhook_id, changes).await?;
    Ok(HttpResponse::Ok().json(WebhookView::from(updated)))
}

/// Deletes an endpoint (owner or admin).
#[utoipa::path(delete, path = "/v1/projects/{projectId}/webhooks/{webhookId}", tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 204, description = "deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, webhook_id) = path.into_inner();
    manage::delete(&state, &access, &project_id, &webhook_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the endpoint's secret and returns the new one; the old secret keeps signing beside
/// it for 24 hours (owner or admin). The body, `{secret?}`, may be left out.
#[utoipa::path(post, path = "/v1/projects/{projectId}/webhooks/{webhookId}/rotate-secret",
    tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body(content = Option<RotateSecret>, description = "may be left out (or `null`): a \
        secret is then generated"),
    responses((status = 200, body = WebhookWithSecret)))]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // a member is refused before their body is even parsed
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    if body.len() > DEFAULT_BODY_LIMIT {
        return Err(ApiError::payload_too_large(DEFAULT_BODY_LIMIT));
    }
    // no body, or `null`: nothing asked for, a secret is generated
    let body: RotateSecret =
        if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
            RotateSecret::default()
        } else {
            json::parse(&body)?
        };
    let (rotated, secret) =
        manage::rotate_secret(&state, &access, &project_id, &webhook_id, body.secret).await?;
    Ok(HttpResponse::Ok().json(WebhookWithSecret { endpoint: WebhookView::from(rotated), secret }))
}

/// One delivery attempt of the log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    pub message_id: String,
    /// The event delivered: the `webhook-id` header of every attempt of it.
    pub event_id: String,
    pub event_type: String,
    /// 1 for the event's first attempt at this endpoint, counting on through retries.
    pub attempt: i32,
    pub succeeded: bool,
    /// The receiver's HTTP status; null when no answer came (timeout, refused, no connection).
    pub status_code: Option<i32>,
    pub duration_ms: Option<i32>,
    /// The start of the receiver's answer (at most 1 KiB).
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            message_id: d.message_id,
            event_id: d.event_id,
            event_type: d.event_type,
            attempt: d.attempt,
            succeeded: d.succeeded,
            status_code: d.status_code,
            duration_ms: d.duration_ms,
            response_body: d.response_body,
            error: d.error,
            created_at: d.created_at,
        }
    }
}

/// How many events a retry or replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub queued: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replay {
    /// Events at or after it.
    #[schema(value_type = DateTime<Utc>)]
    pub since: String,
    /// Events before it (none when it is not after `since`).
    #[schema(value_type = DateTime<Utc>)]
    pub until: String,
    /// The event types to redeliver; the endpoint's own when absent.
    #[schema(value_type = Option<Vec<crate::webhooks::EventType>>, min_items = 1)]
    pub event_types: Option<Vec<String>>,
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries",
    tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), ListQuery, crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = Page<DeliveryView>)))]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (project_id, webhook_id) = path.into_inner();
    let page = query.page()?;
    let mut conn = state.db_read().get().await?;
    let endpoint = manage::endpoint(&mut conn, &access, &project_id, &webhook_id).await?;
    let rows = deliveries::list_deliveries(
        &mut conn,
        &access.org.id,
        &endpoint.id,
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |d: &Delivery| Cursor { created_at: d.created_at, id: d.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, DeliveryView::from)))
}

/// Delivers an attempt's event again, as a new job with a fresh retry schedule (owner or
/// admin).
#[utoipa::path(post,
    path = "/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
    tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("deliveryId" = String, Path, example = "whd_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 202, body = Queued),
        (status = 409, description = "`conflict`: the endpoint is disabled", body = ErrorBody)))]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, webhook_id, delivery_id) = path.into_inner();
    let queued =
        manage::retry_delivery(&state, &access, &project_id, &webhook_id, &delivery_id).await?;
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}

/// Delivers again every event of the project in `[since, until)` of the given types (the
/// endpoint's when absent), oldest first, at most 10,000 per call (owner or admin).
#[utoipa::path(post, path = "/v1/projects/{projectId}/webhooks/{webhookId}/replay",
    tag = "webhooks", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), ("webhookId" = String, Path, example = "whk_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    request_body = Replay,
    responses((status = 202, body = Queued),
        (status = 409, description = "`conflict`: the endpoint is disabled", body = ErrorBody)))]
pub async fn replay(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<(String, String)>,
    body: Json<Replay>,
) -> Result<HttpResponse, ApiError> {
    let (project_id, webhook_id) = path.into_inner();
    let body = body.0;
    let range = ReplayRange { since: body.since, until: body.until, event_types: body.event_types };
    let queued = manage::replay(&state, &access, &project_id, &webhook_id, range).await?;
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
