//! The overview of the active organization: what a signed-in person sees first.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use maud::html;

use crate::auth::{Access, Action};
use crate::db::projects;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{Viewer, WebError, layout, page};

/// Projects shown at most; the projects page (to come) pages through the rest.
const PROJECTS_SHOWN: i64 = 50;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").get(overview));
}

async fn overview(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    access.require(Action::Read)?;
    let user = access.user().ok_or_else(|| ApiError::forbidden("the dashboard is for people"))?;
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let projects = projects::list(&mut conn, &access.org.id, None, None, PROJECTS_SHOWN)
        .await
        .map_err(ApiError::from)?;
    let viewer =
        Viewer { name: &user.name, organization: &access.org.name, role: access.role.as_str() };
    let body = html! {
        main {
            h1 { (access.org.name) }
            h2 { "Projects" }
            @if projects.is_empty() {
                div.card.empty { "No project yet: create one to send messages from." }
            } @else {
                table #projects {
                    thead { tr { th { "Name" } th { "Slug" } th { "Created" } } }
                    tbody {
                        @for project in &projects {
                            tr {
                                td { (project.name) }
                                td { code { (project.slug) } }
                                td { (project.created_at.format("%Y-%m-%d %H:%M UTC")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Overview", Some(&viewer), body)))
}
