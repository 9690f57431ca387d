//! The organization's provider credentials: listed (type, channel, scope, priority, state and
//! the last error a delivery met with each), added with a form per provider type that asks for
//! exactly that type's fields (`ProviderType::fields`), changed, activated or deactivated,
//! verified with the provider's answer shown, and deleted after a confirmation naming the
//! credential. Everything goes through `manage::providers`, the rules of `/v1/providers`.
//!
//! Secrets are write-only: their inputs are never filled in, a stored one shows as "set", and
//! leaving its input empty keeps it. Members see the credentials without any control; the
//! server refuses their writes anyway.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{Access, Action};
use crate::db::projects;
use crate::db::providers::{self, ProviderCredential};
use crate::domain::channel::Channel;
use crate::domain::provider_fields::{Field, Kind};
use crate::domain::provider_types::ProviderType;
use crate::domain::validate::Validator;
use crate::error::ApiError;
use crate::manage::providers::{self as manage, NewProvider, ProviderEdit, Verification};
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Credentials (and projects to choose from) listed at most, the newest first.
const SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/providers").get(list).post(create))
        .service(web::resource("/providers/new").get(new))
        .service(web::resource("/providers/{providerId}").get(show).post(update))
        .service(web::resource("/providers/{providerId}/activate").post(activate))
        .service(web::resource("/providers/{providerId}/deactivate").post(deactivate))
        .service(web::resource("/providers/{providerId}/verify").post(verify))
        .service(web::resource("/providers/{providerId}/delete").get(confirm_delete).post(delete));
}

/// A form as posted: its fields depend on the provider type, so they are looked up by name.
#[derive(Default)]
struct Typed(Vec<(String, String)>);

impl Typed {
    /// What was typed into `key`; empty when nothing was.
    fn get(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }

    fn non_empty(&self, key: &str) -> Option<String> {
        Some(self.get(key).trim()).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    fn priority(&self, check: &mut Validator) -> Option<i32> {
        let text = self.get("priority").trim();
        if text.is_empty() {
            return None;
        }
        let parsed = text.parse().ok();
        if parsed.is_none() {
            check.error("priority", "must be a whole number");
        }
        parsed
    }

    /// The credentials and config typed into `fields`, each only with what was typed.
    fn values(
        &self,
        fields: &[Field],
        check: &mut Validator,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let (mut credentials, mut config) = (Map::new(), Map::new());
        for field in fields {
            if let Some(value) = field.parse(self.get(&field.key()), check) {
                let part = if field.secret() { &mut credentials } else { &mut config };
                part.insert(field.name.clone(), value);
            }
        }
        (credentials, config)
    }
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    #[serde(rename = "type")]
    provider_type: Option<String>,
}

/// The fields the forms offer for `provider_type`: all of them, but where its calls go only on
/// servers that allow it (the checks refuse it elsewhere).
fn offered(state: &AppState, provider_type: ProviderType) -> Vec<Field> {
    let overrides = state.config.providers.allow_endpoint_overrides;
    provider_type.fields().into_iter().filter(|f| overrides || !f.endpoint).collect()
}

fn chosen_type(text: &str) -> Result<ProviderType, ApiError> {
    ProviderType::parse(text).ok_or_else(|| {
        let all: Vec<&str> = ProviderType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::invalid_field("type", format!("must be one of {}", all.join(", ")))
    })
}

fn status_of(error: &ApiError) -> StatusCode {
    ResponseError::status_code(error)
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let viewer = reader(&access)?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let filter = providers::ListFilter::default();
    let credentials = providers::list(&mut conn, &access.org.id, filter, None, SHOWN)
        .await
        .map_err(ApiError::from)?;
    let projects = projects::list(&mut conn, &access.org.id, None, None, SHOWN)
        .await
        .map_err(ApiError::from)?;
    drop(conn);
    let project_names: HashMap<&str, &str> =
        projects.iter().map(|p| (p.id.as_str(), p.name.as_str())).collect();
    let may_write = access.require(Action::Write).is_ok();
    let body = html! {
        main.wide {
            h1 { "Providers" }
            p.muted {
                "The services that deliver your messages, tried by priority (lower first). \
                 Secrets are never shown again once saved."
            }
            @if may_write { (type_chooser()) }
            @if credentials.is_empty() {
                div.card.empty {
                    "No provider yet: "
                    @if may_write { "add one above" } @else { "an admin or owner can add one" }
                    " so that messages can be delivered (a "
                    code { "sandbox" } " credential delivers nowhere, for trying things out)."
                }
            } @else {
                table #providers {
                    thead { tr {
                        th { "Name" } th { "Type" } th { "Channel" } th { "Used by" }
                        th { "Priority" } th { "State" } th { "Last error" }
                    } }
                    tbody {
                        @for credential in &credentials {
                            tr {
                                td {
                                    a href=(format!("/providers/{}", credential.id)) { (credential.name) }
                                    br; code { (credential.slug) }
                                }
                                td { (credential.provider_type) }
                                td { (credential.channel) }
                                td { (scope(credential, project_names.get(credential.project_id.as_deref().unwrap_or_default()).copied())) }
                                td { (credential.priority) }
                                td { (state_of(credential)) }
                                td { (last_error(credential)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Providers", Some(&viewer), body)))
}

/// One link per provider type, to its form.
fn type_chooser() -> Markup {
    html! {
        section.card #add-provider {
            h2 { "Add a provider" }
            ul.choices {
                @for provider_type in ProviderType::ALL {
                    li {
                        a href=(format!("/providers/new?type={}", provider_type.as_str())) {
                            (provider_type.as_str())
                        }
                        span.muted { " · " (provider_type.channel().map_or("any channel", Channel::as_str)) }
                    }
                }
            }
        }
    }
}

fn scope(credential: &ProviderCredential, project_name: Option<&str>) -> Markup {
    html! {
        @match (&credential.project_id, project_name) {
            (None, _) => "every project",
            (Some(_), Some(name)) => (name),
            (Some(id), None) => (id),
        }
    }
}

fn state_of(credential: &ProviderCredential) -> &'static str {
    if credential.is_active { "active" } else { "inactive" }
}

fn last_error(credential: &ProviderCredential) -> Markup {
    html! {
        @if let Some(error) = &credential.last_error {
            (error)
            @if let Some(at) = credential.last_error_at {
                br; span.muted { (at.format("%Y-%m-%d %H:%M UTC")) }
            }
        }
    }
}

/// `/providers/new?type=...`: the form for one type; without a type, the choice of one.
async fn new(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let Some(text) = query.into_inner().provider_type else {
        let viewer = reader(&access)?;
        let body = html! { main { h1 { "Add a provider" } (type_chooser()) } };
        return Ok(page(StatusCode::OK, layout("Add a provider", Some(&viewer), body)));
    };
    let provider_type = chosen_type(&text)?;
    Ok(page(
        StatusCode::OK,
        new_page(&state, &access, provider_type, &Typed::default(), None).await?,
    ))
}

async fn create(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let form = Typed(form.into_inner());
    let provider_type = chosen_type(form.get("type"))?;
    let created = async {
        let mut check = Validator::new();
        let channel = match provider_type.channel() {
            Some(channel) => Some(channel),
            None => {
                let channel = Channel::parse(form.get("channel"));
                if channel.is_none() {
                    check.error("channel", CHANNELS);
                }
                channel
            }
        };
        let priority = form.priority(&mut check);
        let (credentials, config) = form.values(&offered(&state, provider_type), &mut check);
        check.finish()?;
        let channel = channel.ok_or_else(|| ApiError::invalid_field("channel", CHANNELS))?;
        let new = NewProvider {
            name: form.get("name").to_owned(),
            slug: form.non_empty("slug"),
            channel,
            provider_type,
            project_id: form.non_empty("project"),
            credentials: Value::Object(credentials),
            config: Some(Value::Object(config)),
            is_active: None,
            priority,
        };
        manage::create(&state, &access, new).await
    };
    Ok(match created.await {
        Ok(row) => see_other(&format!("/providers/{}", row.id)),
        Err(error) => page(
            status_of(&error),
            new_page(&state, &access, provider_type, &form, Some(&error)).await?,
        ),
    })
}

const CHANNELS: &str = "must be one of email, sms, whatsapp, discord";

/// The form adding a `provider_type` credential, with what was `typed` (never a secret) and
/// the `error` that refused it.
async fn new_page(
    state: &AppState,
    access: &Access,
    provider_type: ProviderType,
    typed: &Typed,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let projects = projects::list(&mut conn, &access.org.id, None, None, SHOWN).await?;
    drop(conn);
    let fields = offered(state, provider_type);
    let chosen_project = typed.get("project");
    let title = format!("Add a {} provider", provider_type.as_str());
    let body = html! {
        main {
            h1 { (title) }
            p { a href="/providers" { "← Providers" } }
            section.card {
                @if let Some(error) = error { (form_error(error)) }
                form #provider-form method="post" action="/providers" {
                    input type="hidden" name="type" value=(provider_type.as_str());
                    label for="name" { "Name" }
                    input #name type="text" name="name" required value=(typed.get("name"));
                    label for="slug" { "Slug (optional, made from the name)" }
                    input #slug type="text" name="slug" value=(typed.get("slug"));
                    @match provider_type.channel() {
                        Some(channel) => p.muted { "Delivers " (channel.as_str()) " messages." },
                        None => {
                            label for="channel" { "Channel" }
                            select #channel name="channel" {
                                @for channel in Channel::ALL {
                                    option value=(channel.as_str()) selected[typed.get("channel") == channel.as_str()] { (channel.as_str()) }
                                }
                            }
                        },
                    }
                    label for="priority" { "Priority (lower is tried first; 0 unless set)" }
                    input #priority type="number" step="1" name="priority" value=(typed.get("priority"));
                    label for="project" { "Used by" }
                    select #project name="project" {
                        option value="" { "Every project of the organization" }
                        @for project in &projects {
                            option value=(project.id) selected[chosen_project == project.id] { "Only " (project.name) }
                        }
                    }
                    (field_inputs(&fields, |field| typed.get(&field.key()).to_owned(), None))
                    button type="submit" { "Add provider" }
                }
            }
        }
    };
    Ok(layout(&title, Some(&viewer), body))
}

/// The inputs of a type's fields: non-secret ones showing `value`; secret ones empty, with
/// whether each is stored (`stored`, on a credential being changed: empty keeps it).
fn field_inputs(
    fields: &[Field],
    value: impl Fn(&Field) -> String,
    stored: Option<&[String]>,
) -> Markup {
    html! {
        @if fields.is_empty() {
            p.muted { "This type takes no settings." }
        }
        @for field in fields {
            @let key = field.key();
            @let set = stored.map(|names| names.contains(&field.name));
            label for=(key) {
                code { (field.name) }
                @if field.secret() { " (secret" @if set == Some(true) { ", set" } ")" }
                @if !field.required { " (optional)" }
            }
            @if let Some(description) = &field.description { span.muted.hint { (description) } }
            @if field.secret() {
                @let placeholder = match set {
                    Some(true) => "set; leave empty to keep it",
                    Some(false) => "not set",
                    None => "",
                };
                input id=(key) type="password" name=(key) autocomplete="new-password"
                    placeholder=(placeholder) required[field.required && stored.is_none()];
            } @else {
                @let current = value(field);
                @match &field.kind {
                    Kind::Choice(choices) => {
                        select id=(key) name=(key) {
                            @if !field.required { option value="" { "(default)" } }
                            @for choice in choices {
                                option value=(choice) selected[current == *choice] { (choice) }
                            }
                        }
                    },
                    Kind::List => textarea id=(key) name=(key) rows="3" { (current) },
                    Kind::Integer => input id=(key) type="number" step="1" name=(key) value=(current) required[field.required];,
                    Kind::Number => input id=(key) type="number" step="any" name=(key) value=(current) required[field.required];,
                    Kind::Text => input id=(key) type="text" name=(key) value=(current) required[field.required];,
                }
            }
        }
    }
}

/// `/providers/{id}`: the credential, and for those who may write its form and buttons.
async fn show(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let row = manage::get(&state, &access, &path).await?;
    Ok(page(StatusCode::OK, provider_page(&state, &access, &row, None).await?))
}

async fn update(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let row = manage::get(&state, &access, &path).await?;
    let form = Typed(form.into_inner());
    let updated = async {
        let provider_type = manage::stored_type(&row)?;
        let mut check = Validator::new();
        let priority = form.priority(&mut check);
        let (credentials, config) = form.values(&offered(&state, provider_type), &mut check);
        check.finish()?;
        let edit = ProviderEdit {
            name: Some(form.get("name").to_owned()),
            slug: form.non_empty("slug"),
            // secrets left empty keep theirs
            credentials: Some(Value::Object(credentials))
                .filter(|c| c != &Value::Object(Map::new())),
            config: Some(Value::Object(config)),
            is_active: None,
            priority,
        };
        manage::update(&state, &access, &row.id, edit).await
    };
    Ok(match updated.await {
        Ok(row) => see_other(&format!("/providers/{}", row.id)),
        Err(error) => {
            let shown = Shown::Refused(&form, &error);
            page(status_of(&error), provider_page(&state, &access, &row, Some(shown)).await?)
        }
    })
}

async fn activate(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    set_active(&state, access?, &path, true).await
}

async fn deactivate(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    set_active(&state, access?, &path, false).await
}

async fn set_active(
    state: &AppState,
    access: Access,
    id: &str,
    active: bool,
) -> Result<HttpResponse, WebError> {
    let edit = ProviderEdit { is_active: Some(active), ..ProviderEdit::default() };
    let row = manage::update(state, &access, id, edit).await?;
    Ok(see_other(&format!("/providers/{}", row.id)))
}

/// Verifies and shows the provider's answer on the credential's page.
async fn verify(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let verification = manage::verify(&state, &access, &path).await?;
    let row = manage::get(&state, &access, &path).await?;
    let shown = Some(Shown::Verified(&verification));
    Ok(page(StatusCode::OK, provider_page(&state, &access, &row, shown).await?))
}

/// What the credential's page shows above its form, after a post.
enum Shown<'a> {
    /// The changes typed, refused for this error.
    Refused(&'a Typed, &'a ApiError),
    Verified(&'a Verification),
}

/// The credential's page: its facts, and for those who may write the form (prefilled from
/// `shown`'s typed values, or what is stored), the buttons and the link to delete it.
async fn provider_page(
    state: &AppState,
    access: &Access,
    row: &ProviderCredential,
    shown: Option<Shown<'_>>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let provider_type = manage::stored_type(row)?;
    let project_name = match &row.project_id {
        Some(id) => {
            let mut conn = state.db.get().await?;
            projects::find(&mut conn, &access.org.id, id).await?.map(|p| p.name)
        }
        None => None,
    };
    let may_write = access.require(Action::Write).is_ok();
    let fields = offered(state, provider_type);
    let typed = match &shown {
        Some(Shown::Refused(typed, _)) => Some(*typed),
        _ => None,
    };
    let value = |field: &Field| match typed {
        Some(typed) => typed.get(&field.key()).to_owned(),
        None => row.config.get(&field.name).map(|v| field.show(v)).unwrap_or_default(),
    };
    let text = |key: &str, stored: String| typed.map_or(stored, |t| t.get(key).to_owned());
    let stored = if may_write { manage::stored_secrets(&state.keys, row) } else { None };
    let id = &row.id;
    let body = html! {
        main {
            h1 { (row.name) }
            p { a href="/providers" { "← Providers" } }
            @match &shown {
                Some(Shown::Verified(result)) if result.ok => div.card.shown #verified role="status" {
                    strong { "Verified. " } (result.detail)
                },
                Some(Shown::Verified(result)) => div.error #verified role="alert" {
                    strong { "The provider refused: " } (result.detail)
                },
                _ => {},
            }
            dl.facts {
                dt { "Slug" } dd { code { (row.slug) } }
                dt { "Type" } dd { (row.provider_type) }
                dt { "Channel" } dd { (row.channel) }
                dt { "Used by" } dd { (scope(row, project_name.as_deref())) " " span.muted { "(fixed when added)" } }
                dt { "Priority" } dd { (row.priority) }
                dt { "State" } dd #state { (state_of(row)) }
                dt { "Last error" } dd #last-error {
                    @if row.last_error.is_some() { (last_error(row)) } @else { span.muted { "none" } }
                }
            }
            @if may_write {
                div.actions {
                    form method="post" action=(format!("/providers/{id}/verify")) {
                        button type="submit" { "Verify" }
                    }
                    @if row.is_active {
                        form method="post" action=(format!("/providers/{id}/deactivate")) {
                            button type="submit" { "Deactivate" }
                        }
                    } @else {
                        form method="post" action=(format!("/providers/{id}/activate")) {
                            button type="submit" { "Activate" }
                        }
                    }
                }
                section.card {
                    h2 { "Change" }
                    @if let Some(Shown::Refused(_, error)) = &shown { (form_error(error)) }
                    form #provider-form method="post" action=(format!("/providers/{id}")) {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required value=(text("name", row.name.clone()));
                        label for="slug" { "Slug" }
                        input #slug type="text" name="slug" value=(text("slug", row.slug.clone()));
                        label for="priority" { "Priority (lower is tried first)" }
                        input #priority type="number" step="1" name="priority" value=(text("priority", row.priority.to_string()));
                        (field_inputs(&fields, value, Some(stored.as_deref().unwrap_or_default())))
                        button type="submit" { "Save" }
                    }
                }
                p { a.danger href=(format!("/providers/{id}/delete")) { "Delete this provider…" } }
            }
        }
    };
    Ok(layout(&row.name, Some(&viewer), body))
}

/// Asks before deleting, naming the credential.
async fn confirm_delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let row = manage::get(&state, &access, &path).await?;
    let viewer = reader(&access)?;
    let body = html! {
        main.narrow {
            h1 { "Delete a provider" }
            p {
                "Delete " strong { (row.name) } " (" code { (row.slug) } ", " (row.provider_type)
                ")? Its secrets are deleted for good."
            }
            form method="post" action=(format!("/providers/{}/delete", row.id)) {
                button.danger type="submit" { "Delete " (row.name) }
            }
            p { a href=(format!("/providers/{}", row.id)) { "Cancel" } }
        }
    };
    Ok(page(StatusCode::OK, layout("Delete a provider", Some(&viewer), body)))
}

async fn delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    manage::delete(&state, &access, &path).await?;
    Ok(see_other("/providers"))
}
