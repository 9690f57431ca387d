//! A project's message log and a message's page. The log filters by status, channel, text
//! (a message or provider id, part of the recipient or subject) and days, pages with a cursor
//! (newest first), and while messages on it are still on their way the page's script reloads
//! its rows every few seconds. A message's page shows its content, routing, attempts, status
//! reason and every status change with its details. Both read through the queries the API
//! reads through (`db::messages::list_log`, `find_with_provider`, `events`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::Access;
use crate::db::messages::{self, LogFilter, MAX_SEARCH_CHARS, WithProvider};
use crate::db::{Cursor, projects};
use crate::domain::channel::Channel;
use crate::domain::status::{FINAL, STATUSES};
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, layout, page, reader};

/// Messages per page of the log.
const PAGE: i64 = 50;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/messages").get(log))
        .service(web::resource("/messages/{messageId}").get(message));
}

/// The log's filter form, as the browser sends it (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogForm {
    status: String,
    channel: String,
    search: String,
    /// `YYYY-MM-DD`: from the start of that day (UTC).
    since: String,
    /// `YYYY-MM-DD`: to the end of that day (UTC).
    until: String,
    cursor: String,
}

impl LogForm {
    fn filter(&self) -> Result<(LogFilter, Option<Cursor>), ApiError> {
        let one_of =
            |field: &str, value: &str, allowed: &[&str]| -> Result<Vec<String>, ApiError> {
                match value {
                    "" => Ok(Vec::new()),
                    v if allowed.contains(&v) => Ok(vec![v.to_owned()]),
                    _ => Err(ApiError::invalid_field(
                        field,
                        format!("must be one of {}", allowed.join(", ")),
                    )),
                }
            };
        let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        let day = |field: &str, value: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            if value.is_empty() {
                return Ok(None);
            }
            let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid_field(field, "must be a date, YYYY-MM-DD"))?;
            Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
        };
        let search = self.search.trim();
        if self.search.chars().count() > MAX_SEARCH_CHARS {
            let message = format!("must be at most {MAX_SEARCH_CHARS} characters");
            return Err(ApiError::invalid_field("search", message));
        }
        let filter = LogFilter {
            statuses: one_of("status", &self.status, STATUSES)?,
            channels: one_of("channel", &self.channel, &channels)?,
            search: (!search.is_empty()).then(|| search.to_owned()),
            since: day("since", &self.since)?,
            until: day("until", &self.until)?.map(|start| start + TimeDelta::days(1)),
        };
        let cursor = match self.cursor.as_str() {
            "" => None,
            text => Some(
                Cursor::decode(text)
                    .ok_or_else(|| ApiError::invalid_field("cursor", "is not one of ours"))?,
            ),
        };
        Ok((filter, cursor))
    }

    /// This filter's query string, with `cursor`.
    fn query(&self, cursor: &str) -> String {
        let fields = [
            ("status", self.status.as_str()),
            ("channel", &self.channel),
            ("search", &self.search),
            ("since", &self.since),
            ("until", &self.until),
            ("cursor", cursor),
        ];
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(fields.iter().filter(|(_, value)| !value.is_empty()));
        query.finish()
    }
}

async fn log(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Query<LogForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let project = projects::find(&mut conn, &access.org.id, &path)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let (filter, cursor) = form.filter()?;
    let mut rows = messages::list_log(
        &mut conn,
        &access.org.id,
        &project.id,
        &filter,
        cursor.as_ref(),
        PAGE + 1,
    )
    .await
    .map_err(ApiError::from)?;
    drop(conn);
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|(m, _)| Cursor { created_at: m.created_at, id: m.id.clone() }.encode())
    });
    let in_flight = rows.iter().any(|(m, _)| !FINAL.contains(&m.status.as_str()));
    let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    let body = html! {
        main.wide {
            h1 { (project.name) ": messages" }
            form.filters method="get" {
                (select("status", "Status", STATUSES, &form.status))
                (select("channel", "Channel", &channels, &form.channel))
                label { "Search" input type="text" name="search" value=(form.search) placeholder="id, recipient or subject"; }
                label { "From" input type="date" name="since" value=(form.since); }
                label { "To" input type="date" name="until" value=(form.until); }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                div.card.empty {
                    @if cursor.is_some() { "No older message." }
                    @else { "No message matches. Messages sent with this project's API keys appear here." }
                }
            } @else {
                table #messages data-refresh[in_flight] {
                    thead { tr { th { "Accepted" } th { "Channel" } th { "To" } th { "Subject" } th { "Status" } th { "Attempts" } th { "Provider" } } }
                    tbody { @for row in &rows { (log_row(row)) } }
                }
            }
            @if let Some(Some(next)) = next {
                p { a.next href=(format!("?{}", form.query(&next))) { "Older messages →" } }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Messages", Some(&viewer), body)))
}

fn select(name: &str, title: &str, options: &[&str], chosen: &str) -> Markup {
    html! {
        label { (title)
            select name=(name) {
                option value="" { "any" }
                @for option in options {
                    option value=(option) selected[*option == chosen] { (option) }
                }
            }
        }
    }
}

fn log_row((message, provider): &WithProvider) -> Markup {
    html! {
        tr {
            td { a href=(format!("/messages/{}", message.id)) { (message.created_at.format("%Y-%m-%d %H:%M:%S")) } }
            td { (message.channel) }
            td { (message.recipient) }
            td { (message.content.get("subject").and_then(|s| s.as_str()).unwrap_or("")) }
            td { span class=(format!("status {}", message.status)) { (message.status) } }
            td { (message.attempts) }
            td { @if let Some((slug, kind)) = provider { (slug) " (" (kind) ")" } }
        }
    }
}

async fn message(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let (message, provider) = messages::find_with_provider(&mut conn, &access.org.id, &path)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let events = messages::events(&mut conn, &message.id).await.map_err(ApiError::from)?;
    drop(conn);
    let pretty =
        |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let body = html! {
        main.wide {
            p { a href=(format!("/projects/{}/messages", message.project_id)) { "← the project's messages" } }
            h1 { "Message " code { (message.id) } }
            dl.facts {
                dt { "Status" } dd { span class=(format!("status {}", message.status)) { (message.status) }
                    @if let Some(reason) = &message.status_reason { " — " (reason) } }
                dt { "Channel" } dd { (message.channel) }
                dt { "To" } dd { (message.recipient) }
                dt { "Attempts" } dd { (message.attempts) }
                dt { "Provider" } dd { @match provider {
                    Some((slug, kind)) => { (slug) " (" (kind) ")" },
                    None => "none yet",
                } }
                @if let Some(id) = &message.provider_message_id { dt { "Provider's id" } dd { code { (id) } } }
                @if let Some(at) = message.send_at { dt { "Scheduled for" } dd { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
                @if let Some(at) = message.next_attempt_at { dt { "Next attempt" } dd { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
                dt { "Accepted" } dd { (message.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
            }
            h2 { "Content" }
            pre.content { (pretty(&message.content)) }
            @if message.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                h2 { "Metadata" }
                pre.content { (pretty(&message.metadata)) }
            }
            h2 { "Timeline" }
            ol.timeline #timeline {
                @for event in &events {
                    li {
                        span class=(format!("status {}", event.status)) { (event.status) }
                        " " time { (event.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
                        @if event.details.as_object().is_some_and(|d| !d.is_empty()) {
                            pre { (pretty(&event.details)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Message", Some(&viewer), body)))
}
