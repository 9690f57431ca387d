//! A project's webhook endpoints: the list (URL, event types, state with the reason an endpoint
//! was disabled, its last attempt) with a form to add one, whose signing secret is shown once
//! with a copy button; and one endpoint's page: its settings, switching it off and on, a new
//! secret (shown once), deleting it (after a page that names its URL), its delivery log with a
//! Retry button on each failed attempt, and a replay of a time range.
//!
//! Every write goes through `manage::webhook_endpoints`, the rules the JSON API applies, so the
//! pages refuse what `/v1/projects/{projectId}/webhooks` refuses, with the same field names
//! (`url`, `eventTypes`, `description`, `rateLimit`, `since`, `until`). Members see everything but the
//! controls, and the server refuses their writes anyway. Tenant URLs are shown as text, never
//! made links.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use chrono::NaiveDateTime;
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::webhook_endpoints::{self, WebhookEndpoint};
use crate::db::webhooks::{self as deliveries, Delivery};
use crate::error::ApiError;
use crate::manage::projects::visible as visible_project;
use crate::manage::webhook_endpoints::{
    self as manage, EndpointChanges, MAX_RATE_LIMIT, NewEndpoint, ReplayRange,
};
use crate::state::AppState;
use crate::web::{Confirm, WebError, confirm, form_error, layout, page, reader, see_other};
use crate::webhooks::EVENT_TYPES;

/// Endpoints listed at most, the newest first.
const ENDPOINTS_SHOWN: i64 = 200;
/// Delivery attempts a page of the log shows.
const DELIVERIES_PAGE: i64 = 50;
/// Characters of a receiver's answer shown in the log (the API keeps up to 1 KiB).
const EXCERPT_CHARS: usize = 200;
const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

pub fn routes(cfg: &mut web::ServiceConfig) {
    const ONE: &str = "/projects/{projectId}/webhooks/{webhookId}";
    cfg.service(web::resource("/projects/{projectId}/webhooks").get(list).post(create))
        .service(web::resource(ONE).get(show).post(edit))
        .service(web::resource(format!("{ONE}/activate")).post(activate))
        .service(web::resource(format!("{ONE}/deactivate")).post(deactivate))
        .service(web::resource(format!("{ONE}/rotate-secret")).post(rotate))
        .service(web::resource(format!("{ONE}/delete")).get(confirm_delete).post(delete))
        .service(web::resource(format!("{ONE}/deliveries/{{deliveryId}}/retry")).post(retry))
        .service(web::resource(format!("{ONE}/replay")).post(replay));
}

/// A submitted form, as its name/value pairs: checkboxes send one `eventTypes` pair each.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn event_types(&self) -> Vec<String> {
        self.0.iter().filter(|(n, _)| n == "eventTypes").map(|(_, v)| v.clone()).collect()
    }

    /// What the endpoint form asks for (an empty description is none).
    fn draft(&self) -> Draft {
        let description = self.get("description");
        Draft {
            url: self.get("url").to_owned(),
            event_types: self.event_types(),
            description: (!description.is_empty()).then(|| description.to_owned()),
            rate_limit: self.get("rateLimit").trim().to_owned(),
        }
    }
}

/// The values of an endpoint form: what was typed when it is shown again with an error.
#[derive(Debug, Default, Clone)]
struct Draft {
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
    /// Requests per second, as typed; empty for none.
    rate_limit: String,
}

impl Draft {
    /// The rate limit asked for: `None` when the field is empty; text that is no integer is
    /// passed on as 0, which the rules refuse with the field's range.
    fn rate_limit(&self) -> Option<i64> {
        (!self.rate_limit.is_empty()).then(|| self.rate_limit.parse().unwrap_or(0))
    }
}

impl From<&WebhookEndpoint> for Draft {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        Draft {
            url: endpoint.url.clone(),
            event_types: endpoint.event_types.clone(),
            description: endpoint.description.clone(),
            rate_limit: endpoint.rate_limit.map(|rate| rate.to_string()).unwrap_or_default(),
        }
    }
}

/// The endpoint page's query: the log's page and how many events a retry or replay queued.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    cursor: String,
    queued: String,
}

/// What the endpoint page shows besides the endpoint.
#[derive(Default)]
struct Extras<'a> {
    /// A new secret, shown once.
    secret: Option<&'a str>,
    /// The edit form's values, when it was refused.
    draft: Option<Draft>,
    error: Option<&'a ApiError>,
    /// Events a retry or replay has just queued.
    queued: Option<usize>,
    cursor: Option<Cursor>,
}

fn endpoint_path(project_id: &str, webhook_id: &str) -> String {
    format!("/projects/{project_id}/webhooks/{webhook_id}")
}

/// A refused write shown on `markup`'s page with the status the API would answer.
fn refused(error: &ApiError, markup: Markup) -> HttpResponse {
    page(error.status_code(), markup)
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, list_page(&state, &access, &path, None, None, None).await?))
}

async fn create(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<Fields>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let draft = form.draft();
    let new = NewEndpoint {
        url: draft.url.clone(),
        event_types: draft.event_types.clone(),
        description: draft.description.clone(),
        rate_limit: draft.rate_limit(),
        ..NewEndpoint::default()
    };
    Ok(match manage::create(&state, &access, &path, new).await {
        Ok((endpoint, secret)) => {
            let created = Some((&endpoint, secret.as_str()));
            page(StatusCode::CREATED, list_page(&state, &access, &path, created, None, None).await?)
        }
        Err(error) => {
            let markup = list_page(&state, &access, &path, None, Some(&error), Some(draft)).await?;
            refused(&error, markup)
        }
    })
}

async fn show(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, webhook_id) = path.into_inner();
    let cursor = match query.cursor.as_str() {
        "" => None,
        text => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::invalid_field("cursor", "is not one of ours"))?,
        ),
    };
    // a count for the notice only: anything else in the address is ignored
    let extras = Extras { queued: query.queued.parse().ok(), cursor, ..Extras::default() };
    let markup = endpoint_page(&state, &access, &project_id, &webhook_id, extras).await?;
    Ok(page(StatusCode::OK, markup))
}

async fn edit(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    form: web::Form<Fields>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let draft = form.draft();
    let changes = EndpointChanges {
        url: Some(draft.url.clone()),
        event_types: Some(draft.event_types.clone()),
        // an emptied description is removed
        description: Some(draft.description.clone()),
        is_active: None,
        // an emptied rate limit is removed
        rate_limit: Some(draft.rate_limit()),
    };
    match manage::update(&state, &access, &project_id, &webhook_id, changes).await {
        Ok(endpoint) => Ok(see_other(&endpoint_path(&endpoint.project_id, &endpoint.id))),
        Err(error) => {
            let extras = Extras { draft: Some(draft), error: Some(&error), ..Extras::default() };
            let markup = endpoint_page(&state, &access, &project_id, &webhook_id, extras).await?;
            Ok(refused(&error, markup))
        }
    }
}

async fn activate(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    switch(&state, access?, path.into_inner(), true).await
}

async fn deactivate(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    switch(&state, access?, path.into_inner(), false).await
}

/// Switches the endpoint on (clearing why it was disabled) or off.
async fn switch(
    state: &AppState,
    access: Access,
    (project_id, webhook_id): (String, String),
    on: bool,
) -> Result<HttpResponse, WebError> {
    let changes = EndpointChanges { is_active: Some(on), ..EndpointChanges::default() };
    let endpoint = manage::update(state, &access, &project_id, &webhook_id, changes).await?;
    Ok(see_other(&endpoint_path(&endpoint.project_id, &endpoint.id)))
}

async fn rotate(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, webhook_id) = path.into_inner();
    let (endpoint, secret) =
        manage::rotate_secret(&state, &access, &project_id, &webhook_id, None).await?;
    // the page itself, not a redirect: the secret is shown this once
    let extras = Extras { secret: Some(&secret), ..Extras::default() };
    let markup = endpoint_page(&state, &access, &endpoint.project_id, &endpoint.id, extras).await?;
    Ok(page(StatusCode::OK, markup))
}

/// The page asking whether to delete the endpoint, naming its URL.
async fn confirm_delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let endpoint = manage::endpoint(&mut conn, &access, &project_id, &webhook_id).await?;
    drop(conn);
    let back = endpoint_path(&endpoint.project_id, &endpoint.id);
    let consequence = html! {
        "Events stop going to " code { (endpoint.url) }
        " at once, and its delivery log is deleted with it. This cannot be undone."
    };
    Ok(confirm(
        &viewer,
        Confirm {
            title: "Delete a webhook endpoint",
            question: "Delete this endpoint?",
            consequence,
            action: format!("{back}/delete"),
            button: format!("Delete {}", endpoint.url),
            back: &back,
        },
    ))
}

async fn delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, webhook_id) = path.into_inner();
    manage::delete(&state, &access, &project_id, &webhook_id).await?;
    Ok(see_other(&format!("/projects/{project_id}/webhooks")))
}

async fn retry(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let (project_id, webhook_id, delivery_id) = path.into_inner();
    let queued =
        manage::retry_delivery(&state, &access, &project_id, &webhook_id, &delivery_id).await;
    queued_or_refused(&state, &access, &project_id, &webhook_id, queued).await
}

async fn replay(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    form: web::Form<Fields>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let (project_id, webhook_id) = path.into_inner();
    let range = ReplayRange {
        since: instant(form.get("since")),
        until: instant(form.get("until")),
        event_types: None,
    };
    let queued = manage::replay(&state, &access, &project_id, &webhook_id, range).await;
    queued_or_refused(&state, &access, &project_id, &webhook_id, queued).await
}

/// A `datetime-local` value (`2026-12-05T10:30`, taken as UTC) in RFC 3339, which the rules
/// take; anything else as typed, for them to refuse by its field's name.
fn instant(local: &str) -> String {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(local, format).ok())
        .map_or_else(|| local.to_owned(), |at| at.and_utc().to_rfc3339())
}

/// After a retry or replay: back to the endpoint's page, which says how many events were
/// queued; or the page with why not.
async fn queued_or_refused(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    queued: Result<usize, ApiError>,
) -> Result<HttpResponse, WebError> {
    match queued {
        Ok(queued) => {
            let path = endpoint_path(project_id, webhook_id);
            Ok(see_other(&format!("{path}?queued={queued}")))
        }
        Err(error) => {
            let extras = Extras { error: Some(&error), ..Extras::default() };
            let markup = endpoint_page(state, access, project_id, webhook_id, extras).await?;
            Ok(refused(&error, markup))
        }
    }
}

/// The list page: the endpoint just created with its secret (`created`), the form (for those
/// who may write) with `error` and what was typed (`draft`), the project's endpoints.
async fn list_page(
    state: &AppState,
    access: &Access,
    project_id: &str,
    created: Option<(&WebhookEndpoint, &str)>,
    error: Option<&ApiError>,
    draft: Option<Draft>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, access, project_id).await?;
    let endpoints =
        webhook_endpoints::list(&mut conn, &access.org.id, &project.id, None, ENDPOINTS_SHOWN)
            .await?;
    let ids: Vec<String> = endpoints.iter().map(|e| e.id.clone()).collect();
    let latest = deliveries::latest_deliveries(&mut conn, &access.org.id, &ids).await?;
    drop(conn);
    let latest: HashMap<&str, &Delivery> =
        latest.iter().map(|d| (d.webhook_endpoint_id.as_str(), d)).collect();
    let may_write = access.require(Action::Write).is_ok();
    let base = format!("/projects/{}/webhooks", project.id);
    let draft = draft.unwrap_or_else(|| Draft {
        event_types: vec!["message.delivered".to_owned(), "message.failed".to_owned()],
        ..Draft::default()
    });
    let body = html! {
        main.wide {
            p.muted { a href="/projects" { "Projects" } " / " (project.name) }
            h1 { (project.name) ": webhook endpoints" }
            p.muted { "Each status change of this project's messages is POSTed, signed, to the endpoints subscribed to it." }
            @if let Some((endpoint, secret)) = created {
                (secret_card(secret, html! {
                    "Endpoint created for " code { (endpoint.url) } ". "
                    a href=(format!("{base}/{}", endpoint.id)) { "Open it" } ". "
                }))
            }
            @if may_write {
                section.card {
                    h2 { "Add an endpoint" }
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action=(base) {
                        (endpoint_fields(&draft))
                        button type="submit" { "Add endpoint" }
                    }
                }
            }
            section {
                h2 { "Endpoints" }
                @if endpoints.is_empty() {
                    div.card.empty {
                        "No endpoint yet. "
                        @if may_write { "Add one above to be told when messages are sent, delivered or fail." }
                        @else { "An admin or owner of the organization can add one." }
                    }
                } @else {
                    table #webhooks {
                        thead { tr {
                            th { "URL" } th { "Events" } th { "State" } th { "Last attempt" }
                        } }
                        tbody {
                            @for endpoint in &endpoints {
                                tr {
                                    td { a href=(format!("{base}/{}", endpoint.id)) { code { (endpoint.url) } }
                                        @if let Some(description) = &endpoint.description { br; span.muted { (description) } } }
                                    td { (endpoint.event_types.join(", ")) }
                                    td { (state_text(endpoint)) }
                                    td { @match latest.get(endpoint.id.as_str()) {
                                        Some(delivery) => (attempt_summary(delivery)),
                                        None => "none yet",
                                    } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Webhook endpoints", Some(&viewer), body))
}

/// One endpoint's page: settings, state, secret, deletion, the delivery log, replay.
async fn endpoint_page(
    state: &AppState,
    access: &Access,
    project_id: &str,
    webhook_id: &str,
    extras: Extras<'_>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, access, project_id).await?;
    let endpoint = manage::endpoint(&mut conn, access, &project.id, webhook_id).await?;
    let mut log = deliveries::list_deliveries(
        &mut conn,
        &access.org.id,
        &endpoint.id,
        extras.cursor.as_ref(),
        DELIVERIES_PAGE + 1,
    )
    .await?;
    drop(conn);
    let next = (log.len() as i64 > DELIVERIES_PAGE).then(|| {
        log.truncate(DELIVERIES_PAGE as usize);
        log.last().map(|d| Cursor { created_at: d.created_at, id: d.id.clone() }.encode())
    });
    let may_write = access.require(Action::Write).is_ok();
    let here = endpoint_path(&project.id, &endpoint.id);
    let draft = extras.draft.unwrap_or_else(|| Draft::from(&endpoint));
    let body = html! {
        main.wide {
            p.muted {
                a href="/projects" { "Projects" } " / " (project.name) " / "
                a href=(format!("/projects/{}/webhooks", project.id)) { "Webhook endpoints" }
            }
            h1 { code { (endpoint.url) } }
            @if let Some(description) = &endpoint.description { p { (description) } }
            @if let Some(secret) = extras.secret {
                (secret_card(secret, html! { "The endpoint's new secret. The old one keeps signing beside it for 24 hours. " }))
            }
            @if let Some(queued) = extras.queued {
                div.card.shown role="status" {
                    (queued) @if queued == 1 { " event" } @else { " events" }
                    " queued for delivery; each attempt appears in the log below."
                }
            }
            @if let Some(error) = extras.error { (form_error(error)) }
            dl.facts {
                dt { "State" } dd #state { (state_text(&endpoint)) }
                dt { "Events" } dd { (endpoint.event_types.join(", ")) }
                dt { "Rate limit" } dd #rate-limit {
                    @if let Some(rate) = endpoint.rate_limit { (rate) " requests per second" } @else { "none" }
                }
                dt { "Created" } dd { (endpoint.created_at.format(TIME)) }
                dt { "Changed" } dd { (endpoint.updated_at.format(TIME)) }
            }
            @if may_write {
                div.actions {
                    @if endpoint.is_active {
                        form method="post" action=(format!("{here}/deactivate")) {
                            button type="submit" { "Deactivate" }
                        }
                    } @else {
                        form method="post" action=(format!("{here}/activate")) {
                            button type="submit" { "Activate" }
                        }
                    }
                    form method="post" action=(format!("{here}/rotate-secret")) {
                        button type="submit" { "Rotate the secret" }
                    }
                    a.button.danger href=(format!("{here}/delete")) { "Delete…" }
                }
                section.card {
                    h2 { "Settings" }
                    form method="post" action=(here) {
                        (endpoint_fields(&draft))
                        button type="submit" { "Save" }
                    }
                }
            }
            section {
                h2 { "Deliveries" }
                @if log.is_empty() {
                    div.card.empty {
                        @if extras.cursor.is_some() { "No older delivery." }
                        @else { "No delivery yet: events of the types above are sent here as this project's messages change status." }
                    }
                } @else {
                    table #deliveries {
                        thead { tr {
                            th { "Event" } th { "Attempt" } th { "Status code" } th { "Duration" }
                            th { "Answer" } th { "Time" }
                            @if may_write { th {} }
                        } }
                        tbody {
                            @for delivery in &log {
                                tr {
                                    td { (delivery.event_type) }
                                    td { (delivery.attempt) }
                                    td { (status_text(delivery)) }
                                    td { @if let Some(ms) = delivery.duration_ms { (ms) " ms" } }
                                    td { @if let Some(answer) = &delivery.response_body { code { (excerpt(answer)) } } }
                                    td { (delivery.created_at.format(TIME)) }
                                    @if may_write {
                                        td { @if !delivery.succeeded {
                                            form method="post" action=(format!("{here}/deliveries/{}/retry", delivery.id)) {
                                                button.small type="submit" { "Retry" }
                                            }
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(Some(next)) = next {
                    p { a.next href=(format!("?cursor={next}")) { "Older deliveries →" } }
                }
            }
            @if may_write {
                section.card {
                    h2 { "Replay" }
                    p.muted { "Deliver again every event of the types above that happened in a time range (UTC), oldest first." }
                    form.filters method="post" action=(format!("{here}/replay")) {
                        label { "From" input type="datetime-local" name="since" required; }
                        label { "To" input type="datetime-local" name="until" required; }
                        button type="submit" { "Replay" }
                    }
                }
            }
        }
    };
    Ok(layout("Webhook endpoint", Some(&viewer), body))
}

/// The URL, event types, description and rate limit fields of the create and edit forms.
fn endpoint_fields(draft: &Draft) -> Markup {
    html! {
        label for="url" { "URL" }
        input #url type="url" name="url" value=(draft.url) placeholder="https://example.com/webhooks" required;
        fieldset {
            legend { "Events" }
            @for event_type in EVENT_TYPES {
                label.inline {
                    input type="checkbox" name="eventTypes" value=(event_type)
                        checked[draft.event_types.iter().any(|t| t == event_type)];
                    " " (event_type)
                }
            }
        }
        label for="description" { "Description (optional)" }
        input #description type="text" name="description" value=(draft.description.as_deref().unwrap_or_default());
        label for="rateLimit" { "Rate limit, requests per second (optional)" }
        input #rateLimit type="number" name="rateLimit" min="1" max=(MAX_RATE_LIMIT) step="1" value=(draft.rate_limit);
    }
}

/// A secret shown once, with a button that copies it, after `intro`.
fn secret_card(secret: &str, intro: Markup) -> Markup {
    html! {
        div.card.shown role="status" {
            p { (intro) strong { "Copy the signing secret now: it is shown only this once." } }
            p { code #new-secret { (secret) } " " button.small type="button" data-copy="#new-secret" { "Copy" } }
        }
    }
}

fn state_text(endpoint: &WebhookEndpoint) -> Markup {
    html! {
        @if !endpoint.is_active {
            "disabled: " (endpoint.disabled_reason.as_deref().unwrap_or("by a person"))
            @if let Some(at) = endpoint.disabled_at { br; span.muted { "since " (at.format(TIME)) } }
        } @else if let Some(since) = endpoint.failing_since {
            "active, failing since " (since.format(TIME))
        } @else {
            "active"
        }
    }
}

/// The status code, or why no answer came.
fn status_text(delivery: &Delivery) -> Markup {
    html! {
        @match (delivery.status_code, &delivery.error) {
            (Some(code), _) => (code),
            (None, Some(error)) => span.muted { (error) },
            (None, None) => span.muted { "no answer" },
        }
    }
}

/// The list's summary of an endpoint's latest attempt.
fn attempt_summary(delivery: &Delivery) -> Markup {
    html! {
        @if delivery.succeeded { "succeeded" } @else { span.status.failed { "failed" } " " (status_text(delivery)) }
        br; span.muted { (delivery.event_type) " · " (delivery.created_at.format(TIME)) }
    }
}

/// The start of a receiver's answer.
fn excerpt(answer: &str) -> String {
    match answer.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &answer[..end]),
        None => answer.to_owned(),
    }
}
