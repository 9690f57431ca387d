//! Users' passkeys (WebAuthn credentials). `passkey` holds the credential as webauthn-rs
//! serialises it (public key, sign counter, backup flags), rewritten after each use.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::passkeys;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = passkeys, check_for_backend(diesel::pg::Pg))]
pub struct StoredPasskey {
    pub id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub credential_id: Vec<u8>,
    pub passkey: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = passkeys)]
pub struct NewPasskey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: Option<&'a str>,
    pub credential_id: &'a [u8],
    pub passkey: &'a serde_json::Value,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    passkey: NewPasskey<'_>,
) -> QueryResult<StoredPasskey> {
    diesel::insert_into(passkeys::table)
        .values(passkey)
        .returning(StoredPasskey::as_returning())
        .get_result(conn)
        .await
}

/// A page of the user's passkeys, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<StoredPasskey>> {
    let query = passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .select(StoredPasskey::as_select())
        .order((passkeys::created_at.desc(), passkeys::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, passkeys::created_at, passkeys::id, after).load(conn).await
}

pub async fn count(conn: &mut AsyncPgConnection, user_id: &str) -> QueryResult<i64> {
    passkeys::table.filter(passkeys::user_id.eq(user_id)).count().get_result(conn).await
}

/// Deletes the user's passkey `id`; false when the user has no such passkey.
pub async fn delete(conn: &mut AsyncPgConnection, user_id: &str, id: &str) -> QueryResult<bool> {
    let deleted = diesel::delete(
        passkeys::table.filter(passkeys::id.eq(id)).filter(passkeys::user_id.eq(user_id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}

/// Every passkey of the user, oldest first: the credentials to allow at sign-in and to
/// exclude at registration. A user has a handful; 100 bounds a pathological account.
pub async fn all_of_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> QueryResult<Vec<StoredPasskey>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .select(StoredPasskey::as_select())
        .order((passkeys::created_at.asc(), passkeys::id.asc()))
        .limit(100)
        .load(conn)
        .await
}

/// Rewrites the credential after a sign-in with it (sign counter, backup flags) and marks it
/// used at `now`.
pub async fn record_use(
    conn: &mut AsyncPgConnection,
    id: &str,
    passkey: &serde_json::Value,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(passkeys::table.filter(passkeys::id.eq(id)))
        .set((passkeys::passkey.eq(passkey), passkeys::last_used_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Renames the user's passkey `id`; `None` when the user has no such passkey.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    id: &str,
    name: Option<&str>,
) -> QueryResult<Option<StoredPasskey>> {
    diesel::update(
        passkeys::table.filter(passkeys::id.eq(id)).filter(passkeys::user_id.eq(user_id)),
    )
    .set(passkeys::name.eq(name))
    .returning(StoredPasskey::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// The passkey with this credential id, whoever's it is. `for_update` locks it until the
/// transaction ends (so two sign-ins with the same credential check and move its sign counter
/// one at a time).
pub async fn find_by_credential_id(
    conn: &mut AsyncPgConnection,
    credential_id: &[u8],
    for_update: bool,
) -> QueryResult<Option<StoredPasskey>> {
    let query = passkeys::table
        .filter(passkeys::credential_id.eq(credential_id))
        .select(StoredPasskey::as_select());
    if for_update {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }
}
