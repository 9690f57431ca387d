//! The worker role's background duties, safe to run in every worker process at once (the mover
//! of due retries is the runtime's, `crate::runtime::duties::move_due`):
//!
//! - the sweeper promotes scheduled messages whose `sendAt` has come, and re-enqueues messages
//!   whose stream entry was lost (a process died between commit and XADD, or Redis lost data):
//!   docs/architecture.md, invariant 2. It locks the rows it takes with `SKIP LOCKED` and marks them, so
//!   concurrent sweepers rarely enqueue a message twice (and a duplicate entry is harmless).
//!   It also applies the delivery receipts that came before their message's `sent` was
//!   recorded (`db::receipts`).
//!
//! - `recover` runs once the worker that found the stream lost (Redis restarted empty) has
//!   recreated its group: it puts every waiting message back on the stream and every
//!   scheduled retry back in the delayed set at once, instead of after `requeue_after`.
//!
//! Taking over entries a dead worker left pending (XAUTOCLAIM) belongs to the reader, which
//! owns the delivery slots (`crate::runtime`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::db::delivery as queries;
use crate::db::receipts::{self, HeldRound};
use crate::delivery::queue::{Settlement, settle};
use crate::queue::deliveries::enqueue;
use crate::runtime::duties::every;
use crate::runtime::retry::{before, until_ok};
use crate::state::AppState;

/// How often the delayed set is checked: the precision of retry times.
pub const MOVE_EVERY: Duration = Duration::from_millis(200);
/// Messages the sweeper takes per statement.
const SWEEP_BATCH: i64 = 1000;
/// How long a receipt that names no message is kept: a send is recorded seconds after the
/// provider accepted it, so what matches nothing for this long was not sent by RelayIt (other
/// senders on the same SNS topic or WhatsApp number). Every sweep looks all held receipts up,
/// so this also bounds that work: a quarter of an hour of such strangers' receipts (100,000
/// held receipts cost a sweep about 0.25 s of Postgres time).
pub const HOLD_RECEIPTS_FOR: Duration = Duration::from_secs(15 * 60);

pub async fn sweep(state: AppState, stop: CancellationToken) {
    every(state.config.delivery.sweep_interval, stop, || async {
        if let Err(error) = sweep_once(&state).await {
            tracing::warn!(%error, "delivery sweep failed");
        }
    })
    .await
}

async fn sweep_once(state: &AppState) -> anyhow::Result<()> {
    let config = &state.config.delivery;
    let now = Utc::now();
    let stuck_before = before(now, config.requeue_after);
    // a claim is abandoned once the visibility timeout has passed and the entry was not
    // taken over within requeue_after (it is gone from Redis)
    let processing_before = before(stuck_before, config.visibility_timeout);
    let mut conn = state.db.get().await?;
    let mut promoted = 0;
    loop {
        let ids = queries::promote_received(&mut conn, now, stuck_before, SWEEP_BATCH).await?;
        // rows committed as queued but not enqueued are found again after requeue_after
        enqueue(&state.redis, &ids).await?;
        promoted += ids.len();
        if ids.len() < SWEEP_BATCH as usize {
            break;
        }
    }
    // One batch per sweep: abandoned claims keep their `updated_at`, so another round of this
    // sweep would only find them again.
    let requeued =
        queries::requeue_stale(&mut conn, now, stuck_before, processing_before, SWEEP_BATCH)
            .await?;
    enqueue(&state.redis, &requeued).await?;
    if promoted > 0 || !requeued.is_empty() {
        tracing::info!(promoted, requeued = requeued.len(), "delivery sweep enqueued messages");
    }
    let receipts = receipts::apply_held(&mut conn, now, before(now, HOLD_RECEIPTS_FOR)).await?;
    if receipts != HeldRound::default() {
        tracing::info!(?receipts, "delivery sweep applied held receipts");
    }
    Ok(())
}

/// Puts back what a Redis that lost its data held: every message waiting for the stream
/// (`queued`, or `retrying` and due) on it, every later retry in the delayed set. Messages
/// being delivered are their workers' to settle. Waits out Postgres and Redis (the caller
/// aborts it at shutdown).
pub async fn recover(state: AppState) {
    let now = Utc::now();
    let mut requeued = 0;
    loop {
        // stuck since before now: every waiting row, each taken once (it is marked now); no
        // claim counts as abandoned here
        let ids = until_ok("finding the messages Redis lost", || async {
            let mut conn = state.db.get().await?;
            let never = DateTime::<Utc>::UNIX_EPOCH;
            anyhow::Ok(queries::requeue_stale(&mut conn, now, now, never, SWEEP_BATCH).await?)
        })
        .await;
        until_ok("enqueueing the messages Redis lost", || enqueue(&state.redis, &ids)).await;
        requeued += ids.len();
        if ids.len() < SWEEP_BATCH as usize {
            break;
        }
    }
    let mut after_id = String::new();
    let mut rescheduled = 0;
    loop {
        let retries = until_ok("finding the retries Redis lost", || async {
            let mut conn = state.db.get().await?;
            anyhow::Ok(queries::future_retries(&mut conn, now, &after_id, SWEEP_BATCH).await?)
        })
        .await;
        let Some((last, _)) = retries.last() else { break };
        after_id = last.clone();
        let settlement = Settlement {
            retries: retries.iter().map(|(id, at)| (id.clone(), at.timestamp_millis())).collect(),
            ..Settlement::default()
        };
        until_ok("rescheduling the retries Redis lost", || settle(&state.redis, &settlement)).await;
        rescheduled += retries.len();
    }
    tracing::info!(requeued, rescheduled, "messages put back on Redis");
}
