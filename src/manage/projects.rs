//! Projects: created (slug derived from the name when none is given), renamed, their metadata,
//! message retention and one-click unsubscribe changed, deleted with everything in them.

use chrono::Utc;
use serde_json::Value;

use crate::auth::{Access, Action};
use crate::db::PooledConnection;
use crate::db::projects::{self, NewProject, Project, ProjectChanges};
use crate::domain::validate::Validator;
use crate::domain::{ids, slug};
use crate::error::{ApiError, conflict_on_unique};
use crate::state::AppState;

pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The longest message retention a project may ask for, in days (a hundred years; 0 is for
/// ever anyway).
pub const MAX_RETENTION_DAYS: i32 = 36_500;

const SLUG_TAKEN: &str = "a project with this slug already exists";

/// A new project.
#[derive(Default)]
pub struct NewProjectInput {
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    pub metadata: Option<Value>,
    pub message_retention_days: Option<i32>,
    /// Off when absent.
    pub one_click_unsubscribe: Option<bool>,
    pub unsubscribe_mailto: Option<String>,
}

/// What changes on a project; `None` keeps it.
#[derive(Default)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub metadata: Option<Value>,
    /// `Some(None)` returns to the server's `retention.messages`.
    pub message_retention_days: Option<Option<i32>>,
    pub one_click_unsubscribe: Option<bool>,
    /// `Some(None)` removes it.
    pub unsubscribe_mailto: Option<Option<String>>,
}

fn check_retention(check: &mut Validator, days: Option<i32>) {
    if days.is_some_and(|d| !(0..=MAX_RETENTION_DAYS).contains(&d)) {
        check.error(
            "messageRetentionDays",
            format!("must be between 0 (keep for ever) and {MAX_RETENTION_DAYS} days, or null"),
        );
    }
}

/// One-click unsubscribe links point at this server (`crate::unsubscribe`): switching it on
/// needs `server.public_url`. The mailto address must be one a header field can carry.
fn check_unsubscribe(
    check: &mut Validator,
    state: &AppState,
    switch_on: bool,
    mailto: Option<&str>,
) {
    if switch_on && state.config.server.public_url.trim().is_empty() {
        check.error(
            "oneClickUnsubscribe",
            "needs server.public_url: the unsubscribe links point at this server, and it does \
             not know its public address (ask its operator to set server.public_url)",
        );
    }
    if let Some(why) = mailto.and_then(crate::unsubscribe::mailto_refusal) {
        check.error("unsubscribeMailto", why);
    }
}

/// The project `id_or_slug` as `access` may see it: another organization's project, or another
/// project than an API key's own, is not found.
pub async fn visible(
    conn: &mut PooledConnection,
    access: &Access,
    id_or_slug: &str,
) -> Result<Project, ApiError> {
    projects::find(conn, &access.org.id, id_or_slug)
        .await?
        .filter(|p| access.project_scope().is_none_or(|only| only == p.id))
        .ok_or_else(|| ApiError::not_found("project"))
}

/// A slug for `name` that no project of the organization has yet.
pub async fn free_slug(
    conn: &mut PooledConnection,
    org_id: &str,
    name: &str,
) -> Result<String, ApiError> {
    let base = slug::slugify(name, "project");
    let taken = projects::slugs_like(conn, org_id, &base).await?;
    Ok(slug::first_free(&base, &taken))
}

/// Creates a project (owner or admin, not through a key bound to a project).
pub async fn create(
    state: &AppState,
    access: &Access,
    input: NewProjectInput,
) -> Result<Project, ApiError> {
    access.require(Action::Write)?;
    access.require_org_wide()?;
    let mut check = Validator::new();
    check.name("name", &input.name);
    if let Some(slug) = &input.slug {
        check.slug("slug", slug);
    }
    let metadata = input.metadata.unwrap_or_else(|| serde_json::json!({}));
    check.object("metadata", &metadata, MAX_METADATA_BYTES);
    check_retention(&mut check, input.message_retention_days);
    let mailto = input.unsubscribe_mailto.as_deref().map(str::trim);
    let one_click = input.one_click_unsubscribe.unwrap_or(false);
    check_unsubscribe(&mut check, state, one_click, mailto);
    check.finish()?;

    let mut conn = state.db.get().await?;
    let slug = match input.slug {
        Some(slug) => slug,
        None => free_slug(&mut conn, &access.org.id, &input.name).await?,
    };
    let id = ids::new_id(ids::PROJECT);
    let new = NewProject {
        id: &id,
        organization_id: &access.org.id,
        name: input.name.trim(),
        slug: &slug,
        metadata: &metadata,
        message_retention_days: input.message_retention_days,
        one_click_unsubscribe: one_click,
        unsubscribe_mailto: mailto,
    };
    conflict_on_unique(projects::insert(&mut conn, new).await, SLUG_TAKEN)
}

/// Changes the project `id_or_slug` (owner or admin).
pub async fn update(
    state: &AppState,
    access: &Access,
    id_or_slug: &str,
    changes: ProjectUpdate,
) -> Result<Project, ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    if let Some(name) = &changes.name {
        check.name("name", name);
    }
    if let Some(slug) = &changes.slug {
        check.slug("slug", slug);
    }
    if let Some(metadata) = &changes.metadata {
        check.object("metadata", metadata, MAX_METADATA_BYTES);
    }
    check_retention(&mut check, changes.message_retention_days.flatten());
    let mailto = changes.unsubscribe_mailto.map(|m| m.map(|m| m.trim().to_owned()));
    let switch_on = changes.one_click_unsubscribe == Some(true);
    check_unsubscribe(&mut check, state, switch_on, mailto.clone().flatten().as_deref());
    check.finish()?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, access, id_or_slug).await?;
    let row = ProjectChanges {
        name: changes.name.map(|n| n.trim().to_owned()),
        slug: changes.slug,
        metadata: changes.metadata,
        message_retention_days: changes.message_retention_days,
        one_click_unsubscribe: changes.one_click_unsubscribe,
        unsubscribe_mailto: mailto,
        updated_at: Utc::now(),
    };
    let updated = conflict_on_unique(
        projects::update(&mut conn, &access.org.id, &project.id, row).await,
        SLUG_TAKEN,
    )?
    .ok_or_else(|| ApiError::not_found("project"))?;
    drop(conn);
    // its old slug may be cached as a name for it
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(updated)
}

/// Deletes the project `id_or_slug` and everything in it (owner or admin).
pub async fn delete(state: &AppState, access: &Access, id_or_slug: &str) -> Result<(), ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, access, id_or_slug).await?;
    projects::delete(&mut conn, &access.org.id, &project.id).await?;
    drop(conn);
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(())
}
