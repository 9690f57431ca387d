//! Users and their sessions.
//!
//! A session lives while it is used (its `expires_at` slides forward, `auth.session_ttl`) but no
//! longer than `auth.session_max_lifetime` after it was opened; the queries that find a session
//! take both bounds, so shortening either takes effect at once. Expired sessions are deleted by
//! the retention duty ([`delete_expired_sessions`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::{sessions, users};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub image: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    /// Whether someone vouched for the email: an OAuth / OpenID Connect provider that says it
    /// verified it.
    pub email_verified: bool,
}

pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<User>> {
    users::table.find(id).select(User::as_select()).first(conn).await.optional()
}

/// Locks the user's row until the end of the transaction, serializing changes to their ways of
/// signing in (so two removals at once cannot leave none).
pub async fn lock(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    users::table.find(id).select(users::id).for_update().first::<String>(conn).await.map(drop)
}

/// Replaces the user's password hash.
pub async fn set_password(
    conn: &mut AsyncPgConnection,
    id: &str,
    password_hash: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((users::password_hash.eq(password_hash), users::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(drop)
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub active_organization_id: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it was last used, to within the interval its expiry slides by.
    pub last_seen_at: DateTime<Utc>,
}

/// A session as its user lists it: where it was opened from.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionListing {
    pub id: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub token_hash: &'a [u8],
    pub active_organization_id: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    pub ip_address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The clock its expiry was computed by (also its first use).
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn create_session(
    conn: &mut AsyncPgConnection,
    session: NewSession<'_>,
) -> QueryResult<Session> {
    diesel::insert_into(sessions::table)
        .values(session)
        .returning(Session::as_returning())
        .get_result(conn)
        .await
}

/// The session with this token hash, and its user, if it is unexpired at `now` and was opened
/// after `opened_after` (its absolute lifetime).
pub async fn find_session(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    now: DateTime<Utc>,
    opened_after: DateTime<Utc>,
) -> QueryResult<Option<(Session, User)>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::created_at.gt(opened_after))
        .select((Session::as_select(), User::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Records a use of the session at `now` and slides its expiry to `expires_at`.
pub async fn touch_session(
    conn: &mut AsyncPgConnection,
    id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::expires_at.eq(expires_at),
            sessions::last_seen_at.eq(now),
            sessions::updated_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The user's live sessions (as [`find_session`] takes them), newest first, after `after`.
pub async fn list_sessions(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    now: DateTime<Utc>,
    opened_after: DateTime<Utc>,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<SessionListing>> {
    let query = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::created_at.gt(opened_after))
        .select(SessionListing::as_select())
        .order((sessions::created_at.desc(), sessions::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, sessions::created_at, sessions::id, after).load(conn).await
}

/// Revokes the user's session `id`; false when the user has no such session (another user's
/// id included).
pub async fn delete_user_session(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    id: &str,
) -> QueryResult<bool> {
    diesel::delete(
        sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::id.eq(id)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Revokes every session of the user but `keep`; returns how many.
pub async fn delete_other_sessions(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    keep: &str,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::id.ne(keep)),
    )
    .execute(conn)
    .await
}

/// Deletes up to `limit` sessions expired by `now` (the retention duty), skipping any another
/// transaction holds; returns how many. A session past its absolute lifetime is refused at once
/// and deleted once its idle expiry passes too: it is never renewed again, so that is at most
/// `auth.session_ttl` later.
pub async fn delete_expired_sessions(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    use diesel::sql_types::{BigInt, Timestamptz};
    diesel::sql_query(
        "DELETE FROM sessions WHERE id = ANY (ARRAY (
             SELECT id FROM sessions WHERE expires_at <= $1
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

pub async fn delete_session(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.find(id)).execute(conn).await.map(drop)
}

pub async fn set_active_organization(
    conn: &mut AsyncPgConnection,
    session_id: &str,
    organization_id: &str,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(session_id))
        .set((
            sessions::active_organization_id.eq(organization_id),
            sessions::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}
