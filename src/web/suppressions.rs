//! A project's suppression list: the addresses its messages are never sent to, filtered by
//! channel, reason and part of the address, newest first a page at a time; a form to list an
//! address by hand; and removing an entry, after a page that names the address (removing it
//! lets the next message to it through, which is not to be done by a stray click).
//!
//! Every read and write goes through `manage::suppressions`, the rules the JSON API applies,
//! so the page refuses what `/v1/projects/{projectId}/suppressions` refuses, with the same
//! field names (`channel`, `address`, `note`, `reason`, `search`). Members see the list
//! without the controls, and the server refuses their writes anyway.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::suppressions::{self, Suppression};
use crate::domain::channel::Channel;
use crate::domain::suppression::{MAX_NOTE_CHARS, Reason};
use crate::error::ApiError;
use crate::manage::projects::visible as visible_project;
use crate::manage::suppressions::{self as manage, MAX_SEARCH_CHARS, NewEntry};
use crate::state::AppState;
use crate::web::{
    Confirm, WebError, confirm, form_error, layout, page, reader, refuse_nul, see_other,
};

/// Entries a page of the list shows.
const PAGE: i64 = 50;
const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects/{projectId}/suppressions").get(list).post(add)).service(
        web::resource("/projects/{projectId}/suppressions/{suppressionId}/remove")
            .get(confirm_remove)
            .post(remove),
    );
}

fn list_path(project_id: &str) -> String {
    format!("/projects/{project_id}/suppressions")
}

/// The list's filter form, as the browser sends it (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListForm {
    channel: String,
    reason: String,
    search: String,
    cursor: String,
}

impl ListForm {
    /// The filter and page asked for, checked by the API's rules under the same names.
    fn filter(&self) -> Result<(suppressions::ListFilter, Option<Cursor>), ApiError> {
        refuse_nul([
            ("channel", self.channel.as_str()),
            ("reason", &self.reason),
            ("search", &self.search),
            ("cursor", &self.cursor),
        ])?;
        let filter = manage::filter(Some(&self.channel), Some(&self.reason), Some(&self.search))?;
        let cursor = match self.cursor.as_str() {
            "" => None,
            text => Some(
                Cursor::decode(text)
                    .ok_or_else(|| ApiError::invalid_field("cursor", "is not one of ours"))?,
            ),
        };
        Ok((filter, cursor))
    }

    /// Whether nothing narrows the list.
    fn is_empty(&self) -> bool {
        [&self.channel, &self.reason, &self.search, &self.cursor].iter().all(|f| f.is_empty())
    }

    /// This filter's query string, with `cursor`.
    fn query(&self, cursor: &str) -> String {
        let fields = [
            ("channel", self.channel.as_str()),
            ("reason", &self.reason),
            ("search", &self.search),
            ("cursor", cursor),
        ];
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(fields.iter().filter(|(_, value)| !value.is_empty()));
        query.finish()
    }
}

/// The form that lists an address by hand.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct AddForm {
    channel: String,
    address: String,
    note: String,
}

impl Default for AddForm {
    fn default() -> Self {
        AddForm {
            channel: Channel::Email.as_str().to_owned(),
            address: String::new(),
            note: String::new(),
        }
    }
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    query: web::Query<ListForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (status, markup) = list_page(&state, &access, &path, &query, None).await?;
    Ok(page(status, markup))
}

async fn add(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<AddForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let fields =
        [("channel", form.channel.as_str()), ("address", &form.address), ("note", &form.note)];
    let entry = NewEntry {
        channel: form.channel.clone(),
        address: form.address.clone(),
        // an empty note is none (the rules drop a blank one too)
        note: Some(form.note.clone()),
    };
    let added = async {
        refuse_nul(fields)?;
        let mut conn = state.db.get().await?;
        manage::add(&mut conn, &access, &path, entry).await
    }
    .await;
    match added {
        Ok(entry) => Ok(see_other(&list_path(&entry.project_id))),
        Err(error) => {
            let filters = ListForm::default();
            let (_, markup) =
                list_page(&state, &access, &path, &filters, Some((&form, &error))).await?;
            Ok(page(error.status_code(), markup))
        }
    }
}

/// The page asking whether to remove an entry, naming its address.
async fn confirm_remove(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    access.require(Action::Write)?;
    let (project_id, id) = path.into_inner();
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let (project, entry) = manage::entry(&mut conn, &access, &project_id, &id).await?;
    drop(conn);
    let back = list_path(&project.id);
    let consequence = html! {
        "Messages of " strong { (project.name) } " go to " code { (entry.address) }
        " (" (entry.channel) ") again as soon as it is removed. It was listed because "
        (listed_because(&entry.reason)) ", on " (entry.created_at.format(TIME)) "."
    };
    Ok(confirm(
        &viewer,
        Confirm {
            title: "Remove a suppression",
            question: "Remove this address?",
            consequence,
            action: format!("{back}/{}/remove", entry.id),
            button: format!("Remove {}", entry.address),
            back: &back,
        },
    ))
}

async fn remove(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, id) = path.into_inner();
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    manage::remove(&mut conn, &access, &project_id, &id).await?;
    Ok(see_other(&list_path(&project_id)))
}

/// Why an entry is listed, in words.
fn listed_because(reason: &str) -> &'static str {
    match Reason::parse(reason) {
        Some(Reason::HardBounce) => "a message to it bounced for good",
        Some(Reason::Complaint) => "its recipient complained",
        Some(Reason::Unsubscribe) => "its recipient unsubscribed",
        Some(Reason::Manual) | None => "it was added by hand",
    }
}

/// The list with the filters of `filters`, and the add form (for those who may write) with
/// what was typed in it and why it was refused. A filter the rules refuse is named on the
/// page, with the status the API would answer, instead of the list.
async fn list_page(
    state: &AppState,
    access: &Access,
    project_id: &str,
    filters: &ListForm,
    refused: Option<(&AddForm, &ApiError)>,
) -> Result<(StatusCode, Markup), ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, access, project_id).await?;
    let (rows, next, filter_error) = match filters.filter() {
        Ok((filter, cursor)) => {
            let mut rows = suppressions::list(
                &mut conn,
                &access.org.id,
                &project.id,
                &filter,
                cursor.as_ref(),
                PAGE + 1,
            )
            .await?;
            let next = (rows.len() as i64 > PAGE).then(|| {
                rows.truncate(PAGE as usize);
                rows.last().map(|s| Cursor { created_at: s.created_at, id: s.id.clone() }.encode())
            });
            (rows, next.flatten(), None)
        }
        Err(error) => (Vec::new(), None, Some(error)),
    };
    drop(conn);
    let status = filter_error.as_ref().map_or(StatusCode::OK, ApiError::status_code);
    let may_write = access.require(Action::Write).is_ok();
    let base = list_path(&project.id);
    let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let body = html! {
        main.wide {
            p.muted { a href="/projects" { "Projects" } " / " a href=(format!("/projects/{}", project.id)) { (project.name) } }
            h1 { (project.name) ": suppression list" }
            p.muted {
                "No message of this project is sent to these addresses: it fails, naming the entry. "
                "Hard bounces and complaints reported by the provider and unsubscribes are listed by themselves."
            }
            @if may_write { (add_form(&base, &channels, refused)) }
            form.filters method="get" action=(base) {
                (select("channel", "Channel", &channels, &filters.channel))
                (select("reason", "Reason", &reasons, &filters.reason))
                label { "Search"
                    input type="text" name="search" value=(filters.search) maxlength=(MAX_SEARCH_CHARS) placeholder="part of the address";
                }
                button type="submit" { "Filter" }
            }
            @if let Some(error) = &filter_error {
                (form_error(error))
            } @else if rows.is_empty() {
                div.card.empty {
                    @if !filters.cursor.is_empty() { "No older entry." }
                    @else if filters.is_empty() {
                        "No address is suppressed. "
                        @if may_write { "Add one above to stop every message to it." }
                    }
                    @else { "No entry matches." }
                }
            } @else {
                table #suppressions {
                    thead { tr {
                        th { "Address" } th { "Channel" } th { "Reason" } th { "Message" }
                        th { "Note" } th { "Added" }
                        @if may_write { th {} }
                    } }
                    tbody { @for entry in &rows { (row(&base, entry, may_write)) } }
                }
            }
            @if let Some(next) = next {
                p { a.next href=(format!("?{}", filters.query(&next))) { "Older entries →" } }
            }
        }
    };
    Ok((status, layout("Suppression list", Some(&viewer), body)))
}

fn row(base: &str, entry: &Suppression, may_write: bool) -> Markup {
    html! {
        tr {
            td { code { (entry.address) } }
            td { (entry.channel) }
            td { (entry.reason) }
            td { @if let Some(id) = &entry.message_id { a href=(format!("/messages/{id}")) { code { (id) } } } }
            td { @if let Some(note) = &entry.note { (note) } }
            td { (entry.created_at.format(TIME)) }
            @if may_write {
                td { a.danger href=(format!("{base}/{}/remove", entry.id)) { "Remove…" } }
            }
        }
    }
}

/// The form that adds an address by hand; with what was typed and why, when refused.
fn add_form(base: &str, channels: &[&str], refused: Option<(&AddForm, &ApiError)>) -> Markup {
    let empty = AddForm::default();
    let (typed, error) = match refused {
        Some((typed, error)) => (typed, Some(error)),
        None => (&empty, None),
    };
    html! {
        section.card #add-suppression {
            h2 { "Add an address" }
            @if let Some(error) = error { (form_error(error)) }
            form method="post" action=(base) {
                label for="add-channel" { "Channel" }
                select #add-channel name="channel" {
                    @for channel in channels {
                        option value=(channel) selected[*channel == typed.channel] { (channel) }
                    }
                }
                label for="add-address" { "Address (an email address, a phone number in E.164, a Discord target)" }
                input #add-address type="text" name="address" required value=(typed.address);
                label for="add-note" { "Note (optional)" }
                input #add-note type="text" name="note" maxlength=(MAX_NOTE_CHARS) value=(typed.note);
                button type="submit" { "Suppress" }
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
