//! The stream-consumer runtime both workers run on: the delivery worker (`crate::delivery`) and
//! the webhook worker (`crate::webhooks`) each supply only what to do with a batch of entries
//! (a [`Consumer`]) and their periodic duties; everything about being a member of a Redis
//! Streams consumer group is here, once:
//!
//! - a dedicated connection per stream partition (`redis.stream_partitions`, `crate::queue`),
//!   the groups created if missing, a consumer name unique per process, and its liveness key
//!   (`liveness`), refreshed every second;
//! - a reader per partition, all at once, sharing the consumer's slots evenly (`consume`);
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use fred::clients::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, KeyOf, QueueError, RawEntry, Redis};
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
    /// new entries only briefly and reads no more than may still wait, and while as much
    /// waits as the consumer keeps, it reads none (what it read would only be deferred) until
    /// work ends, for up to [`MAX_READ_PAUSE`].
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
/// longer theirs. Their ids are qualified with their partition (`queue::qualify`), which is
/// where they are acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<RawEntry>,
    pub taken_over: bool,
    pub taken_from: Vec<String>,
    /// Entries the consumer held back earlier ([`Consumer::held_back`]), of any partition,
    /// their ids qualified already.
    pub held_back: bool,
}

/// The stream a worker consumes, and how.
pub struct Stream {
    /// The worker, for logs: `delivery`, `webhook`.
    pub role: &'static str,
    /// The stream's key among a partition's keys.
    pub key: KeyOf,
    /// Entries worked on at once.
    pub concurrency: usize,
    /// How long an entry may stay pending before another consumer takes it over.
    pub visibility_timeout: Duration,
}

/// Runs a worker role until `shutdown`: proves `liveness` alive and keeps it so, joins the
/// group of every partition of `stream` as its consumer, starts `duties`, feeds `consumer`
/// until shutdown, then drains the work in flight (and `tasks`, the consumer's own background
/// work, which must end once its senders are gone) within the grace period, leaves the groups
/// where nothing stays pending, and withdraws the liveness key.
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
    let name = liveness.consumer();
    let mut members = Vec::new();
    for partition in 0..redis.keys().partitions() {
        let client = redis.dedicated().await.context("worker connection")?;
        let key = (stream.key)(&redis.keys().partition(partition));
        members.push(Member { client, redis, stream: &stream, name, partition, key });
    }
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
    // Not a loss at start: a new install, or a stream the API created by appending to it
    // (putting its backlog back again would read every message twice). A Redis that lost its
    // data while no worker ran is repaired by the periodic sweeps.
    for member in &members {
        queue::ensure_group(&member.client, &member.key).await?;
    }
    let recoveries = Mutex::new(JoinSet::new());
    tracing::info!(consumer = %name, partitions = members.len(), "{} worker ready", stream.role);

    let grace = state.config.server.shutdown_grace;
    consume(&members, consumer, tasks, &recoveries, grace, &shutdown).await;
    lock(&recoveries).abort_all();
    while duties.join_next().await.is_some() {}
    keeping.cancel();
    let _ = keeper.await;

    // A consumer that left nothing pending is removed, so restarts do not pile up names in
    // the group; one with entries left stays until another worker takes them over.
    for member in members {
        match queue::leave_group(&member.client, &member.key, name).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                consumer = %name, stream = %member.key,
                "leaving {} entries pending for another worker", stream.role
            ),
            Err(error) => tracing::warn!(%error, "cannot leave the consumer group"),
        }
        queue::close(member.client).await;
    }
    liveness.withdraw(redis).await;
    Ok(())
}

/// A consumer's place in the group of one partition.
struct Member<'a> {
    /// The dedicated connection of its blocking reads.
    client: Client,
    redis: &'a Redis,
    stream: &'a Stream,
    name: &'a str,
    partition: u16,
    /// The partition's stream.
    key: String,
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

/// Locks `mutex` whatever panicked while it was held: what the workers keep under a lock is
/// changed in single steps, so it stays consistent.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads every partition at once, each on its own connection, the work of all sharing the
/// consumer's slots; then, at shutdown, drains the work in flight within `grace`.
///
/// With one partition the reader takes every free slot for each read. With several, each
/// read takes at most an even share of the slots (the semaphore serves waiting readers in
/// turn, so busy partitions share the slots evenly), and a reader whose last read found its
/// partition empty waits for entries holding a single slot: idle partitions keep almost
/// nothing from the busy ones.
async fn consume<C: Consumer>(
    members: &[Member<'_>],
    consumer: C,
    mut tasks: JoinSet<()>,
    recoveries: &Mutex<JoinSet<()>>,
    grace: Duration,
    stop: &CancellationToken,
) {
    let Some(first) = members.first() else { return };
    let concurrency = first.stream.concurrency;
    let slots = Arc::new(Semaphore::new(concurrency));
    let share = concurrency.div_ceil(members.len()).max(1);
    let readers = members
        .iter()
        .map(|member| read(member, &consumer, &slots, share, members.len() > 1, recoveries, stop));
    let work = futures::future::join_all(readers).await;
    // what the consumer holds (a sender its background work waits on) goes first
    drop(consumer);
    let drained = tokio::time::timeout(grace, async {
        for mut work in work {
            while work.join_next().await.is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            "{} work cut off at shutdown; its entries stay pending for another worker",
            first.stream.role
        );
    }
}

/// One partition's read loop, until `stop`; returns the work it started, still running.
async fn read<C: Consumer>(
    member: &Member<'_>,
    consumer: &C,
    slots: &Arc<Semaphore>,
    share: usize,
    shared: bool,
    recoveries: &Mutex<JoinSet<()>>,
    stop: &CancellationToken,
) -> JoinSet<()> {
    let stream = member.stream;
    let mut tasks = JoinSet::new();
    let mut reclaim = Reclaim {
        dead_due: Instant::now(),
        cursor: "0-0".to_owned(),
        due: Instant::now(),
        // often enough that a stuck worker's entries wait little past the timeout
        every: (stream.visibility_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30)),
        read_at: Instant::now(),
    };
    let mut idle = false;
    loop {
        while tasks.try_join_next().is_some() {}
        let most = if idle && shared { 1 } else { share };
        let free = tokio::select! {
            free = take_free_slots(slots, most) => free,
            () = stop.cancelled() => break,
        };
        let Some(free) = free else { break };
        let count = free.num_permits() as u64;
        while lock(recoveries).try_join_next().is_some() {}
        match next_entries(member, consumer, &mut reclaim, count).await {
            Ok(batch) if batch.entries.is_empty() => idle = true,
            Ok(batch) => {
                idle = false;
                consumer.dispatch(batch, free, &mut tasks, stop).await
            }
            Err(error) => {
                tracing::warn!(%error, stream = %member.key, "cannot read the {} stream", stream.role);
                // A Redis that lost its data (restarted without persistence, or the key
                // deleted) lost the consumer group too: recreate it, and whoever does puts
                // back the work whose entries went with it.
                let text = error.to_string();
                let lost = ["NOGROUP", "no longer exists", "no such key"];
                if lost.iter().any(|sign| text.contains(sign)) {
                    match queue::ensure_group(&member.client, &member.key).await {
                        Ok(true) => {
                            tracing::warn!(
                                stream = %member.key,
                                "the {} stream was lost; putting its work back",
                                stream.role
                            );
                            // A recovery puts back the work of every partition: the readers of
                            // the others, finding their streams lost too, need not start more.
                            let mut running = lock(recoveries);
                            while running.try_join_next().is_some() {}
                            if running.is_empty() {
                                running.spawn(consumer.recover());
                            }
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
    tasks
}

/// Entries taken over from dead consumers when a scan is due and finds some, else those the
/// consumer held back that may start now, else new ones; their ids qualified with the
/// partition (`queue::qualify`).
async fn next_entries(
    member: &Member<'_>,
    consumer: &impl Consumer,
    reclaim: &mut Reclaim,
    count: u64,
) -> Result<Batch, QueueError> {
    let mut batch = partition_entries(member, consumer, reclaim, count).await?;
    if member.partition > 0 && !batch.held_back {
        for (id, _) in &mut batch.entries {
            *id = queue::qualify(member.partition, std::mem::take(id));
        }
    }
    Ok(batch)
}

async fn partition_entries(
    member: &Member<'_>,
    consumer: &impl Consumer,
    reclaim: &mut Reclaim,
    count: u64,
) -> Result<Batch, QueueError> {
    let Member { ref client, redis, stream, name, partition, ref key } = *member;
    if Instant::now() >= reclaim.dead_due {
        reclaim.dead_due = Instant::now() + liveness::REFRESH;
        let taken = queue::take_over(redis, partition, key, name, count).await?;
        if !taken.entries.is_empty() {
            tracing::info!(
                count = taken.entries.len(),
                from = ?taken.dead,
                "took over {} entries of workers that stopped proving alive",
                stream.role
            );
            // more may be left: look again at once
            reclaim.dead_due = Instant::now();
            return Ok(Batch {
                entries: taken.entries,
                taken_over: true,
                taken_from: taken.dead,
                ..Batch::default()
            });
        }
    }
    if Instant::now() >= reclaim.due {
        let idle_ms = stream.visibility_timeout.as_millis() as u64;
        let (cursor, entries) =
            queue::reclaim(client, key, name, idle_ms, &reclaim.cursor, count).await?;
        if cursor == "0-0" {
            reclaim.due = Instant::now() + reclaim.every;
        }
        reclaim.cursor = cursor;
        if !entries.is_empty() {
            tracing::info!(count = entries.len(), "took over {} entries left pending", stream.role);
            return Ok(Batch { entries, taken_over: true, ..Batch::default() });
        }
    }
    let entries = consumer.held_back(count as usize);
    if !entries.is_empty() {
        return Ok(Batch { entries, held_back: true, ..Batch::default() });
    }
    // No more than may yet wait, lest the surplus go round the delayed set, behind everything
    // read since.
    let shares = consumer.shares();
    let room = shares.map(|shares| shares.room() as u64);
    if let Some(shares) = shares
        && room == Some(0)
        && reclaim.read_at.elapsed() < MAX_READ_PAUSE
    {
        let pause = Duration::from_millis(HOLDING_BACK_BLOCK_MS);
        let _ = tokio::time::timeout(pause, shares.ended()).await;
        return Ok(Batch::default());
    }
    reclaim.read_at = Instant::now();
    // Entries being admitted may come to wait: then the reader must be back soon for them.
    let holds_back = shares.is_some_and(|shares| shares.holds_back());
    let block = if holds_back { HOLDING_BACK_BLOCK_MS } else { READ_BLOCK_MS };
    // once the pause is over, all the slots: what waits is not draining
    let count = room.filter(|room| *room > 0).map_or(count, |room| count.min(room));
    let entries = queue::read_group(client, key, name, count, block).await?;
    Ok(Batch { entries, ..Batch::default() })
}

/// Waits for at least one free slot and takes every free one, up to `most`; `None` once the
/// semaphore is closed (never, in practice).
async fn take_free_slots(slots: &Arc<Semaphore>, most: usize) -> Option<OwnedSemaphorePermit> {
    let mut free = slots.clone().acquire_owned().await.ok()?;
    let more = slots.available_permits().min(most.saturating_sub(1));
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
