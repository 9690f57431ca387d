//! A project's message templates: the list (name, slug, channel, latest version) with a form
//! to create one; a template's page with its draft in an edit form, **Publish**, its published
//! versions, a preview with variables, and deleting it after a page that names it; and one
//! version's page with what it holds.
//!
//! The draft is edited through a field per string a channel's content usually has (an email's
//! subject, text and html; the text of the others), so that a template is written as text,
//! not as JSON with its escapes; whatever else the content holds (`from`, `cc`, Discord
//! embeds, a WhatsApp template) is one JSON object beside them, so that nothing a draft made
//! through the API holds is lost by saving it here.
//!
//! Every write and the preview go through `manage::templates`, the rules the JSON API applies,
//! so the pages refuse what `/v1/projects/{projectId}/templates` refuses, with the same field
//! names (`name`, `slug`, `channel`, `content.subject`, `variables.name`, `version`). Members
//! see everything and may preview, but see no control that changes a template, and the server
//! refuses their writes anyway.

use std::collections::HashMap;

use actix_web::error::UrlencodedError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{Access, Action};
use crate::db::Cursor;
use crate::db::templates::{self, Template, Version};
use crate::db::users;
use crate::domain::channel::Channel;
use crate::domain::validate::{NUL_REFUSED, Validator};
use crate::error::ApiError;
use crate::manage::projects::visible as visible_project;
use crate::manage::templates::{self as manage, DraftChanges, NewDraft};
use crate::state::AppState;
use crate::web::{
    Confirm, WebError, confirm, form_error, layout, page, reader, refuse_nul, see_other,
};

/// Templates a page of the list shows.
const PAGE: i64 = 50;
/// Versions a page of a template's versions shows.
const VERSIONS_PAGE: i64 = 20;
const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

/// The content fields the draft form has an input for, in their order.
const EMAIL_FIELDS: &[&str] = &["subject", "text", "html"];
const TEXT_FIELDS: &[&str] = &["text"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    const ONE: &str = "/projects/{projectId}/templates/{templateId}";
    cfg.service(
        web::resource("/projects/{projectId}/templates")
            .app_data(form_config())
            .get(list)
            .post(create),
    )
    .service(web::resource(ONE).app_data(form_config()).get(show).post(edit))
    .service(web::resource(format!("{ONE}/publish")).post(publish))
    .service(web::resource(format!("{ONE}/preview")).app_data(form_config()).post(preview))
    .service(web::resource(format!("{ONE}/delete")).get(confirm_delete).post(delete))
    .service(web::resource(format!("{ONE}/versions/{{version}}")).get(version));
}

/// The largest form a template page takes. Drafts come as forms, whose encoding makes markup
/// up to about three times longer than the JSON the API takes (64 KiB); the rules bound the
/// content itself.
const FORM_LIMIT: usize = 256 * 1024;

/// Larger forms than actix takes by default (16 KiB); a refused form is a page.
fn form_config() -> web::FormConfig {
    web::FormConfig::default().limit(FORM_LIMIT).error_handler(|error, _| {
        let refused = match error {
            UrlencodedError::Overflow { limit, .. } => ApiError::payload_too_large(limit),
            other => ApiError::invalid_field("form", other.to_string()),
        };
        WebError::from(refused).into()
    })
}

fn list_path(project_id: &str) -> String {
    format!("/projects/{project_id}/templates")
}

fn template_path(template: &Template) -> String {
    format!("/projects/{}/templates/{}", template.project_id, template.id)
}

/// The content fields with an input of their own for `channel`; all of them on the create
/// form, where the channel is not chosen yet (`None`).
fn own_fields(channel: Option<Channel>) -> &'static [&'static str] {
    match channel {
        None | Some(Channel::Email) => EMAIL_FIELDS,
        Some(_) => TEXT_FIELDS,
    }
}

/// Browsers send a textarea's line breaks as CRLF; a template typed here is kept with the
/// line breaks one sent through the API would have.
fn unix_newlines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Whether `value` holds U+0000 in a string or key, which PostgreSQL does not store.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The create and edit forms of a draft.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DraftForm {
    name: String,
    /// Empty on the create form: made from the name.
    slug: String,
    /// The create form's only: a template keeps its channel.
    channel: String,
    subject: String,
    text: String,
    html: String,
    /// The content's other fields, a JSON object; empty for none.
    other: String,
}

impl DraftForm {
    /// The content the form stands for: the other fields, with each input that is not empty
    /// over them (an emptied input removes its field). A field a channel has no input for
    /// arrives only when typed, for the rules to refuse it by its name.
    fn content(&self) -> Result<Value, ApiError> {
        refuse_nul([
            ("name", self.name.as_str()),
            ("slug", &self.slug),
            ("channel", &self.channel),
            ("content.subject", &self.subject),
            ("content.text", &self.text),
            ("content.html", &self.html),
            ("content", &self.other),
        ])?;
        let mut content = match self.other.trim() {
            "" => Map::new(),
            text => match serde_json::from_str(text) {
                Ok(Value::Object(fields)) => fields,
                _ => {
                    let message = "the other fields must be a JSON object, such as {\"from\": \"news@example.com\"}";
                    return Err(ApiError::invalid_field("content", message));
                }
            },
        };
        // written as an escape (`\u0000`) in the JSON of the other fields
        if content.iter().any(|(key, value)| key.contains('\0') || holds_nul(value)) {
            return Err(ApiError::invalid_field("content", NUL_REFUSED));
        }
        for (key, typed) in [("subject", &self.subject), ("text", &self.text), ("html", &self.html)]
        {
            if !typed.is_empty() {
                content.insert(key.to_owned(), Value::String(unix_newlines(typed)));
            }
        }
        Ok(Value::Object(content))
    }

    fn slug(&self) -> Option<String> {
        Some(self.slug.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// The form of a saved template: its inputs filled from the draft, the rest as JSON.
    fn of(template: &Template) -> DraftForm {
        let own = own_fields(Channel::parse(&template.channel));
        let mut other = template.draft.as_object().cloned().unwrap_or_default();
        let mut take = |key: &str| match other.get(key) {
            Some(Value::String(text)) if own.contains(&key) => {
                let text = text.clone();
                other.remove(key);
                text
            }
            _ => String::new(),
        };
        let (subject, text, html) = (take("subject"), take("text"), take("html"));
        let other = if other.is_empty() {
            String::new()
        } else {
            serde_json::to_string_pretty(&other).unwrap_or_default()
        };
        DraftForm {
            name: template.name.clone(),
            slug: template.slug.clone(),
            channel: template.channel.clone(),
            subject,
            text,
            html,
            other,
        }
    }
}

/// The preview form: variables as a JSON object, and a published version (empty: the draft).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PreviewForm {
    variables: String,
    version: String,
}

impl PreviewForm {
    /// The version and variables asked for; both named when both are wrong.
    fn parse(&self) -> Result<(Option<i32>, Map<String, Value>), ApiError> {
        let mut check = Validator::new();
        let version = match self.version.trim() {
            "" => None,
            text => {
                let number = text.parse::<i32>().ok().filter(|v| *v >= 1);
                if number.is_none() {
                    check.error("version", "must be a published version, from 1");
                }
                number
            }
        };
        let variables = match self.variables.trim() {
            "" => Map::new(),
            text => serde_json::from_str(text).unwrap_or_else(|_| {
                check.error("variables", "must be a JSON object, such as {\"name\": \"Ann\"}");
                Map::new()
            }),
        };
        check.finish()?;
        Ok((version, variables))
    }
}

/// The template page's query: a version just published, the versions' page, and the version
/// the preview form starts with.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    published: String,
    before: String,
    version: String,
}

/// The list's query: its page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    cursor: String,
}

/// What the template page shows besides the template.
#[derive(Default)]
struct Extras<'a> {
    /// The edit form as typed, when it was refused, and why.
    refused: Option<(&'a DraftForm, &'a ApiError)>,
    /// The preview form as typed, and what it rendered or why not.
    preview: Option<(&'a PreviewForm, &'a Result<Value, ApiError>)>,
    /// A version just published.
    published: Option<i32>,
    /// The versions' page: those before this number.
    before: Option<i32>,
    /// The version the preview form names, from a version's page.
    version: Option<i32>,
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let cursor = match query.cursor.as_str() {
        "" => None,
        text => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::invalid_field("cursor", "is not one of ours"))?,
        ),
    };
    Ok(page(StatusCode::OK, list_page(&state, &access, &path, cursor, None).await?))
}

async fn create(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<DraftForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let created = async {
        let new = NewDraft {
            name: form.name.clone(),
            slug: form.slug(),
            channel: form.channel.clone(),
            content: form.content()?,
        };
        manage::create(&state, &access, &path, new).await
    };
    match created.await {
        Ok(template) => Ok(see_other(&template_path(&template))),
        Err(error) => {
            let markup = list_page(&state, &access, &path, None, Some((&form, &error))).await?;
            Ok(page(error.status_code(), markup))
        }
    }
}

async fn show(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, template_id) = path.into_inner();
    // numbers for a notice, a page and a form's start: anything else is ignored
    let number = |text: &str| text.parse::<i32>().ok().filter(|v| *v >= 1);
    let extras = Extras {
        published: number(&query.published),
        before: number(&query.before),
        version: number(&query.version),
        ..Extras::default()
    };
    let markup = template_page(&state, &access, &project_id, &template_id, extras).await?;
    Ok(page(StatusCode::OK, markup))
}

async fn edit(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    form: web::Form<DraftForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let (project_id, template_id) = path.into_inner();
    let updated = async {
        let changes = DraftChanges {
            name: Some(form.name.clone()),
            slug: Some(form.slug.trim().to_owned()),
            content: Some(form.content()?),
        };
        manage::update(&state, &access, &project_id, &template_id, changes).await
    };
    match updated.await {
        Ok(template) => Ok(see_other(&template_path(&template))),
        Err(error) => {
            let extras = Extras { refused: Some((&form, &error)), ..Extras::default() };
            let markup = template_page(&state, &access, &project_id, &template_id, extras).await?;
            Ok(page(error.status_code(), markup))
        }
    }
}

async fn publish(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, template_id) = path.into_inner();
    let version = manage::publish(&state, &access, &project_id, &template_id).await?;
    let here = format!("/projects/{project_id}/templates/{}", version.template_id);
    Ok(see_other(&format!("{here}?published={}", version.version)))
}

async fn preview(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
    form: web::Form<PreviewForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (project_id, template_id) = path.into_inner();
    let rendered = async {
        let (version, variables) = form.parse()?;
        let mut conn = state.db.get().await?;
        manage::preview(&mut conn, &access, &project_id, &template_id, version, &variables).await
    }
    .await;
    let status = rendered.as_ref().err().map_or(StatusCode::OK, ApiError::status_code);
    let extras = Extras { preview: Some((&form, &rendered)), ..Extras::default() };
    let markup = template_page(&state, &access, &project_id, &template_id, extras).await?;
    Ok(page(status, markup))
}

/// The page asking whether to delete the template, naming it.
async fn confirm_delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    access.require(Action::Write)?;
    let (project_id, template_id) = path.into_inner();
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let template = manage::find(&mut conn, &access, &project_id, &template_id).await?;
    drop(conn);
    let back = template_path(&template);
    let consequence = html! {
        strong { (template.name) } " (" code { (template.slug) } ") and its "
        (template.latest_version) " published versions are deleted: sends that name it are refused "
        "from then on. Messages already rendered from it keep their content. This cannot be undone."
    };
    Ok(confirm(
        &viewer,
        Confirm {
            title: "Delete a template",
            question: "Delete this template?",
            consequence,
            action: format!("{back}/delete"),
            button: format!("Delete {}", template.name),
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
    let (project_id, template_id) = path.into_inner();
    manage::delete(&state, &access, &project_id, &template_id).await?;
    Ok(see_other(&list_path(&project_id)))
}

/// One published version: what it holds, when and by whom it was published.
async fn version(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let (project_id, template_id, number) = path.into_inner();
    let number =
        number.parse::<i32>().ok().filter(|v| *v >= 1).ok_or_else(|| {
            ApiError::invalid_field("version", "must be a version number, from 1")
        })?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let project = visible_project(&mut conn, &access, &project_id).await?;
    let template = manage::find(&mut conn, &access, &project.id, &template_id).await?;
    let version = manage::version(&mut conn, &access, &project.id, &template.id, number).await?;
    let by = publishers(&mut conn, std::slice::from_ref(&version)).await?;
    drop(conn);
    let here = template_path(&template);
    let body = html! {
        main.wide {
            p.muted {
                a href="/projects" { "Projects" } " / "
                a href=(format!("/projects/{}", project.id)) { (project.name) } " / "
                a href=(list_path(&project.id)) { "Templates" } " / "
                a href=(here) { (template.name) }
            }
            h1 { (template.name) ", version " (version.version) }
            dl.facts {
                dt { "Published" } dd { (version.published_at.format(TIME)) }
                dt { "By" } dd { (publisher(&by, &version)) }
                dt { "Channel" } dd { (template.channel) }
            }
            p {
                a href=(format!("{here}?version={}#preview", version.version)) { "Preview this version" }
            }
            h2 { "Content" }
            (content_fields("version-content", &version.content))
        }
    };
    Ok(page(StatusCode::OK, layout("Template version", Some(&viewer), body)))
}

/// The names of the people who published `versions`, by user id.
async fn publishers(
    conn: &mut crate::db::PooledConnection,
    versions: &[Version],
) -> Result<HashMap<String, String>, ApiError> {
    let mut names = HashMap::new();
    for id in versions.iter().filter_map(|v| v.published_by.as_deref()) {
        if !names.contains_key(id)
            && let Some(user) = users::find(conn, id).await?
        {
            names.insert(user.id, user.name);
        }
    }
    Ok(names)
}

/// Who published `version`: a person's name, or an API key (which has no person).
fn publisher(names: &HashMap<String, String>, version: &Version) -> Markup {
    html! {
        @match &version.published_by {
            Some(id) => @match names.get(id) {
                Some(name) => (name),
                None => span.muted { "a person since deleted" },
            },
            None => span.muted { "an API key" },
        }
    }
}

/// The list, and the create form (for those who may write) with what was typed and why it
/// was refused.
async fn list_page(
    state: &AppState,
    access: &Access,
    project_id: &str,
    cursor: Option<Cursor>,
    refused: Option<(&DraftForm, &ApiError)>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, access, project_id).await?;
    let mut rows =
        templates::list(&mut conn, &access.org.id, &project.id, cursor.as_ref(), PAGE + 1).await?;
    drop(conn);
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|t| Cursor { created_at: t.created_at, id: t.id.clone() }.encode())
    });
    let may_write = access.require(Action::Write).is_ok();
    let base = list_path(&project.id);
    let empty = DraftForm { channel: Channel::Email.as_str().to_owned(), ..DraftForm::default() };
    let (typed, error) = match refused {
        Some((typed, error)) => (typed, Some(error)),
        None => (&empty, None),
    };
    let body = html! {
        main.wide {
            p.muted { a href="/projects" { "Projects" } " / " a href=(format!("/projects/{}", project.id)) { (project.name) } }
            h1 { (project.name) ": templates" }
            p.muted {
                "A template keeps a message's content in the project: a send names it with variables instead of "
                "giving content. Each string is a MiniJinja template, such as " code { "Hello {{ name }}" } "."
            }
            section {
                @if rows.is_empty() {
                    div.card.empty {
                        @if cursor.is_some() { "No older template." }
                        @else if may_write { "No template yet. Create one below." }
                        @else { "No template yet. An admin or owner of the organization can create one." }
                    }
                } @else {
                    table #templates {
                        thead { tr {
                            th { "Name" } th { "Slug" } th { "Channel" } th { "Latest version" } th { "Changed" }
                        } }
                        tbody {
                            @for template in &rows {
                                tr {
                                    td { a href=(template_path(template)) { (template.name) } }
                                    td { code { (template.slug) } }
                                    td { (template.channel) }
                                    td { @if template.latest_version > 0 { (template.latest_version) } @else { span.muted { "none yet" } } }
                                    td { (template.updated_at.format(TIME)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(Some(next)) = next {
                    p { a.next href=(format!("?cursor={next}")) { "Older templates →" } }
                }
            }
            @if may_write {
                section.card #create-template {
                    h2 { "Create a template" }
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action=(base) {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required value=(typed.name);
                        label for="slug" { "Slug (optional: derived from the name)" }
                        input #slug type="text" name="slug" value=(typed.slug) placeholder="derived from the name";
                        label for="channel" { "Channel" }
                        select #channel name="channel" {
                            @for channel in Channel::ALL {
                                option value=(channel.as_str()) selected[channel.as_str() == typed.channel] { (channel.as_str()) }
                            }
                        }
                        (content_inputs(None, typed))
                        button type="submit" { "Create template" }
                    }
                }
            }
        }
    };
    Ok(layout("Templates", Some(&viewer), body))
}

/// The inputs of a draft's content for `channel` (every one on the create form), as typed.
fn content_inputs(channel: Option<Channel>, typed: &DraftForm) -> Markup {
    let own = own_fields(channel);
    let creating = channel.is_none();
    html! {
        @if own.contains(&"subject") {
            label for="subject" { "Subject" @if creating { " (email)" } }
            input #subject type="text" name="subject" value=(typed.subject);
        }
        label for="text" { "Text" }
        textarea #text name="text" rows="6" { (typed.text) }
        @if own.contains(&"html") {
            label for="html" { "HTML" @if creating { " (email; values are HTML-escaped here)" } @else { " (values are HTML-escaped here)" } }
            textarea #html name="html" rows="6" { (typed.html) }
        }
        label for="other" { "Other content fields (a JSON object, optional: "
            @match channel {
                Some(Channel::Email) => "from, replyTo, cc, bcc",
                Some(Channel::Discord) => "embeds",
                Some(Channel::Whatsapp) => "template, instead of text",
                Some(Channel::Sms) => "an SMS has none",
                None => "an email's from, replyTo, cc, bcc; Discord embeds; a WhatsApp template",
            }
            "; the fields above win)" }
        textarea #other name="other" rows=(typed.other.lines().count().clamp(3, 16)) { (typed.other) }
    }
}

/// A template's page.
async fn template_page(
    state: &AppState,
    access: &Access,
    project_id: &str,
    template_id: &str,
    extras: Extras<'_>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let project = visible_project(&mut conn, access, project_id).await?;
    let template = manage::find(&mut conn, access, &project.id, template_id).await?;
    let mut versions =
        templates::versions(&mut conn, &template.id, extras.before, VERSIONS_PAGE + 1).await?;
    let more = versions.len() as i64 > VERSIONS_PAGE;
    versions.truncate(VERSIONS_PAGE as usize);
    let names = publishers(&mut conn, &versions).await?;
    drop(conn);
    let older = more.then(|| versions.last().map(|v| v.version)).flatten();
    let may_write = access.require(Action::Write).is_ok();
    let channel = Channel::parse(&template.channel);
    let here = template_path(&template);
    let saved = DraftForm::of(&template);
    let (draft, draft_error) = match extras.refused {
        Some((typed, error)) => (typed, Some(error)),
        None => (&saved, None),
    };
    let empty = PreviewForm {
        version: extras.version.map(|v| v.to_string()).unwrap_or_default(),
        ..PreviewForm::default()
    };
    let (preview_form, rendered) = match extras.preview {
        Some((typed, rendered)) => (typed, Some(rendered)),
        None => (&empty, None),
    };
    let body = html! {
        main.wide {
            p.muted {
                a href="/projects" { "Projects" } " / "
                a href=(format!("/projects/{}", project.id)) { (project.name) } " / "
                a href=(list_path(&project.id)) { "Templates" }
            }
            h1 { (template.name) }
            @if let Some(number) = extras.published {
                div.card.shown role="status" {
                    "Version " (number) " published: sends that name no version use it from now on."
                }
            }
            dl.facts {
                dt { "Slug" } dd { code { (template.slug) } }
                dt { "Channel" } dd { (template.channel) }
                dt { "Latest version" } dd #latest-version {
                    @if template.latest_version > 0 { (template.latest_version) }
                    @else { "none yet: publish the draft to send with it" }
                }
                dt { "Created" } dd { (template.created_at.format(TIME)) }
                dt { "Changed" } dd { (template.updated_at.format(TIME)) }
                dt { "Send with" } dd { code { "\"template\": {\"id\": \"" (template.slug) "\", \"variables\": {…}}" } }
            }
            @if may_write {
                div.actions {
                    form #publish method="post" action=(format!("{here}/publish")) {
                        button type="submit" { "Publish the draft as version " (template.latest_version + 1) }
                    }
                    a.button.danger href=(format!("{here}/delete")) { "Delete…" }
                }
                section.card #draft {
                    h2 { "Draft" }
                    p.muted { "Saving changes the draft only: messages use it once it is published." }
                    @if let Some(error) = draft_error { (form_error(error)) }
                    form method="post" action=(here) {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required value=(draft.name);
                        label for="slug" { "Slug" }
                        input #slug type="text" name="slug" required value=(draft.slug);
                        (content_inputs(channel.or(Some(Channel::Email)), draft))
                        button type="submit" { "Save the draft" }
                    }
                }
            } @else {
                h2 { "Draft" }
                (content_fields("draft", &template.draft))
            }
            section.card #preview {
                h2 { "Preview" }
                p.muted { "Renders the draft, or a published version, as a send with these variables would, and sends nothing." }
                form method="post" action=(format!("{here}/preview")) {
                    label for="variables" { "Variables (a JSON object)" }
                    textarea #variables name="variables" rows="3" placeholder="{\"name\": \"Ann\"}" { (preview_form.variables) }
                    label for="preview-version" { "Version (empty: the draft)" }
                    input #preview-version type="number" name="version" min="1" step="1" value=(preview_form.version);
                    button type="submit" { "Preview" }
                }
                @match rendered {
                    Some(Ok(content)) => { h3 { "Rendered" } (content_fields("rendered", content)) },
                    Some(Err(error)) => (form_error(error)),
                    None => {},
                }
            }
            section {
                h2 { "Published versions" }
                @if versions.is_empty() {
                    div.card.empty {
                        @if extras.before.is_some() { "No older version." }
                        @else { "None yet." }
                    }
                } @else {
                    table #versions {
                        thead { tr { th { "Version" } th { "Published" } th { "By" } } }
                        tbody {
                            @for version in &versions {
                                tr {
                                    td { a href=(format!("{here}/versions/{}", version.version)) { (version.version) } }
                                    td { (version.published_at.format(TIME)) }
                                    td { (publisher(&names, version)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(older) = older {
                    p { a.next href=(format!("?before={older}")) { "Older versions →" } }
                }
            }
        }
    };
    Ok(layout(&template.name, Some(&viewer), body))
}

/// A content object as a list of its fields (subject, text and html first): strings as
/// written (a template's source, or what it rendered), anything else as JSON.
fn content_fields(id: &str, content: &Value) -> Markup {
    let fields: Vec<(&str, String)> = match content.as_object() {
        // the fields with inputs of their own first, in the form's order
        Some(fields) => EMAIL_FIELDS
            .iter()
            .filter_map(|key| fields.get_key_value(*key))
            .chain(fields.iter().filter(|(key, _)| !EMAIL_FIELDS.contains(&key.as_str())))
            .map(|(key, value)| {
                let shown = match value {
                    Value::String(text) => text.clone(),
                    other => serde_json::to_string_pretty(other).unwrap_or_default(),
                };
                (key.as_str(), shown)
            })
            .collect(),
        None => vec![("content", serde_json::to_string_pretty(content).unwrap_or_default())],
    };
    html! {
        dl.facts id=(id) {
            @for (key, shown) in &fields {
                dt { (key) } dd { pre.content { (shown) } }
            }
        }
    }
}
