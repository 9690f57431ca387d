//! Outbound webhooks: every status change of a message that an active endpoint of its project
//! subscribes to is POSTed to that endpoint, signed (Standard Webhooks), retried on a schedule,
//! and logged attempt by attempt.
//!
//! The pipeline:
//! 1. Postgres fans out: a trigger on `message_events` writes one `webhook_jobs` row per (event,
//!    subscribed active endpoint) in the transaction of the status change (migration
//!    `2026-11-27-000006_webhooks`), so no event is dropped whoever wrote it.
//! 2. `relay` moves the outbox to the `{relayit}:webhooks` stream, and due retries from the
//!    delayed set back to it (`queue` is the Redis side).
//! 3. `worker` reads the stream as a member of the `workers` group, signs (`sign`, `secret`) and
//!    POSTs each event through a client that refuses private targets at connect time (`client`,
//!    `ssrf`), records the attempt, and schedules the next one (`schedule`) or dead-letters it.

pub mod client;
pub mod queue;
pub mod relay;
pub mod schedule;
pub mod secret;
pub mod sign;
pub mod ssrf;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The events an endpoint can subscribe to: one per message status.
pub const EVENT_TYPES: [&str; 7] = [
    "message.received",
    "message.queued",
    "message.processing",
    "message.sent",
    "message.delivered",
    "message.failed",
    "message.canceled",
];

pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = state.redis.dedicated().await.context("webhook worker connection")?;
    crate::queue::ensure_group(&client, &state.redis.keys().webhooks()).await?;
    let consumer = format!("webhook-{}", crate::delivery::consumer_name());
    let worker =
        worker::Worker::new(state.clone(), consumer.clone()).context("webhook HTTP client")?;

    let mut duties = JoinSet::new();
    duties.spawn(relay::relay(state.clone(), shutdown.clone()));
    duties.spawn(relay::move_due(state.clone(), shutdown.clone()));
    tracing::info!(%consumer, "webhook worker ready");

    Arc::new(worker).run(&client, shutdown).await;
    while duties.join_next().await.is_some() {}

    match queue::leave_group(&client, &state.redis, &consumer).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(%consumer, "leaving webhook jobs pending for another worker"),
        Err(error) => tracing::warn!(%error, "cannot leave the consumer group"),
    }
    crate::queue::close(client).await;
    Ok(())
}
