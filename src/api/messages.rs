//! `/v1/messages` and `/v1/projects/{projectId}/messages`: the message log of a project (filters,
//! search, keyset pages), one message with its history, and the operator's two actions on a
//! message: retry a failed one, cancel a scheduled one.
//!
//! Both actions are conditional UPDATEs on the current status, so they are safe against a
//! worker (or another operator) changing the message at the same moment: the loser gets 409.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::pagination::{MAX_LIMIT, Page, PageRequest};
use crate::auth::{Access, Action};
use crate::db::messages::{self, Event, LogFilter, MAX_SEARCH_CHARS, WithProvider};
use crate::db::{Cursor, PooledConnection};
use crate::domain::channel::Channel;
use crate::domain::status::STATUSES;
use crate::domain::validate::Validator;
use crate::error::{ApiError, ErrorBody};
use crate::manage::messages as manage;
use crate::manage::projects::visible;
use crate::state::AppState;

crate::json_schema! {
    /// `?search=`.
    SearchText => crate::domain::schema::text(0, MAX_SEARCH_CHARS)
        .description(Some(format!("At most {MAX_SEARCH_CHARS} characters.")))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/messages").get(list))
        .service(web::resource("/messages/{messageId}").get(get))
        .service(web::resource("/messages/{messageId}/retry").post(retry))
        .service(web::resource("/messages/{messageId}/cancel").post(cancel));
}

/// The credential that handled the message's last attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderRef {
    pub id: String,
    pub slug: String,
    /// The provider type (`ses`, `smtp`, `sns`, `whatsapp_cloud`, `discord_bot`, `sandbox`).
    #[serde(rename = "type")]
    pub provider_type: String,
}

/// A message as lists show it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub project_id: String,
    pub channel: String,
    /// The recipient.
    pub to: String,
    /// Null until a provider has handled an attempt.
    pub provider: Option<ProviderRef>,
    pub status: String,
    pub status_reason: Option<String>,
    pub attempts: i32,
    pub metadata: serde_json::Value,
    pub content: serde_json::Value,
    pub provider_message_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub send_at: Option<DateTime<Utc>>,
    /// The template version its content was rendered from; null when sent with `content`.
    pub template: Option<RenderedFrom>,
}

/// A message's template and version.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenderedFrom {
    pub id: String,
    pub version: i32,
}

impl From<WithProvider> for MessageView {
    fn from((m, credential): WithProvider) -> Self {
        let provider = m.provider_credential_id.zip(credential).map(|(id, (slug, kind))| {
            // the message records the type that handled it; the credential's is the same
            // unless the row predates the column being written
            ProviderRef { id, slug, provider_type: m.provider_type.unwrap_or(kind) }
        });
        Self {
            id: m.id,
            project_id: m.project_id,
            channel: m.channel,
            to: m.recipient,
            provider,
            status: m.status,
            status_reason: m.status_reason,
            attempts: m.attempts,
            metadata: m.metadata,
            content: m.content,
            provider_message_id: m.provider_message_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
            send_at: m.send_at,
            template: m
                .template_id
                .zip(m.template_version)
                .map(|(id, version)| RenderedFrom { id, version }),
        }
    }
}

/// One status change of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    pub status: String,
    pub at: DateTime<Utc>,
    /// Attempt, provider response or error, duration; `retry` and `by` for operator actions.
    pub details: serde_json::Value,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self { id: e.id, status: e.status, at: e.created_at, details: e.details }
    }
}

/// A message with its history, oldest event first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageView,
    pub events: Vec<EventView>,
}

/// The query string of the message log. Every value is taken as text and checked here, so
/// that each error names its parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Comma-separated statuses (`failed,canceled`); any when absent.
    #[param(value_type = Option<Vec<crate::domain::schema::MessageStatus>>, style = Form, explode = false, inline)]
    pub status: Option<String>,
    /// Comma-separated channels (`email,sms`); any when absent.
    #[param(value_type = Option<Vec<Channel>>, style = Form, explode = false, inline)]
    pub channel: Option<String>,
    /// An exact message id or provider message id, or part of the recipient or of the email
    /// subject (case-insensitive, trimmed; blank is no search).
    #[param(value_type = Option<SearchText>, inline)]
    pub search: Option<String>,
    /// Messages created at or after this instant.
    #[param(value_type = Option<DateTime<Utc>>, inline)]
    pub since: Option<String>,
    /// Messages created before this instant (none when it is before `since`).
    #[param(value_type = Option<DateTime<Utc>>, inline)]
    pub until: Option<String>,
    #[param(value_type = Option<crate::api::pagination::PageLimit>, inline)]
    pub limit: Option<String>,
    #[param(value_type = Option<crate::api::pagination::PageCursor>, inline)]
    pub cursor: Option<String>,
}

impl LogQuery {
    /// The filter and page asked for, or 400 naming every parameter at fault.
    fn check(&self) -> Result<(LogFilter, PageRequest), ApiError> {
        let mut check = Validator::new();
        let statuses = list_of(&mut check, "status", self.status.as_deref(), STATUSES);
        let channels = list_of(
            &mut check,
            "channel",
            self.channel.as_deref(),
            &Channel::ALL.map(Channel::as_str),
        );
        // the length as sent, as the document states it; blank is no search
        if self.search.as_deref().is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS) {
            check.error("search", format!("must be at most {MAX_SEARCH_CHARS} characters"));
        }
        let search = self.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        // `since` after `until` is a range of no message: an empty page, not an error
        let since = instant(&mut check, "since", self.since.as_deref());
        let until = instant(&mut check, "until", self.until.as_deref());
        let limit = match self.limit.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<i64>() {
                Ok(limit) => Some(limit),
                Err(_) => {
                    check.error("limit", format!("must be an integer from 1 to {MAX_LIMIT}"));
                    // already reported; the default keeps PageRequest from reporting it again
                    None
                }
            },
        };
        // PageRequest stops at its first error; checked one at a time, both are reported.
        let mut page_part = |limit, cursor| {
            PageRequest::new(limit, cursor)
                .map_err(|e| {
                    for detail in e.details() {
                        check.error(detail.field.clone(), detail.message.clone());
                    }
                })
                .ok()
        };
        let sized = page_part(limit, None);
        let after = page_part(None, self.cursor.as_deref()).and_then(|p| p.after);
        check.finish()?;
        let page = sized
            .map(|p| PageRequest { after, ..p })
            .ok_or_else(|| ApiError::internal("page request missing"))?;
        let filter =
            LogFilter { statuses, channels, search: search.map(str::to_owned), since, until };
        Ok((filter, page))
    }
}

/// A comma-separated list of values from `allowed`; empty or absent means "any".
fn list_of(
    check: &mut Validator,
    field: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Vec<String> {
    let mut values = Vec::new();
    for value in text.unwrap_or_default().split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if allowed.contains(&value) {
            values.push(value.to_owned());
        } else {
            check.error(field, format!("`{value}` is not one of {}", allowed.join(", ")));
        }
    }
    values
}

fn instant(check: &mut Validator, field: &str, text: Option<&str>) -> Option<DateTime<Utc>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            check.error(field, "must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z");
            None
        }
    }
}

/// The message `id` as `access` may see it: another organization's message, or another
/// project's for a project-bound API key, is not found.
/// The message with its history, as the single-message routes answer.
async fn detail(
    conn: &mut PooledConnection,
    access: &Access,
    id: &str,
) -> Result<MessageDetail, ApiError> {
    let message = manage::visible(conn, access, id).await?;
    let events = messages::events(conn, id).await?;
    Ok(MessageDetail {
        message: MessageView::from(message),
        events: events.into_iter().map(EventView::from).collect(),
    })
}

/// One message with its history (events oldest first).
#[utoipa::path(get, path = "/v1/messages/{messageId}", tag = "messages", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("messageId" = String, Path, example = "msg_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 200, body = MessageDetail)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let found = detail(&mut state.db_read().get().await?, &access, &path).await;
    // A replica that has not replayed it yet does not know a message just sent: its sender,
    // polling it, gets it from the primary (as of now) rather than a 404.
    let found = match found {
        Err(e) if state.db_replica.is_some() && e.status_code() == StatusCode::NOT_FOUND => {
            detail(&mut state.db.get().await?, &access, &path).await
        }
        found => found,
    };
    Ok(HttpResponse::Ok().json(found?))
}

/// The project's messages, newest first, filtered and searched.
#[utoipa::path(get, path = "/v1/projects/{projectId}/messages", tag = "messages", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("projectId" = String, Path, description = "id or slug", example = "prj_01jf3q6zvqe3f7m1s9gkxw5h2c"), LogQuery, crate::api::openapi::OrganizationHeader), responses((status = 200, body = Page<MessageView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let (filter, page) = query.check()?;
    let mut conn = state.db_read().get().await?;
    let project = visible(&mut conn, &access, &path).await?;
    let rows = messages::list_log(
        &mut conn,
        &access.org.id,
        &project.id,
        &filter,
        page.after.as_ref(),
        page.fetch(),
    )
    .await?;
    let key = |(m, _): &WithProvider| Cursor { created_at: m.created_at, id: m.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, MessageView::from)))
}

/// Sends a failed message again: back to `queued` with attempts reset (owner, admin or a
/// `manage` key).
#[utoipa::path(post, path = "/v1/messages/{messageId}/retry", tag = "messages", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("messageId" = String, Path, example = "msg_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = MessageDetail),
        (status = 409, description = "`conflict`: the message is not `failed`", body = ErrorBody)))]
pub async fn retry(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = manage::retry(&state, &access, &path).await?;
    let mut conn = state.db.get().await?;
    Ok(HttpResponse::Ok().json(detail(&mut conn, &access, &id).await?))
}

/// Cancels a scheduled message that is not queued yet (owner, admin or a `manage` key).
#[utoipa::path(post, path = "/v1/messages/{messageId}/cancel", tag = "messages", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("messageId" = String, Path, example = "msg_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader),
    responses((status = 200, body = MessageDetail),
        (status = 409, description = "`conflict`: the message is not `received` (scheduled)", body = ErrorBody)))]
pub async fn cancel(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = manage::cancel(&state, &access, &path).await?;
    let mut conn = state.db.get().await?;
    Ok(HttpResponse::Ok().json(detail(&mut conn, &access, &id).await?))
}
