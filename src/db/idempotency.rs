//! `Idempotency-Key` records of `/v1/send`: the request's hash and the response it got, kept
//! 24 hours (then the retention duty deletes them). They are written in the same transaction as
//! the messages they answer for, so a key is either bound to committed messages or to nothing.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, Bytea, Integer, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::CacheStatement;

/// A record to claim a key with.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub project_id: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub response_status: i32,
    pub response_body: serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = Text)]
    pub project_id: String,
    #[diesel(sql_type = Text)]
    pub key: String,
}

/// Claims the keys of `records` (distinct by project and key); returns those claimed. A key
/// already held by an unexpired record is not claimed; an expired record is taken over.
/// A concurrent transaction claiming the same key makes this wait for its outcome.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    records: &[NewRecord],
) -> diesel::QueryResult<Vec<Claimed>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "INSERT INTO idempotency_keys
            (project_id, key, request_hash, status, response_status, response_body, expires_at)
         SELECT p, k, h, 'completed', s, b, e
         FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::jsonb[], $6::timestamptz[])
            AS r(p, k, h, s, b, e)
         ON CONFLICT (project_id, key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
            response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
            created_at = now(), expires_at = EXCLUDED.expires_at
         WHERE idempotency_keys.expires_at <= now()
         RETURNING project_id, key",
    )
    .bind::<Array<Text>, _>(records.iter().map(|r| r.project_id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
    .bind::<Array<Bytea>, _>(records.iter().map(|r| r.request_hash.as_slice()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(records.iter().map(|r| r.response_status).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(records.iter().map(|r| &r.response_body).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(records.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .cached()
    .load(conn)
    .await
}

#[derive(Debug, Clone, QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = Bytea)]
    pub request_hash: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    pub response_status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Jsonb>)]
    pub response_body: Option<serde_json::Value>,
}

/// The live record of a key, if any.
pub async fn find(
    conn: &mut AsyncPgConnection,
    project_id: &str,
    key: &str,
) -> diesel::QueryResult<Option<Stored>> {
    use diesel::OptionalExtension;
    diesel::sql_query(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE project_id = $1 AND key = $2 AND expires_at > now()",
    )
    .bind::<Text, _>(project_id)
    .bind::<Text, _>(key)
    .cached()
    .get_result(conn)
    .await
    .optional()
}

/// Deletes up to `limit` records expired by `now` (the retention duty), oldest first; returns
/// how many. Records another transaction holds (a claim taking an expired key over) are
/// skipped: the claim keeps the key alive, or a later round deletes it. By `ctid`, as the key is
/// two columns; a row locked here keeps its `ctid` until the statement ends.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY (
             SELECT ctid FROM idempotency_keys WHERE expires_at <= $1
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
    .await
}
