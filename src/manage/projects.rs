//! Projects as the rules of every resource under them see one: the project a caller names,
//! if `Access` lets them see it.

use diesel_async::AsyncPgConnection;

use crate::auth::Access;
use crate::db::projects::{self, Project};
use crate::error::ApiError;

/// The project `id_or_slug` as `access` may see it: another organization's project, or another
/// project than an API key's own, is not found.
pub async fn visible(
    conn: &mut AsyncPgConnection,
    access: &Access,
    id_or_slug: &str,
) -> Result<Project, ApiError> {
    projects::find(conn, &access.org.id, id_or_slug)
        .await?
        .filter(|p| access.project_scope().is_none_or(|only| only == p.id))
        .ok_or_else(|| ApiError::not_found("project"))
}
