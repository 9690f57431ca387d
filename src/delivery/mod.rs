//! The delivery worker role: reads `{relayit}:deliveries` as a member of the `workers` consumer
//! group on a dedicated connection, routes each message to its provider connector, and records
//! the outcome; alongside, it runs the queue's background duties.
//!
//! - `worker`: the delivery loop (read, claim, deliver, record, acknowledge);
//! - `deliver` and `routing`: one message's attempt over its credentials, in routing order;
//! - `limits`: per-credential rate limits, checked before each provider call;
//! - the connectors it calls are in `crate::providers`;
//! - `queue`: the consuming side of the queue contract (`crate::queue::deliveries`);
//! - `recovery`: the delayed-set mover and the sweeper;
//! - `backoff`: retry delays.

pub mod backoff;
pub mod deliver;
pub mod limits;
pub mod queue;
pub mod recovery;
pub mod routing;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = state.redis.dedicated().await.context("delivery worker connection")?;
    let keys = state.redis.keys().clone();
    crate::queue::ensure_group(&client, &keys.deliveries()).await?;
    let consumer = consumer_name();

    let mut duties = JoinSet::new();
    duties.spawn(recovery::move_due(state.clone(), shutdown.clone()));
    duties.spawn(recovery::sweep(state.clone(), shutdown.clone()));
    tracing::info!(%consumer, "delivery worker ready");

    let worker = Arc::new(worker::Worker::new(state, consumer.clone()));
    worker.run(&client, shutdown).await;
    while duties.join_next().await.is_some() {}

    // A consumer that left nothing pending is removed, so restarts do not pile up names in
    // the group; one with entries left stays until another worker takes them over.
    match queue::leave_group(&client, &keys, &consumer).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(%consumer, "leaving deliveries pending for another worker"),
        Err(error) => tracing::warn!(%error, "cannot leave the consumer group"),
    }
    crate::queue::close(client).await;
    Ok(())
}

/// `<hostname>-<pid>-<random>`: unique per process (the random part covers pid reuse, e.g. in
/// containers), and says where a pending entry's worker ran.
pub(crate) fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}
