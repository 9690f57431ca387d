//! Delivery receipts: the status changes a provider reports after it accepted a message (SES
//! events over SNS, WhatsApp status callbacks).
//!
//! A receipt names the message by its provider message id; it is looked up only within the
//! organization of the credential the receipt came in for, and the receipt's channel, so a
//! receipt can never touch another tenant's message. A receipt that names its credential (SES:
//! each credential has its own topics) moves only the messages that credential sent, not those
//! of the organization's other credentials. WhatsApp's do not: Meta calls one URL per app with
//! the statuses of all its numbers, which may be several credentials; the app secret that signs
//! them is the proof. The change is a conditional UPDATE on the
//! statuses it may leave, so a repeated or late receipt changes nothing: receipts can be
//! applied any number of times.
//!
//! A receipt can also come early: the provider reports a message delivered while the worker's
//! write of `sent`, which stores the provider message id, has not committed yet. Dropping it
//! would leave the message `sent` for good, so a receipt that names no message is held
//! (`held_receipts`, migration 000013) and the workers' sweeper applies it once the message
//! carries that id ([`apply_held`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::messages::Event;
use crate::db::schema::{held_receipts, message_events, messages};
use crate::db::suppressions::{self, NewSuppression};
use crate::domain::channel::Channel;
use crate::domain::ids;
use crate::domain::suppression::{Reason, address_key};

/// What a receipt asks of the messages it names.
pub struct Receipt<'a> {
    pub organization_id: &'a str,
    pub channel: &'a str,
    /// The credential whose messages it may move (the one that sent them); `None`: any of the
    /// organization's.
    pub credential_id: Option<&'a str>,
    pub provider_message_id: &'a str,
    /// The statuses a message may be in for the change to apply.
    pub from: &'a [&'a str],
    pub to: &'a str,
    pub reason: Option<&'a str>,
    /// The event's details.
    pub details: serde_json::Value,
    /// Adds the recipients to their project's suppression list, for this reason, when the
    /// receipt moves their message: those `details.recipients` names (SES lists the bounced
    /// or complaining ones), else the message's own.
    pub suppress: Option<Reason>,
}

/// What became of a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// These messages moved.
    Moved(Vec<String>),
    /// Its messages are already past the receipt's `from` (a repeated or late receipt).
    Ignored,
    /// It names no message yet: kept for when one carries its provider message id.
    Held,
}

/// Applies `receipt`: its messages move to `to`, each with its event, in one transaction; or,
/// when no message carries its provider message id yet, it is held for [`apply_held`].
pub async fn apply(conn: &mut AsyncPgConnection, receipt: Receipt<'_>) -> QueryResult<Applied> {
    conn.transaction(async |conn| {
        let now = Utc::now();
        // Looked for before the move, not after: a `sent` committed in between would be seen
        // by a later look but not by the move, and the receipt dropped. This way a message
        // seen here is seen by the move, and one committed after it finds the receipt held.
        // Whatever credential sent it: a receipt for another credential's message is ignored
        // (the move finds nothing), not held for a quarter of an hour.
        let known: bool = diesel::select(diesel::dsl::exists(
            messages::table
                .filter(messages::organization_id.eq(receipt.organization_id))
                .filter(messages::channel.eq(receipt.channel))
                .filter(messages::provider_message_id.eq(receipt.provider_message_id)),
        ))
        .get_result(conn)
        .await?;
        if !known {
            diesel::insert_into(held_receipts::table)
                .values((
                    held_receipts::organization_id.eq(receipt.organization_id),
                    held_receipts::channel.eq(receipt.channel),
                    held_receipts::provider_credential_id.eq(receipt.credential_id),
                    held_receipts::provider_message_id.eq(receipt.provider_message_id),
                    held_receipts::from_statuses.eq(receipt.from),
                    held_receipts::to_status.eq(receipt.to),
                    held_receipts::reason.eq(receipt.reason),
                    held_receipts::details.eq(&receipt.details),
                    held_receipts::received_at.eq(now),
                    held_receipts::suppress.eq(receipt.suppress.map(Reason::as_str)),
                ))
                .execute(conn)
                .await?;
            return Ok(Applied::Held);
        }
        let moved = move_messages(conn, &receipt, now).await?;
        Ok(if moved.is_empty() { Applied::Ignored } else { Applied::Moved(moved) })
    })
    .await
}

/// The messages `receipt` names move to its status, each with its event; returns their ids.
///
/// The change is timed `now`, or just after the message's last change if that looks later:
/// the `sent` a receipt follows may have been timed by another process's clock, or, for a
/// held receipt, after the sweep began; a message's history must still read in order.
async fn move_messages(
    conn: &mut AsyncPgConnection,
    receipt: &Receipt<'_>,
    now: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Timestamptz)]
        updated_at: DateTime<Utc>,
        #[diesel(sql_type = Text)]
        project_id: String,
        #[diesel(sql_type = Text)]
        recipient: String,
    }
    // the UPDATE locks the rows, so their events are written in the transaction that locks
    // their message (the hot path migration's rule for message_events)
    let moved: Vec<Moved> = diesel::sql_query(
        "UPDATE messages
         SET status = $5, status_reason = $6,
             -- receipts move messages to final statuses; the CASE keeps the rule whole
             due_at = CASE WHEN $5 IN ('sent', 'delivered', 'failed', 'canceled') THEN NULL
                           ELSE due_at END,
             updated_at = GREATEST($7, updated_at + interval '1 microsecond')
         WHERE organization_id = $1 AND channel = $2 AND provider_message_id = $3
           AND status = ANY($4)
           AND ($8::text IS NULL OR provider_credential_id = $8)
         RETURNING id, updated_at, project_id, recipient",
    )
    .bind::<Text, _>(receipt.organization_id)
    .bind::<Text, _>(receipt.channel)
    .bind::<Text, _>(receipt.provider_message_id)
    .bind::<Array<Text>, _>(receipt.from)
    .bind::<Text, _>(receipt.to)
    .bind::<Nullable<Text>, _>(receipt.reason)
    .bind::<Timestamptz, _>(now)
    .bind::<Nullable<Text>, _>(receipt.credential_id)
    .load(conn)
    .await?;
    let events: Vec<Event> = moved
        .iter()
        .map(|m| Event::new(&m.id, receipt.to, receipt.details.clone(), m.updated_at))
        .collect();
    diesel::insert_into(message_events::table).values(&events).execute(conn).await?;
    if let (Some(reason), Some(channel)) = (receipt.suppress, Channel::parse(receipt.channel)) {
        let named: Vec<&str> = receipt.details["recipients"]
            .as_array()
            .map(|all| all.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        let mut entries = Vec::new();
        for m in &moved {
            let addresses =
                if named.is_empty() { vec![m.recipient.as_str()] } else { named.clone() };
            for address in addresses {
                entries.push(NewSuppression {
                    id: ids::new_id(ids::SUPPRESSION),
                    organization_id: receipt.organization_id.to_owned(),
                    project_id: m.project_id.clone(),
                    channel: receipt.channel.to_owned(),
                    address: address_key(channel, address),
                    reason: reason.as_str().to_owned(),
                    message_id: Some(m.id.clone()),
                    note: None,
                    created_at: now,
                });
            }
        }
        suppressions::insert_all(conn, &entries).await?;
    }
    Ok(moved.into_iter().map(|m| m.id).collect())
}

/// SQL: the held receipt `h` names a message, by the rule [`apply`] holds by (provider message
/// id, within the organization and channel of the credential it came in for; a message of
/// another credential releases it too, and the move then finds nothing).
macro_rules! names_a_message {
    () => {
        "EXISTS (SELECT 1 FROM messages m
                 WHERE m.provider_message_id = h.provider_message_id
                   AND m.organization_id = h.organization_id AND m.channel = h.channel)"
    };
}

/// Held receipts taken per statement.
const HELD_BATCH: i64 = 500;

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Nullable<Text>)]
    provider_credential_id: Option<String>,
    #[diesel(sql_type = Text)]
    provider_message_id: String,
    #[diesel(sql_type = Array<Text>)]
    from_statuses: Vec<String>,
    #[diesel(sql_type = Text)]
    to_status: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Jsonb)]
    details: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    suppress: Option<String>,
}

/// What a round of [`apply_held`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldRound {
    /// Held receipts whose message has its provider message id now: applied (or found late,
    /// like any receipt) and released.
    pub released: usize,
    /// Messages they moved.
    pub moved: usize,
    /// Held since before the cut-off and still matching nothing: dropped.
    pub expired: usize,
}

/// Applies the held receipts whose message now carries their provider message id, oldest
/// first (a delivery before the complaint that follows it), in one transaction; then drops
/// those held since before `expire_before` that still match nothing, a batch per statement.
/// Rows another sweeper is applying or dropping are skipped, not waited for.
///
/// This is the only place held receipts are deleted: every one is either applied or dropped
/// here, so the table holds at most the hold's worth (the retention duty leaves it alone).
pub async fn apply_held(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    expire_before: DateTime<Utc>,
) -> QueryResult<HeldRound> {
    let mut round = apply_matched(conn, now).await?;
    loop {
        let expired = expire_unmatched(conn, expire_before, EXPIRE_BATCH).await?;
        round.expired += expired;
        if (expired as i64) < EXPIRE_BATCH {
            return Ok(round);
        }
    }
}

/// Held receipts dropped per statement: a quarter of an hour of receipts for messages sent
/// outside RelayIt can be many, and one statement holds what it deletes locked.
const EXPIRE_BATCH: i64 = 1000;

/// Drops up to `limit` receipts held since before `expire_before` that match no message.
async fn expire_unmatched(
    conn: &mut AsyncPgConnection,
    expire_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(concat!(
        "DELETE FROM held_receipts WHERE id = ANY (ARRAY (
             SELECT h.id FROM held_receipts h WHERE h.received_at < $1 AND NOT ",
        names_a_message!(),
        " ORDER BY h.received_at LIMIT $2 FOR UPDATE OF h SKIP LOCKED))"
    ))
    .bind::<Timestamptz, _>(expire_before)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// The applying half of [`apply_held`]: one transaction.
async fn apply_matched(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<HeldRound> {
    conn.transaction(async |conn| {
        let held: Vec<Held> = diesel::sql_query(concat!(
            "SELECT h.id, h.organization_id, h.channel, h.provider_credential_id,
                 h.provider_message_id, h.from_statuses, h.to_status, h.reason, h.details,
                 h.suppress
             FROM held_receipts h
             WHERE ",
            names_a_message!(),
            " ORDER BY h.id LIMIT $1 FOR UPDATE OF h SKIP LOCKED"
        ))
        .bind::<BigInt, _>(HELD_BATCH)
        .load(conn)
        .await?;
        let mut round = HeldRound { released: held.len(), ..HeldRound::default() };
        for h in &held {
            let from: Vec<&str> = h.from_statuses.iter().map(String::as_str).collect();
            let receipt = Receipt {
                organization_id: &h.organization_id,
                channel: &h.channel,
                credential_id: h.provider_credential_id.as_deref(),
                provider_message_id: &h.provider_message_id,
                from: &from,
                to: &h.to_status,
                reason: h.reason.as_deref(),
                details: h.details.clone(),
                suppress: h.suppress.as_deref().and_then(Reason::parse),
            };
            round.moved += move_messages(conn, &receipt, now).await?.len();
        }
        let ids: Vec<i64> = held.iter().map(|h| h.id).collect();
        diesel::delete(held_receipts::table.filter(held_receipts::id.eq_any(&ids)))
            .execute(conn)
            .await?;
        Ok(round)
    })
    .await
}
