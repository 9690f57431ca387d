//! The overview of the active organization, what a signed-in person sees first: its messages
//! of the last 24 hours by status and channel (with an hourly chart, drawn on the server as
//! SVG), how many wait for delivery and since when, the latest failures with their reasons,
//! the webhook endpoints that fail or were disabled, and its projects; and, for people in
//! several organizations, the choice of the active one.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::accounts;
use crate::auth::{Access, Action, Principal};
use crate::db::messages::{self, HourCount};
use crate::db::{api_keys, organizations, projects, providers, webhook_endpoints};
use crate::domain::status::{DELIVERED, FAILED, SENT};
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, layout, page, reader, see_other};

/// Projects shown at most; the projects page lists more.
const PROJECTS_SHOWN: i64 = 50;
/// Failures and troubled endpoints shown at most.
const TROUBLES_SHOWN: i64 = 10;
const HOURS: i64 = 24;

/// Organizations offered in the switcher at most.
const ORGANIZATIONS_SHOWN: i64 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").get(overview))
        .service(web::resource("/organization").post(switch_organization));
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SwitchForm {
    organization: String,
}

/// Makes another of the user's organizations the session's active one (as
/// `POST /v1/auth/active-organization` does); 404 for one that is not theirs.
async fn switch_organization(
    state: web::Data<AppState>,
    principal: Principal,
    form: web::Form<SwitchForm>,
) -> Result<HttpResponse, WebError> {
    let (user, session) = principal.user()?;
    accounts::set_active_organization(&state, &user.id, &session.id, &form.organization).await?;
    Ok(see_other("/"))
}

async fn overview(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let org = &access.org.id;
    let now = Utc::now();
    let first_hour = hour_of(now) - TimeDelta::hours(HOURS - 1);
    let mut conn = state.db_read().get().await.map_err(ApiError::from)?;
    let counts =
        messages::counts_by_hour(&mut conn, org, first_hour).await.map_err(ApiError::from)?;
    let waiting = messages::waiting(&mut conn, org).await.map_err(ApiError::from)?;
    let failures =
        messages::recent_failures(&mut conn, org, TROUBLES_SHOWN).await.map_err(ApiError::from)?;
    let endpoints = webhook_endpoints::troubled(&mut conn, org, TROUBLES_SHOWN)
        .await
        .map_err(ApiError::from)?;
    let projects =
        projects::list(&mut conn, org, None, None, PROJECTS_SHOWN).await.map_err(ApiError::from)?;
    let has_provider = providers::any_active(&mut conn, org).await.map_err(ApiError::from)?;
    let has_key = api_keys::any_live(&mut conn, org, now).await.map_err(ApiError::from)?;
    let memberships = match access.user() {
        Some(user) => organizations::list_for_user(&mut conn, &user.id, None, ORGANIZATIONS_SHOWN)
            .await
            .map_err(ApiError::from)?,
        None => Vec::new(),
    };
    drop(conn);

    let by_status = totals(&counts, |c| &c.status);
    let by_channel = totals(&counts, |c| &c.channel);
    let may_write = access.require(Action::Write).is_ok();
    let body = html! {
        main {
            h1 { (access.org.name) }
            @if !has_provider || !has_key {
                section.card.empty #next-steps {
                    h2 { "Getting started" }
                    ol {
                        @if !has_provider {
                            li { "No provider yet: "
                                @if may_write { a href="/providers" { "add one" } " (the sandbox one delivers nowhere, to try RelayIt out)." }
                                @else { "an admin or owner adds one on the " a href="/providers" { "providers page" } "." } }
                        }
                        @if !has_key {
                            li { "No API key yet: "
                                @if may_write { a href="/keys" { "create one" } " for your application to send with." }
                                @else { "an admin or owner creates one on the " a href="/keys" { "keys page" } "." } }
                        }
                        li { "Send a first message from a project's " a href="/projects" { "message log" } ", or with the key through " code { "POST /v1/send" } "." }
                    }
                }
            }
            @if memberships.len() > 1 {
                form.switch method="post" action="/organization" {
                    label for="organization" { "Switch to" }
                    select #organization name="organization" {
                        @for (other, member) in &memberships {
                            option value=(other.id) selected[other.id == access.org.id] {
                                (other.name) " (" (member.role) ")"
                            }
                        }
                    }
                    button.small type="submit" { "Switch" }
                }
            }
            section #last-day {
                h2 { "Last 24 hours" }
                @if counts.is_empty() {
                    div.card.empty { "No message in the last 24 hours." }
                } @else {
                    (chart(&counts, first_hour))
                    div.columns {
                        (tally("By status", "by-status", &by_status))
                        (tally("By channel", "by-channel", &by_channel))
                    }
                }
            }
            section #waiting {
                h2 { "Waiting for delivery" }
                p {
                    strong { (waiting.count) }
                    @if waiting.count == 1 { " message" } @else { " messages" }
                    @if let Some(oldest) = waiting.oldest {
                        ", the oldest accepted " (ago(now, oldest)) " ago"
                    }
                }
            }
            section #failures {
                h2 { "Recent failures" }
                @if failures.is_empty() {
                    p.muted { "None." }
                } @else {
                    table {
                        thead { tr { th { "Accepted" } th { "Channel" } th { "To" } th { "Reason" } } }
                        tbody {
                            @for message in &failures {
                                tr {
                                    td { (message.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                    td { (message.channel) }
                                    td { (message.recipient) }
                                    td { (message.status_reason.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            section #endpoints {
                h2 { "Webhook endpoints in trouble" }
                @if endpoints.is_empty() {
                    p.muted { "None: every endpoint is active and answering." }
                } @else {
                    table {
                        thead { tr { th { "URL" } th { "State" } } }
                        tbody {
                            @for endpoint in &endpoints {
                                tr {
                                    td { code { (endpoint.url) } }
                                    td {
                                        @if !endpoint.is_active {
                                            "disabled: " (endpoint.disabled_reason.as_deref().unwrap_or("by a person"))
                                        } @else if let Some(since) = endpoint.failing_since {
                                            "failing for " (ago(now, since))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Projects" }
                @if projects.is_empty() {
                    div.card.empty { "No project yet: create one to send messages from." }
                } @else {
                    table #projects {
                        thead { tr { th { "Name" } th { "Slug" } th { "Created" } } }
                        tbody {
                            @for project in &projects {
                                tr {
                                    td { a href=(format!("/projects/{}/messages", project.id)) { (project.name) } }
                                    td { code { (project.slug) } }
                                    td { (project.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Overview", Some(&viewer), body)))
}

fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::hours(1)).unwrap_or(time)
}

/// Counts summed by the key `of` picks, largest first.
fn totals<'a>(
    counts: &'a [HourCount],
    of: impl Fn(&'a HourCount) -> &'a String,
) -> Vec<(&'a str, i64)> {
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for count in counts {
        *sums.entry(of(count).as_str()).or_default() += count.count;
    }
    let mut sums: Vec<(&str, i64)> = sums.into_iter().collect();
    sums.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    sums
}

fn tally(title: &str, id: &str, rows: &[(&str, i64)]) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { (title) } th { "Messages" } } }
            tbody { @for (name, count) in rows { tr { td { (name) } td { (count) } } } }
        }
    }
}

/// "3 min", "2 h 5 min", "4 days".
fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let minutes = (now - then).num_minutes().max(0);
    match minutes {
        0 => "under a minute".to_owned(),
        1..60 => format!("{minutes} min"),
        60..1440 => format!("{} h {} min", minutes / 60, minutes % 60),
        _ => format!("{} days", minutes / 1440),
    }
}

/// One bar per hour, its height the hour's messages, split into sent (or delivered), failed
/// and the rest (still on their way).
fn chart(counts: &[HourCount], first_hour: DateTime<Utc>) -> Markup {
    const BAR: i64 = 20;
    const HEIGHT: i64 = 100;
    let mut hours = [(0i64, 0i64, 0i64); HOURS as usize];
    for count in counts {
        let index = (count.hour - first_hour).num_hours();
        let Some(hour) = usize::try_from(index).ok().and_then(|i| hours.get_mut(i)) else {
            continue;
        };
        match count.status.as_str() {
            SENT | DELIVERED => hour.0 += count.count,
            FAILED => hour.1 += count.count,
            _ => hour.2 += count.count,
        }
    }
    let busiest = hours.iter().map(|(a, b, c)| a + b + c).max().unwrap_or(0).max(1);
    let scale = |n: i64| n * HEIGHT / busiest;
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", BAR * HOURS, HEIGHT + 16)) role="img"
            aria-label="Messages per hour over the last 24 hours" {
            @for (i, (sent, failed, other)) in hours.iter().enumerate() {
                @let x = i as i64 * BAR;
                @let hour = first_hour + TimeDelta::hours(i as i64);
                g {
                    title { (hour.format("%H:00 UTC")) ": " (sent) " sent, " (failed) " failed, " (other) " on their way" }
                    rect.sent x=(x + 2) y=(HEIGHT - scale(*sent)) width=(BAR - 4) height=(scale(*sent)) {}
                    rect.failed x=(x + 2) y=(HEIGHT - scale(sent + failed)) width=(BAR - 4) height=(scale(*failed)) {}
                    rect.other x=(x + 2) y=(HEIGHT - scale(sent + failed + other)) width=(BAR - 4) height=(scale(*other)) {}
                    @if i % 6 == 0 {
                        text x=(x + 2) y=(HEIGHT + 12) { (hour.format("%H:00")) }
                    }
                }
            }
        }
    }
}
