//! Webhook jobs and delivery attempts.
//!
//! Jobs are written by Postgres itself (the `message_events` trigger of the `webhooks`
//! migration) and by the replay and retry routes; the webhook role takes them out of the table
//! onto the Redis stream. Every attempt of a job is a `webhook_deliveries` row. Every query here
//! is scoped by organization, so an id from another tenant finds nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::db::CacheStatement;
use crate::db::Cursor;
use crate::db::messages::{Event, Message};
use crate::db::schema::{message_events, messages, webhook_deliveries, webhook_jobs};
use crate::db::webhook_endpoints::WebhookEndpoint;

/// One event to deliver to one endpoint. It travels as JSON on the stream and in the delayed
/// set, with the attempts it has made so far (`tries`), which place it in the retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, QueryableByName)]
pub struct Job {
    #[diesel(sql_type = Text)]
    #[serde(rename = "org")]
    pub organization_id: String,
    #[diesel(sql_type = Text)]
    #[serde(rename = "endpoint")]
    pub webhook_endpoint_id: String,
    #[diesel(sql_type = Text)]
    #[serde(rename = "message")]
    pub message_id: String,
    #[diesel(sql_type = Text)]
    #[serde(rename = "event")]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    #[serde(rename = "type")]
    pub event_type: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[serde(default)]
    pub tries: i32,
}

/// Marks up to `limit` jobs of the outbox pushed at `now` and returns them: the new ones
/// (oldest first), and those pushed before `stale_before` that nothing settled since (Redis lost
/// them, or they wait on a stream backlog that long: pushing again is harmless, `webhook-id` is
/// stable and attempts are numbered in Postgres). Call it in a transaction that commits only once
/// the jobs are on the stream: a failure before that leaves them as they were. Rows locked by
/// another webhook process are skipped, so several relays never take the same job.
pub async fn take_jobs(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<TakenJob>> {
    // The outbox's statistics are rarely current (it fills and empties by the thousand): left
    // to them, the planner reads every unpushed row to sort them, and scans the whole table to
    // join the batch back. Walking the partial index in order reads only the batch, and the
    // batch is updated through the primary key.
    diesel::sql_query("SET LOCAL enable_bitmapscan = off").execute(conn).await?;
    diesel::sql_query(
        "WITH new AS (SELECT ARRAY(SELECT id FROM webhook_jobs WHERE pushed_at IS NULL \
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) AS ids), \
              stale AS (SELECT ARRAY(SELECT id FROM webhook_jobs WHERE pushed_at < $3 \
                 ORDER BY pushed_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS ids), \
              taken AS (UPDATE webhook_jobs j SET pushed_at = $2 FROM new, stale \
                 WHERE j.id = ANY (new.ids || stale.ids) \
                 RETURNING j.id, j.organization_id, j.webhook_endpoint_id, j.message_id, \
                     j.event_id, j.event_type, j.tries, j.id = ANY (new.ids) AS fresh) \
         SELECT organization_id, webhook_endpoint_id, message_id, event_id, event_type, tries, \
             fresh FROM taken ORDER BY id",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(stale_before)
    .cached()
    .load(conn)
    .await
}

/// A job taken for the stream; `fresh` when it was never pushed before.
#[derive(Debug, QueryableByName)]
pub struct TakenJob {
    #[diesel(embed)]
    pub job: Job,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub fresh: bool,
}

/// Removes settled jobs from the outbox (their attempt is recorded, or they have nothing left to
/// deliver): one statement for a batch.
pub async fn delete_jobs(conn: &mut AsyncPgConnection, jobs: &[&Job]) -> QueryResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let events: Vec<&str> = jobs.iter().map(|job| job.event_id.as_str()).collect();
    let endpoints: Vec<&str> = jobs.iter().map(|job| job.webhook_endpoint_id.as_str()).collect();
    diesel::sql_query(
        "DELETE FROM webhook_jobs j \
         USING unnest($1::text[], $2::text[]) AS d(event_id, endpoint_id) \
         WHERE j.event_id = d.event_id AND j.webhook_endpoint_id = d.endpoint_id",
    )
    .bind::<Array<Text>, _>(events)
    .bind::<Array<Text>, _>(endpoints)
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

/// Marks jobs as due at a new time, with the attempts they have made (`tries`): retries after a
/// failed attempt, and jobs put back in the delayed set without one (their endpoint backed off,
/// over its share of slots or over its rate). They count as pushed until then: the relay
/// pushes them again only if they are still unsettled `requeue_after` past that time.
pub async fn reschedule_jobs(
    conn: &mut AsyncPgConnection,
    jobs: &[(&Job, DateTime<Utc>)],
) -> QueryResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let events: Vec<&str> = jobs.iter().map(|(job, _)| job.event_id.as_str()).collect();
    let endpoints: Vec<&str> =
        jobs.iter().map(|(job, _)| job.webhook_endpoint_id.as_str()).collect();
    let tries: Vec<i32> = jobs.iter().map(|(job, _)| job.tries).collect();
    let dues: Vec<DateTime<Utc>> = jobs.iter().map(|(_, due)| *due).collect();
    diesel::sql_query(
        "UPDATE webhook_jobs j SET pushed_at = d.due, tries = d.tries \
         FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[]) \
             AS d(event_id, endpoint_id, tries, due) \
         WHERE j.event_id = d.event_id AND j.webhook_endpoint_id = d.endpoint_id",
    )
    .bind::<Array<Text>, _>(events)
    .bind::<Array<Text>, _>(endpoints)
    .bind::<Array<Integer>, _>(tries)
    .bind::<Array<Timestamptz>, _>(dues)
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

/// Up to `limit` jobs already pushed to Redis, after the job `after` (ids ascending), with the
/// time they were pushed or are due: what a Redis that lost its data must be given again.
pub async fn pushed_jobs(
    conn: &mut AsyncPgConnection,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<PushedJob>> {
    diesel::sql_query(
        "SELECT id, organization_id, webhook_endpoint_id, message_id, event_id, event_type, \
             tries, pushed_at FROM webhook_jobs \
         WHERE id > $1 AND pushed_at IS NOT NULL ORDER BY id LIMIT $2",
    )
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// A job on Redis, as [`pushed_jobs`] finds it.
#[derive(Debug, QueryableByName)]
pub struct PushedJob {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(embed)]
    pub job: Job,
    #[diesel(sql_type = Timestamptz)]
    pub pushed_at: DateTime<Utc>,
}

/// Jobs waiting in the outbox (for metrics).
pub async fn outbox_size(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    webhook_jobs::table.count().get_result(conn).await
}

/// What a batch of jobs delivers, read once for the batch: their endpoints, and their events
/// with each event's message, as they are now.
#[derive(Debug, Default)]
pub struct Targets {
    endpoints: HashMap<String, WebhookEndpoint>,
    events: HashMap<String, (Event, Message)>,
}

impl Targets {
    /// The endpoint, event and message of `job`; `None` when any of them is gone (deleted since
    /// the job was made).
    pub fn of(&self, job: &Job) -> Option<(&WebhookEndpoint, &Event, &Message)> {
        let endpoint = self
            .endpoints
            .get(&job.webhook_endpoint_id)
            .filter(|endpoint| endpoint.organization_id == job.organization_id)?;
        let (event, message) = self.events.get(&job.event_id).filter(|(_, message)| {
            message.id == job.message_id && message.organization_id == job.organization_id
        })?;
        Some((endpoint, event, message))
    }
}

/// Reads the [`Targets`] of `jobs`: two statements, however many jobs. Rows are found by id
/// and matched to each job's organization by [`Targets::of`].
pub async fn load_targets(conn: &mut AsyncPgConnection, jobs: &[&Job]) -> QueryResult<Targets> {
    use crate::db::schema::webhook_endpoints as w;
    let mut endpoint_ids: Vec<&str> =
        jobs.iter().map(|job| job.webhook_endpoint_id.as_str()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let mut event_ids: Vec<&str> = jobs.iter().map(|job| job.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let endpoints: Vec<WebhookEndpoint> = w::table
        .filter(w::id.eq_any(&endpoint_ids))
        .select(WebhookEndpoint::as_select())
        .load(conn)
        .await?;
    let events: Vec<(Event, Message)> = message_events::table
        .inner_join(messages::table.on(messages::id.eq(message_events::message_id)))
        .filter(message_events::id.eq_any(&event_ids))
        .select((Event::as_select(), Message::as_select()))
        .load(conn)
        .await?;
    Ok(Targets {
        endpoints: endpoints.into_iter().map(|e| (e.id.clone(), e)).collect(),
        events: events.into_iter().map(|(e, m)| (e.id.clone(), (e, m))).collect(),
    })
}

/// A delivery attempt, as listed by the API.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    pub id: String,
    pub organization_id: String,
    pub webhook_endpoint_id: String,
    pub message_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub succeeded: bool,
    pub status_code: Option<i32>,
    pub duration_ms: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An attempt to record; its number is counted in Postgres (the event's attempts at this
/// endpoint so far, plus one), so replays and duplicates number on.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub job: Job,
    pub succeeded: bool,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What an attempt does to its endpoint besides being logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEffect {
    /// It succeeded: the endpoint's failure streak ends.
    Succeeded,
    /// It failed: the streak starts (or goes on); the endpoint is disabled once the streak
    /// began at or before `disable_if_failing_since`.
    Failed { disable_if_failing_since: DateTime<Utc> },
    /// The receiver answered 410 Gone: the endpoint is disabled at once.
    Gone,
}

/// Logs a batch of attempts in one statement. Call it in a transaction: attempts of one event
/// at one endpoint can be recorded concurrently (a replay beside a retry), and the
/// transaction-long locks taken here (in one order, so two batches cannot deadlock) number
/// them one batch at a time, keeping the numbers distinct.
pub async fn insert_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[&NewDelivery],
) -> QueryResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&NewDelivery) -> &str| -> Vec<&str> { attempts.iter().map(|a| f(a)).collect() };
    let endpoints = column(|a| &a.job.webhook_endpoint_id);
    let events = column(|a| &a.job.event_id);
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(k) FROM ( \
             SELECT DISTINCT hashtextextended('webhook:' || endpoint_id || ':' || event_id, 0) AS k \
             FROM unnest($1::text[], $2::text[]) AS t(endpoint_id, event_id) ORDER BY k) locks",
    )
    .bind::<Array<Text>, _>(&endpoints)
    .bind::<Array<Text>, _>(&events)
    .cached()
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO webhook_deliveries (id, organization_id, webhook_endpoint_id, message_id, \
             event_id, event_type, attempt, succeeded, status_code, duration_ms, response_body, \
             error, created_at) \
         SELECT d.id, d.org, d.endpoint_id, d.message_id, d.event_id, d.event_type, \
             COALESCE((SELECT max(w.attempt) FROM webhook_deliveries w \
                 WHERE w.event_id = d.event_id AND w.webhook_endpoint_id = d.endpoint_id), 0) \
                 + row_number() OVER (PARTITION BY d.event_id, d.endpoint_id ORDER BY d.n), \
             d.succeeded, d.status_code, d.duration_ms, d.response_body, d.error, d.created_at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::bool[], $8::int[], $9::int[], $10::text[], $11::text[], $12::timestamptz[]) \
             WITH ORDINALITY AS d(id, org, endpoint_id, message_id, event_id, event_type, \
                 succeeded, status_code, duration_ms, response_body, error, created_at, n)",
    )
    .bind::<Array<Text>, _>(column(|a| &a.id))
    .bind::<Array<Text>, _>(column(|a| &a.job.organization_id))
    .bind::<Array<Text>, _>(&endpoints)
    .bind::<Array<Text>, _>(column(|a| &a.job.message_id))
    .bind::<Array<Text>, _>(&events)
    .bind::<Array<Text>, _>(column(|a| &a.job.event_type))
    .bind::<Array<Bool>, _>(attempts.iter().map(|a| a.succeeded).collect::<Vec<_>>())
    .bind::<Array<Nullable<Integer>>, _>(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        attempts.iter().map(|a| a.response_body.as_deref()).collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(attempts.iter().map(|a| a.created_at).collect::<Vec<_>>())
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

/// Ends the failure streak of each of `endpoint_ids` that has one (their latest attempt
/// succeeded); writes nothing for the others.
pub async fn clear_failures(
    conn: &mut AsyncPgConnection,
    endpoint_ids: &[&str],
) -> QueryResult<()> {
    use crate::db::schema::webhook_endpoints::dsl as w;
    if endpoint_ids.is_empty() {
        return Ok(());
    }
    diesel::update(w::webhook_endpoints.filter(w::id.eq_any(endpoint_ids)))
        .filter(w::failing_since.is_not_null())
        .set(w::failing_since.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Applies a failed attempt's effect (made at `now`) to the endpoint of `job`; returns the
/// reason the endpoint was disabled, if this disabled it.
pub async fn apply_effect(
    conn: &mut AsyncPgConnection,
    job: &Job,
    effect: EndpointEffect,
    now: DateTime<Utc>,
) -> QueryResult<Option<String>> {
    use crate::db::schema::webhook_endpoints::dsl as w;
    let endpoint = w::webhook_endpoints
        .filter(w::organization_id.eq(&job.organization_id))
        .filter(w::id.eq(&job.webhook_endpoint_id));
    let disable = |reason: String| {
        diesel::update(endpoint.filter(w::is_active)).set((
            w::is_active.eq(false),
            w::disabled_reason.eq(Some(reason)),
            w::disabled_at.eq(Some(now)),
            w::updated_at.eq(now),
        ))
    };
    match effect {
        EndpointEffect::Succeeded => {
            diesel::update(endpoint.filter(w::failing_since.is_not_null()))
                .set(w::failing_since.eq(None::<DateTime<Utc>>))
                .execute(conn)
                .await?;
            Ok(None)
        }
        EndpointEffect::Gone => {
            let reason = "the endpoint answered 410 Gone".to_owned();
            let changed = disable(reason.clone()).execute(conn).await?;
            Ok((changed > 0).then_some(reason))
        }
        EndpointEffect::Failed { disable_if_failing_since } => {
            diesel::update(endpoint.filter(w::failing_since.is_null()))
                .set(w::failing_since.eq(Some(now)))
                .execute(conn)
                .await?;
            let since: Option<DateTime<Utc>> =
                endpoint.select(w::failing_since).first(conn).await.optional()?.flatten();
            match since {
                Some(since) if since <= disable_if_failing_since => {
                    let reason = format!(
                        "every delivery attempt failed since {}",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    let changed = disable(reason.clone()).execute(conn).await?;
                    Ok((changed > 0).then_some(reason))
                }
                _ => Ok(None),
            }
        }
    }
}

/// The endpoint's attempts, newest first, after `after`.
pub async fn list_deliveries(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    endpoint_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<Delivery>> {
    use webhook_deliveries::dsl as d;
    let query = d::webhook_deliveries
        .filter(d::organization_id.eq(organization_id))
        .filter(d::webhook_endpoint_id.eq(endpoint_id))
        .select(Delivery::as_select())
        .order((d::created_at.desc(), d::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, d::created_at, d::id, after).load(conn).await
}

/// The latest attempt at each of `endpoint_ids` that has one (the dashboard's list of
/// endpoints): one probe of the endpoint's list index each, however long its log.
pub async fn latest_deliveries(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    endpoint_ids: &[String],
) -> QueryResult<Vec<Delivery>> {
    diesel::sql_query(
        "SELECT d.id, d.organization_id, d.webhook_endpoint_id, d.message_id, d.event_id, \
             d.event_type, d.attempt, d.succeeded, d.status_code, d.duration_ms, \
             d.response_body, d.error, d.created_at \
         FROM unnest($2::text[]) AS e(id) CROSS JOIN LATERAL ( \
             SELECT * FROM webhook_deliveries w \
             WHERE w.webhook_endpoint_id = e.id AND w.organization_id = $1 \
             ORDER BY w.created_at DESC, w.id DESC LIMIT 1) d",
    )
    .bind::<Text, _>(organization_id)
    .bind::<Array<Text>, _>(endpoint_ids)
    .load(conn)
    .await
}

pub async fn find_delivery(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    endpoint_id: &str,
    id: &str,
) -> QueryResult<Option<Delivery>> {
    use webhook_deliveries::dsl as d;
    d::webhook_deliveries
        .filter(d::organization_id.eq(organization_id))
        .filter(d::webhook_endpoint_id.eq(endpoint_id))
        .filter(d::id.eq(id))
        .select(Delivery::as_select())
        .first(conn)
        .await
        .optional()
}

/// Puts one job in the outbox (a delivery retried through the API).
pub async fn insert_job(conn: &mut AsyncPgConnection, job: &Job) -> QueryResult<()> {
    use webhook_jobs::dsl as j;
    diesel::insert_into(j::webhook_jobs)
        .values((
            j::organization_id.eq(&job.organization_id),
            j::webhook_endpoint_id.eq(&job.webhook_endpoint_id),
            j::message_id.eq(&job.message_id),
            j::event_id.eq(&job.event_id),
            j::event_type.eq(&job.event_type),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Deletes up to `limit` of the endpoint's delivery attempts made before `before` (the
/// retention duty), oldest first, through the endpoint's list index; returns how many.
pub async fn delete_deliveries_before(
    conn: &mut AsyncPgConnection,
    endpoint_id: &str,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE id = ANY (ARRAY (
             SELECT id FROM webhook_deliveries
             WHERE webhook_endpoint_id = $1 AND created_at < $2
             ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED))",
    )
    .bind::<Text, _>(endpoint_id)
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// The ids of every webhook endpoint, active or not (the retention duty's rounds).
pub async fn endpoint_ids(conn: &mut AsyncPgConnection) -> QueryResult<Vec<String>> {
    use crate::db::schema::webhook_endpoints as w;
    w::table.select(w::id).order(w::id).load(conn).await
}

/// How far back before `since` replay looks for messages: a message's events all happen
/// within about this long after it was created (a send is scheduled at most 30 days ahead, and
/// its retries and receipts follow within a day or two), and bounding the scan by creation time
/// lets it use the project's message index.
pub const REPLAY_MESSAGE_LOOKBACK: chrono::Duration = chrono::Duration::days(32);

/// Queues every event of the endpoint's project that happened in `[since, until)` and has one of
/// `event_types`, at most `limit` of them, oldest first; returns how many were queued.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    endpoint: &WebhookEndpoint,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    event_types: &[String],
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO webhook_jobs (organization_id, webhook_endpoint_id, message_id, event_id, \
             event_type) \
         SELECT $1, $2, e.message_id, e.id, 'message.' || e.status \
         FROM messages m JOIN message_events e ON e.message_id = m.id \
         WHERE m.project_id = $3 AND m.organization_id = $1 \
           AND m.created_at >= $4 AND m.created_at < $6 \
           AND e.created_at >= $5 AND e.created_at < $6 \
           AND ('message.' || e.status) = ANY ($7) \
         ORDER BY e.created_at, e.id \
         LIMIT $8",
    )
    .bind::<Text, _>(&endpoint.organization_id)
    .bind::<Text, _>(&endpoint.id)
    .bind::<Text, _>(&endpoint.project_id)
    .bind::<Timestamptz, _>(since - REPLAY_MESSAGE_LOOKBACK)
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .bind::<Array<Text>, _>(event_types)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
