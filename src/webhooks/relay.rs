//! The webhook role's background duties, safe to run in every webhook process at once:
//!
//! - the relay puts jobs of the `webhook_jobs` outbox (filled by the `message_events` trigger
//!   and by replays and retries) on the stream. It marks a batch pushed in a transaction
//!   (`FOR UPDATE SKIP LOCKED`, so concurrent relays take disjoint batches), pushes it to Redis,
//!   and commits only then: if Redis fails or the process dies before the commit, the rows come
//!   back; if the commit fails after the push, the jobs are pushed twice, which is harmless
//!   (same `webhook-id`, attempts numbered in Postgres). A job leaves the outbox only when the
//!   attempt that settles it is recorded, so the relay also pushes again the jobs pushed more
//!   than `webhooks.requeue_after` ago (or due that long ago) that nothing settled: a Redis that
//!   lost its data loses no webhook.
//! - `recover`, run by the worker that found the stream lost and recreated its group, pushes
//!   at once every job that was on Redis: those due onto the stream, the others into the
//!   delayed set at their due time.
//! - the mover puts jobs whose retry is due from the delayed set back on the stream
//!   (`crate::runtime::duties::move_due`, every [`MOVE_EVERY`]).

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use tokio_util::sync::CancellationToken;

use crate::db::webhooks::{self as queries, Job};
use crate::runtime::duties::every;
use crate::runtime::retry::{after, before, until_ok};
use crate::state::AppState;
use crate::webhooks::{queue, schedule};

/// How often the outbox is polled when it was found empty: the latency a webhook adds at most
/// on top of its status change.
const RELAY_EVERY: Duration = Duration::from_millis(100);
const RELAY_BATCH: i64 = 500;
/// How often the delayed set is checked: the precision of retry times.
pub const MOVE_EVERY: Duration = Duration::from_millis(100);

pub async fn relay(state: AppState, stop: CancellationToken) {
    every(RELAY_EVERY, stop, || async {
        loop {
            match relay_once(&state).await {
                // a full batch: more may be waiting
                Ok(n) if n as i64 >= RELAY_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot move webhook jobs to the stream");
                    break;
                }
            }
        }
    })
    .await
}

/// Moves one batch; returns how many jobs it moved.
async fn relay_once(state: &AppState) -> anyhow::Result<usize> {
    let mut conn = state.db.get().await?;
    let config = &state.config.webhooks;
    let first_delay = config.retry_schedule.first().copied().unwrap_or_default();
    let now = Utc::now();
    let stale_before = before(now, config.requeue_after);
    conn.transaction(async |conn| {
        let jobs = queries::take_jobs(conn, now, stale_before, RELAY_BATCH).await?;
        let count = jobs.len();
        // new jobs wait the schedule's first delay; pushed again, they are overdue already
        let (new, again): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|taken| taken.fresh);
        let new: Vec<Job> = new.into_iter().map(|taken| taken.job).collect();
        let again: Vec<Job> = again.into_iter().map(|taken| taken.job).collect();
        if first_delay.is_zero() {
            let now: Vec<Job> = new.into_iter().chain(again).collect();
            queue::push(&state.redis, &now, &[]).await?;
        } else {
            let later: Vec<(Job, i64)> = new
                .into_iter()
                .map(|job| {
                    let delay =
                        schedule::delay(&config.retry_schedule, 0, schedule::random_jitter())
                            .unwrap_or_default();
                    (job, after(Utc::now(), delay).timestamp_millis())
                })
                .collect();
            queue::push(&state.redis, &again, &later).await?;
        }
        anyhow::Ok(count)
    })
    .await
}

/// Jobs pushed again per batch when Redis lost them.
const RECOVER_BATCH: i64 = 1000;

/// Gives a Redis that lost its data every job it held, from the outbox; waits out Postgres and
/// Redis (the caller aborts it at shutdown).
pub async fn recover(state: AppState) {
    let mut after_id = 0;
    let mut pushed = 0;
    loop {
        let batch = until_ok("reading the webhook jobs Redis lost", || async {
            let mut conn = state.db.get().await?;
            anyhow::Ok(queries::pushed_jobs(&mut conn, after_id, RECOVER_BATCH).await?)
        })
        .await;
        let Some(last) = batch.last() else { break };
        after_id = last.id;
        let now = Utc::now();
        let (due, later): (Vec<_>, Vec<_>) = batch.iter().partition(|job| job.pushed_at <= now);
        let due: Vec<Job> = due.into_iter().map(|p| p.job.clone()).collect();
        let later: Vec<(Job, i64)> =
            later.into_iter().map(|p| (p.job.clone(), p.pushed_at.timestamp_millis())).collect();
        until_ok("pushing the webhook jobs Redis lost", || queue::push(&state.redis, &due, &later))
            .await;
        pushed += batch.len();
    }
    tracing::info!(pushed, "webhook jobs put back on Redis");
}
