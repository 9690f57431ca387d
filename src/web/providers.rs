//! The organization's provider credentials: type, channel, scope (one project or all),
//! priority, whether active, and the last error a delivery met with each. Secrets never reach
//! the page (they are not even opened). Reading only, for now: credentials are added and
//! changed through `/v1/providers` (the page says so).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use maud::html;

use crate::auth::Access;
use crate::db::{projects, providers};
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, layout, page, reader};

/// Credentials listed at most, the newest first.
const SHOWN: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/providers").get(list));
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
    let body = html! {
        main.wide {
            h1 { "Providers" }
            p.muted {
                "Credentials are added, changed and verified through the API ("
                code { "POST /v1/providers" } "); secrets are never shown."
            }
            @if credentials.is_empty() {
                div.card.empty {
                    "No provider yet: add one so that messages can be delivered (a "
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
                                td { (credential.name) br; code { (credential.slug) } }
                                td { (credential.provider_type) }
                                td { (credential.channel) }
                                td { @match &credential.project_id {
                                    Some(id) => (project_names.get(id.as_str()).copied().unwrap_or(id)),
                                    None => "every project",
                                } }
                                td { (credential.priority) }
                                td { @if credential.is_active { "active" } @else { "inactive" } }
                                td {
                                    @if let Some(error) = &credential.last_error {
                                        (error)
                                        @if let Some(at) = credential.last_error_at {
                                            br; span.muted { (at.format("%Y-%m-%d %H:%M UTC")) }
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
    Ok(page(StatusCode::OK, layout("Providers", Some(&viewer), body)))
}
