//! The stream-consumer runtime both workers run on: the delivery worker (`crate::delivery`) and
//! the webhook worker (`crate::webhooks`) each supply only what to do with a batch of entries
//! (a [`Consumer`]) and their periodic duties; everything about being a member of a Redis
//! Streams consumer group is here, once:
//!
//! - a dedicated connection, the group created if missing, a consumer name unique per process;
//! - the read loop, bounded by slots: it reads as many entries as there are free slots, and
//!   every so often first takes over those a dead consumer left pending past the visibility
//!   timeout (XAUTOCLAIM);
//! - recovery from a Redis that lost the stream or group (restarted without persistence):
//!   the group is recreated, and the workers' sweeps put back from Postgres what was lost;
//! - shutdown: reading stops, work in flight gets `server.shutdown_grace` to finish, what is
//!   cut off stays pending for another consumer, and a consumer that left nothing pending
//!   leaves the group;
//! - `retry`: waiting out Postgres or Redis; `duties`: periodic work beside the loop.

pub mod duties;
pub mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fred::clients::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, QueueError, RawEntry};
use crate::state::AppState;

/// How long one XREADGROUP waits for entries; also how long shutdown may wait for it.
const READ_BLOCK_MS: u64 = 1000;
/// Pause after the stream could not be read.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What a worker does with the entries it reads.
pub trait Consumer: Send + Sync + 'static {
    /// Starts the work of `entries`, each holding one of the `free` slots (there are at least
    /// as many as entries) until its work is done; spawns that work into `tasks`. Entries whose
    /// work never starts must be settled here, or they stay pending until taken over.
    fn dispatch(
        &self,
        entries: Vec<RawEntry>,
        free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> impl Future<Output = ()> + Send;
}

/// The stream a worker consumes, and how.
pub struct Stream {
    /// The worker, for logs: `delivery`, `webhook`.
    pub role: &'static str,
    pub key: String,
    /// Entries worked on at once.
    pub concurrency: usize,
    /// How long an entry may stay pending before another consumer takes it over.
    pub visibility_timeout: Duration,
}

/// Runs a worker role until `shutdown`: joins the group of `stream` as `consumer_name`, starts
/// `duties`, feeds `consumer` until shutdown, then drains the work in flight (and `tasks`, the
/// consumer's own background work, which must end once its senders are gone) within the grace
/// period, and leaves the group if nothing stays pending.
pub async fn run<C: Consumer>(
    state: &AppState,
    stream: Stream,
    consumer_name: String,
    consumer: C,
    tasks: JoinSet<()>,
    mut duties: JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = state.redis.dedicated().await.context("worker connection")?;
    queue::ensure_group(&client, &stream.key).await?;
    tracing::info!(consumer = %consumer_name, "{} worker ready", stream.role);

    let grace = state.config.server.shutdown_grace;
    consume(&client, &stream, &consumer_name, consumer, tasks, grace, &shutdown).await;
    while duties.join_next().await.is_some() {}

    // A consumer that left nothing pending is removed, so restarts do not pile up names in
    // the group; one with entries left stays until another worker takes them over.
    match queue::leave_group(&client, &stream.key, &consumer_name).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(consumer = %consumer_name, "leaving {} entries pending for another worker", stream.role)
        }
        Err(error) => tracing::warn!(%error, "cannot leave the consumer group"),
    }
    queue::close(client).await;
    Ok(())
}

/// Where the scan of entries to take over stands.
struct Reclaim {
    cursor: String,
    due: Instant,
    every: Duration,
}

async fn consume<C: Consumer>(
    client: &Client,
    stream: &Stream,
    name: &str,
    consumer: C,
    mut tasks: JoinSet<()>,
    grace: Duration,
    stop: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(stream.concurrency));
    let mut reclaim = Reclaim {
        cursor: "0-0".to_owned(),
        due: Instant::now(),
        // often enough that a dead worker's entries wait little past the timeout
        every: (stream.visibility_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30)),
    };
    loop {
        while tasks.try_join_next().is_some() {}
        let free = tokio::select! {
            free = take_free_slots(&slots) => free,
            () = stop.cancelled() => break,
        };
        let Some(free) = free else { break };
        let count = free.num_permits() as u64;
        match next_entries(client, stream, name, &mut reclaim, count).await {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => consumer.dispatch(entries, free, &mut tasks, stop).await,
            Err(error) => {
                tracing::warn!(%error, "cannot read the {} stream", stream.role);
                // A Redis that lost its data (restarted without persistence, or the key
                // deleted) lost the consumer group too: recreate it. The sweeps put back the
                // work whose entries went with it.
                let text = error.to_string();
                let lost = text.contains("NOGROUP") || text.contains("no longer exists");
                if lost && let Err(e) = queue::ensure_group(client, &stream.key).await {
                    tracing::warn!(error = %e, "cannot recreate the consumer group");
                }
                tokio::select! {
                    () = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    // what the consumer holds (a sender its background work waits on) goes first
    drop(consumer);
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(
            in_flight = tasks.len(),
            "{} work cut off at shutdown; its entries stay pending for another worker",
            stream.role
        );
    }
}

/// Entries taken over from dead consumers when a scan is due and finds some, else new ones.
async fn next_entries(
    client: &Client,
    stream: &Stream,
    name: &str,
    reclaim: &mut Reclaim,
    count: u64,
) -> Result<Vec<RawEntry>, QueueError> {
    if Instant::now() >= reclaim.due {
        let idle_ms = stream.visibility_timeout.as_millis() as u64;
        let (cursor, entries) =
            queue::reclaim(client, &stream.key, name, idle_ms, &reclaim.cursor, count).await?;
        if cursor == "0-0" {
            reclaim.due = Instant::now() + reclaim.every;
        }
        reclaim.cursor = cursor;
        if !entries.is_empty() {
            tracing::info!(count = entries.len(), "took over {} entries left pending", stream.role);
            return Ok(entries);
        }
    }
    queue::read_group(client, &stream.key, name, count, READ_BLOCK_MS).await
}

/// Waits for at least one free slot and takes every free one; `None` once the semaphore is
/// closed (never, in practice).
async fn take_free_slots(slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let mut free = slots.clone().acquire_owned().await.ok()?;
    let more = slots.available_permits();
    if more > 0
        && let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32)
    {
        free.merge(extra);
    }
    Some(free)
}

/// `<hostname>-<pid>-<random>`: unique per process (the random part covers pid reuse, e.g. in
/// containers), and says where a pending entry's worker ran.
pub fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}
