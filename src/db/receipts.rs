//! Delivery receipts: the status changes a provider reports after it accepted a message.
//!
//! A receipt names the message by its provider message id; it is looked up within the
//! organization of the credential the receipt came in for, and only among the messages that
//! credential sent, so a receipt can never touch another tenant's message. The change is a
//! conditional UPDATE on the statuses it may leave, so a repeated receipt changes nothing.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::messages::Event;
use crate::db::schema::{message_events, messages, provider_credentials};

/// The organization and provider type of a credential, by id alone (receipts arrive without
/// any other authentication than the provider's signature).
pub async fn credential_owner(
    conn: &mut AsyncPgConnection,
    credential_id: &str,
) -> QueryResult<Option<(String, String)>> {
    provider_credentials::table
        .filter(provider_credentials::id.eq(credential_id))
        .select((provider_credentials::organization_id, provider_credentials::provider_type))
        .first(conn)
        .await
        .optional()
}

/// What a receipt asks of one message.
pub struct Receipt<'a> {
    pub organization_id: &'a str,
    pub credential_id: &'a str,
    pub provider_message_id: &'a str,
    pub from: &'a [&'a str],
    pub to: &'a str,
    pub reason: Option<&'a str>,
    pub details: serde_json::Value,
}

/// Applies `receipt`: the message moves to `to`, with its event, in one transaction. Returns
/// the message's id, or None when no message of the credential with that provider message id
/// is in one of the `from` statuses (unknown, or already past it).
pub async fn apply(
    conn: &mut AsyncPgConnection,
    receipt: Receipt<'_>,
) -> QueryResult<Option<String>> {
    conn.transaction(async |conn| {
        let now = Utc::now();
        let id: Option<String> = diesel::update(messages::table)
            .filter(messages::organization_id.eq(receipt.organization_id))
            .filter(messages::provider_credential_id.eq(receipt.credential_id))
            .filter(messages::provider_message_id.eq(receipt.provider_message_id))
            .filter(messages::status.eq_any(receipt.from))
            .set((
                messages::status.eq(receipt.to),
                messages::status_reason.eq(receipt.reason),
                messages::updated_at.eq(now),
            ))
            .returning(messages::id)
            .get_result(conn)
            .await
            .optional()?;
        if let Some(id) = &id {
            let event = Event::new(id, receipt.to, receipt.details, now);
            diesel::insert_into(message_events::table).values(&event).execute(conn).await?;
        }
        Ok(id)
    })
    .await
}
