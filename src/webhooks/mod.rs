//! The webhook worker role: reads `{relayit}:webhooks` as a member of the `workers` consumer
//! group on a dedicated connection, signs each event (Standard Webhooks) and POSTs it to the
//! tenant's endpoints.
//!
//! This module currently holds the role's life cycle (its connection, the consumer group, and a
//! clean stop on shutdown); the webhook pipeline fills it in.

pub mod secret;
pub mod ssrf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::queue;
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
    queue::ensure_group(&client, &state.redis.keys().webhooks()).await?;
    tracing::info!("webhook worker ready");
    shutdown.cancelled().await;
    queue::close(client).await;
    Ok(())
}
