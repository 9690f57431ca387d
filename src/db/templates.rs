//! Templates and their published versions (migration 000025): queries beside the models.
//! Every query is scoped by organization and project; a template is named by id or slug.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::{template_versions, templates};
use crate::domain::template::Compiled;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates, check_for_backend(diesel::pg::Pg))]
pub struct Template {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub slug: String,
    pub name: String,
    pub channel: String,
    pub draft: serde_json::Value,
    /// 0 while none is published.
    pub latest_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = templates)]
pub struct NewTemplate<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub project_id: &'a str,
    pub slug: &'a str,
    pub name: &'a str,
    pub channel: &'a str,
    pub draft: &'a serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update of the draft; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = templates)]
pub struct TemplateChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub draft: Option<serde_json::Value>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = template_versions, check_for_backend(diesel::pg::Pg))]
pub struct Version {
    pub template_id: String,
    pub version: i32,
    pub content: serde_json::Value,
    pub published_by: Option<String>,
    pub published_at: DateTime<Utc>,
}

/// A published version as a send renders it, compiled once (what the tenant cache keeps).
#[derive(Debug)]
pub struct Published {
    pub template_id: String,
    pub channel: String,
    pub version: i32,
    pub template: Compiled,
}

macro_rules! named {
    ($organization_id:expr, $project_id:expr, $id_or_slug:expr) => {
        templates::table
            .filter(templates::organization_id.eq($organization_id))
            .filter(templates::project_id.eq($project_id))
            .filter(templates::id.eq($id_or_slug).or(templates::slug.eq($id_or_slug)))
    };
}

/// The project's slugs that are `base` or `base-...`, for a free one.
pub async fn slugs_like(
    conn: &mut AsyncPgConnection,
    project_id: &str,
    base: &str,
) -> QueryResult<Vec<String>> {
    templates::table
        .filter(templates::project_id.eq(project_id))
        .filter(templates::slug.eq(base).or(templates::slug.like(format!("{base}-%"))))
        .select(templates::slug)
        .load(conn)
        .await
}

pub async fn insert(conn: &mut AsyncPgConnection, new: NewTemplate<'_>) -> QueryResult<Template> {
    diesel::insert_into(templates::table)
        .values(new)
        .returning(Template::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id_or_slug: &str,
) -> QueryResult<Option<Template>> {
    named!(organization_id, project_id, id_or_slug)
        .select(Template::as_select())
        .first(conn)
        .await
        .optional()
}

/// The project's templates, newest first, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<Template>> {
    let query = templates::table
        .filter(templates::organization_id.eq(organization_id))
        .filter(templates::project_id.eq(project_id))
        .select(Template::as_select())
        .order((templates::created_at.desc(), templates::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, templates::created_at, templates::id, after).load(conn).await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: &str,
    changes: &TemplateChanges,
) -> QueryResult<Template> {
    diesel::update(templates::table.filter(templates::id.eq(id)))
        .set(changes)
        .returning(Template::as_returning())
        .get_result(conn)
        .await
}

/// Deletes a template and its versions; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<bool> {
    Ok(diesel::delete(templates::table.filter(templates::id.eq(id))).execute(conn).await? > 0)
}

/// Publishes the template's draft as its next version, in one transaction that locks the
/// template, so two publishes at once make two versions, each of the draft it saw.
pub async fn publish(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    published_by: Option<&str>,
    now: DateTime<Utc>,
) -> QueryResult<Version> {
    conn.transaction(async |conn| {
        let (draft, latest): (serde_json::Value, i32) = templates::table
            .filter(templates::id.eq(template_id))
            .select((templates::draft, templates::latest_version))
            .for_update()
            .first(conn)
            .await?;
        let version = latest + 1;
        diesel::update(templates::table.filter(templates::id.eq(template_id)))
            .set(templates::latest_version.eq(version))
            .execute(conn)
            .await?;
        diesel::insert_into(template_versions::table)
            .values((
                template_versions::template_id.eq(template_id),
                template_versions::version.eq(version),
                template_versions::content.eq(&draft),
                template_versions::published_by.eq(published_by),
                template_versions::published_at.eq(now),
            ))
            .returning(Version::as_returning())
            .get_result(conn)
            .await
    })
    .await
}

/// The template's versions, newest first, before `before` (a version number).
pub async fn versions(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    before: Option<i32>,
    limit: i64,
) -> QueryResult<Vec<Version>> {
    let mut query = template_versions::table
        .filter(template_versions::template_id.eq(template_id))
        .select(Version::as_select())
        .order(template_versions::version.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(template_versions::version.lt(before));
    }
    query.load(conn).await
}

pub async fn version(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    version: i32,
) -> QueryResult<Option<Version>> {
    template_versions::table
        .filter(template_versions::template_id.eq(template_id))
        .filter(template_versions::version.eq(version))
        .select(Version::as_select())
        .first(conn)
        .await
        .optional()
}

/// What a send renders: a template named by id or slug in the project, and one of its
/// versions (the latest published when `version` is `None`). `None` when the template does
/// not exist; a template without that version comes with `None`.
pub async fn for_sending(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id_or_slug: &str,
    version: Option<i32>,
) -> QueryResult<Option<(Template, Option<Version>)>> {
    let Some(template) = find(conn, organization_id, project_id, id_or_slug).await? else {
        return Ok(None);
    };
    let wanted = version.unwrap_or(template.latest_version);
    let found = if wanted > 0 { self::version(conn, &template.id, wanted).await? } else { None };
    Ok(Some((template, found)))
}
