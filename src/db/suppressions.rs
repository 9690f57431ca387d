//! A project's suppression list (migration 000024): queries beside the model. Every query a
//! person's request makes is scoped by organization and project, so another tenant's id finds
//! nothing; the worker's lookup takes project ids from the messages it claimed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::messages::contains_pattern;
use crate::db::schema::suppressions;
use crate::db::{CacheStatement, Cursor};

#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = suppressions, check_for_backend(diesel::pg::Pg))]
pub struct Suppression {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = suppressions)]
pub struct NewSuppression {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub channel: String,
    /// As `domain::suppression::address_key` makes it.
    pub address: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a list keeps to; `None` is any.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub channel: Option<String>,
    pub reason: Option<String>,
    /// Part of the address (case-insensitive).
    pub search: Option<String>,
}

/// Adds `new`, unless its address is listed already: then `None`.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewSuppression,
) -> QueryResult<Option<Suppression>> {
    diesel::insert_into(suppressions::table)
        .values(new)
        .on_conflict_do_nothing()
        .returning(Suppression::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Adds every entry whose address is not listed yet; returns how many were added.
pub async fn insert_all(
    conn: &mut AsyncPgConnection,
    new: &[NewSuppression],
) -> QueryResult<usize> {
    if new.is_empty() {
        return Ok(0);
    }
    diesel::insert_into(suppressions::table)
        .values(new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
) -> QueryResult<Option<Suppression>> {
    suppressions::table
        .filter(suppressions::organization_id.eq(organization_id))
        .filter(suppressions::project_id.eq(project_id))
        .filter(suppressions::id.eq(id))
        .select(Suppression::as_select())
        .first(conn)
        .await
        .optional()
}

/// The entry of `address` (in its compared form) in the project, if any.
pub async fn find_address(
    conn: &mut AsyncPgConnection,
    project_id: &str,
    channel: &str,
    address: &str,
) -> QueryResult<Option<Suppression>> {
    suppressions::table
        .filter(suppressions::project_id.eq(project_id))
        .filter(suppressions::channel.eq(channel))
        .filter(suppressions::address.eq(address))
        .select(Suppression::as_select())
        .first(conn)
        .await
        .optional()
}

/// The project's entries, newest first, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    filter: &ListFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<Suppression>> {
    let mut query = suppressions::table
        .filter(suppressions::organization_id.eq(organization_id))
        .filter(suppressions::project_id.eq(project_id))
        .select(Suppression::as_select())
        .order((suppressions::created_at.desc(), suppressions::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(channel) = &filter.channel {
        query = query.filter(suppressions::channel.eq(channel.clone()));
    }
    if let Some(reason) = &filter.reason {
        query = query.filter(suppressions::reason.eq(reason.clone()));
    }
    if let Some(search) = &filter.search {
        // addresses are kept lower-cased (emails) or without letters (phone numbers)
        query = query.filter(suppressions::address.like(contains_pattern(&search.to_lowercase())));
    }
    after_cursor!(query, suppressions::created_at, suppressions::id, after).load(conn).await
}

/// Deletes an entry: its address may be sent to again. Whether it existed.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
) -> QueryResult<bool> {
    let deleted = diesel::delete(
        suppressions::table
            .filter(suppressions::organization_id.eq(organization_id))
            .filter(suppressions::project_id.eq(project_id))
            .filter(suppressions::id.eq(id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}

/// A recipient a worker is about to send to.
pub struct Recipient<'a> {
    pub project_id: &'a str,
    pub channel: &'a str,
    /// As `domain::suppression::address_key` makes it.
    pub address: &'a str,
}

/// The entries of `recipients` that are suppressed, in one statement (one index probe each).
pub async fn matching(
    conn: &mut AsyncPgConnection,
    recipients: &[Recipient<'_>],
) -> QueryResult<Vec<Suppression>> {
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let projects: Vec<&str> = recipients.iter().map(|r| r.project_id).collect();
    let channels: Vec<&str> = recipients.iter().map(|r| r.channel).collect();
    let addresses: Vec<&str> = recipients.iter().map(|r| r.address).collect();
    // prepared once per connection: the worker runs it for every claimed batch
    diesel::sql_query(
        "SELECT s.* FROM suppressions s
         JOIN unnest($1::text[], $2::text[], $3::text[]) AS r (project_id, channel, address)
           ON s.project_id = r.project_id AND s.channel = r.channel AND s.address = r.address",
    )
    .bind::<Array<Text>, _>(projects)
    .bind::<Array<Text>, _>(channels)
    .bind::<Array<Text>, _>(addresses)
    .cached()
    .load(conn)
    .await
}
