//! Provider credentials: a tenant's account with a delivery service (SES, SMTP, SNS, WhatsApp
//! Cloud, a Discord bot, or the sandbox), scoped to the organization or to one project.
//!
//! The secrets are one sealed JSON object (`sealed_secrets`, under the master key named by
//! `secrets_key_id`), bound to the row (`crate::providers::credentials`); the rest of the row is plain.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::provider_credentials;
use crate::domain::provider_types::ProviderType;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = provider_credentials, check_for_backend(diesel::pg::Pg))]
pub struct ProviderCredential {
    pub id: String,
    pub organization_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub slug: String,
    pub channel: String,
    pub provider_type: String,
    pub sealed_secrets: Vec<u8>,
    pub secrets_key_id: String,
    pub config: serde_json::Value,
    pub is_active: bool,
    pub priority: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = provider_credentials)]
pub struct NewProviderCredential<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub project_id: Option<&'a str>,
    pub name: &'a str,
    pub slug: &'a str,
    pub channel: &'a str,
    pub provider_type: &'a str,
    pub sealed_secrets: &'a [u8],
    pub secrets_key_id: &'a str,
    pub config: &'a serde_json::Value,
    pub is_active: bool,
    pub priority: i32,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = provider_credentials)]
pub struct ProviderChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub sealed_secrets: Option<Vec<u8>>,
    pub secrets_key_id: Option<String>,
    pub config: Option<serde_json::Value>,
    pub is_active: Option<bool>,
    pub priority: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

/// What a list asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    pub channel: Option<&'a str>,
    /// Only the credentials of this project.
    pub project_id: Option<&'a str>,
    /// An API key bound to this project sees the organization's credentials and its own
    /// project's, no other project's.
    pub visible_to: Option<&'a str>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: NewProviderCredential<'_>,
) -> QueryResult<ProviderCredential> {
    diesel::insert_into(provider_credentials::table)
        .values(new)
        .returning(ProviderCredential::as_returning())
        .get_result(conn)
        .await
}

/// A credential of the organization by id or slug; another organization's is not found.
/// `for_update` locks the row until the end of the transaction (read-modify-write of secrets).
pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id_or_slug: &str,
    for_update: bool,
) -> QueryResult<Option<ProviderCredential>> {
    let query = provider_credentials::table
        .filter(provider_credentials::organization_id.eq(organization_id))
        .filter(
            provider_credentials::id.eq(id_or_slug).or(provider_credentials::slug.eq(id_or_slug)),
        )
        .select(ProviderCredential::as_select());
    if for_update {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }
}

/// A credential of `provider_type` by id alone, whatever its organization: for callbacks from
/// providers (delivery receipts), which name the credential in their URL and prove themselves
/// with its secrets or their own signature.
pub async fn find_for_callback(
    conn: &mut AsyncPgConnection,
    id: &str,
    provider_type: ProviderType,
) -> QueryResult<Option<ProviderCredential>> {
    provider_credentials::table
        .filter(provider_credentials::id.eq(id))
        .filter(provider_credentials::provider_type.eq(provider_type.as_str()))
        .select(ProviderCredential::as_select())
        .first(conn)
        .await
        .optional()
}

/// The organization's credentials matching `filter`, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    filter: ListFilter<'_>,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<ProviderCredential>> {
    let mut query = provider_credentials::table
        .filter(provider_credentials::organization_id.eq(organization_id))
        .select(ProviderCredential::as_select())
        .order((provider_credentials::created_at.desc(), provider_credentials::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(channel) = filter.channel {
        query = query.filter(provider_credentials::channel.eq(channel));
    }
    if let Some(project) = filter.project_id {
        query = query.filter(provider_credentials::project_id.eq(project));
    }
    if let Some(project) = filter.visible_to {
        query = query.filter(
            provider_credentials::project_id
                .is_null()
                .or(provider_credentials::project_id.eq(project)),
        );
    }
    after_cursor!(query, provider_credentials::created_at, provider_credentials::id, after)
        .load(conn)
        .await
}

/// Slugs of the organization's credentials equal to `base` or starting with `base-`.
pub async fn slugs_like(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    base: &str,
) -> QueryResult<Vec<String>> {
    provider_credentials::table
        .filter(provider_credentials::organization_id.eq(organization_id))
        .filter(
            provider_credentials::slug
                .eq(base)
                .or(provider_credentials::slug.like(format!("{base}-%"))),
        )
        .select(provider_credentials::slug)
        .load(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
    changes: ProviderChanges,
) -> QueryResult<Option<ProviderCredential>> {
    diesel::update(
        provider_credentials::table
            .filter(provider_credentials::organization_id.eq(organization_id))
            .filter(provider_credentials::id.eq(id)),
    )
    .set(changes)
    .returning(ProviderCredential::as_returning())
    .get_result(conn)
    .await
    .optional()
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<bool> {
    diesel::delete(
        provider_credentials::table
            .filter(provider_credentials::organization_id.eq(organization_id))
            .filter(provider_credentials::id.eq(id)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// One sealed value as rotation sees it.
#[derive(Debug, Clone, Queryable)]
pub struct SealedRow {
    pub id: String,
    pub organization_id: String,
    pub sealed_secrets: Vec<u8>,
    pub secrets_key_id: String,
}

/// Up to `limit` rows sealed under another key than `current_key_id`, in id order after
/// `after_id` (rotation walks the table in batches).
pub async fn sealed_under_other_keys(
    conn: &mut AsyncPgConnection,
    current_key_id: &str,
    after_id: &str,
    limit: i64,
) -> QueryResult<Vec<SealedRow>> {
    provider_credentials::table
        .filter(provider_credentials::secrets_key_id.ne(current_key_id))
        .filter(provider_credentials::id.gt(after_id))
        .order(provider_credentials::id)
        .limit(limit)
        .select((
            provider_credentials::id,
            provider_credentials::organization_id,
            provider_credentials::sealed_secrets,
            provider_credentials::secrets_key_id,
        ))
        .load(conn)
        .await
}

/// Replaces a row's sealed secrets only if they are still exactly `old` (compare-and-swap: a
/// concurrent change, sealed under whichever key, wins). Returns whether the row was replaced.
pub async fn replace_sealed(
    conn: &mut AsyncPgConnection,
    id: &str,
    old: &[u8],
    sealed: &[u8],
    key_id: &str,
) -> QueryResult<bool> {
    diesel::update(
        provider_credentials::table
            .filter(provider_credentials::id.eq(id))
            .filter(provider_credentials::sealed_secrets.eq(old)),
    )
    .set((
        provider_credentials::sealed_secrets.eq(sealed),
        provider_credentials::secrets_key_id.eq(key_id),
    ))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Whether the organization has an active credential: the overview's first step.
pub async fn any_active(conn: &mut AsyncPgConnection, organization_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provider_credentials::table
            .filter(provider_credentials::organization_id.eq(organization_id))
            .filter(provider_credentials::is_active),
    ))
    .get_result(conn)
    .await
}
