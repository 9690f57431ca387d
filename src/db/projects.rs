//! Projects: the containers of credentials, webhooks and messages within an organization.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::projects;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = projects, check_for_backend(diesel::pg::Pg))]
pub struct Project {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub slug: String,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Days its messages are kept once final, instead of `retention.messages`; 0 for ever.
    pub message_retention_days: Option<i32>,
    /// Its emails carry a one-click unsubscribe link (`crate::unsubscribe`).
    pub one_click_unsubscribe: bool,
    /// An address that takes unsubscribe requests by email too, listed beside the link.
    pub unsubscribe_mailto: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = projects)]
pub struct NewProject<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub name: &'a str,
    pub slug: &'a str,
    pub metadata: &'a serde_json::Value,
    pub message_retention_days: Option<i32>,
    pub one_click_unsubscribe: bool,
    pub unsubscribe_mailto: Option<&'a str>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = projects)]
pub struct ProjectChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// `Some(None)` returns to the server's retention.
    pub message_retention_days: Option<Option<i32>>,
    pub one_click_unsubscribe: Option<bool>,
    /// `Some(None)` removes it.
    pub unsubscribe_mailto: Option<Option<String>>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, project: NewProject<'_>) -> QueryResult<Project> {
    diesel::insert_into(projects::table)
        .values(project)
        .returning(Project::as_returning())
        .get_result(conn)
        .await
}

/// A project of the organization by id or slug; another organization's is not found.
pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id_or_slug: &str,
) -> QueryResult<Option<Project>> {
    projects::table
        .filter(projects::organization_id.eq(organization_id))
        .filter(projects::id.eq(id_or_slug).or(projects::slug.eq(id_or_slug)))
        .select(Project::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    only: Option<&str>,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<Project>> {
    let mut query = projects::table
        .filter(projects::organization_id.eq(organization_id))
        .select(Project::as_select())
        .order((projects::created_at.desc(), projects::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(projects::id.eq(id));
    }
    after_cursor!(query, projects::created_at, projects::id, after).load(conn).await
}

/// Slugs of the organization's projects equal to `base` or starting with `base-`.
pub async fn slugs_like(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    base: &str,
) -> QueryResult<Vec<String>> {
    projects::table
        .filter(projects::organization_id.eq(organization_id))
        .filter(projects::slug.eq(base).or(projects::slug.like(format!("{base}-%"))))
        .select(projects::slug)
        .load(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
    changes: ProjectChanges,
) -> QueryResult<Option<Project>> {
    diesel::update(
        projects::table
            .filter(projects::organization_id.eq(organization_id))
            .filter(projects::id.eq(id)),
    )
    .set(changes)
    .returning(Project::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes the project and all it holds; its messages first, in batches
/// (`messages::purge_project`), so that the deletion itself is short.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<bool> {
    crate::db::messages::purge_project(conn, organization_id, id).await?;
    diesel::delete(
        projects::table
            .filter(projects::organization_id.eq(organization_id))
            .filter(projects::id.eq(id)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Each project's message retention override (None: the server's `retention.messages`), for
/// the retention duty; every project, since the server's default applies to most.
pub async fn message_retention(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(String, Option<i32>)>> {
    projects::table
        .select((projects::id, projects::message_retention_days))
        .order(projects::id)
        .load(conn)
        .await
}

/// A project's one-click unsubscribe settings, as the delivery worker reads them: whether it
/// is on, and the mailto address.
pub type UnsubscribeSettings = (String, bool, Option<String>);

/// The unsubscribe settings of the projects `ids` that exist, in one statement.
pub async fn unsubscribe_settings(
    conn: &mut AsyncPgConnection,
    ids: &[String],
) -> QueryResult<Vec<UnsubscribeSettings>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    projects::table
        .filter(projects::id.eq_any(ids))
        .select((projects::id, projects::one_click_unsubscribe, projects::unsubscribe_mailto))
        .load(conn)
        .await
}

/// A project by id alone, whatever its organization: for a signed unsubscribe link, which
/// names its project and carries no credentials. The organization and whether it still exists.
pub async fn organization_of(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<String>> {
    projects::table
        .filter(projects::id.eq(id))
        .select(projects::organization_id)
        .first(conn)
        .await
        .optional()
}

/// What deleting a project deletes with it, counted for the confirmation that names it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    pub messages: i64,
    pub webhook_endpoints: i64,
    pub provider_credentials: i64,
    /// Live keys bound to the project (revoked ones go too, unnoticed).
    pub api_keys: i64,
    pub templates: i64,
    pub suppressions: i64,
}

pub async fn contents(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<Contents> {
    use crate::db::schema::{
        api_keys, messages, provider_credentials, suppressions, templates, webhook_endpoints,
    };
    let messages = messages::table
        .filter(messages::organization_id.eq(organization_id))
        .filter(messages::project_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let webhook_endpoints = webhook_endpoints::table
        .filter(webhook_endpoints::organization_id.eq(organization_id))
        .filter(webhook_endpoints::project_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let provider_credentials = provider_credentials::table
        .filter(provider_credentials::organization_id.eq(organization_id))
        .filter(provider_credentials::project_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let api_keys = api_keys::table
        .filter(api_keys::organization_id.eq(organization_id))
        .filter(api_keys::project_id.eq(id))
        .filter(api_keys::revoked_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    let templates = templates::table
        .filter(templates::organization_id.eq(organization_id))
        .filter(templates::project_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let suppressions = suppressions::table
        .filter(suppressions::organization_id.eq(organization_id))
        .filter(suppressions::project_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    Ok(Contents {
        messages,
        webhook_endpoints,
        provider_credentials,
        api_keys,
        templates,
        suppressions,
    })
}
