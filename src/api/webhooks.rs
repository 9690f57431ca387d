//! `/v1/projects/{projectId}/webhooks`: the endpoints a project's message events are POSTed to.
//!
//! The signing secret is shown twice only: when an endpoint is created and when its secret is
//! rotated; reads omit it. URLs are checked against private and metadata targets here, when
//! saved, so a tenant learns at once that a URL will never be called (see `crate::ssrf`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::{self, DEFAULT_BODY_LIMIT, Json};
use crate::api::pagination::{ListQuery, Page};
use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::webhook_endpoints::{
    self, NewWebhookEndpoint, WebhookEndpoint, WebhookEndpointChanges,
};
use crate::db::webhooks::{self as deliveries, Delivery, Job};
use crate::domain::ids;
use crate::domain::validate::Validator;
use crate::error::{ApiError, ErrorBody};
use crate::manage::projects::visible;
use crate::ssrf;
use crate::state::AppState;
use crate::webhooks::{EVENT_TYPES, secret};

const MAX_DESCRIPTION_CHARS: usize = 500;

crate::json_schema! {
    /// An endpoint's description, as [`check_description`] takes it.
    Description => crate::domain::schema::text(0, MAX_DESCRIPTION_CHARS)
        .description(Some(format!("At most {MAX_DESCRIPTION_CHARS} characters.")))
}
/// `disabledReason` of an endpoint switched off with `isActive: false` (the webhook worker
/// writes its own reasons when it disables one).
const DISABLED_BY_REQUEST: &str = "disabled through the API";

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
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateSecret {
    /// The new secret; generated when absent.
    #[schema(value_type = Option<crate::webhooks::secret::WebhookSecret>)]
    pub secret: Option<String>,
}

/// Checks `eventTypes` and returns them without duplicates, in their first order.
fn check_event_types(check: &mut Validator, types: &[String]) -> Vec<String> {
    if types.is_empty() {
        check.error("eventTypes", "must list at least one event type");
    }
    let mut unique: Vec<String> = Vec::with_capacity(types.len());
    for (i, event_type) in types.iter().enumerate() {
        if !EVENT_TYPES.contains(&event_type.as_str()) {
            check.error(
                format!("eventTypes.{i}"),
                format!("is not an event type (one of {})", EVENT_TYPES.join(", ")),
            );
        } else if !unique.contains(event_type) {
            unique.push(event_type.clone());
        }
    }
    unique
}

/// Checks a URL (resolving its host unless private targets are allowed) and returns it
/// normalized, as it is stored and later called.
async fn check_url(check: &mut Validator, text: &str, allow_private: bool) -> Option<String> {
    let url = match ssrf::parse_url(text) {
        Ok(url) => url,
        Err(message) => {
            check.error("url", message);
            return None;
        }
    };
    if !allow_private && let Err(message) = ssrf::check_target(&url).await {
        check.error("url", message);
        return None;
    }
    Some(url.into())
}

fn check_description(check: &mut Validator, description: Option<&str>) {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        check.error("description", format!("must be at most {MAX_DESCRIPTION_CHARS} characters"));
    }
}

/// A given secret, checked, or a new one.
fn secret_or_new(check: &mut Validator, given: Option<String>) -> Result<String, ApiError> {
    match given {
        Some(secret) => {
            if let Err(message) = secret::key_bytes(&secret) {
                check.error("secret", message);
            }
            Ok(secret)
        }
        None => secret::generate().map_err(|_| ApiError::internal("the system RNG failed")),
    }
}

async fn endpoint_of(
    conn: &mut crate::db::PooledConnection,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
) -> Result<WebhookEndpoint, ApiError> {
    let project = visible(conn, access, project_id).await?;
    webhook_endpoints::find(conn, &access.org.id, &project.id, webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
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
    access.require(Action::Write)?;
    let body = body.0;
    let mut check = Validator::new();
    let url = check_url(&mut check, &body.url, state.config.webhooks.allow_private_targets).await;
    let event_types = check_event_types(&mut check, &body.event_types);
    check_description(&mut check, body.description.as_deref());
    let secret = secret_or_new(&mut check, body.secret)?;
    check.finish()?;
    // finish() has already refused a URL that did not pass; this cannot fail
    let url = url.ok_or_else(|| ApiError::internal("checked URL missing"))?;

    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    let id = ids::new_id(ids::WEBHOOK);
    let sealed = secret::seal(&state.keys, &access.org.id, &id, &secret);
    let is_active = body.is_active.unwrap_or(true);
    let new = NewWebhookEndpoint {
        id: &id,
        organization_id: &access.org.id,
        project_id: &project.id,
        url: &url,
        description: body.description.as_deref(),
        event_types: &event_types,
        sealed_secret: &sealed.bytes,
        secret_key_id: &sealed.key_id,
        is_active,
        disabled_reason: (!is_active).then_some(DISABLED_BY_REQUEST),
        disabled_at: (!is_active).then(Utc::now),
    };
    let endpoint = webhook_endpoints::insert(&mut conn, new).await?;
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
    let project = visible(&mut conn, &access, &path).await?;
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
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
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
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let body = body.0;
    let mut check = Validator::new();
    let url = match &body.url {
        Some(text) => {
            check_url(&mut check, text, state.config.webhooks.allow_private_targets).await
        }
        None => None,
    };
    let event_types = body.event_types.as_deref().map(|t| check_event_types(&mut check, t));
    check_description(&mut check, body.description.as_ref().and_then(Option::as_deref));
    check.finish()?;

    let mut conn = state.db.get().await?;
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
    let now = Utc::now();
    let mut changes = WebhookEndpointChanges {
        url,
        description: body.description,
        event_types,
        updated_at: Some(now),
        ..WebhookEndpointChanges::default()
    };
    match body.is_active {
        Some(true) => {
            changes.is_active = Some(true);
            changes.disabled_reason = Some(None);
            changes.disabled_at = Some(None);
            changes.failing_since = Some(None);
        }
        // an endpoint already disabled keeps the reason and time it was disabled first
        Some(false) if endpoint.is_active => {
            changes.is_active = Some(false);
            changes.disabled_reason = Some(Some(DISABLED_BY_REQUEST.to_owned()));
            changes.disabled_at = Some(Some(now));
        }
        Some(false) | None => {}
    }
    let updated = webhook_endpoints::update(
        &mut conn,
        &access.org.id,
        &endpoint.project_id,
        &endpoint.id,
        changes,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
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
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, &access, &project_id).await?;
    if !webhook_endpoints::delete(&mut conn, &access.org.id, &project.id, &webhook_id).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
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
    let mut check = Validator::new();
    let secret = secret_or_new(&mut check, body.secret)?;
    check.finish()?;

    let mut conn = state.db.get().await?;
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
    let sealed = secret::seal(&state.keys, &access.org.id, &endpoint.id, &secret);
    let rotated = webhook_endpoints::rotate_secret(
        &mut conn,
        &access.org.id,
        &endpoint.project_id,
        &endpoint.id,
        &sealed.bytes,
        &sealed.key_id,
        Utc::now() + secret::PREVIOUS_SECRET_TTL,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
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

/// Events one replay queues at most; a longer range is replayed in several calls.
pub const REPLAY_MAX_EVENTS: i64 = 10_000;

/// An endpoint that takes new deliveries: retry and replay are refused while it is disabled.
fn require_active(endpoint: &WebhookEndpoint) -> Result<(), ApiError> {
    if endpoint.is_active {
        Ok(())
    } else {
        Err(ApiError::conflict("the webhook endpoint is disabled; re-enable it first"))
    }
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
    let mut conn = state.db.get().await?;
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
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
    access.require(Action::Write)?;
    let (project_id, webhook_id, delivery_id) = path.into_inner();
    let mut conn = state.db.get().await?;
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
    let delivery = deliveries::find_delivery(&mut conn, &access.org.id, &endpoint.id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    require_active(&endpoint)?;
    let job = Job {
        organization_id: delivery.organization_id,
        webhook_endpoint_id: delivery.webhook_endpoint_id,
        message_id: delivery.message_id,
        event_id: delivery.event_id,
        event_type: delivery.event_type,
        tries: 0,
    };
    deliveries::insert_job(&mut conn, &job).await?;
    Ok(HttpResponse::Accepted().json(Queued { queued: 1 }))
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
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let body = body.0;
    let mut check = Validator::new();
    let mut instant = |field: &str, text: &str| match DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(at.to_utc()),
        Err(_) => {
            check.error(field, "must be an RFC 3339 date-time such as 2026-11-27T10:00:00Z");
            None
        }
    };
    // `until` not after `since` is a range of no event: nothing to queue, not an error
    let since = instant("since", &body.since);
    let until = instant("until", &body.until);
    let event_types = body.event_types.as_deref().map(|t| check_event_types(&mut check, t));
    check.finish()?;
    let (Some(since), Some(until)) = (since, until) else {
        return Err(ApiError::internal("checked instants missing"));
    };

    let mut conn = state.db.get().await?;
    let endpoint = endpoint_of(&mut conn, &access, &project_id, &webhook_id).await?;
    require_active(&endpoint)?;
    let event_types = event_types.unwrap_or_else(|| endpoint.event_types.clone());
    let queued =
        deliveries::replay(&mut conn, &endpoint, since, until, &event_types, REPLAY_MAX_EVENTS)
            .await?;
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
