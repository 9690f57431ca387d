//! The delivery loop of one worker process.
//!
//! - The reader takes as many entries as there are free delivery slots (`delivery.concurrency`):
//!   new ones with XREADGROUP on the worker's own connection, and every so often those that a
//!   dead worker left unacknowledged past `delivery.visibility_timeout` (XAUTOCLAIM).
//! - It claims the batch's messages in one statement; entries whose message is not claimable
//!   (duplicates, already handled, canceled) are acknowledged at once.
//! - Each claimed message is delivered in a task of its own, holding one slot.
//! - A recorder writes outcomes in batches (one transaction for many messages), then settles
//!   their entries in Redis in one round trip, and only then frees their slots.
//!
//! Postgres or Redis being unreachable never fails a message: the work waits and retries, and
//! entries stay pending until it is done (docs/architecture.md, invariant 4).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fred::clients::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::delivery::{self as queries, Outcome};
use crate::db::messages::{FAILED, Message, RETRYING};
use crate::delivery::backoff::{before, until_ok, until_ok_or_stopped};
use crate::delivery::deliver::attempt;
use crate::delivery::limits::RateLimiter;
use crate::delivery::queue::{self, Entry, Settlement};
use crate::delivery::routing::Router;
use crate::queue::QueueError;
use crate::state::AppState;

/// How long one XREADGROUP waits for entries; also how long shutdown may wait for it.
const READ_BLOCK_MS: u64 = 1000;
/// Outcomes written in one transaction at most.
const RECORD_BATCH: usize = 500;
/// Pause after the stream could not be read.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);

pub struct Worker {
    state: AppState,
    consumer: String,
    router: Router,
    limiter: RateLimiter,
}

/// A delivered message on its way to the recorder, with its stream entry and its slot.
struct Done {
    outcome: Outcome,
    entry_id: String,
    slot: Option<OwnedSemaphorePermit>,
}

/// Where the scan of entries to take over stands.
struct Reclaim {
    cursor: String,
    due: Instant,
    every: Duration,
}

impl Worker {
    pub fn new(state: AppState, consumer: String) -> Self {
        let router = Router::new(state.keys.clone(), state.config.delivery.credential_cache_ttl);
        let limiter =
            RateLimiter::new(state.redis.clone(), state.config.delivery.rate_limits.clone());
        Self { state, consumer, router, limiter }
    }

    /// Delivers until `stop` is cancelled, then lets deliveries in flight finish within
    /// `server.shutdown_grace`; those still running then are cut off and their entries left
    /// pending, for another worker to take over.
    pub async fn run(self: Arc<Self>, client: &Client, stop: CancellationToken) {
        let config = &self.state.config.delivery;
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let (done_tx, done_rx) = mpsc::channel(config.concurrency);
        // Dropping the set aborts what is still in it: nothing outlives the role.
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().record(done_rx));
        let mut reclaim = Reclaim {
            cursor: "0-0".to_owned(),
            due: Instant::now(),
            // often enough that a dead worker's entries wait little past the timeout
            every: (config.visibility_timeout / 2)
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
            match self.next_entries(client, &mut reclaim, count).await {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => self.dispatch(entries, free, &mut tasks, &done_tx, &stop).await,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the delivery stream");
                    // A Redis that lost its data (restarted without persistence, or the key
                    // deleted) lost the consumer group too: recreate it. The sweeper re-enqueues
                    // the messages whose entries went with it.
                    let text = error.to_string();
                    if text.contains("NOGROUP") || text.contains("no longer exists") {
                        let stream = self.state.redis.keys().deliveries();
                        if let Err(e) = crate::queue::ensure_group(client, &stream).await {
                            tracing::warn!(error = %e, "cannot recreate the consumer group");
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
        drop(done_tx);
        let grace = self.state.config.server.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "deliveries cut off at shutdown; their entries stay pending for another worker"
            );
        }
    }

    /// Entries taken over from dead workers when a scan is due and finds some, else new ones.
    async fn next_entries(
        &self,
        client: &Client,
        reclaim: &mut Reclaim,
        count: u64,
    ) -> Result<Vec<Entry>, QueueError> {
        let keys = self.state.redis.keys();
        if Instant::now() >= reclaim.due {
            let idle_ms = self.state.config.delivery.visibility_timeout.as_millis() as u64;
            let (cursor, entries) =
                queue::reclaim(client, keys, &self.consumer, idle_ms, &reclaim.cursor, count)
                    .await?;
            if cursor == "0-0" {
                reclaim.due = Instant::now() + reclaim.every;
            }
            reclaim.cursor = cursor;
            if !entries.is_empty() {
                tracing::info!(count = entries.len(), "took over deliveries left pending");
                return Ok(entries);
            }
        }
        queue::read(client, keys, &self.consumer, count, READ_BLOCK_MS).await
    }

    /// Claims the messages of `entries`, acknowledges the entries with nothing to do, and
    /// starts a delivery for each claimed message with one of the `free` slots.
    async fn dispatch(
        self: &Arc<Self>,
        entries: Vec<Entry>,
        mut free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        done: &mpsc::Sender<Done>,
        stop: &CancellationToken,
    ) {
        let mut settled = Vec::new();
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for entry in entries {
            match entry.message_id {
                Some(message_id) if seen.insert(message_id.clone()) => {
                    wanted.push((message_id, entry.id))
                }
                Some(_) => settled.push(entry.id),
                None => {
                    tracing::warn!(entry = %entry.id, "delivery stream entry without a message id");
                    settled.push(entry.id)
                }
            }
        }
        let ids: Vec<String> = wanted.iter().map(|(message_id, _)| message_id.clone()).collect();
        let claimed = until_ok_or_stopped("claiming messages", stop, || self.claim(&ids)).await;
        // Shutting down while Postgres is unreachable: the entries stay pending.
        let Some(claimed) = claimed else { return };

        let claimed_ids: HashSet<&str> = claimed.iter().map(|m| m.id.as_str()).collect();
        for (message_id, entry_id) in &wanted {
            if !claimed_ids.contains(message_id.as_str()) {
                settled.push(entry_id.clone());
            }
        }
        if !settled.is_empty() {
            let settlement = Settlement { done: settled, ..Settlement::default() };
            if let Err(error) = queue::settle(&self.state.redis, &settlement).await {
                // harmless: they are taken over later and acknowledged then
                tracing::warn!(%error, "cannot acknowledge entries with nothing to deliver");
            }
        }
        for message in claimed {
            let Some(entry_id) =
                wanted.iter().find(|(id, _)| *id == message.id).map(|(_, entry)| entry.clone())
            else {
                continue;
            };
            // one slot per entry read, so there is always one left
            let slot = free.split(1);
            let (worker, done) = (self.clone(), done.clone());
            tasks.spawn(async move {
                let outcome = worker.deliver(&message).await;
                // the recorder only stops once every sender is gone
                let _ = done.send(Done { outcome, entry_id, slot }).await;
            });
        }
    }

    async fn claim(&self, ids: &[String]) -> anyhow::Result<Vec<Message>> {
        let now = Utc::now();
        let stale_before = before(now, self.state.config.delivery.visibility_timeout);
        let mut conn = self.state.db.get().await?;
        Ok(queries::claim(&mut conn, ids, now, stale_before).await?)
    }

    /// One claimed message's attempt. Routing waits for Postgres as long as it takes; at
    /// shutdown, the grace period bounds that wait (the message is then taken over after the
    /// visibility timeout).
    async fn deliver(&self, message: &Message) -> Outcome {
        let db = &self.state.db;
        let route = until_ok("routing a message", || self.router.route(db, message)).await;
        let started = std::time::Instant::now();
        let (outcome, refused) = attempt(
            &self.state.connectors,
            Some(&self.limiter),
            &self.state.config.delivery,
            message,
            &route,
        )
        .await;
        let provider = outcome.provider_type.as_deref().unwrap_or("none");
        let metrics = &self.state.metrics;
        metrics.deliveries.with_label_values(&[&message.channel, provider, outcome.status]).inc();
        // the attempt's provider calls, failovers included
        metrics
            .provider_duration
            .with_label_values(&[provider])
            .observe(started.elapsed().as_secs_f64());
        for refusal in refused {
            // best effort: the flag only informs the tenant
            let flagged = async {
                let mut conn = db.get().await?;
                let now = Utc::now();
                queries::flag_credential(&mut conn, &refusal.credential_id, &refusal.error, now)
                    .await?;
                anyhow::Ok(())
            };
            if let Err(error) = flagged.await {
                tracing::warn!(%error, credential = %refusal.credential_id, "cannot flag a refused credential");
            }
        }
        outcome
    }

    /// Writes outcomes as they come, in batches, until every delivery has ended.
    async fn record(self: Arc<Self>, mut done: mpsc::Receiver<Done>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            self.record_batch(std::mem::take(&mut batch)).await;
        }
    }

    /// Records a batch, settles its entries, and then frees its slots.
    async fn record_batch(&self, batch: Vec<Done>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut settlement = Settlement::default();
        let mut _slots = Vec::with_capacity(batch.len());
        for done in batch {
            outcomes.push(done.outcome);
            settlement.done.push(done.entry_id);
            _slots.push(done.slot);
        }
        // Retried until written: the providers took these messages, and losing the outcome
        // would send them again.
        let applied = until_ok("recording delivery outcomes", || async {
            let mut conn = self.state.db.get().await?;
            anyhow::Ok(queries::record(&mut conn, &outcomes, Utc::now()).await?)
        })
        .await;
        let applied: HashSet<String> = applied.into_iter().collect();
        for outcome in &outcomes {
            if !applied.contains(&outcome.message_id) {
                tracing::warn!(message = %outcome.message_id, "outcome not recorded: another worker took the message over");
                continue;
            }
            tracing::debug!(message = %outcome.message_id, status = outcome.status, "delivery recorded");
            match (outcome.status, outcome.next_attempt_at, &outcome.status_reason) {
                (RETRYING, Some(at), _) => {
                    settlement.retries.push((outcome.message_id.clone(), at.timestamp_millis()))
                }
                (FAILED, _, reason) => settlement
                    .dead
                    .push((outcome.message_id.clone(), reason.clone().unwrap_or_default())),
                _ => {}
            }
        }
        until_ok("settling delivery entries", || queue::settle(&self.state.redis, &settlement))
            .await;
    }
}

/// Waits for at least one free slot and takes every free one; `None` once the semaphore is
/// closed (never, in practice).
pub(crate) async fn take_free_slots(slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let mut free = slots.clone().acquire_owned().await.ok()?;
    let more = slots.available_permits();
    if more > 0
        && let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32)
    {
        free.merge(extra);
    }
    Some(free)
}
