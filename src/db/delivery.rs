//! The delivery worker's queries: claiming messages, recording outcomes, finding the credentials
//! that route a message, and the sweeper's recovery of messages whose stream entry was lost.
//!
//! Each writes many messages per statement (the worker's hot path), and each status change
//! writes its event in the same statement or transaction. Times come from the worker's clock, like the
//! ingestion's, so a message's history reads in order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::db::CacheStatement;
use crate::db::messages::{Event, Message, NewMessage};
use crate::db::providers::ProviderCredential;
use crate::db::schema::{messages, provider_credentials};
use crate::domain::ids::{EVENT, new_id};
use crate::domain::status::{PROCESSING, QUEUED, RECEIVED, RETRYING};

async fn insert_events(conn: &mut AsyncPgConnection, events: &[Event]) -> QueryResult<()> {
    crate::db::messages::insert_all::<NewMessage, _>(conn, &[], events).await
}

// STATUS_BY_ID: the claim and the outcome write find their rows by id, then test the status.
// Written plainly, the status test let the planner use the partial index over unfinished
// messages instead (`messages_in_flight_idx`; since migration 000014 no index reads the
// status, but the rule stands for any partial index that would), and it did once the
// statistics were gathered while nothing was in flight (a quiet queue): it then expected that
// index to hold a row or two, and scanned all of it for every batch when a backlog had built
// up. That made each claim cost O(backlog), slowing delivery most when it was most needed:
// after an ANALYZE of a quiet table, a worker drained a backlog at 2,000-2,400 messages/s,
// against 8,400-9,300 with this. A CASE is opaque to the planner's proofs that a partial
// index applies, so the primary key is the only index left to these statements.
// Test: `status_changes_find_their_rows_by_id_whatever_the_statistics`.

/// Claims the messages among `ids` that are waiting for delivery (`queued`, `retrying`), or
/// whose claim was abandoned (`processing` since before `stale_before`, or by one of `dead`:
/// consumers whose liveness expired), for `consumer`: sets them `processing` at `now` with a
/// `processing` event each, and returns them. Ids not returned are already handled, canceled
/// or in another worker's hands: a duplicate stream entry therefore never causes a second send.
///
/// When the entries were taken over from a worker that stopped (`taken_over`), that worker's
/// attempt may or may not have reached its provider; the new claim's event says so
/// (`previousAttempt: "outcome unknown"`), so a second send is never silent.
///
/// One statement (the event insert rides on the update's RETURNING), so it is atomic without
/// a transaction's extra round trips, and its plan is prepared once per connection.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    ids: &[String],
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    consumer: &str,
    dead: &[String],
    taken_over: bool,
) -> QueryResult<Vec<Message>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // an event id for each candidate; only the claimed ones' are used
    let event_ids: Vec<String> = ids.iter().map(|_| new_id(EVENT)).collect();
    // entries taken over from a worker that stopped: if their message is claimed, that worker's
    // attempt (if it began one) ended unknown
    let taken_over: Vec<bool> = ids.iter().map(|_| taken_over).collect();
    diesel::sql_query(
        "WITH c AS (
             UPDATE messages SET status = 'processing', updated_at = $2, claimed_by = $5
             WHERE id = ANY($1)
               -- a CASE, so that only the primary key can serve this: see STATUS_BY_ID
               AND CASE WHEN status IN ('queued', 'retrying') THEN true
                        WHEN status = 'processing' THEN updated_at < $3 OR claimed_by = ANY($6)
                        ELSE false END
             -- named, not *: this statement stays prepared on its connection, and a column
             -- added by a later migration must not change its result type under running workers
             RETURNING id, organization_id, project_id, api_key_id, channel, recipient,
                 requested_provider, provider_credential_id, provider_type, status, status_reason,
                 attempts, content, metadata, provider_message_id, idempotency_key, send_at,
                 next_attempt_at, created_at, updated_at, throttled_since, template_id,
                 template_version
         ), e AS (
             -- tenants read event details: nothing about our hosts goes in
             INSERT INTO message_events (id, message_id, status, details, created_at)
             SELECT x.event_id, c.id, 'processing', jsonb_build_object('attempt', c.attempts + 1)
                 || CASE WHEN x.taken_over
                     THEN '{\"previousAttempt\": \"outcome unknown\"}'::jsonb
                     ELSE '{}'::jsonb END,
                 $2
             FROM c JOIN unnest($1, $4, $7) AS x(id, event_id, taken_over) ON x.id = c.id
         )
         SELECT * FROM c",
    )
    .bind::<Array<Text>, _>(ids)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(stale_before)
    .bind::<Array<Text>, _>(&event_ids)
    .bind::<Text, _>(consumer)
    .bind::<Array<Text>, _>(dead)
    .bind::<Array<Bool>, _>(&taken_over)
    .cached()
    .load(conn)
    .await
}

/// The organization of each of the messages `ids` that exist.
pub async fn organizations_of(
    conn: &mut AsyncPgConnection,
    ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    messages::table
        .filter(messages::id.eq_any(ids))
        .select((messages::id, messages::organization_id))
        .load(conn)
        .await
}

/// How one claimed message's delivery ended, as its row and its event will say.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub message_id: String,
    /// The `updated_at` its claim wrote. The outcome applies only while the row still carries
    /// it: a worker that outlived the visibility timeout, and whose message was claimed again
    /// by another, records nothing.
    pub claimed_at: DateTime<Utc>,
    /// `sent`, `retrying` or `failed`.
    pub status: &'static str,
    pub status_reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Left as they were when `None`.
    pub provider_message_id: Option<String>,
    pub provider_credential_id: Option<String>,
    pub provider_type: Option<String>,
    /// Since when it has been throttled without a break, if this outcome is throttled too.
    pub throttled_since: Option<DateTime<Utc>>,
    pub details: serde_json::Value,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Writes `outcomes`, rows and events in one statement, and returns the ids of the messages
/// they applied to; see [`Outcome::claimed_at`] for those they did not.
pub async fn record(
    conn: &mut AsyncPgConnection,
    outcomes: &[Outcome],
    now: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    // Column-wise arrays, unnested into one row per outcome.
    let ids: Vec<&str> = outcomes.iter().map(|o| o.message_id.as_str()).collect();
    let claimed_at: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.claimed_at).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status).collect();
    let reasons: Vec<Option<&str>> = outcomes.iter().map(|o| o.status_reason.as_deref()).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempts).collect();
    let next: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
    let provider_ids: Vec<Option<&str>> =
        outcomes.iter().map(|o| o.provider_message_id.as_deref()).collect();
    let credentials: Vec<Option<&str>> =
        outcomes.iter().map(|o| o.provider_credential_id.as_deref()).collect();
    let types: Vec<Option<&str>> = outcomes.iter().map(|o| o.provider_type.as_deref()).collect();
    let throttled_since: Vec<Option<DateTime<Utc>>> =
        outcomes.iter().map(|o| o.throttled_since).collect();
    let event_ids: Vec<String> = outcomes.iter().map(|_| new_id(EVENT)).collect();
    let details: Vec<&serde_json::Value> = outcomes.iter().map(|o| &o.details).collect();
    let applied: Vec<Id> = diesel::sql_query(
        "WITH u AS (
             SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $13) AS u(id,
                 claimed_at, status, status_reason, attempts, next_attempt_at,
                 provider_message_id, provider_credential_id, provider_type, throttled_since,
                 event_id, details)
         ), m AS (
             UPDATE messages AS m SET
                 status = u.status,
                 status_reason = u.status_reason,
                 attempts = u.attempts,
                 next_attempt_at = u.next_attempt_at,
                 provider_message_id = COALESCE(u.provider_message_id, m.provider_message_id),
                 -- a credential deleted meanwhile is not referenced (the foreign key would
                 -- fail the whole batch)
                 provider_credential_id = COALESCE(
                     (SELECT p.id FROM provider_credentials p WHERE p.id = u.provider_credential_id),
                     m.provider_credential_id),
                 provider_type = COALESCE(u.provider_type, m.provider_type),
                 throttled_since = u.throttled_since,
                 updated_at = $10,
                 -- a retry is due at its next attempt; sent and failed are final
                 due_at = CASE WHEN u.status = 'retrying' THEN COALESCE(u.next_attempt_at, $10) END
             FROM u
             WHERE m.id = u.id
               -- a CASE, so that only the primary key can serve this: see STATUS_BY_ID
               AND CASE WHEN m.status = 'processing' THEN m.updated_at = u.claimed_at
                        ELSE false END
             RETURNING m.id
         ), e AS (
             INSERT INTO message_events (id, message_id, status, details, created_at)
             SELECT u.event_id, u.id, u.status, u.details, $10 FROM u JOIN m ON m.id = u.id
         )
         SELECT id FROM m",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<Timestamptz>, _>(&claimed_at)
    .bind::<Array<Text>, _>(&statuses)
    .bind::<Array<Nullable<Text>>, _>(&reasons)
    .bind::<Array<Int4>, _>(&attempts)
    .bind::<Array<Nullable<Timestamptz>>, _>(&next)
    .bind::<Array<Nullable<Text>>, _>(&provider_ids)
    .bind::<Array<Nullable<Text>>, _>(&credentials)
    .bind::<Array<Nullable<Text>>, _>(&types)
    .bind::<Timestamptz, _>(now)
    .bind::<Array<Nullable<Timestamptz>>, _>(&throttled_since)
    .bind::<Array<Text>, _>(&event_ids)
    .bind::<Array<Jsonb>, _>(&details)
    .cached()
    .load(conn)
    .await?;
    Ok(applied.into_iter().map(|row| row.id).collect())
}

/// The credentials that may deliver `message`, in the order to try them: the one its sender
/// asked for by slug, else every active credential of its channel visible to its project,
/// the project's own before the organization's, lowest priority first.
pub async fn routes(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    channel: &str,
    requested_slug: Option<&str>,
) -> QueryResult<Vec<ProviderCredential>> {
    let mut query = provider_credentials::table
        .filter(provider_credentials::organization_id.eq(organization_id))
        .filter(
            provider_credentials::project_id
                .is_null()
                .or(provider_credentials::project_id.eq(project_id)),
        )
        .filter(provider_credentials::channel.eq(channel))
        .filter(provider_credentials::is_active.eq(true))
        .order((
            // false (a project's own) sorts first
            provider_credentials::project_id.is_null().asc(),
            provider_credentials::priority.asc(),
            provider_credentials::created_at.asc(),
            provider_credentials::id.asc(),
        ))
        .select(ProviderCredential::as_select())
        .into_boxed();
    if let Some(slug) = requested_slug {
        query = query.filter(provider_credentials::slug.eq(slug));
    }
    query.load(conn).await
}

/// Notes on the credential that its provider refused it, for the API to show.
pub async fn flag_credential(
    conn: &mut AsyncPgConnection,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(provider_credentials::table.filter(provider_credentials::id.eq(id)))
        .set((
            provider_credentials::last_error.eq(error),
            provider_credentials::last_error_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Moves up to `limit` messages from `received` to `queued` (with a `queued` event each) and
/// returns their ids, for the caller to enqueue: scheduled ones whose `send_at` has come, and
/// unscheduled ones left there since before `stuck_before` (their ingestion stopped between
/// the commit and the enqueue). Rows another worker is moving are skipped, not waited for.
pub async fn promote_received(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    stuck_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<String>> {
    conn.transaction(async |conn| {
        // due_at, not send_at, so that each arm has its index (scheduled, and every unfinished
        // message) and the scheduled one's range excludes those already promoted
        let due: Vec<(String, Option<DateTime<Utc>>)> = messages::table
            .filter(messages::status.eq(RECEIVED))
            .filter(
                (messages::send_at.is_not_null().and(messages::due_at.le(now)))
                    .or(messages::send_at.is_null().and(messages::due_at.lt(stuck_before))),
            )
            .select((messages::id, messages::send_at))
            .limit(limit)
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = due.iter().map(|(id, _)| id).collect();
        diesel::update(messages::table.filter(messages::id.eq_any(&ids)))
            .set((
                messages::status.eq(QUEUED),
                messages::updated_at.eq(now),
                messages::due_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let events: Vec<Event> = due
            .iter()
            .map(|(id, send_at)| {
                let details = match send_at {
                    Some(at) => json!({"sendAt": at}),
                    None => json!({"recovered": true}),
                };
                Event::new(id, QUEUED, details, now)
            })
            .collect();
        insert_events(conn, &events).await?;
        Ok(due.into_iter().map(|(id, _)| id).collect())
    })
    .await
}

/// Up to `limit` messages whose stream entry was lost, for the caller to enqueue again: left
/// in `queued` since before `stuck_before`, overdue in `retrying` since before it, or claimed
/// (`processing`) since before `processing_before` by a worker that is gone. Queued and
/// retrying rows become due `now`, so each sweep finds a row at most once per
/// `requeue_after`; processing rows keep theirs, which is what lets the next claim take them.
pub async fn requeue_stale(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    stuck_before: DateTime<Utc>,
    processing_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<String>> {
    conn.transaction(async |conn| {
        let waiting = messages::status
            .eq_any([QUEUED, RETRYING])
            .and(messages::updated_at.lt(stuck_before))
            .and(
                messages::next_attempt_at.is_null().or(messages::next_attempt_at.lt(stuck_before)),
            );
        let abandoned =
            messages::status.eq(PROCESSING).and(messages::updated_at.lt(processing_before));
        let stale: Vec<(String, String)> = messages::table
            // what the index can find: a row waiting or claimed since before stuck_before
            // became due before it (a claim is later than its message's due time)
            .filter(messages::due_at.lt(stuck_before))
            .filter(waiting.or(abandoned))
            .select((messages::id, messages::status))
            .limit(limit)
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        // by id alone (the rows are locked, their status known): see STATUS_BY_ID
        let waiting: Vec<&str> =
            stale.iter().filter(|(_, status)| status != PROCESSING).map(|(id, _)| &**id).collect();
        diesel::update(messages::table.filter(messages::id.eq_any(&waiting)))
            .set((messages::updated_at.eq(now), messages::due_at.eq(now)))
            .execute(conn)
            .await?;
        Ok(stale.into_iter().map(|(id, _)| id).collect())
    })
    .await
}

/// Up to `limit` messages `retrying` with their next attempt after `now`, after the id
/// `after` (ascending), with its time: the delayed set's content, for a Redis that lost it.
pub async fn future_retries(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<(String, DateTime<Utc>)>> {
    let rows: Vec<(String, Option<DateTime<Utc>>)> = messages::table
        // what the index of unfinished messages can find: a retry is due at its next attempt
        .filter(messages::due_at.gt(now))
        .filter(messages::status.eq(RETRYING))
        .filter(messages::id.gt(after))
        .order(messages::id)
        .select((messages::id, messages::next_attempt_at))
        .limit(limit)
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(|(id, at)| Some((id, at?))).collect())
}
