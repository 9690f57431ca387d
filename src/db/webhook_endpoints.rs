//! Webhook endpoints: where a project's message events are POSTed, and the sealed secrets that
//! sign them. Every query is scoped by organization and project, so an id from another tenant or
//! another project finds nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::webhook_endpoints;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg))]
pub struct WebhookEndpoint {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub sealed_secret: Vec<u8>,
    pub secret_key_id: String,
    pub previous_sealed_secret: Option<Vec<u8>>,
    pub previous_secret_key_id: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Requests per second at most, over every webhook process; `None`: no limit.
    pub rate_limit: Option<i32>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct NewWebhookEndpoint<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub project_id: &'a str,
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub event_types: &'a [String],
    pub sealed_secret: &'a [u8],
    pub secret_key_id: &'a str,
    pub is_active: bool,
    pub disabled_reason: Option<&'a str>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<i32>,
}

/// A partial update; `None` leaves a column as it is, `Some(None)` sets it to NULL.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookEndpointChanges {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    pub is_active: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub disabled_at: Option<Option<DateTime<Utc>>>,
    pub failing_since: Option<Option<DateTime<Utc>>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<Option<i32>>,
}

/// Filters to one endpoint of one project of one organization.
macro_rules! scoped {
    ($organization_id:expr, $project_id:expr, $id:expr) => {
        webhook_endpoints::table
            .filter(webhook_endpoints::organization_id.eq($organization_id))
            .filter(webhook_endpoints::project_id.eq($project_id))
            .filter(webhook_endpoints::id.eq($id))
    };
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    endpoint: NewWebhookEndpoint<'_>,
) -> QueryResult<WebhookEndpoint> {
    diesel::insert_into(webhook_endpoints::table)
        .values(endpoint)
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
) -> QueryResult<Option<WebhookEndpoint>> {
    scoped!(organization_id, project_id, id)
        .select(WebhookEndpoint::as_select())
        .first(conn)
        .await
        .optional()
}

/// The project's endpoints, newest first, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<WebhookEndpoint>> {
    let query = webhook_endpoints::table
        .filter(webhook_endpoints::organization_id.eq(organization_id))
        .filter(webhook_endpoints::project_id.eq(project_id))
        .select(WebhookEndpoint::as_select())
        .order((webhook_endpoints::created_at.desc(), webhook_endpoints::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, webhook_endpoints::created_at, webhook_endpoints::id, after)
        .load(conn)
        .await
}

/// The organization's endpoints that are disabled or failing (every attempt failing since
/// `failing_since`), at most `limit`, the longest failing first.
pub async fn troubled(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    limit: i64,
) -> QueryResult<Vec<WebhookEndpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::organization_id.eq(organization_id))
        .filter(
            webhook_endpoints::is_active
                .eq(false)
                .or(webhook_endpoints::failing_since.is_not_null()),
        )
        .select(WebhookEndpoint::as_select())
        .order((webhook_endpoints::failing_since.asc().nulls_last(), webhook_endpoints::id.asc()))
        .limit(limit)
        .load(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
    changes: WebhookEndpointChanges,
) -> QueryResult<Option<WebhookEndpoint>> {
    diesel::update(scoped!(organization_id, project_id, id))
        .set(changes)
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
) -> QueryResult<bool> {
    diesel::delete(scoped!(organization_id, project_id, id)).execute(conn).await.map(|n| n > 0)
}

/// Makes `sealed`/`key_id` the current secret and the current one the previous secret until
/// `previous_expires_at`, in one statement: the right-hand sides read the row as it was, so two
/// concurrent rotations cannot lose a secret between a read and a write.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    id: &str,
    sealed: &[u8],
    key_id: &str,
    previous_expires_at: DateTime<Utc>,
) -> QueryResult<Option<WebhookEndpoint>> {
    use webhook_endpoints::dsl as w;
    diesel::update(scoped!(organization_id, project_id, id))
        .set((
            w::previous_sealed_secret.eq(w::sealed_secret.nullable()),
            w::previous_secret_key_id.eq(w::secret_key_id.nullable()),
            w::previous_secret_expires_at.eq(Some(previous_expires_at)),
            w::sealed_secret.eq(sealed),
            w::secret_key_id.eq(key_id),
            w::updated_at.eq(Utc::now()),
        ))
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
        .optional()
}
