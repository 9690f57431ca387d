//! API keys: stored as SHA-256 hashes of the key, with a short prefix kept for display.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::api_keys;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: String,
    pub organization_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub rate_limit: Option<i32>,
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub project_id: Option<&'a str>,
    pub name: &'a str,
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
    pub scopes: &'a [String],
    pub rate_limit: Option<i32>,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, key: NewApiKey<'_>) -> QueryResult<ApiKey> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await
}

/// The live (neither revoked nor expired) key with this hash.
pub async fn find_live_by_hash(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(diesel::dsl::now)))
        .select(ApiKey::as_select())
        .first(conn)
        .await
        .optional()
}

/// The organization's keys that are not revoked, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<ApiKey>> {
    let query = api_keys::table
        .filter(api_keys::organization_id.eq(organization_id))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKey::as_select())
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, api_keys::created_at, api_keys::id, after).load(conn).await
}

/// Revokes a key of the organization; false when there is no such live key.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<bool> {
    diesel::update(
        api_keys::table
            .filter(api_keys::organization_id.eq(organization_id))
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set((api_keys::revoked_at.eq(diesel::dsl::now), api_keys::updated_at.eq(diesel::dsl::now)))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Records when keys were last used, many keys in one statement.
pub async fn touch_many(
    conn: &mut AsyncPgConnection,
    uses: &[(String, DateTime<Utc>)],
) -> QueryResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let (ids, times): (Vec<&str>, Vec<DateTime<Utc>>) =
        uses.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
    diesel::sql_query(
        "UPDATE api_keys SET last_used_at = u.at
         FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
         WHERE api_keys.id = u.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Timestamptz>, _>(times)
    .execute(conn)
    .await
    .map(drop)
}

/// Whether the organization has a key that works now: the overview's second step.
pub async fn any_live(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        api_keys::table
            .filter(api_keys::organization_id.eq(organization_id))
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now))),
    ))
    .get_result(conn)
    .await
}
