//! Periodic work beside a worker's read loop (sweeps, relays, moving due retries), safe to run
//! in every worker process at once.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, KeyOf, Redis};

/// Members moved from a delayed set per script call.
const MOVE_BATCH: u32 = 500;

/// Runs `duty` every `every` until `stop` is cancelled. A run in progress is dropped then
/// (shutdown must not wait on an unreachable database): each duty's steps are safe to cut off,
/// since what one committed without finishing is found again by a later run.
pub async fn every<F, Fut>(every: Duration, stop: CancellationToken, mut duty: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = async {
                tick.tick().await;
                duty().await
            } => {}
        }
    }
}

/// Every `interval` (the precision of retry times), moves the members of each partition's
/// `delayed` set whose due time has come onto its `stream` as entries `{field: member}`; each
/// member moves once, whichever process moves it.
pub async fn move_due(
    redis: Redis,
    delayed: KeyOf,
    stream: KeyOf,
    field: &'static str,
    interval: Duration,
    stop: CancellationToken,
) {
    let partitions: Vec<(String, String)> = (0..redis.keys().partitions())
        .map(|p| redis.keys().partition(p))
        .map(|keys| (delayed(&keys), stream(&keys)))
        .collect();
    every(interval, stop, || async {
        for (delayed, stream) in &partitions {
            loop {
                let now = Utc::now().timestamp_millis();
                match queue::move_due(&redis, delayed, stream, field, now, MOVE_BATCH).await {
                    // a full batch: more may be due
                    Ok(moved) if moved == MOVE_BATCH => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, %stream, "cannot move due retries to the stream");
                        break;
                    }
                }
            }
        }
    })
    .await
}
