//! Accounts at OAuth / OpenID Connect providers linked to users (the `accounts` table): one per
//! (provider id from the configuration, the provider's subject), each belonging to one user.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::accounts;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct LinkedAccount {
    pub id: String,
    pub user_id: String,
    /// The operator's id of the provider (`[[auth.oauth]] id`).
    pub provider_id: String,
    /// The provider's subject: `sub` for OpenID Connect, the numeric user id for GitHub.
    pub account_id: String,
    pub email: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = accounts)]
pub struct NewLinkedAccount<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub provider_id: &'a str,
    pub account_id: &'a str,
    pub email: &'a str,
    pub kind: &'a str,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    account: NewLinkedAccount<'_>,
) -> QueryResult<LinkedAccount> {
    diesel::insert_into(accounts::table)
        .values(account)
        .returning(LinkedAccount::as_returning())
        .get_result(conn)
        .await
}

/// The account with the provider's `subject` at `provider_id`, whoever it belongs to.
pub async fn find_by_subject(
    conn: &mut AsyncPgConnection,
    provider_id: &str,
    subject: &str,
) -> QueryResult<Option<LinkedAccount>> {
    accounts::table
        .filter(accounts::provider_id.eq(provider_id))
        .filter(accounts::account_id.eq(subject))
        .select(LinkedAccount::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of the user's linked accounts, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<LinkedAccount>> {
    let query = accounts::table
        .filter(accounts::user_id.eq(user_id))
        .select(LinkedAccount::as_select())
        .order((accounts::created_at.desc(), accounts::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, accounts::created_at, accounts::id, after).load(conn).await
}

pub async fn count(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<i64> {
    accounts::table.filter(accounts::user_id.eq(user_id)).count().get_result(conn).await
}

/// Unlinks the user's account `id`; false when the user has no such account.
pub async fn delete(conn: &mut AsyncPgConnection, user_id: &str, id: &str) -> QueryResult<bool> {
    let deleted = diesel::delete(
        accounts::table.filter(accounts::id.eq(id)).filter(accounts::user_id.eq(user_id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}
