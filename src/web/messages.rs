//! A project's message log and a message's page. The log filters by status, channel, text
//! (a message or provider id, part of the recipient or subject) and days, pages with a cursor
//! (newest first), and while messages on it are still on their way the page's script reloads
//! its rows every few seconds. A message's page shows its content, routing, attempts, status
//! reason, the template it was rendered from, and every status change with its details. Both
//! read through the queries the API reads through (`db::messages::list_log`,
//! `find_with_provider`, `events`, `db::templates::find`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::messages::{self, LogFilter, MAX_SEARCH_CHARS, WithProvider};
use crate::db::templates::{self, Template};
use crate::domain::channel::Channel;
use crate::domain::status::{self, FINAL, STATUSES};
use crate::error::ApiError;
use crate::ingest::Submission;
use crate::manage::messages as manage;
use crate::manage::projects::visible as visible_project;
use crate::manage::sending::{self, Sender};
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Messages per page of the log.
const PAGE: i64 = 50;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/messages").get(log))
        .service(web::resource("/projects/{projectId}/messages/test").post(send_test))
        .service(web::resource("/messages/{messageId}").get(message))
        .service(web::resource("/messages/{messageId}/retry").post(retry))
        .service(web::resource("/messages/{messageId}/cancel").post(cancel));
}

/// The test message form: one message to one recipient, routed as a send through the API
/// would be.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TestForm {
    channel: String,
    to: String,
    /// Email only.
    subject: String,
    text: String,
}

impl TestForm {
    /// The send body it stands for, as `/v1/send` takes it.
    fn body(&self, project_id: &str) -> serde_json::Value {
        let content = if self.channel == "email" {
            json!({"subject": self.subject, "text": self.text})
        } else {
            json!({"text": self.text})
        };
        json!({"channel": self.channel, "to": self.to.trim(), "project": project_id, "content": content})
    }
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

    /// Whether nothing narrows the log.
    fn is_empty(&self) -> bool {
        [&self.status, &self.channel, &self.search, &self.since, &self.until, &self.cursor]
            .iter()
            .all(|field| field.is_empty())
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
    Ok(page(StatusCode::OK, log_page(&state, &access, &path, &form, None).await?))
}

async fn send_test(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<TestForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let project = visible_project(&mut conn, &access, &path).await?;
    drop(conn);
    let sent = async {
        let mut sender = Sender::person(&state, &access.org.id);
        let prepared = sending::prepare(&mut sender, &form.body(&project.id), Utc::now()).await?;
        drop(sender);
        let mut submission = Submission::default();
        prepared.add_to(&mut submission);
        sending::commit(&state, submission).await
    };
    match sent.await {
        Ok(_) => Ok(see_other(&format!("/projects/{}/messages", project.id))),
        Err(error) => {
            let markup =
                log_page(&state, &access, &project.id, &LogForm::default(), Some((&form, &error)))
                    .await?;
            Ok(page(error.status_code(), markup))
        }
    }
}

async fn retry(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let id = manage::retry(&state, &access?, &path).await?;
    Ok(see_other(&format!("/messages/{id}")))
}

async fn cancel(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let id = manage::cancel(&state, &access?, &path).await?;
    Ok(see_other(&format!("/messages/{id}")))
}

/// The log of the project `project` with the filters of `form`, and the test message form
/// (for those who may write) with what was typed in it and why it was refused.
async fn log_page(
    state: &AppState,
    access: &Access,
    project: &str,
    form: &LogForm,
    refused: Option<(&TestForm, &ApiError)>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db_read().get().await?;
    let project = visible_project(&mut conn, access, project).await?;
    let (filter, cursor) = form.filter()?;
    let mut rows = messages::list_log(
        &mut conn,
        &access.org.id,
        &project.id,
        &filter,
        cursor.as_ref(),
        PAGE + 1,
    )
    .await?;
    drop(conn);
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|(m, _)| Cursor { created_at: m.created_at, id: m.id.clone() }.encode())
    });
    let in_flight = rows.iter().any(|(m, _)| !FINAL.contains(&m.status.as_str()));
    let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    let may_write = access.require(Action::Write).is_ok();
    let body = html! {
        main.wide {
            h1 { (project.name) ": messages" }
            @if may_write { (test_form(&project.id, &channels, refused)) }
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
                    @else if form.is_empty() {
                        "No message yet. Send one with an API key of this project ("
                        a href="/keys" { "create a key" } "), or a test message above; a "
                        a href="/providers" { "provider" } " must be set up to deliver it."
                    }
                    @else { "No message matches." }
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
    Ok(layout("Messages", Some(&viewer), body))
}

/// The form that sends one test message; open, with what was typed, when it was refused.
fn test_form(project: &str, channels: &[&str], refused: Option<(&TestForm, &ApiError)>) -> Markup {
    let empty = TestForm::default();
    let (typed, error) = match refused {
        Some((typed, error)) => (typed, Some(error)),
        None => (&empty, None),
    };
    html! {
        details.card #send-test open[error.is_some()] {
            summary { "Send a test message" }
            @if let Some(error) = error { (form_error(error)) }
            form method="post" action=(format!("/projects/{project}/messages/test")) {
                label for="test-channel" { "Channel" }
                select #test-channel name="channel" {
                    @for channel in channels {
                        option value=(channel) selected[*channel == typed.channel] { (channel) }
                    }
                }
                label for="test-to" { "To (an email address, a phone number in E.164, a Discord channel id)" }
                input #test-to type="text" name="to" required value=(typed.to);
                label for="test-subject" { "Subject (email)" }
                input #test-subject type="text" name="subject" value=(typed.subject);
                label for="test-text" { "Text" }
                textarea #test-text name="text" rows="3" required { (typed.text) }
                button type="submit" { "Send" }
            }
        }
    }
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
    let mut conn = state.db_read().get().await.map_err(ApiError::from)?;
    let (message, provider) = manage::visible(&mut conn, &access, &path).await?;
    let events = messages::events(&mut conn, &message.id).await.map_err(ApiError::from)?;
    // the template it was rendered from, by name while it still exists
    let template = match &message.template_id {
        Some(id) => templates::find(&mut conn, &access.org.id, &message.project_id, id)
            .await
            .map_err(ApiError::from)?,
        None => None,
    };
    drop(conn);
    let may_write = access.require(Action::Write).is_ok();
    let pretty =
        |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let body = html! {
        main.wide {
            p { a href=(format!("/projects/{}/messages", message.project_id)) { "← the project's messages" } }
            h1 { "Message " code { (message.id) } }
            @if may_write && message.status == status::FAILED {
                form method="post" action=(format!("/messages/{}/retry", message.id)) {
                    button type="submit" { "Send again" }
                }
            }
            @if may_write && message.status == status::RECEIVED {
                form method="post" action=(format!("/messages/{}/cancel", message.id)) {
                    button.danger type="submit" { "Cancel this scheduled message" }
                }
            }
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
                @if let Some(id) = &message.template_id {
                    dt { "Template" } dd #template { (template_link(&message.project_id, id, template.as_ref(), message.template_version)) }
                }
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

/// The template a message was rendered from and its version, linked while the template
/// exists (a deleted one leaves its id on the message).
fn template_link(
    project_id: &str,
    id: &str,
    template: Option<&Template>,
    version: Option<i32>,
) -> Markup {
    let base = format!("/projects/{project_id}/templates/{id}");
    html! {
        @match template {
            Some(template) => {
                a href=(base) { (template.name) } " (" code { (template.slug) } ")"
                @if let Some(version) = version {
                    ", " a href=(format!("{base}/versions/{version}")) { "version " (version) }
                }
            },
            None => {
                code { (id) }
                @if let Some(version) = version { ", version " (version) }
                " " span.muted { "(deleted since)" }
            },
        }
    }
}
