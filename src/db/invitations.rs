//! Invitations to join an organization, accepted with a token whose hash is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::invitations;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct Invitation {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub role: String,
    pub status: String,
    pub inviter_id: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub inviter_id: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    invitation: NewInvitation<'_>,
) -> QueryResult<Invitation> {
    diesel::insert_into(invitations::table)
        .values(invitation)
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<Invitation>> {
    let query = invitations::table
        .filter(invitations::organization_id.eq(organization_id))
        .select(Invitation::as_select())
        .order((invitations::created_at.desc(), invitations::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, invitations::created_at, invitations::id, after).load(conn).await
}

/// Cancels a pending invitation of the organization; None when there is no such invitation,
/// Some(false) when it is no longer pending.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<Option<bool>> {
    let found: Option<String> = invitations::table
        .filter(invitations::organization_id.eq(organization_id))
        .filter(invitations::id.eq(id))
        .select(invitations::status)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match found.as_deref() {
        None => Ok(None),
        Some("pending") => {
            diesel::update(invitations::table.find(id))
                .set((
                    invitations::status.eq("canceled"),
                    invitations::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            Ok(Some(true))
        }
        Some(_) => Ok(Some(false)),
    }
}

/// The invitation with this token hash.
pub async fn find_by_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::token_hash.eq(token_hash))
        .select(Invitation::as_select())
        .first(conn)
        .await
        .optional()
}

/// The invitation with this token hash, locked for acceptance.
pub async fn find_by_token_for_update(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::token_hash.eq(token_hash))
        .select(Invitation::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn mark_accepted(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::status.eq("accepted"),
            invitations::accepted_at.eq(diesel::dsl::now),
            invitations::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}
