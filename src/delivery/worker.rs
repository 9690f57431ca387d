//! What the delivery worker does with the entries the runtime reads (`crate::runtime`: as many
//! as there are free slots of `delivery.concurrency`, new ones and those a dead worker left
//! pending: one whose liveness expired, or one stuck past `delivery.visibility_timeout`):
//!
//! - It claims the batch's messages in one statement; entries whose message is not claimable
//!   (duplicates, already handled, canceled, or in the hands of a live worker) are
//!   acknowledged at once.
//! - One organization's deliveries hold at most its share of the slots (`crate::runtime::shares`): messages
//!   over it are not claimed, and wait in the worker or in the delayed set.
//! - The recipients of the claimed messages are looked up in their projects' suppression lists
//!   in one statement; a suppressed one fails at once, no provider called, no attempt spent.
//!   The projects of the others' emails are looked up for one-click unsubscribe (`unsubscribe`:
//!   cached, so at most one more statement).
//! - Each claimed message is delivered in a task of its own, holding one slot. A claim is
//!   fenced: the worker calls a provider only while no other worker can have claimed the
//!   message since (its lease, `deliver::Lease`), and an outcome is written only while the
//!   row still carries the claim (`db::delivery::record`). At most one worker calls a
//!   provider for a message at a time.
//! - A recorder writes outcomes in batches (one transaction for many messages), then settles
//!   their entries in Redis in one round trip, and only then frees their slots.
//!
//! Postgres or Redis being unreachable never fails a message: the work waits and retries, and
//! entries stay pending until it is done (docs/architecture.md, invariant 4).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::delivery::{self as queries, Outcome};
use crate::db::messages::Message;
use crate::db::suppressions::{self, Recipient, Suppression};
use crate::delivery::deliver::{self, Lease, attempt};
use crate::delivery::limits::RateLimiter;
use crate::delivery::queue::{self, Settlement, entry};
use crate::delivery::recovery;
use crate::delivery::routing::Router;
use crate::delivery::unsubscribe::{Settings, Unsubscribe};
use crate::domain::channel::Channel;
use crate::domain::status::{FAILED, RETRYING};
use crate::domain::suppression::address_key;
use crate::queue::RawEntry;
use crate::queue::deliveries::MESSAGE_FIELD;
use crate::runtime::retry::{after, before, until_ok, until_ok_or_stopped};
use crate::runtime::shares::Shares;
use crate::runtime::{Batch, Consumer, Liveness};
use crate::state::AppState;

/// Outcomes written in one transaction at most.
const RECORD_BATCH: usize = 500;

pub struct Worker {
    state: AppState,
    router: Router,
    unsubscribe: Unsubscribe,
    limiter: RateLimiter,
    /// This worker's lease on its claims (`crate::runtime::liveness`).
    liveness: Arc<Liveness>,
    shares: Arc<Shares>,
}

/// The worker as the runtime's consumer: deliveries report to the recorder through `done`.
pub struct Dispatch {
    worker: Arc<Worker>,
    done: mpsc::Sender<Done>,
}

/// A delivered message on its way to the recorder, with its stream entry and its slot.
struct Done {
    outcome: Outcome,
    entry_id: String,
    slot: Option<OwnedSemaphorePermit>,
}

impl Worker {
    /// The worker's consumer, and the recorder it reports to (which ends once the consumer and
    /// every delivery it started are gone).
    pub fn start(state: AppState, liveness: Arc<Liveness>) -> (Dispatch, JoinSet<()>) {
        let config = &state.config.delivery;
        let router = Router::new(state.keys.clone(), config.credential_cache_ttl);
        let unsubscribe = Unsubscribe::new(
            &state.keys,
            &state.config.server.public_url,
            config.credential_cache_ttl,
        );
        let limiter = RateLimiter::new(state.redis.clone(), config.rate_limits.clone());
        let (done, done_rx) = mpsc::channel(config.concurrency);
        let shares = Shares::new(config.organization_slots(), config.concurrency);
        let worker = Arc::new(Self { state, router, unsubscribe, limiter, liveness, shares });
        let mut tasks = JoinSet::new();
        tasks.spawn(worker.clone().record(done_rx));
        (Dispatch { worker, done }, tasks)
    }

    /// Claims the messages of `batch`, acknowledges the entries with nothing to do, and
    /// starts a delivery for each claimed message with one of the `free` slots.
    async fn dispatch(
        self: &Arc<Self>,
        batch: Batch,
        mut free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        done: &mpsc::Sender<Done>,
        stop: &CancellationToken,
    ) {
        let (dead, taken_over) = (batch.taken_from, batch.taken_over);
        let entries = batch.entries.into_iter().map(entry);
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
        let mut deferred = Vec::new();
        // Entries taken over are never held back: their claim needs the dead worker's name,
        // which their return from the delayed set would not carry.
        if !taken_over && self.shares.may_exceed(wanted.len()) {
            let ids: Vec<String> =
                wanted.iter().map(|(message_id, _)| message_id.clone()).collect();
            let orgs = until_ok_or_stopped("finding whose messages were read", stop, || async {
                let mut conn = self.state.db.get().await?;
                anyhow::Ok(queries::organizations_of(&mut conn, &ids).await?)
            })
            .await;
            let Some(orgs) = orgs else { return };
            let orgs: HashMap<String, String> = orgs.into_iter().collect();
            let admission = self.shares.admit(wanted, &orgs, Utc::now().timestamp_millis());
            (wanted, deferred) = (admission.admitted, admission.deferred);
        }
        let ids: Vec<String> = wanted.iter().map(|(message_id, _)| message_id.clone()).collect();
        // taken before the claims: they are this worker's only while this term lasts
        let term = self.liveness.term();
        let claimed =
            until_ok_or_stopped("claiming messages", stop, || self.claim(&ids, &dead, taken_over))
                .await;
        // Shutting down while Postgres is unreachable: the entries stay pending.
        let Some(claimed) = claimed else { return };

        let mut entries: HashMap<String, String> = wanted.into_iter().collect();
        let claimed: Vec<(Message, String)> = claimed
            .into_iter()
            .filter_map(|message| entries.remove(&message.id).map(|entry| (message, entry)))
            .collect();
        // what is left was not claimed: done with
        let mut settlement = Settlement { done: settled, ..Settlement::default() };
        settlement.done.extend(entries.into_values());
        // over its organization's share: back later
        for ((message_id, entry_id), due_ms) in deferred {
            settlement.done.push(entry_id);
            settlement.retries.push((message_id, due_ms));
        }
        if !settlement.done.is_empty()
            && let Err(error) = queue::settle(&self.state.redis, &settlement).await
        {
            // harmless: they are taken over later and handled then
            tracing::warn!(%error, "cannot settle entries with nothing to deliver now");
        }
        let suppressed = until_ok_or_stopped("looking up suppressed recipients", stop, || {
            self.suppressed(&claimed)
        })
        .await;
        // Shutting down: the claimed messages are taken over once this worker's liveness ends.
        let Some(mut suppressed) = suppressed else { return };
        let unsubscribe = until_ok_or_stopped("looking up unsubscribe settings", stop, || {
            let emails = claimed.iter().map(|(m, _)| m).filter(|m| !suppressed.contains_key(&m.id));
            self.unsubscribe.settings(&self.state.db, emails)
        })
        .await;
        let Some(unsubscribe) = unsubscribe else { return };
        for (message, entry_id) in claimed {
            // one slot per entry read, so there is always one left
            let slot = free.split(1);
            if let Some(entry) = suppressed.remove(&message.id) {
                let outcome = deliver::suppressed(&message, &entry);
                let metrics = &self.state.metrics;
                metrics.deliveries.with_label_values(&[&message.channel, "none", FAILED]).inc();
                // the recorder only stops once every sender is gone
                let _ = done.send(Done { outcome, entry_id, slot }).await;
                continue;
            }
            let mut held = self.shares.hold(&message.organization_id);
            let (worker, done) = (self.clone(), done.clone());
            let unsubscribe = unsubscribe.get(&message.project_id).cloned();
            tasks.spawn(async move {
                let (outcome, calling) =
                    worker.deliver(&message, term, unsubscribe.as_deref()).await;
                if let Some(calling) = calling {
                    held.took(calling);
                }
                drop(held);
                // the recorder only stops once every sender is gone
                let _ = done.send(Done { outcome, entry_id, slot }).await;
            });
        }
    }

    /// The claimed messages whose recipient is suppressed, by message id, with the entry.
    async fn suppressed(
        &self,
        claimed: &[(Message, String)],
    ) -> anyhow::Result<HashMap<String, Suppression>> {
        if claimed.is_empty() {
            return Ok(HashMap::new());
        }
        let addresses: Vec<String> = claimed
            .iter()
            .map(|(m, _)| match Channel::parse(&m.channel) {
                Some(channel) => address_key(channel, &m.recipient),
                None => m.recipient.clone(),
            })
            .collect();
        let recipients: Vec<Recipient> = claimed
            .iter()
            .zip(&addresses)
            .map(|((m, _), address)| Recipient {
                project_id: &m.project_id,
                channel: &m.channel,
                address,
            })
            .collect();
        let mut conn = self.state.db.get().await?;
        let entries: HashMap<(String, String, String), Suppression> =
            suppressions::matching(&mut conn, &recipients)
                .await?
                .into_iter()
                .map(|s| ((s.project_id.clone(), s.channel.clone(), s.address.clone()), s))
                .collect();
        let mut by_message = HashMap::new();
        for ((message, _), address) in claimed.iter().zip(addresses) {
            let key = (message.project_id.clone(), message.channel.clone(), address);
            if let Some(entry) = entries.get(&key) {
                by_message.insert(message.id.clone(), entry.clone());
            }
        }
        Ok(by_message)
    }

    async fn claim(
        &self,
        ids: &[String],
        dead: &[String],
        taken_over: bool,
    ) -> anyhow::Result<Vec<Message>> {
        let now = Utc::now();
        let stale_before = before(now, self.state.config.delivery.visibility_timeout);
        let mut conn = self.state.db.get().await?;
        let consumer = self.liveness.consumer();
        Ok(queries::claim(&mut conn, ids, now, stale_before, consumer, dead, taken_over).await?)
    }

    /// One claimed message's attempt, claimed under the liveness `term`. Routing waits for
    /// Postgres as long as it takes; at shutdown, the grace period bounds that wait (the message
    /// is then taken over once this worker's liveness key is withdrawn). An email of a project
    /// with one-click unsubscribe on (`unsubscribe`) gets its header fields. Returns its outcome
    /// and how long its provider calls took, if it made any.
    async fn deliver(
        &self,
        message: &Message,
        term: Option<u64>,
        unsubscribe: Option<&Settings>,
    ) -> (Outcome, Option<Duration>) {
        let db = &self.state.db;
        let config = &self.state.config.delivery;
        let route = until_ok("routing a message", || self.router.route(db, message)).await;
        let started = std::time::Instant::now();
        let lease = Lease {
            liveness: &self.liveness,
            term,
            // a call started later might still run when the visibility timeout lets another
            // worker claim the message
            calls_until: after(
                message.updated_at,
                config.visibility_timeout - config.provider_timeout,
            ),
        };
        let extras = unsubscribe.map(|s| self.unsubscribe.extras(message, s)).unwrap_or_default();
        let (outcome, aside) = attempt(
            &self.state.connectors,
            Some(&self.limiter),
            config,
            message,
            &extras,
            &route,
            Some(&lease),
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
        for refusal in aside.refused {
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
        (outcome, aside.calling)
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
                (FAILED, _, _) if outcome.details["failure"] == deliver::SUPPRESSED => {}
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

impl Consumer for Dispatch {
    async fn dispatch(
        &self,
        batch: Batch,
        free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) {
        self.worker.dispatch(batch, free, tasks, &self.done, stop).await
    }

    fn recover(&self) -> impl Future<Output = ()> + Send + 'static {
        recovery::recover(self.worker.state.clone())
    }

    fn shares(&self) -> Option<&Arc<Shares>> {
        Some(&self.worker.shares)
    }

    fn held_back(&self, max: usize) -> Vec<RawEntry> {
        self.worker.shares.ready_entries(max, MESSAGE_FIELD)
    }
}
