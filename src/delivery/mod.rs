//! The delivery worker role: reads `{relayit}:deliveries` as a member of the `workers` consumer
//! group on a dedicated connection, routes each message to its provider connector, and records
//! the outcome.
//!
//! This module currently holds the role's life cycle (its connection, the consumer group, and a
//! clean stop on shutdown); the delivery pipeline fills it in.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::queue;
use crate::state::AppState;

pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = state.redis.dedicated().await.context("delivery worker connection")?;
    queue::ensure_group(&client, &state.redis.keys().deliveries()).await?;
    tracing::info!("delivery worker ready");
    shutdown.cancelled().await;
    queue::close(client).await;
    Ok(())
}
