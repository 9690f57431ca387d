//! The organization's projects: listed with links to their messages, webhook endpoints,
//! templates and suppression list, created (the slug, when left empty, derived from the name;
//! the page's script shows the suggestion as the name is typed), and on a project's page
//! renamed, its slug, metadata and message retention changed, or deleted after a confirmation
//! that names what goes with it.
//! Every write goes through `manage::projects`, as `/v1/projects` does.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Access, Action};
use crate::db::projects::{self, Project};
use crate::error::ApiError;
use crate::manage::projects::{self as manage, NewProjectInput, ProjectUpdate};
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Projects listed at most.
const SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/projects").get(list).post(create))
        .service(web::resource("/projects/{projectId}").get(settings).post(update))
        .service(web::resource("/projects/{projectId}/delete").post(delete));
}

/// The create and settings forms' fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProjectForm {
    name: String,
    slug: String,
    /// A JSON object; empty for `{}`.
    metadata: String,
    /// Days; empty for the server's default.
    retention: String,
}

impl ProjectForm {
    fn metadata(&self) -> Result<Option<serde_json::Value>, ApiError> {
        match self.metadata.trim() {
            "" => Ok(None),
            text => serde_json::from_str(text)
                .map(Some)
                .map_err(|_| ApiError::invalid_field("metadata", "must be a JSON object")),
        }
    }

    fn retention(&self) -> Result<Option<i32>, ApiError> {
        match self.retention.trim() {
            "" => Ok(None),
            text => text.parse().map(Some).map_err(|_| {
                ApiError::invalid_field("messageRetentionDays", "must be a whole number of days")
            }),
        }
    }

    fn slug(&self) -> Option<String> {
        Some(self.slug.trim().to_owned()).filter(|s| !s.is_empty())
    }
}

/// The typed slug of the project, to confirm its deletion.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    confirm: String,
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, list_page(&state, &access, None, None).await?))
}

async fn create(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    form: web::Form<ProjectForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let created = async {
        let input = NewProjectInput {
            name: form.name.clone(),
            slug: form.slug(),
            metadata: form.metadata()?,
            message_retention_days: form.retention()?,
            ..Default::default()
        };
        manage::create(&state, &access, input).await
    };
    match created.await {
        Ok(project) => Ok(see_other(&format!("/projects/{}", project.id))),
        Err(error) => Ok(page(
            error.status_code(),
            list_page(&state, &access, Some(&form), Some(&error)).await?,
        )),
    }
}

async fn settings(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let project = find(&state, &access, &path).await?;
    Ok(page(StatusCode::OK, settings_page(&state, &access, &project, None).await?))
}

async fn update(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<ProjectForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let project = find(&state, &access, &path).await?;
    let updated = async {
        let changes = ProjectUpdate {
            name: Some(form.name.clone()),
            slug: Some(form.slug.trim().to_owned()),
            metadata: Some(form.metadata()?.unwrap_or_else(|| serde_json::json!({}))),
            message_retention_days: Some(form.retention()?),
            ..Default::default()
        };
        manage::update(&state, &access, &project.id, changes).await
    };
    match updated.await {
        Ok(project) => Ok(see_other(&format!("/projects/{}", project.id))),
        Err(error) => Ok(page(
            error.status_code(),
            settings_page(&state, &access, &project, Some(&error)).await?,
        )),
    }
}

async fn delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let project = find(&state, &access, &path).await?;
    if form.confirm.trim() != project.slug {
        let error = ApiError::invalid_field("confirm", "type the project's slug to delete it");
        let markup = settings_page(&state, &access, &project, Some(&error)).await?;
        return Ok(page(error.status_code(), markup));
    }
    manage::delete(&state, &access, &project.id).await?;
    Ok(see_other("/projects"))
}

async fn find(state: &AppState, access: &Access, id: &str) -> Result<Project, ApiError> {
    let mut conn = state.db.get().await?;
    manage::visible(&mut conn, access, id).await
}

/// The list, and the create form (with what was typed and `error`) for those who may write.
async fn list_page(
    state: &AppState,
    access: &Access,
    typed: Option<&ProjectForm>,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let projects =
        projects::list(&mut conn, &access.org.id, access.project_scope(), None, SHOWN).await?;
    drop(conn);
    let may_write = access.require(Action::Write).is_ok();
    let empty = ProjectForm::default();
    let typed = typed.unwrap_or(&empty);
    let body = html! {
        main {
            h1 { "Projects" }
            @if projects.is_empty() {
                div.card.empty {
                    "No project yet. "
                    @if may_write { "Create one below: keys, providers and messages belong to a project." }
                    @else { "An admin or owner of the organization can create one." }
                }
            } @else {
                table #projects {
                    thead { tr { th { "Name" } th { "Slug" } th { "Created" } th {} } }
                    tbody {
                        @for project in &projects {
                            tr {
                                td { a href=(format!("/projects/{}", project.id)) { (project.name) } }
                                td { code { (project.slug) } }
                                td { (project.created_at.format("%Y-%m-%d")) }
                                td {
                                    a href=(format!("/projects/{}/messages", project.id)) { "Messages" } " · "
                                    a href=(format!("/projects/{}/webhooks", project.id)) { "Webhooks" } " · "
                                    a href=(format!("/projects/{}/templates", project.id)) { "Templates" } " · "
                                    a href=(format!("/projects/{}/suppressions", project.id)) { "Suppressions" }
                                }
                            }
                        }
                    }
                }
            }
            @if may_write {
                section.card {
                    h2 { "Create a project" }
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action="/projects" {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required value=(typed.name) data-slug-for="slug";
                        label for="slug" { "Slug (optional: derived from the name)" }
                        input #slug type="text" name="slug" value=(typed.slug) placeholder="derived from the name";
                        (fields(&typed.metadata, &typed.retention))
                        button type="submit" { "Create project" }
                    }
                }
            }
        }
    };
    Ok(layout("Projects", Some(&viewer), body))
}

/// The metadata and retention fields, as typed.
fn fields(metadata: &str, retention: &str) -> Markup {
    html! {
        label for="metadata" { "Metadata (a JSON object, optional)" }
        textarea #metadata name="metadata" rows="3" { (metadata) }
        label for="retention" { "Keep final messages for (days; 0 for ever; empty for the server's default)" }
        input #retention type="number" name="retention" min="0" value=(retention);
    }
}

/// A project's page: its settings (a form for those who may write), its links, and the
/// deletion with what it deletes.
async fn settings_page(
    state: &AppState,
    access: &Access,
    project: &Project,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let may_write = access.require(Action::Write).is_ok();
    let contents = if may_write {
        let mut conn = state.db.get().await?;
        Some(projects::contents(&mut conn, &access.org.id, &project.id).await?)
    } else {
        None
    };
    let metadata = serde_json::to_string_pretty(&project.metadata).unwrap_or_default();
    let retention = project.message_retention_days.map(|d| d.to_string()).unwrap_or_default();
    let body = html! {
        main {
            p { a href="/projects" { "← projects" } }
            h1 { (project.name) }
            p {
                a href=(format!("/projects/{}/messages", project.id)) { "Messages" } " · "
                a href=(format!("/projects/{}/webhooks", project.id)) { "Webhook endpoints" } " · "
                a href=(format!("/projects/{}/templates", project.id)) { "Templates" } " · "
                a href=(format!("/projects/{}/suppressions", project.id)) { "Suppression list" }
            }
            @if let Some(error) = error { (form_error(error)) }
            @if may_write {
                section.card {
                    h2 { "Settings" }
                    form method="post" action=(format!("/projects/{}", project.id)) {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required value=(project.name);
                        label for="slug" { "Slug" }
                        input #slug type="text" name="slug" required value=(project.slug);
                        (fields(&metadata, &retention))
                        button type="submit" { "Save" }
                    }
                }
                @if let Some(contents) = contents {
                    section.card.danger {
                        h2 { "Delete this project" }
                        p #deletes {
                            "Deleting " strong { (project.name) } " deletes with it "
                            (contents.messages) " messages, "
                            (contents.webhook_endpoints) " webhook endpoints, "
                            (contents.templates) " templates, "
                            (contents.suppressions) " suppressed addresses, "
                            (contents.provider_credentials) " provider credentials of its own and "
                            (contents.api_keys) " API keys bound to it. This cannot be undone."
                        }
                        form method="post" action=(format!("/projects/{}/delete", project.id)) {
                            label for="confirm" { "Type its slug, " code { (project.slug) } ", to confirm" }
                            input #confirm type="text" name="confirm" required autocomplete="off";
                            button.danger type="submit" { "Delete project" }
                        }
                    }
                }
            } @else {
                dl.facts {
                    dt { "Slug" } dd { code { (project.slug) } }
                    dt { "Metadata" } dd { pre.content { (metadata) } }
                    dt { "Message retention" } dd { @match project.message_retention_days {
                        Some(0) => "for ever",
                        Some(days) => { (days) " days" },
                        None => "the server's default",
                    } }
                }
            }
        }
    };
    Ok(layout(&project.name, Some(&viewer), body))
}
