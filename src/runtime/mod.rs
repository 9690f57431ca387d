//! The stream-consumer runtime both workers run on: the delivery worker (`crate::delivery`) and
//! the webhook worker (`crate::webhooks`) each supply only what to do with a batch of entries
//! (a [`Consumer`]) and their periodic duties; everything about being a member of a Redis
//! Streams consumer group is here, once:
//!
//! - a dedicated connection, the group created if missing, a consumer name unique per process,
//!   and its liveness key (`liveness`), refreshed every second;
//! - the read loop, bounded by slots: it reads as many entries as there are free slots, and
//!   first takes over those that dead consumers left pending: every second those of consumers
//!   whose liveness key expired (a crash is repaired within seconds), and every so often those
//!   pending past the visibility timeout (a consumer alive but stuck; XAUTOCLAIM);
//! - recovery from a Redis that lost the stream or group (restarted without persistence) while
//!   workers read it: the worker that recreates the group has the consumer put back at once,
//!   from Postgres, what was lost ([`Consumer::recover`]); the workers' periodic sweeps remain
//!   the fallback (for a Redis that lost its data while no worker ran, too);
//! - shutdown: reading stops, work in flight gets `server.shutdown_grace` to finish, what is
//!   cut off stays pending and is taken over as soon as the liveness key is withdrawn, and a
//!   consumer that left nothing pending leaves the group;
//! - `retry`: waiting out Postgres or Redis; `duties`: periodic work beside the loop; `shares`:
//!   one tenant's bound on a worker's slots (an organization's, a webhook endpoint's).

pub mod duties;
pub mod liveness;
pub mod retry;
pub mod shares;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fred::clients::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, QueueError, RawEntry, Redis};
use crate::state::AppState;

pub use liveness::Liveness;
use shares::Shares;

/// How long one XREADGROUP waits for entries; also how long shutdown may wait for it.
const READ_BLOCK_MS: u64 = 1000;
/// How long it waits while the consumer holds work back.
const HOLDING_BACK_BLOCK_MS: u64 = 10;
/// Pause after the stream could not be read.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The longest the reader stops reading new entries while the consumer's waiting work is full:
/// the entries of other tenants behind a backlog are read at least this often.
pub const MAX_READ_PAUSE: Duration = Duration::from_millis(100);

/// What a worker does with the entries it reads.
pub trait Consumer: Send + Sync + 'static {
    /// Starts the work of `batch`, each entry holding one of the `free` slots (there are at
    /// least as many as entries) until its work is done; spawns that work into `tasks`. Entries
    /// whose work never starts must be settled here, or they stay pending until taken over.
    fn dispatch(
        &self,
        batch: Batch,
        free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Puts back on the stream, from Postgres, the work a Redis that lost its data forgot
    /// (entries and scheduled retries), without waiting for the periodic sweep's
    /// `requeue_after`. Called by the one worker that recreated the group.
    fn recover(&self) -> impl Future<Output = ()> + Send + 'static;

    /// The tenants' shares of the consumer's slots, if it keeps them (`shares`: the delivery
    /// worker's organizations, the webhook worker's endpoints). Work over a tenant's share is
    /// held back, to start when the tenant's work ends; while some is, the reader waits for
    /// new entries only briefly, and while as much waits as the consumer keeps, it reads none
    /// (what it read would only be deferred) until work ends, for up to [`MAX_READ_PAUSE`].
    fn shares(&self) -> Option<&Arc<Shares>> {
        None
    }

    /// Up to `max` entries read earlier whose work was held back and may start now; read
    /// before new ones.
    fn held_back(&self, _max: usize) -> Vec<RawEntry> {
        Vec::new()
    }
}

/// Entries read, and whether they were taken over from another consumer (that stopped, or
/// got stuck), and from which ones whose liveness keys expired: what those claimed is no
/// longer theirs.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<RawEntry>,
    pub taken_over: bool,
    pub taken_from: Vec<String>,
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

/// Runs a worker role until `shutdown`: proves `liveness` alive and keeps it so, joins the
/// group of `stream` as its consumer, starts `duties`, feeds `consumer` until shutdown, then
/// drains the work in flight (and `tasks`, the consumer's own background work, which must end
/// once its senders are gone) within the grace period, leaves the group if nothing stays
/// pending, and withdraws the liveness key.
pub async fn run<C: Consumer>(
    state: &AppState,
    stream: Stream,
    liveness: Arc<Liveness>,
    consumer: C,
    tasks: JoinSet<()>,
    mut duties: JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = &state.redis;
    let client = redis.dedicated().await.context("worker connection")?;
    // alive before joining: a member without its key is taken for dead
    if !liveness.prove(redis).await {
        anyhow::bail!("cannot write the {} worker's liveness key", stream.role);
    }
    // kept until the work in flight is drained, so nobody takes it over meanwhile
    let keeping = CancellationToken::new();
    let keeper = tokio::spawn({
        let (liveness, redis, keeping) = (liveness.clone(), redis.clone(), keeping.clone());
        async move { liveness.keep(&redis, keeping).await }
    });
    let name = liveness.consumer();
    // Not a loss at start: a new install, or a stream the API created by appending to it
    // (putting its backlog back again would read every message twice). A Redis that lost its
    // data while no worker ran is repaired by the periodic sweeps.
    queue::ensure_group(&client, &stream.key).await?;
    let mut recoveries = JoinSet::new();
    tracing::info!(consumer = %name, "{} worker ready", stream.role);

    let grace = state.config.server.shutdown_grace;
    let member = Member { client: &client, redis, stream: &stream, name };
    consume(member, consumer, tasks, &mut recoveries, grace, &shutdown).await;
    recoveries.abort_all();
    while duties.join_next().await.is_some() {}
    keeping.cancel();
    let _ = keeper.await;

    // A consumer that left nothing pending is removed, so restarts do not pile up names in
    // the group; one with entries left stays until another worker takes them over.
    match queue::leave_group(&client, &stream.key, name).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(consumer = %name, "leaving {} entries pending for another worker", stream.role)
        }
        Err(error) => tracing::warn!(%error, "cannot leave the consumer group"),
    }
    liveness.withdraw(redis).await;
    queue::close(client).await;
    Ok(())
}

/// A consumer's place in its group.
#[derive(Clone, Copy)]
struct Member<'a> {
    /// The dedicated connection of its blocking reads.
    client: &'a Client,
    redis: &'a Redis,
    stream: &'a Stream,
    name: &'a str,
}

/// Where the scans of entries to take over stand.
struct Reclaim {
    /// Those of consumers whose liveness expired.
    dead_due: Instant,
    /// Those pending past the visibility timeout (XAUTOCLAIM).
    cursor: String,
    due: Instant,
    every: Duration,
    /// When new entries were last read.
    read_at: Instant,
}

async fn consume<C: Consumer>(
    member: Member<'_>,
    consumer: C,
    mut tasks: JoinSet<()>,
    recoveries: &mut JoinSet<()>,
    grace: Duration,
    stop: &CancellationToken,
) {
    let Member { client, stream, .. } = member;
    let slots = Arc::new(Semaphore::new(stream.concurrency));
    let mut reclaim = Reclaim {
        dead_due: Instant::now(),
        cursor: "0-0".to_owned(),
        due: Instant::now(),
        // often enough that a stuck worker's entries wait little past the timeout
        every: (stream.visibility_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30)),
        read_at: Instant::now(),
    };
    loop {
        while tasks.try_join_next().is_some() {}
        let free = tokio::select! {
            free = take_free_slots(&slots) => free,
            () = stop.cancelled() => break,
        };
        let Some(free) = free else { break };
        let count = free.num_permits() as u64;
        while recoveries.try_join_next().is_some() {}
        match next_entries(&member, &consumer, &mut reclaim, count).await {
            Ok(batch) if batch.entries.is_empty() => {}
            Ok(batch) => consumer.dispatch(batch, free, &mut tasks, stop).await,
            Err(error) => {
                tracing::warn!(%error, "cannot read the {} stream", stream.role);
                // A Redis that lost its data (restarted without persistence, or the key
                // deleted) lost the consumer group too: recreate it, and whoever does puts
                // back the work whose entries went with it.
                let text = error.to_string();
                let lost = ["NOGROUP", "no longer exists", "no such key"];
                if lost.iter().any(|sign| text.contains(sign)) {
                    match queue::ensure_group(client, &stream.key).await {
                        Ok(true) => {
                            tracing::warn!(
                                "the {} stream was lost; putting its work back",
                                stream.role
                            );
                            recoveries.spawn(consumer.recover());
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot recreate the consumer group"),
                    }
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

/// Entries taken over from dead consumers when a scan is due and finds some, else those the
/// consumer held back that may start now, else new ones.
async fn next_entries(
    member: &Member<'_>,
    consumer: &impl Consumer,
    reclaim: &mut Reclaim,
    count: u64,
) -> Result<Batch, QueueError> {
    let Member { client, redis, stream, name } = *member;
    if Instant::now() >= reclaim.dead_due {
        reclaim.dead_due = Instant::now() + liveness::REFRESH;
        let taken = queue::take_over(redis, &stream.key, name, count).await?;
        if !taken.entries.is_empty() {
            tracing::info!(
                count = taken.entries.len(),
                from = ?taken.dead,
                "took over {} entries of workers that stopped proving alive",
                stream.role
            );
            // more may be left: look again at once
            reclaim.dead_due = Instant::now();
            return Ok(Batch { entries: taken.entries, taken_over: true, taken_from: taken.dead });
        }
    }
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
            return Ok(Batch { entries, taken_over: true, taken_from: Vec::new() });
        }
    }
    let entries = consumer.held_back(count as usize);
    if !entries.is_empty() {
        return Ok(Batch { entries, ..Batch::default() });
    }
    if let Some(shares) = consumer.shares()
        && shares.waits_full()
        && reclaim.read_at.elapsed() < MAX_READ_PAUSE
    {
        let pause = Duration::from_millis(HOLDING_BACK_BLOCK_MS);
        let _ = tokio::time::timeout(pause, shares.ended()).await;
        return Ok(Batch::default());
    }
    reclaim.read_at = Instant::now();
    let holds_back = consumer.shares().is_some_and(|shares| shares.holds_back());
    let block = if holds_back { HOLDING_BACK_BLOCK_MS } else { READ_BLOCK_MS };
    let entries = queue::read_group(client, &stream.key, name, count, block).await?;
    Ok(Batch { entries, ..Batch::default() })
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
