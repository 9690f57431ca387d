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
//!    `crate::ssrf`); `record` logs the attempts in batches and schedules each job's next one
//!    (`schedule`) or dead-letters it.
//!    A slow or failing endpoint holds at most its bound of the worker's slots, a failing one is
//!    backed off (`health`), and an endpoint's `rateLimit` is kept across processes.

pub mod client;
pub mod health;
pub mod queue;
pub mod record;
pub mod relay;
pub mod schedule;
pub mod secret;
pub mod sign;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::Keys;
use crate::runtime::{self, Liveness, Stream, duties};
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

crate::json_schema! {
    /// An event type.
    EventType => crate::domain::schema::one_of(&EVENT_TYPES)
}

pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = &state.config.webhooks;
    let stream = Stream {
        role: "webhook",
        key: Keys::webhooks,
        concurrency: config.concurrency,
        visibility_timeout: config.visibility_timeout,
    };
    let (worker, tasks) = worker::Worker::start(state.clone()).context("webhook HTTP client")?;
    let mut duties = JoinSet::new();
    duties.spawn(relay::relay(state.clone(), shutdown.clone()));
    duties.spawn(duties::move_due(
        state.redis.clone(),
        Keys::webhooks_delayed,
        Keys::webhooks,
        queue::JOB_FIELD,
        relay::MOVE_EVERY,
        shutdown.clone(),
    ));
    let consumer = format!("webhook-{}", runtime::consumer_name());
    let liveness = Arc::new(Liveness::new(consumer, state.config.server.liveness_timeout));
    runtime::run(&state, stream, liveness, worker, tasks, duties, shutdown).await
}
