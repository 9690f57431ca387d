//! Messages and their status history (`message_events`).
//!
//! Every status change is a row update and an event insert in one transaction, so the history
//! always explains the current status. Writers on the hot path (ingestion, workers) write many
//! messages per statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::CacheStatement;
use crate::db::schema::{message_events, messages, projects};
use crate::domain::status::{CANCELED, FAILED, FINAL, QUEUED};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub api_key_id: Option<String>,
    pub channel: String,
    pub recipient: String,
    pub requested_provider: Option<String>,
    pub provider_credential_id: Option<String>,
    pub provider_type: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub attempts: i32,
    pub content: serde_json::Value,
    pub metadata: serde_json::Value,
    pub provider_message_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Since when its deliveries have been throttled without a break (they spend no attempt,
    /// so this is what bounds them: `delivery.max_throttled_for`).
    pub throttled_since: Option<DateTime<Utc>>,
    /// The template and version its content was rendered from, if any.
    pub template_id: Option<String>,
    pub template_version: Option<i32>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage {
    pub id: String,
    pub organization_id: String,
    pub project_id: String,
    pub api_key_id: Option<String>,
    pub channel: String,
    pub recipient: String,
    pub requested_provider: Option<String>,
    pub status: &'static str,
    pub content: serde_json::Value,
    pub metadata: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub template_id: Option<String>,
    pub template_version: Option<i32>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = message_events, check_for_backend(diesel::pg::Pg))]
pub struct Event {
    pub id: String,
    pub message_id: String,
    pub status: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn new(
        message_id: &str,
        status: &str,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Event {
        Event {
            id: crate::domain::ids::new_id(crate::domain::ids::EVENT),
            message_id: message_id.to_owned(),
            status: status.to_owned(),
            details,
            created_at: at,
        }
    }
}

/// Inserts messages and their events in one statement: the rows travel as one array per
/// column, so the statement text (and its plan, prepared once per connection) is the same for
/// any number of rows, and it costs one round trip. Being one statement, it is atomic even
/// outside a transaction.
pub async fn insert_all<M, E>(
    conn: &mut AsyncPgConnection,
    new: &[M],
    events: &[E],
) -> QueryResult<()>
where
    M: std::borrow::Borrow<NewMessage>,
    E: std::borrow::Borrow<Event>,
{
    use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Timestamptz};
    if new.is_empty() && events.is_empty() {
        return Ok(());
    }
    let new: Vec<&NewMessage> = new.iter().map(|m| m.borrow()).collect();
    let events: Vec<&Event> = events.iter().map(|e| e.borrow()).collect();
    let text = |f: fn(&NewMessage) -> &str| new.iter().map(|m| f(m)).collect::<Vec<&str>>();
    let optional =
        |f: fn(&NewMessage) -> Option<&str>| new.iter().map(|m| f(m)).collect::<Vec<_>>();
    diesel::sql_query(
        "WITH m AS (
             INSERT INTO messages (id, organization_id, project_id, api_key_id, channel, recipient,
                 requested_provider, status, content, metadata, idempotency_key, send_at,
                 created_at, updated_at, template_id, template_version, due_at)
             SELECT *, CASE WHEN status IN ('received', 'queued', 'processing', 'retrying')
                 THEN COALESCE(send_at, created_at) END
             FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $20, $21)
                 AS n(id, organization_id, project_id, api_key_id, channel, recipient,
                 requested_provider, status, content, metadata, idempotency_key, send_at,
                 created_at, updated_at, template_id, template_version)
         )
         INSERT INTO message_events (id, message_id, status, details, created_at)
         SELECT * FROM unnest($15, $16, $17, $18, $19)",
    )
    .bind::<Array<Text>, _>(text(|m| &m.id))
    .bind::<Array<Text>, _>(text(|m| &m.organization_id))
    .bind::<Array<Text>, _>(text(|m| &m.project_id))
    .bind::<Array<Nullable<Text>>, _>(optional(|m| m.api_key_id.as_deref()))
    .bind::<Array<Text>, _>(text(|m| &m.channel))
    .bind::<Array<Text>, _>(text(|m| &m.recipient))
    .bind::<Array<Nullable<Text>>, _>(optional(|m| m.requested_provider.as_deref()))
    .bind::<Array<Text>, _>(text(|m| m.status))
    .bind::<Array<Jsonb>, _>(new.iter().map(|m| &m.content).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(new.iter().map(|m| &m.metadata).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(optional(|m| m.idempotency_key.as_deref()))
    .bind::<Array<Nullable<Timestamptz>>, _>(new.iter().map(|m| m.send_at).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(new.iter().map(|m| m.created_at).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(new.iter().map(|m| m.updated_at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(events.iter().map(|e| &e.details).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(optional(|m| m.template_id.as_deref()))
    .bind::<Array<Nullable<Integer>>, _>(new.iter().map(|m| m.template_version).collect::<Vec<_>>())
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

/// Messages deleted per statement by [`purge_project`].
pub const PURGE_BATCH: i64 = 2_000;

/// Deletes the project's messages (their events and search rows with them, by trigger), a
/// batch per statement, each committed on its own. Deleting the project row
/// would delete them too, all in its one transaction: minutes for a large project, holding
/// every row it deleted (and the project's) locked until the end, so that deliveries claiming
/// those messages, and inserts naming the project, waited for all of it. Run before the
/// project's deletion, this leaves that transaction only what arrived meanwhile.
pub async fn purge_project(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
) -> QueryResult<()> {
    use diesel::sql_types::{BigInt, Text};
    loop {
        let deleted = diesel::sql_query(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE project_id = $1 AND organization_id = $2 LIMIT $3)",
        )
        .bind::<Text, _>(project_id)
        .bind::<Text, _>(organization_id)
        .bind::<BigInt, _>(PURGE_BATCH)
        .execute(conn)
        .await?;
        if (deleted as i64) < PURGE_BATCH {
            return Ok(());
        }
    }
}

/// Deletes up to `limit` of the project's messages that are final and were created and last
/// changed before `before` (the retention duty), oldest first, with their events, search rows
/// (by trigger) and webhook attempts (by foreign key); returns how many.
///
/// Both times count: a message scheduled weeks ahead becomes final long after it was created,
/// and is kept for the whole period after that. The scan is the project's list index, by
/// creation time (no index reads status or updated_at: migration 000014). Rows another
/// transaction holds are skipped, and a row that changed meanwhile is checked again before it
/// is taken (a retry made it `queued`: kept).
pub async fn delete_final_before(
    conn: &mut AsyncPgConnection,
    project_id: &str,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
    // = ANY (ARRAY (...)), not IN (...): the planner could join a large IN list by scanning
    // all of messages; an array is looked up in the primary key
    diesel::sql_query(
        "DELETE FROM messages WHERE id = ANY (ARRAY (
             SELECT id FROM messages
             WHERE project_id = $1 AND created_at < $2 AND updated_at < $2
               AND final_status = ANY ($3)
             ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED))",
    )
    .bind::<Text, _>(project_id)
    .bind::<Timestamptz, _>(before)
    .bind::<Array<Text>, _>(FINAL)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// Arbitrary but fixed: identifies the search-index merge among advisory locks.
const SEARCH_MERGE_LOCK_ID: i64 = 0x7265_6c61_7969_7402;

/// Merges the entries waiting in the pending lists of message_search's trigram indexes into
/// the indexes proper, unless another process is doing so (then None). Returns how many
/// pending pages were merged.
///
/// Merging is most of what a search row costs, and its cost per row falls as merges grow (a
/// merge rewrites each posting list it touches once, however many entries it adds): merged
/// every thousand messages, a search row cost Postgres as much as all the message's other
/// writes; every ten thousand, half as much. Left to the inserts, a merge runs inside the
/// commit that crosses the pending list's limit and stalls it; this runs beside them.
pub async fn merge_search_pending(conn: &mut AsyncPgConnection) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Merged {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        pages: Option<i64>,
    }
    // CASE, not AND: only CASE promises to evaluate the lock first
    diesel::sql_query(
        "SELECT CASE WHEN pg_try_advisory_xact_lock($1)
             THEN gin_clean_pending_list('message_search_recipient_trgm_idx'::regclass)
                + gin_clean_pending_list('message_search_subject_trgm_idx'::regclass)
             END AS pages",
    )
    .bind::<diesel::sql_types::BigInt, _>(SEARCH_MERGE_LOCK_ID)
    .get_result::<Merged>(conn)
    .await
    .map(|m| m.pages)
}

/// A message of the organization, or None (another tenant's id is simply not found).
pub async fn find(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<Option<Message>> {
    messages::table
        .filter(messages::organization_id.eq(organization_id))
        .filter(messages::id.eq(id))
        .select(Message::as_select())
        .first(conn)
        .await
        .optional()
}

/// A message's history, oldest first.
pub async fn events(conn: &mut AsyncPgConnection, message_id: &str) -> QueryResult<Vec<Event>> {
    message_events::table
        .filter(message_events::message_id.eq(message_id))
        .order((message_events::created_at.asc(), message_events::id.asc()))
        .select(Event::as_select())
        .load(conn)
        .await
}

// ---------------------------------------------------------------------------------------------
// The Messages API: the message log (filters, search, keyset pages) and the operator actions
// (retry, cancel). Kept apart from the hot-path writers above.
// ---------------------------------------------------------------------------------------------

use diesel::dsl::sql;
use diesel::sql_types::{Bool, Text};
use diesel_async::AsyncConnection;

use crate::db::Cursor;
use crate::db::schema::provider_credentials;

/// The longest search a message log takes, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// What a message list asks for; an empty list or `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub statuses: Vec<String>,
    pub channels: Vec<String>,
    /// Trimmed, not empty: an exact message id or provider message id, or a case-insensitive
    /// substring of the recipient or of the email subject.
    pub search: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// A message with the slug and type of the credential that handled its last attempt (None
/// when none has yet, or the credential was deleted since).
pub type WithProvider = (Message, Option<(String, String)>);

/// `text` as a LIKE pattern matching it anywhere, its wildcards and escape character taken
/// literally (`\` is LIKE's default escape character).
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A message of the organization with its provider, or None.
pub async fn find_with_provider(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
) -> QueryResult<Option<WithProvider>> {
    messages::table
        .left_join(provider_credentials::table)
        .filter(messages::organization_id.eq(organization_id))
        .filter(messages::id.eq(id))
        .select((
            Message::as_select(),
            (provider_credentials::slug, provider_credentials::provider_type).nullable(),
        ))
        .first(conn)
        .await
        .optional()
}

/// A page of the project's messages matching `filter`, newest first, after `after`.
///
/// A search runs as two queries whose pages are merged: exact matches of the message id or
/// provider message id, and substring matches of the recipient or subject. One query ORing
/// them would leave Postgres a single plan for every term, and none is good for all: a rare
/// term wants the trigram indexes of message_search, a common one the project's list index,
/// stopping at the page's end. The substring test alone, as an EXISTS, lets it choose.
pub async fn list_log(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    project_id: &str,
    filter: &LogFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<WithProvider>> {
    let page = || {
        let mut query = messages::table
            .left_join(provider_credentials::table)
            .filter(messages::organization_id.eq(organization_id))
            .filter(messages::project_id.eq(project_id))
            .select((
                Message::as_select(),
                (provider_credentials::slug, provider_credentials::provider_type).nullable(),
            ))
            .order((messages::created_at.desc(), messages::id.desc()))
            .limit(limit)
            .into_boxed();
        if !filter.statuses.is_empty() {
            query = query.filter(messages::status.eq_any(&filter.statuses));
        }
        // the same test, in the terms of the index of final statuses (final_status is derived
        // from status: migration 000015); one
        // status by equality, so that the index also gives the order
        match filter.statuses.as_slice() {
            [one] if FINAL.contains(&one.as_str()) => {
                query = query.filter(messages::final_status.eq(one));
            }
            many if !many.is_empty() && many.iter().all(|s| FINAL.contains(&s.as_str())) => {
                query = query.filter(messages::final_status.eq_any(many));
            }
            // statuses not final: in terms of the index of what is due (due_at is set exactly
            // while a message is not final: migration 000014). Such messages are few, and
            // without it the only way to them was to walk the whole log: 300 ms for a status
            // that had fewer than a page of messages among a million (relayit-bench)
            many if !many.is_empty() && many.iter().all(|s| !FINAL.contains(&s.as_str())) => {
                query = query.filter(messages::due_at.is_not_null());
            }
            _ => {}
        }
        if !filter.channels.is_empty() {
            query = query.filter(messages::channel.eq_any(&filter.channels));
        }
        if let Some(since) = filter.since {
            query = query.filter(messages::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(messages::created_at.lt(until));
        }
        after_cursor!(query, messages::created_at, messages::id, after)
    };
    let Some(term) = &filter.search else {
        return page().load(conn).await;
    };
    let exact: Vec<WithProvider> = page()
        .filter(
            messages::id
                .eq(term.clone())
                .or(messages::provider_message_id.eq(term.clone()).assume_not_null()),
        )
        .load(conn)
        .await?;
    // message_search holds the lowercased recipient and subject, under trigram indexes
    let pattern = contains_pattern(term);
    let containing = sql::<Bool>(
        "EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = messages.id
             AND (s.recipient LIKE lower(",
    )
    .bind::<Text, _>(pattern.clone())
    .sql(") OR s.subject LIKE lower(")
    .bind::<Text, _>(pattern)
    .sql(")))");
    let mut rows: Vec<WithProvider> = page().filter(containing).load(conn).await?;
    for row in exact {
        if !rows.iter().any(|(m, _)| m.id == row.0.id) {
            rows.push(row);
        }
    }
    rows.sort_by(|(a, _), (b, _)| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(rows)
}

/// Puts a failed message back in the queue: `failed` -> `queued` with attempts reset and the
/// reason cleared, and the `queued` event, in one transaction. None when the message is not
/// (or no longer) failed. The caller enqueues it after the commit.
pub async fn requeue_failed(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
    details: serde_json::Value,
) -> QueryResult<Option<Message>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let now = Utc::now();
        // Conditional on the status, so two concurrent retries requeue it once.
        let updated = diesel::update(messages::table)
            .filter(messages::organization_id.eq(organization_id))
            .filter(messages::id.eq(id))
            .filter(messages::status.eq(FAILED))
            .set((
                messages::status.eq(QUEUED),
                messages::status_reason.eq(None::<String>),
                messages::attempts.eq(0),
                messages::next_attempt_at.eq(None::<DateTime<Utc>>),
                messages::updated_at.eq(now),
                messages::due_at.eq(now),
            ))
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if updated.is_some() {
            let event = Event::new(id, QUEUED, details, now);
            diesel::insert_into(message_events::table).values(&event).execute(conn).await?;
        }
        Ok(updated)
    })
    .await
}

/// Cancels a message not yet queued: `received` -> `canceled` and its event, in one
/// transaction. None when the message is not (or no longer) `received`: the conditional UPDATE
/// is what makes a race with the worker that queues it at its `sendAt` safe.
pub async fn cancel_received(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    id: &str,
    reason: &str,
    details: serde_json::Value,
) -> QueryResult<Option<Message>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let now = Utc::now();
        let updated = diesel::update(messages::table)
            .filter(messages::organization_id.eq(organization_id))
            .filter(messages::id.eq(id))
            // a CASE, so that only the primary key can serve this: see STATUS_BY_ID in
            // db::delivery (a plain test let the planner scan the whole in-flight index)
            .filter(sql::<Bool>("CASE WHEN messages.status = 'received' THEN true ELSE false END"))
            .set((
                messages::status.eq(CANCELED),
                messages::status_reason.eq(reason),
                messages::updated_at.eq(now),
                messages::due_at.eq(None::<DateTime<Utc>>),
            ))
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if updated.is_some() {
            let event = Event::new(id, CANCELED, details, now);
            diesel::insert_into(message_events::table).values(&event).execute(conn).await?;
        }
        Ok(updated)
    })
    .await
}

#[cfg(test)]
mod log_tests {
    use super::contains_pattern;

    #[test]
    fn like_wildcards_are_taken_literally() {
        assert_eq!(contains_pattern("bob"), "%bob%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}

/// Messages of one hour (UTC), status and channel, for the dashboard's overview.
#[derive(Debug, Clone, QueryableByName)]
pub struct HourCount {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub hour: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub channel: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub count: i64,
}

/// The organization's messages created since `since`, counted by hour, status and channel.
/// Through its projects, so each project's index on its messages' creation time serves.
pub async fn counts_by_hour(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    since: DateTime<Utc>,
) -> QueryResult<Vec<HourCount>> {
    diesel::sql_query(
        "SELECT date_trunc('hour', created_at, 'UTC') AS hour, status, channel, count(*) AS count
         FROM messages
         WHERE project_id IN (SELECT id FROM projects WHERE organization_id = $1)
           AND created_at >= $2
         GROUP BY 1, 2, 3",
    )
    .bind::<diesel::sql_types::Text, _>(organization_id)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .load(conn)
    .await
}

/// How many of the organization's messages wait for a delivery attempt (`queued`, or
/// `retrying`), and since when the oldest of them was accepted.
#[derive(Debug, Clone, QueryableByName)]
pub struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub count: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub oldest: Option<DateTime<Utc>>,
}

pub async fn waiting(conn: &mut AsyncPgConnection, organization_id: &str) -> QueryResult<Waiting> {
    diesel::sql_query(
        "SELECT count(*) AS count, min(created_at) AS oldest
         FROM messages
         WHERE project_id IN (SELECT id FROM projects WHERE organization_id = $1)
           AND status IN ('queued', 'retrying')",
    )
    .bind::<diesel::sql_types::Text, _>(organization_id)
    .get_result(conn)
    .await
}

/// The organization's `limit` latest failed messages.
pub async fn recent_failures(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    limit: i64,
) -> QueryResult<Vec<Message>> {
    // through its projects, for the index on (project, status, creation time)
    let projects =
        projects::table.filter(projects::organization_id.eq(organization_id)).select(projects::id);
    messages::table
        .filter(messages::project_id.eq_any(projects))
        .filter(messages::status.eq(FAILED))
        .order((messages::created_at.desc(), messages::id.desc()))
        .limit(limit)
        .select(Message::as_select())
        .load(conn)
        .await
}

#[cfg(test)]
impl Message {
    /// An email message in `processing`, for unit tests.
    pub fn sample() -> Message {
        let now = chrono::Utc::now();
        Message {
            id: "msg_1".into(),
            organization_id: "org_1".into(),
            project_id: "prj_1".into(),
            api_key_id: None,
            channel: "email".into(),
            recipient: "a@example.com".into(),
            requested_provider: None,
            provider_credential_id: None,
            provider_type: None,
            status: "processing".into(),
            status_reason: None,
            attempts: 0,
            content: serde_json::json!({}),
            metadata: serde_json::json!({}),
            provider_message_id: None,
            idempotency_key: None,
            send_at: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
            throttled_since: None,
            template_id: None,
            template_version: None,
        }
    }
}
