//! Messages and their status history (`message_events`).
//!
//! Every status change is a row update and an event insert in one transaction, so the history
//! always explains the current status. Writers on the hot path (ingestion, workers) write many
//! messages per statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{message_events, messages};

/// The statuses of the life cycle (design.md).
pub const RECEIVED: &str = "received";
pub const QUEUED: &str = "queued";
pub const PROCESSING: &str = "processing";
pub const RETRYING: &str = "retrying";
pub const SENT: &str = "sent";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const CANCELED: &str = "canceled";

pub const STATUSES: &[&str] =
    &[RECEIVED, QUEUED, PROCESSING, RETRYING, SENT, DELIVERED, FAILED, CANCELED];
pub const CHANNELS: &[&str] = &["email", "sms", "whatsapp", "discord"];

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
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
            id: crate::ids::new_id(crate::ids::EVENT),
            message_id: message_id.to_owned(),
            status: status.to_owned(),
            details,
            created_at: at,
        }
    }
}

/// Inserts messages and their first events; one statement each, for any number of rows.
pub async fn insert_all(
    conn: &mut AsyncPgConnection,
    new: &[NewMessage],
    events: &[Event],
) -> QueryResult<()> {
    // Postgres caps a statement at 65535 bind parameters; messages bind 14 each.
    for chunk in new.chunks(4000) {
        diesel::insert_into(messages::table).values(chunk).execute(conn).await?;
    }
    for chunk in events.chunks(10_000) {
        diesel::insert_into(message_events::table).values(chunk).execute(conn).await?;
    }
    Ok(())
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
