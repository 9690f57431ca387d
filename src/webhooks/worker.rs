//! What the webhook worker does with the entries the runtime reads (`crate::runtime`: as many
//! as there are free slots of `webhooks.concurrency`, new ones and those a dead worker left
//! pending past `webhooks.visibility_timeout`):
//!
//! - It reads what the batch's jobs deliver in one go (`db::webhooks::load_targets`: the
//!   endpoints, the events and their messages), opens each endpoint's signing secrets and
//!   builds each event's body once, however many endpoints it goes to.
//! - Each job is attempted in a task of its own, holding one slot: the signed POST.
//! - A job read while its endpoint has its bound of requests in flight waits in the worker
//!   (`shares`) with what it delivers, so that it starts without being read again when room
//!   comes (within [`PREPARED_FOR`] of the reading; past that it is read afresh).
//! - The recorder (`record`) writes the attempts in batches (one transaction for many jobs: the
//!   delivery log, the endpoints' failure streaks, the outbox rows settled), then settles
//!   their entries in Redis in one round trip (retry in the delayed set, or the dead-letter
//!   stream, then acknowledge), and only then frees their slots. A worker that dies anywhere in
//!   between leaves the entries pending, and the jobs are attempted again: at least once, with
//!   the same `webhook-id`.
//!
//! Fair to receivers (docs/webhooks.md, "Slow and failing endpoints"): before a job takes a
//! slot, its endpoint must not be backed off (`health`: it failed too often in a row; the job
//! goes back to the delayed set, due when the backoff ends) nor at its bound of requests in
//! flight (`webhooks.max_in_flight_per_endpoint`, `crate::runtime::shares`: the job waits in the
//! worker, or past that in the delayed set, paced). An endpoint's `rateLimit` is checked once
//! its job is loaded: a job over it goes back to the delayed set for the slot the limiter
//! promised it. None of these spends an attempt; the job keeps its place in the retry schedule.
//!
//! The payload is built at delivery time: `type`, `status` and `occurredAt` come from the event
//! (the status the message had then); `channel`, `to`, `attempts`, `providerMessageId` and
//! `metadata` from the message as it is now; `statusReason` from the message while it still has
//! the event's status, else null (it would explain another status).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::messages::{Event, Message};
use crate::db::webhook_endpoints::WebhookEndpoint;
use crate::db::webhooks::{self as queries, EndpointEffect, Job, NewDelivery};
use crate::domain::ids;
use crate::queue::{RawEntry, rate_limit};
use crate::runtime::retry::{after, before, until_ok_or_stopped};
use crate::runtime::shares::{Admitting, Held, Shares};
use crate::runtime::{Batch, Consumer, lock};
use crate::state::AppState;
use crate::webhooks::health::Health;
use crate::webhooks::queue::{self, JOB_FIELD, Settle};
use crate::webhooks::record::{Attempted, Done, Outcome};
use crate::webhooks::{client, record, relay, schedule, secret, sign};

/// How much of a receiver's answer the delivery log keeps.
const RESPONSE_BODY_MAX: usize = 1024;

/// How much the returns of an endpoint's jobs from a backoff are spread, so that a backlog does
/// not come back in the same millisecond.
const BACKOFF_SPREAD_MS: u64 = 1000;

/// How long what a job delivers, read for it, is used while the job waits in the worker for
/// room at its endpoint: a job that waited longer is read again, so that its body shows the
/// message nearly as it is when it is sent. Jobs rarely wait this long: as many wait as their
/// endpoint's pace starts within a second (`crate::runtime::shares`).
const PREPARED_FOR: Duration = Duration::from_secs(1);

pub struct Worker {
    pub(super) state: AppState,
    http: reqwest::Client,
    /// Each endpoint's requests in flight, bounded, and the jobs waiting for room.
    shares: Arc<Shares>,
    /// What the jobs waiting in `shares` deliver, by entry id.
    prepared: Prepared<Ready>,
    health: Health,
}

/// The worker as the runtime's consumer: attempts report to the recorder through `done`.
pub struct Dispatch {
    worker: Arc<Worker>,
    done: mpsc::Sender<Done>,
}

/// A job read, with its entry as read (which is what waits in the worker) and its slot.
struct Turn {
    entry_id: String,
    text: String,
    job: Job,
    slot: Option<OwnedSemaphorePermit>,
}

/// An endpoint as a batch's attempts need it, read and opened once per batch.
struct Target {
    endpoint: WebhookEndpoint,
    /// Its signing secrets, or why they cannot be opened.
    secrets: Result<Vec<String>, String>,
}

/// What a job delivers, ready to send: its endpoint and its body.
#[derive(Clone)]
struct Ready {
    target: Arc<Target>,
    body: Arc<Vec<u8>>,
}

/// What the jobs waiting in the worker deliver (a [`Ready`]), by entry id, with when it was
/// read. Every waiting entry is dispatched again (`Shares::ready`), which takes its own out:
/// the store holds no more than the worker lets wait.
struct Prepared<T>(Mutex<HashMap<String, (Instant, T)>>);

impl<T> Prepared<T> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn keep(&self, prepared: impl Iterator<Item = (String, (Instant, T))>) {
        lock(&self.0).extend(prepared);
    }

    fn forget<'a>(&self, entry_ids: impl Iterator<Item = &'a String>) {
        let mut entries = lock(&self.0);
        for entry_id in entry_ids {
            entries.remove(entry_id);
        }
    }

    /// Takes out what `entry_id` delivers, with when it was read, if that was less than
    /// `fresh_for` ago.
    fn take(&self, entry_id: &str, fresh_for: Duration) -> Option<(Instant, T)> {
        lock(&self.0).remove(entry_id).filter(|(read_at, _)| read_at.elapsed() < fresh_for)
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
        relay::recover(self.worker.state.clone())
    }

    fn shares(&self) -> Option<&Arc<Shares>> {
        Some(&self.worker.shares)
    }

    fn held_back(&self, max: usize) -> Vec<RawEntry> {
        self.worker.shares.ready_entries(max, JOB_FIELD)
    }
}

/// What one HTTP attempt came to.
struct Attempt {
    succeeded: bool,
    status_code: Option<u16>,
    response_body: Option<String>,
    error: Option<String>,
    retry_after: Option<Duration>,
    /// `success`, `failure`, `gone` or `refused`: the metrics label.
    outcome: &'static str,
    /// Whether the receiver was found down or overwhelmed (no answer in time, no connection,
    /// 5xx, 429), for its backoff; `None` when no request was made.
    down: Option<bool>,
}

impl Attempt {
    /// An attempt that made no request.
    fn failed(error: String, outcome: &'static str) -> Self {
        Self {
            succeeded: false,
            status_code: None,
            response_body: None,
            error: Some(error),
            retry_after: None,
            outcome,
            down: None,
        }
    }
}

impl Worker {
    /// The worker's consumer, and the recorder it reports to (which ends once the consumer and
    /// every attempt it started are gone).
    pub fn start(state: AppState) -> reqwest::Result<(Dispatch, JoinSet<()>)> {
        let config = &state.config.webhooks;
        let http = client::build(config.timeout, config.allow_private_targets)?;
        let shares = Shares::new(config.endpoint_slots(), config.concurrency);
        let health =
            Health::new(config.backoff_after_failures, config.backoff_initial, config.backoff_max);
        let (done, done_rx) = mpsc::channel(config.concurrency);
        let prepared = Prepared::new();
        let worker = Arc::new(Self { state, http, shares, prepared, health });
        let mut tasks = JoinSet::new();
        tasks.spawn(record::record(worker.state.clone(), done_rx));
        Ok((Dispatch { worker, done }, tasks))
    }

    /// Starts the work of `batch`: its jobs, each with one of the `free` slots, are loaded and
    /// attempted in a task (off the reader's path: it reads on meanwhile); those of endpoints
    /// backed off go back to the delayed set, through the recorder.
    async fn dispatch(
        self: &Arc<Self>,
        batch: Batch,
        mut free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        done: &mpsc::Sender<Done>,
        stop: &CancellationToken,
    ) {
        let now_ms = Utc::now().timestamp_millis();
        // entries that are not jobs are acknowledged and dropped
        let mut dropped = Vec::new();
        let mut backed_off = Vec::new();
        let mut turns = Vec::new();
        // a job taken over is attempted again as it is: attempts are numbered in Postgres
        for (entry_id, mut fields) in batch.entries {
            let job = fields
                .remove(JOB_FIELD)
                .and_then(|text| serde_json::from_str::<Job>(&text).ok().map(|job| (text, job)));
            let Some((text, job)) = job else {
                tracing::warn!(entry = %entry_id, "webhook stream entry without a job");
                dropped.push((entry_id, Settle::Done));
                continue;
            };
            if let Some(until_ms) = self.health.backed_off_until(&job.webhook_endpoint_id, now_ms) {
                let spread = fastrand::u64(..BACKOFF_SPREAD_MS) as i64;
                let outcome = Outcome::Later(until_ms + spread);
                backed_off.push(Done { entry_id, job, outcome, slot: None });
                continue;
            }
            // one slot per entry read, so there is always one left
            turns.push(Turn { entry_id, text, job, slot: free.split(1) });
        }
        if let Err(error) = queue::settle(&self.state.redis, &dropped).await {
            // harmless: they are taken over later and dropped then
            tracing::warn!(%error, "cannot acknowledge webhook entries without a job");
        }
        // back to the delayed set through the recorder, like a job over its endpoint's rate
        for later in backed_off {
            // the recorder only stops once every sender is gone
            let _ = done.send(later).await;
        }
        if !turns.is_empty() {
            let admitting = self.shares.admitting(turns.len());
            tasks.spawn(self.clone().attempt_all(turns, admitting, done.clone(), stop.clone()));
        }
    }

    /// Reads what a batch of jobs delivers (but for those that waited in the worker with it),
    /// then attempts each whose endpoint has room for another request (`shares`: the others
    /// wait in the worker without their slot, or go back to the delayed set), each in a task of
    /// its own that reports to the recorder when it ends. Admission comes after the reading, so
    /// that an endpoint's bound counts its requests, not the time Postgres takes to answer.
    async fn attempt_all(
        self: Arc<Self>,
        turns: Vec<Turn>,
        admitting: Admitting,
        done: mpsc::Sender<Done>,
        stop: CancellationToken,
    ) {
        let mut ready = HashMap::new();
        let mut read = Vec::new();
        let mut endpoints = HashMap::new();
        let mut take = |turn: Turn, prepared: (Instant, Ready)| {
            endpoints.insert(turn.text.clone(), prepared.1.target.endpoint.id.clone());
            read.push((turn.text.clone(), turn.entry_id.clone()));
            ready.insert(turn.entry_id.clone(), (turn, prepared));
        };
        let mut unread = Vec::new();
        for turn in turns {
            match self.prepared.take(&turn.entry_id, PREPARED_FOR) {
                Some(prepared) => take(turn, prepared),
                None => unread.push(turn),
            }
        }
        if !unread.is_empty() {
            let db = &self.state.db;
            let wanted: Vec<&Job> = unread.iter().map(|turn| &turn.job).collect();
            let targets = until_ok_or_stopped("loading webhook jobs", &stop, || async {
                let mut conn = db.get().await?;
                anyhow::Ok(queries::load_targets(&mut conn, &wanted).await?)
            })
            .await;
            // Shutting down while Postgres is unreachable: the entries stay pending.
            let Some(targets) = targets else { return };
            let (now, read_at) = (Utc::now(), Instant::now());
            let mut opened: HashMap<&str, Arc<Target>> = HashMap::new();
            let mut bodies: HashMap<&str, Arc<Vec<u8>>> = HashMap::new();
            for turn in unread {
                let target = targets.of(&turn.job).filter(|(endpoint, _, _)| endpoint.is_active);
                let Some((endpoint, event, message)) = target else {
                    tracing::debug!(event = %turn.job.event_id, "webhook job dropped: its endpoint or event is gone, or the endpoint disabled");
                    let Turn { entry_id, job, slot, .. } = turn;
                    let _ =
                        done.send(Done { entry_id, job, outcome: Outcome::Dropped, slot }).await;
                    continue;
                };
                let target = opened.entry(endpoint.id.as_str()).or_insert_with(|| {
                    let secrets = secret::signing_secrets(&self.state.keys, endpoint, now)
                        .map_err(|error| {
                            tracing::warn!(%error, endpoint = %endpoint.id, "cannot open a webhook secret");
                            format!("the endpoint's secret cannot be opened: {error}")
                        });
                    Arc::new(Target { endpoint: endpoint.clone(), secrets })
                });
                let body = bodies
                    .entry(event.id.as_str())
                    .or_insert_with(|| Arc::new(payload(&turn.job, event, message)));
                take(turn, (read_at, Ready { target: target.clone(), body: body.clone() }));
            }
        }

        // Kept before admission: an entry left waiting may be dispatched again at once, from
        // another task. Those admitted or deferred are taken out again.
        self.prepared.keep(ready.iter().map(|(id, (_, prepared))| (id.clone(), prepared.clone())));
        let mut attempts = JoinSet::new();
        let admission = self.shares.admit_held(read, &endpoints, Utc::now().timestamp_millis());
        drop(admitting);
        self.prepared.forget(admission.admitted.iter().map(|((_, id), _)| id));
        self.prepared.forget(admission.deferred.iter().map(|((_, id), _)| id));
        for ((_, entry_id), held) in admission.admitted {
            let (Some((turn, prepared)), Some(held)) = (ready.remove(&entry_id), held) else {
                continue;
            };
            let (worker, done) = (self.clone(), done.clone());
            attempts.spawn(async move {
                let Turn { entry_id, job, slot, .. } = turn;
                let Ready { target, body } = prepared.1;
                let outcome = worker.attempt(&job, &target, &body, held).await;
                // the recorder only stops once every sender is gone
                let _ = done.send(Done { entry_id, job, outcome, slot }).await;
            });
        }
        for ((_, entry_id), due_ms) in admission.deferred {
            if let Some((turn, _)) = ready.remove(&entry_id) {
                let later = Outcome::Later(due_ms);
                let _ =
                    done.send(Done { entry_id, job: turn.job, outcome: later, slot: None }).await;
            }
        }
        // what is left waits in the worker (`shares`), without its slot, and is dispatched
        // again, with what it delivers (`prepared`)
        drop(ready);
        while attempts.join_next().await.is_some() {}
    }

    /// Attempts a job once, its request counted in its endpoint's bound (`held`) until it ends;
    /// returns what the recorder is to write.
    async fn attempt(&self, job: &Job, target: &Target, body: &[u8], mut held: Held) -> Outcome {
        let endpoint = &target.endpoint;
        if let Some(wait) = self.over_rate(&endpoint.id, endpoint.rate_limit).await {
            // no attempt spent: back for the slot the limiter promised
            return Outcome::Later(after(Utc::now(), wait).timestamp_millis());
        }

        let now = Utc::now();
        let started = Instant::now();
        let attempt = match &target.secrets {
            Ok(secrets) => self.post(&endpoint.url, &job.event_id, secrets, now, body).await,
            Err(error) => Attempt::failed(error.clone(), "failure"),
        };
        let elapsed = started.elapsed();
        if attempt.down.is_some() {
            held.took(elapsed);
        }
        drop(held);
        if let Some(down) = attempt.down {
            let now_ms = Utc::now().timestamp_millis();
            if let Some(backoff) = self.health.record(&endpoint.id, down, now_ms) {
                tracing::info!(endpoint = %endpoint.id, ?backoff, "webhook endpoint failing: backed off");
            }
        }
        let metrics = &self.state.metrics;
        metrics.webhook_attempts.with_label_values(&[attempt.outcome]).inc();
        metrics
            .webhook_duration
            .with_label_values(&[attempt.outcome])
            .observe(elapsed.as_secs_f64());

        let effect = match (attempt.succeeded, attempt.status_code) {
            (true, _) => EndpointEffect::Succeeded,
            (false, Some(410)) => EndpointEffect::Gone,
            (false, _) => EndpointEffect::Failed {
                disable_if_failing_since: before(now, self.state.config.webhooks.disable_after),
            },
        };
        let delivery = NewDelivery {
            id: ids::new_id(ids::WEBHOOK_DELIVERY),
            job: job.clone(),
            succeeded: attempt.succeeded,
            status_code: attempt.status_code.map(i32::from),
            duration_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
            response_body: attempt.response_body,
            error: attempt.error,
            created_at: now,
        };
        Outcome::Attempted(Box::new(Attempted {
            delivery,
            effect,
            retry_after: attempt.retry_after,
        }))
    }

    /// How long a request to `endpoint` must wait for its `rate` (per second, over every
    /// webhook process); `None` when it may go now. The limit protects the receiver, not
    /// durability: when Redis cannot answer, the request goes ahead.
    async fn over_rate(&self, endpoint: &str, rate: Option<i32>) -> Option<Duration> {
        let rate = u32::try_from(rate?).ok().filter(|rate| *rate > 0)?;
        match rate_limit::acquire(&self.state.redis, endpoint, rate).await {
            Ok(decision) if decision.allowed => None,
            Ok(decision) => Some(decision.retry_after),
            Err(error) => {
                tracing::warn!(%error, %endpoint, "webhook rate limit unavailable; not limiting");
                None
            }
        }
    }

    /// POSTs one signed event.
    async fn post(
        &self,
        url: &str,
        webhook_id: &str,
        secrets: &[String],
        now: DateTime<Utc>,
        body: &[u8],
    ) -> Attempt {
        let allow_private = self.state.config.webhooks.allow_private_targets;
        let url = match url::Url::parse(url) {
            Ok(url) => url,
            Err(e) => return Attempt::failed(format!("invalid URL: {e}"), "failure"),
        };
        if let Some(refusal) = client::refusal(&url, allow_private) {
            return Attempt::failed(refusal.to_owned(), "refused");
        }
        let timestamp = now.timestamp();
        let signature = match sign::signature_header(secrets, webhook_id, timestamp, body) {
            Ok(signature) => signature,
            Err(e) => {
                return Attempt::failed(
                    format!("the endpoint's secret is unusable: {e}"),
                    "failure",
                );
            }
        };
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let text = error_chain(&error);
                if text.contains("refused: the target") {
                    return Attempt::failed(text, "refused");
                }
                return Attempt { down: Some(true), ..Attempt::failed(text, "failure") };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::parse_retry_after(v, Utc::now()));
        let mut kept = Vec::new();
        // the answer is only logged: read a little of it, never all of a large one
        while kept.len() < RESPONSE_BODY_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        kept.truncate(RESPONSE_BODY_MAX);
        let text = String::from_utf8_lossy(&kept).into_owned();
        let succeeded = status.is_success();
        let error = (!succeeded).then(|| match status.as_u16() {
            300..=399 => format!("HTTP {status}: redirects are not followed"),
            _ => format!("HTTP {status}"),
        });
        Attempt {
            succeeded,
            status_code: Some(status.as_u16()),
            response_body: (!text.is_empty()).then_some(text),
            error,
            retry_after,
            outcome: match (succeeded, status.as_u16()) {
                (true, _) => "success",
                (false, 410) => "gone",
                _ => "failure",
            },
            down: Some(status.is_server_error() || status.as_u16() == 429),
        }
    }
}

/// An error and its causes on one line (reqwest's own message omits them: "error sending
/// request" says nothing of a refused connection or a timeout).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The request body of a job: `{type, timestamp, data}`.
fn payload(job: &Job, event: &Event, message: &Message) -> Vec<u8> {
    let occurred_at = event.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let status_reason =
        if message.status == event.status { message.status_reason.as_deref() } else { None };
    let body = json!({
        "type": job.event_type,
        "timestamp": occurred_at,
        "data": {
            "id": message.id,
            "projectId": message.project_id,
            "channel": message.channel,
            "to": message.recipient,
            "status": event.status,
            "statusReason": status_reason,
            "attempts": message.attempts,
            "providerMessageId": message.provider_message_id,
            "metadata": message.metadata,
            "occurredAt": occurred_at,
        }
    });
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_job_is_taken_once_and_only_while_fresh() {
        let prepared = Prepared::new();
        let now = Instant::now();
        let long_ago = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        prepared.keep(
            [("1-0".to_owned(), (now, "a")), ("2-0".to_owned(), (long_ago, "b"))].into_iter(),
        );
        prepared.keep([("3-0".to_owned(), (now, "c"))].into_iter());
        assert_eq!(prepared.take("1-0", Duration::from_secs(1)).map(|(_, v)| v), Some("a"));
        assert_eq!(prepared.take("1-0", Duration::from_secs(1)), None, "taken out");
        assert_eq!(prepared.take("2-0", Duration::from_secs(1)), None, "read too long ago");
        assert!(lock(&prepared.0).get("2-0").is_none(), "a stale one is dropped too");
        prepared.forget([&"3-0".to_owned()].into_iter());
        assert!(lock(&prepared.0).is_empty());
    }
}
