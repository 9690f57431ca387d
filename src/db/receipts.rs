//! Delivery receipts: the status changes a provider reports after it accepted a message (SES
//! events over SNS, WhatsApp status callbacks).
//!
//! A receipt names the message by its provider message id; it is looked up only within the
//! organization of the credential the receipt came in for, and the receipt's channel, so a
//! receipt can never touch another tenant's message. The change is a conditional UPDATE on the
//! statuses it may leave, so a repeated or late receipt changes nothing: receipts can be
//! applied any number of times.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::messages::Event;
use crate::db::schema::{message_events, messages};

/// What a receipt asks of the messages it names.
pub struct Receipt<'a> {
    pub organization_id: &'a str,
    pub channel: &'a str,
    pub provider_message_id: &'a str,
    /// The statuses a message may be in for the change to apply.
    pub from: &'a [&'a str],
    pub to: &'a str,
    pub reason: Option<&'a str>,
    /// The event's details.
    pub details: serde_json::Value,
}

/// Applies `receipt`: its messages move to `to`, each with its event, in one transaction.
/// Returns the ids of the messages it moved: none for an unknown provider message id, or a
/// message already past `from`.
pub async fn apply(conn: &mut AsyncPgConnection, receipt: Receipt<'_>) -> QueryResult<Vec<String>> {
    conn.transaction(async |conn| {
        let now = Utc::now();
        // the UPDATE locks the rows, so their events are written in the transaction that
        // locks their message (the hot path migration's rule for message_events)
        let moved: Vec<String> = diesel::update(messages::table)
            .filter(messages::organization_id.eq(receipt.organization_id))
            .filter(messages::channel.eq(receipt.channel))
            .filter(messages::provider_message_id.eq(receipt.provider_message_id))
            .filter(messages::status.eq_any(receipt.from))
            .set((
                messages::status.eq(receipt.to),
                messages::status_reason.eq(receipt.reason),
                messages::updated_at.eq(now),
            ))
            .returning(messages::id)
            .get_results(conn)
            .await?;
        let events: Vec<Event> = moved
            .iter()
            .map(|id| Event::new(id, receipt.to, receipt.details.clone(), now))
            .collect();
        diesel::insert_into(message_events::table).values(&events).execute(conn).await?;
        Ok(moved)
    })
    .await
}
