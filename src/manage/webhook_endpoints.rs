//! A project's webhook endpoints: created (with a signing secret shown once), changed, switched
//! off and on, given a new secret, deleted; and their deliveries retried or a time range of
//! events replayed. The JSON API (`/v1/projects/{projectId}/webhooks`) and the dashboard's pages
//! (`crate::web::webhooks`) both call these, so the rules (who may, what a URL or an event type
//! must be, when a disabled endpoint refuses new deliveries) live here once.
//!
//! URLs are checked against private and metadata targets when saved, so a tenant learns at once
//! that a URL will never be called (see `crate::ssrf`); the webhook worker checks again when it
//! connects.

use chrono::{DateTime, Utc};

use crate::auth::{Access, Action};
use crate::db::PooledConnection;
use crate::db::webhook_endpoints::{
    self, NewWebhookEndpoint, WebhookEndpoint, WebhookEndpointChanges,
};
use crate::db::webhooks::{self as deliveries, Job};
use crate::domain::ids;
use crate::domain::validate::Validator;
use crate::error::ApiError;
use crate::manage::projects::visible;
use crate::ssrf;
use crate::state::AppState;
use crate::webhooks::{EVENT_TYPES, secret};

pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// `disabledReason` of an endpoint switched off by a person (the webhook worker writes its own
/// reasons when it disables one).
pub const DISABLED_BY_REQUEST: &str = "disabled through the API";

/// The highest `rateLimit` (requests per second) an endpoint may be given.
pub const MAX_RATE_LIMIT: i64 = 10_000;

/// Events one replay queues at most; a longer range is replayed in several calls.
pub const REPLAY_MAX_EVENTS: i64 = 10_000;

/// A new endpoint, as asked for.
#[derive(Debug, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Generated when absent.
    pub secret: Option<String>,
    /// Default `true`; `false` creates it disabled.
    pub is_active: Option<bool>,
    /// Requests per second at most, over every webhook process; `None`: no limit.
    pub rate_limit: Option<i64>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    /// `true` re-enables a disabled endpoint (clearing its reason and failure streak); `false`
    /// disables it.
    pub is_active: Option<bool>,
    /// `Some(None)` removes the rate limit.
    pub rate_limit: Option<Option<i64>>,
}

/// Events to deliver again: those of `[since, until)` (RFC 3339 date-times) of `event_types`,
/// the endpoint's own when absent.
#[derive(Debug, Default)]
pub struct ReplayRange {
    pub since: String,
    pub until: String,
    pub event_types: Option<Vec<String>>,
}

/// The endpoint `webhook_id` of the project, as the caller may see it.
pub async fn endpoint(
    conn: &mut PooledConnection,
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
pub async fn create(
    state: &AppState,
    access: &Access,
    project_id: &str,
    new: NewEndpoint,
) -> Result<(WebhookEndpoint, String), ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    let url = check_url(&mut check, &new.url, state.config.webhooks.allow_private_targets).await;
    let event_types = check_event_types(&mut check, &new.event_types);
    check_description(&mut check, new.description.as_deref());
    let rate_limit = new.rate_limit.and_then(|rate| check_rate_limit(&mut check, rate));
    let secret = secret_or_new(&mut check, new.secret)?;
    check.finish()?;
    // finish() has already refused a URL that did not pass; this cannot fail
    let url = url.ok_or_else(|| ApiError::internal("checked URL missing"))?;

    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, access, project_id).await?;
    let id = ids::new_id(ids::WEBHOOK);
    let sealed = secret::seal(&state.keys, &access.org.id, &id, &secret);
    let is_active = new.is_active.unwrap_or(true);
    let row = NewWebhookEndpoint {
        id: &id,
        organization_id: &access.org.id,
        project_id: &project.id,
        url: &url,
        description: new.description.as_deref(),
        event_types: &event_types,
        sealed_secret: &sealed.bytes,
        secret_key_id: &sealed.key_id,
        is_active,
        disabled_reason: (!is_active).then_some(DISABLED_BY_REQUEST),
        disabled_at: (!is_active).then(Utc::now),
        rate_limit,
    };
    let endpoint = webhook_endpoints::insert(&mut conn, row).await?;
    Ok((endpoint, secret))
}

/// Changes an endpoint's URL, events or description, or disables or re-enables it (owner or
/// admin). Re-enabling clears the reason it was disabled and its failure streak.
pub async fn update(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    asked: EndpointChanges,
) -> Result<WebhookEndpoint, ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    let url = match &asked.url {
        Some(text) => {
            check_url(&mut check, text, state.config.webhooks.allow_private_targets).await
        }
        None => None,
    };
    let event_types = asked.event_types.as_deref().map(|t| check_event_types(&mut check, t));
    check_description(&mut check, asked.description.as_ref().and_then(Option::as_deref));
    let rate_limit =
        asked.rate_limit.map(|rate| rate.and_then(|rate| check_rate_limit(&mut check, rate)));
    check.finish()?;

    let mut conn = state.db.get().await?;
    let endpoint = endpoint(&mut conn, access, project_id, webhook_id).await?;
    let now = Utc::now();
    let mut changes = WebhookEndpointChanges {
        url,
        description: asked.description,
        event_types,
        rate_limit,
        updated_at: Some(now),
        ..WebhookEndpointChanges::default()
    };
    match asked.is_active {
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
    webhook_endpoints::update(
        &mut conn,
        &access.org.id,
        &endpoint.project_id,
        &endpoint.id,
        changes,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// Deletes an endpoint (owner or admin).
pub async fn delete(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
) -> Result<(), ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, access, project_id).await?;
    if !webhook_endpoints::delete(&mut conn, &access.org.id, &project.id, webhook_id).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(())
}

/// Replaces the endpoint's secret with `given` (or a new one) and returns the endpoint with
/// it; the old secret keeps signing beside it for 24 hours (owner or admin).
pub async fn rotate_secret(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    given: Option<String>,
) -> Result<(WebhookEndpoint, String), ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    let secret = secret_or_new(&mut check, given)?;
    check.finish()?;

    let mut conn = state.db.get().await?;
    let endpoint = endpoint(&mut conn, access, project_id, webhook_id).await?;
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
    Ok((rotated, secret))
}

/// Delivers an attempt's event again, as a new job with a fresh retry schedule (owner or
/// admin); returns how many events were queued (one).
pub async fn retry_delivery(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<usize, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let endpoint = endpoint(&mut conn, access, project_id, webhook_id).await?;
    let delivery = deliveries::find_delivery(&mut conn, &access.org.id, &endpoint.id, delivery_id)
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
    Ok(1)
}

/// Delivers again every event of the project in the range, oldest first, at most
/// [`REPLAY_MAX_EVENTS`] (owner or admin); returns how many were queued.
pub async fn replay(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    range: ReplayRange,
) -> Result<usize, ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    let mut instant = |field: &str, text: &str| match DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(at.to_utc()),
        Err(_) => {
            check.error(field, "must be an RFC 3339 date-time such as 2026-11-27T10:00:00Z");
            None
        }
    };
    // `until` not after `since` is a range of no event: nothing to queue, not an error
    let since = instant("since", &range.since);
    let until = instant("until", &range.until);
    let event_types = range.event_types.as_deref().map(|t| check_event_types(&mut check, t));
    check.finish()?;
    let (Some(since), Some(until)) = (since, until) else {
        return Err(ApiError::internal("checked instants missing"));
    };

    let mut conn = state.db.get().await?;
    let endpoint = endpoint(&mut conn, access, project_id, webhook_id).await?;
    require_active(&endpoint)?;
    let event_types = event_types.unwrap_or_else(|| endpoint.event_types.clone());
    let queued =
        deliveries::replay(&mut conn, &endpoint, since, until, &event_types, REPLAY_MAX_EVENTS)
            .await?;
    Ok(queued)
}

/// An endpoint that takes new deliveries: retry and replay are refused while it is disabled.
fn require_active(endpoint: &WebhookEndpoint) -> Result<(), ApiError> {
    if endpoint.is_active {
        Ok(())
    } else {
        Err(ApiError::conflict("the webhook endpoint is disabled; re-enable it first"))
    }
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

/// Checks a `rateLimit` (requests per second) and returns it as stored.
fn check_rate_limit(check: &mut Validator, rate: i64) -> Option<i32> {
    if !(1..=MAX_RATE_LIMIT).contains(&rate) {
        check.error("rateLimit", format!("must be an integer from 1 to {MAX_RATE_LIMIT}"));
        return None;
    }
    i32::try_from(rate).ok()
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
