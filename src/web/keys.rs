//! The organization's live API keys: listed (prefix, scopes, project, last use, expiry), created
//! (the key shown once, with a button that copies it) and revoked. Members see the list;
//! only those who may write (admins and owners) get the form and the revoke buttons, and the
//! server refuses their writes anyway (`Access::require`). Keys are made by `auth::keys` and
//! revoked everywhere at once (`tenants.invalidate_everywhere`), as through `/v1/api-keys`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::keys::{KeySpec, SCOPES};
use crate::auth::{Access, Action};
use crate::db::{api_keys, projects};
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

/// Keys listed at most (newest first).
const KEYS_SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/keys").get(list).post(create))
        .service(web::resource("/keys/{keyId}/revoke").post(revoke));
}

/// The form's fields: one checkbox per scope (forms cannot send a list).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewKeyForm {
    name: String,
    scope_send: Option<String>,
    scope_read: Option<String>,
    scope_manage: Option<String>,
    /// A project's id, or empty for every project.
    project: String,
    /// `YYYY-MM-DD`: the key works until the end of that day (UTC); empty for no expiry.
    expires: String,
}

impl NewKeyForm {
    fn scopes(&self) -> Vec<String> {
        [("send", &self.scope_send), ("read", &self.scope_read), ("manage", &self.scope_manage)]
            .into_iter()
            .filter(|(_, on)| on.is_some())
            .map(|(scope, _)| scope.to_owned())
            .collect()
    }

    fn expires_at(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        if self.expires.trim().is_empty() {
            return Ok(None);
        }
        let day = NaiveDate::parse_from_str(self.expires.trim(), "%Y-%m-%d")
            .map_err(|_| ApiError::invalid_field("expires", "must be a date, YYYY-MM-DD"))?;
        let end = day.and_hms_opt(23, 59, 59).map(|t| t.and_utc());
        end.map(Some).ok_or_else(|| ApiError::invalid_field("expires", "must be a date"))
    }
}

async fn list(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, keys_page(&state, &access, None, None).await?))
}

async fn create(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    form: web::Form<NewKeyForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let form = form.into_inner();
    let created = async {
        let spec = KeySpec::check(&form.name, Some(form.scopes()), form.expires_at()?, None)?;
        let mut conn = state.db.get().await?;
        let project = match form.project.trim() {
            "" => None,
            id => Some(
                projects::find(&mut conn, &access.org.id, id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("project"))?
                    .id,
            ),
        };
        let by = access.user().map(|u| u.id.clone());
        let (_, key) =
            spec.create(&mut conn, &access.org.id, project.as_deref(), by.as_deref()).await?;
        Ok::<_, ApiError>(key)
    };
    Ok(match created.await {
        Ok(key) => page(StatusCode::CREATED, keys_page(&state, &access, Some(&key), None).await?),
        Err(error) => {
            let status = actix_web::ResponseError::status_code(&error);
            page(status, keys_page(&state, &access, None, Some(&error)).await?)
        }
    })
}

async fn revoke(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Write)?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    if !api_keys::revoke(&mut conn, &access.org.id, &path).await.map_err(ApiError::from)? {
        return Err(ApiError::not_found("API key").into());
    }
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(see_other("/keys"))
}

/// The page: the new key once (`shown`), the form (for those who may write) with `error`, the
/// list.
async fn keys_page(
    state: &AppState,
    access: &Access,
    shown: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let mut conn = state.db.get().await?;
    let keys = api_keys::list(&mut conn, &access.org.id, None, KEYS_SHOWN).await?;
    let projects = projects::list(&mut conn, &access.org.id, None, None, KEYS_SHOWN).await?;
    drop(conn);
    let project_names: HashMap<&str, &str> =
        projects.iter().map(|p| (p.id.as_str(), p.name.as_str())).collect();
    let may_write = access.require(Action::Write).is_ok();
    let now = Utc::now();
    let body = html! {
        main {
            h1 { "API keys" }
            @if let Some(key) = shown {
                div.card.shown role="status" {
                    p { strong { "Your new key. " } "Copy it now: it is shown only this once." }
                    p { code #new-key { (key) } " " button.small type="button" data-copy="#new-key" { "Copy" } }
                }
            }
            @if may_write {
                section.card {
                    h2 { "Create a key" }
                    @if let Some(error) = error { (form_error(error)) }
                    form method="post" action="/keys" {
                        label for="name" { "Name" }
                        input #name type="text" name="name" required;
                        fieldset {
                            legend { "Scopes" }
                            @for scope in SCOPES {
                                label.inline {
                                    input type="checkbox" name=(format!("scope_{scope}")) checked[*scope == "send"];
                                    " " (scope)
                                }
                            }
                        }
                        label for="project" { "Project" }
                        select #project name="project" {
                            option value="" { "Every project" }
                            @for project in &projects {
                                option value=(project.id) { (project.name) }
                            }
                        }
                        label for="expires" { "Expires (optional, end of the day, UTC)" }
                        input #expires type="date" name="expires";
                        button type="submit" { "Create key" }
                    }
                }
            }
            section {
                h2 { "Keys" }
                @if keys.is_empty() {
                    div.card.empty {
                        "No key yet. "
                        @if may_write { "Create one above to send messages with." }
                        @else { "An admin or owner of the organization can create one." }
                    }
                } @else {
                    table #keys {
                        thead { tr {
                            th { "Name" } th { "Key" } th { "Scopes" } th { "Project" }
                            th { "Last used" } th { "Expires" } th { "State" }
                            @if may_write { th {} }
                        } }
                        tbody {
                            @for key in &keys {
                                @let live = key.expires_at.is_none_or(|at| at > now);
                                tr {
                                    td { (key.name) }
                                    td { code { (key.prefix) "…" } }
                                    td { (key.scopes.join(", ")) }
                                    td { @match &key.project_id {
                                        Some(id) => (project_names.get(id.as_str()).copied().unwrap_or(id)),
                                        None => "every project",
                                    } }
                                    td { @match key.last_used_at {
                                        Some(at) => (at.format("%Y-%m-%d %H:%M UTC")),
                                        None => "never",
                                    } }
                                    td { @match key.expires_at {
                                        Some(at) => (at.format("%Y-%m-%d %H:%M UTC")),
                                        None => "never",
                                    } }
                                    td { @if live { "active" } @else { "expired" } }
                                    @if may_write {
                                        td {
                                            form method="post" action=(format!("/keys/{}/revoke", key.id)) {
                                                button.link type="submit" { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("API keys", Some(&viewer), body))
}
