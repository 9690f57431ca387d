//! What the webhook worker does with the entries the runtime reads (`crate::runtime`: as many
//! as there are free slots of `webhooks.concurrency`, new ones and those a dead worker left
//! pending past `webhooks.visibility_timeout`). Each job is attempted in a task of its own: it loads the
//! endpoint, the event and its message, POSTs the signed event, records the attempt (and what it
//! does to the endpoint) in Postgres, and only then settles its entry in Redis (retry in the
//! delayed set, or the dead-letter stream, then acknowledge). A worker that dies anywhere in
//! between leaves the entry pending, and the job is attempted again: at least once, with the
//! same `webhook-id`.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::messages::{Event, Message};
use crate::db::webhooks::{self as queries, EndpointEffect, Job, NewDelivery};
use crate::domain::ids;
use crate::queue::{RawEntry, rate_limit};
use crate::runtime::retry::{after, before, until_ok, until_ok_or_stopped};
use crate::runtime::shares::{Held, Shares};
use crate::runtime::{Batch, Consumer};
use crate::state::AppState;
use crate::webhooks::health::Health;
use crate::webhooks::queue::{self, Entry, JOB_FIELD, Settle, entry};
use crate::webhooks::{client, relay, schedule, secret, sign};

/// How much of a receiver's answer the delivery log keeps.
const RESPONSE_BODY_MAX: usize = 1024;

/// How much the returns of an endpoint's jobs from a backoff are spread, so that a backlog does
/// not come back in the same millisecond.
const BACKOFF_SPREAD_MS: u64 = 1000;

pub struct Worker {
    state: AppState,
    http: reqwest::Client,
    /// Each endpoint's requests in flight, bounded, and the jobs waiting for room.
    shares: Arc<Shares>,
    health: Health,
}

/// Each entry's attempt runs in a task of its own, holding one slot, unless its endpoint is
/// backed off or at its bound.
impl Consumer for Arc<Worker> {
    async fn dispatch(
        &self,
        batch: Batch,
        mut free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) {
        let now_ms = Utc::now().timestamp_millis();
        let mut deferred: Vec<(String, Job, i64)> = Vec::new();
        let mut read = Vec::new();
        let mut endpoints = HashMap::new();
        // a job taken over is attempted again as it is: attempts are numbered in Postgres
        for (id, mut fields) in batch.entries {
            let Some(text) = fields.remove(JOB_FIELD) else {
                tasks.spawn(self.clone().handle(entry((id, fields)), free.split(1), None));
                continue;
            };
            let Ok(job) = serde_json::from_str::<Job>(&text) else {
                let raw = (id, HashMap::from([(JOB_FIELD.to_owned(), text)]));
                tasks.spawn(self.clone().handle(entry(raw), free.split(1), None));
                continue;
            };
            if let Some(until_ms) = self.health.backed_off_until(&job.webhook_endpoint_id, now_ms) {
                let spread = fastrand::u64(..BACKOFF_SPREAD_MS) as i64;
                deferred.push((id, job, until_ms + spread));
                continue;
            }
            endpoints.insert(text.clone(), job.webhook_endpoint_id);
            read.push((text, id));
        }
        let admission = self.shares.admit(read, &endpoints, now_ms);
        for ((text, id), due_ms) in admission.deferred {
            if let Ok(job) = serde_json::from_str::<Job>(&text) {
                deferred.push((id, job, due_ms));
            }
        }
        for (text, id) in admission.admitted {
            let held = endpoints.get(&text).map(|endpoint| self.shares.hold(endpoint));
            let raw = (id, HashMap::from([(JOB_FIELD.to_owned(), text)]));
            // one slot per entry read, so there is always one left
            tasks.spawn(self.clone().handle(entry(raw), free.split(1), held));
        }
        self.defer(&deferred, stop).await;
    }

    fn recover(&self) -> impl Future<Output = ()> + Send + 'static {
        relay::recover(self.state.clone())
    }

    fn held_back(&self, max: usize) -> Vec<RawEntry> {
        self.shares
            .ready(max)
            .into_iter()
            .map(|(text, id)| (id, HashMap::from([(JOB_FIELD.to_owned(), text)])))
            .collect()
    }

    fn holds_back(&self) -> bool {
        self.shares.holds_back()
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
    pub fn new(state: AppState) -> reqwest::Result<Self> {
        let config = &state.config.webhooks;
        let http = client::build(config.timeout, config.allow_private_targets)?;
        let shares = Shares::new(config.endpoint_slots());
        let health =
            Health::new(config.backoff_after_failures, config.backoff_initial, config.backoff_max);
        Ok(Self { state, http, shares, health })
    }

    /// Puts jobs not attempted now back in the delayed set at their due time (Unix ms): in
    /// Postgres first, like a settlement, then in Redis. At shutdown with Postgres or Redis
    /// away, the entries stay pending and are taken over.
    async fn defer(&self, deferred: &[(String, Job, i64)], stop: &CancellationToken) {
        if deferred.is_empty() {
            return;
        }
        let jobs: Vec<(Job, DateTime<Utc>)> = deferred
            .iter()
            .filter_map(|(_, job, due_ms)| {
                DateTime::from_timestamp_millis(*due_ms).map(|due| (job.clone(), due))
            })
            .collect();
        let db = &self.state.db;
        let recorded =
            until_ok_or_stopped("deferring webhook jobs in the outbox", stop, || async {
                let mut conn = db.get().await?;
                anyhow::Ok(queries::defer_jobs(&mut conn, &jobs).await?)
            })
            .await;
        if recorded.is_none() {
            return;
        }
        until_ok_or_stopped("deferring webhook entries", stop, || {
            queue::defer(&self.state.redis, deferred)
        })
        .await;
    }

    /// One entry: its attempt, recorded, then settled. The slot is held throughout; `held`
    /// counts the request in its endpoint's bound until it ends.
    async fn handle(
        self: Arc<Self>,
        entry: Entry,
        _slot: Option<OwnedSemaphorePermit>,
        mut held: Option<Held>,
    ) {
        let settle = match entry.job {
            Some(job) => {
                let (settle, took) = self.deliver(job.clone()).await;
                if let (Some(held), Some(took)) = (held.as_mut(), took) {
                    held.took(took);
                }
                drop(held);
                // in Postgres first: the outbox row is what survives Redis losing the entry
                let (job, next) = match &settle {
                    Settle::Retry(retried, due_ms) => {
                        (retried, chrono::DateTime::from_timestamp_millis(*due_ms))
                    }
                    Settle::Done | Settle::Dead(..) => (&job, None),
                };
                until_ok("settling a webhook job in the outbox", || async {
                    let mut conn = self.state.db.get().await?;
                    anyhow::Ok(queries::settle_job(&mut conn, job, next).await?)
                })
                .await;
                settle
            }
            None => {
                tracing::warn!(entry = %entry.id, "webhook stream entry without a job");
                Settle::Done
            }
        };
        until_ok("settling a webhook entry", || {
            queue::settle(&self.state.redis, &entry.id, &settle)
        })
        .await;
    }

    /// Attempts a job once and records the attempt; returns what becomes of the job, and how
    /// long its request took if one was made.
    async fn deliver(&self, job: Job) -> (Settle, Option<Duration>) {
        let db = &self.state.db;
        let target = until_ok("loading a webhook job", || async {
            let mut conn = db.get().await?;
            anyhow::Ok(queries::load_target(&mut conn, &job).await?)
        })
        .await;
        let Some((endpoint, event, message)) = target else {
            tracing::debug!(event = %job.event_id, "webhook job dropped: its endpoint or event is gone");
            return (Settle::Done, None);
        };
        if !endpoint.is_active {
            tracing::debug!(event = %job.event_id, endpoint = %endpoint.id, "webhook job dropped: endpoint disabled");
            return (Settle::Done, None);
        }
        if let Some(wait) = self.over_rate(&endpoint.id, endpoint.rate_limit).await {
            // no attempt spent: back for the slot the limiter promised
            let due = after(Utc::now(), wait).timestamp_millis();
            return (Settle::Retry(job, due), None);
        }

        let now = Utc::now();
        let started = Instant::now();
        let attempt = match secret::signing_secrets(&self.state.keys, &endpoint, now) {
            Ok(secrets) => {
                let body = payload(&job, &event, &message);
                self.post(&endpoint.url, &job.event_id, &secrets, now, body).await
            }
            Err(error) => {
                tracing::warn!(%error, endpoint = %endpoint.id, "cannot open a webhook secret");
                Attempt::failed(
                    format!("the endpoint's secret cannot be opened: {error}"),
                    "failure",
                )
            }
        };
        let elapsed = started.elapsed();
        let took = attempt.down.is_some().then_some(elapsed);
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

        let config = &self.state.config.webhooks;
        let effect = match (attempt.succeeded, attempt.status_code) {
            (true, _) => EndpointEffect::Succeeded,
            (false, Some(410)) => EndpointEffect::Gone,
            (false, _) => EndpointEffect::Failed {
                disable_if_failing_since: before(now, config.disable_after),
            },
        };
        let record = NewDelivery {
            id: ids::new_id(ids::WEBHOOK_DELIVERY),
            job: job.clone(),
            succeeded: attempt.succeeded,
            status_code: attempt.status_code.map(i32::from),
            duration_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
            response_body: attempt.response_body,
            error: attempt.error,
            created_at: now,
        };
        let recorded = until_ok("recording a webhook attempt", || async {
            let mut conn = db.get().await?;
            match queries::record_attempt(&mut conn, &record, effect).await {
                Ok(disabled) => anyhow::Ok(Some(disabled)),
                // the message (and so the event) or the endpoint was deleted meanwhile
                Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await;
        let Some(disabled) = recorded else { return (Settle::Done, took) };
        if let Some(reason) = &disabled {
            tracing::info!(endpoint = %endpoint.id, %reason, "webhook endpoint disabled");
        }
        if attempt.succeeded {
            return (Settle::Done, took);
        }
        if let Some(reason) = disabled {
            return (Settle::Dead(job, format!("endpoint disabled: {reason}")), took);
        }
        let tries = job.tries.max(0) as usize + 1;
        let settle = match schedule::next_delay(
            &config.retry_schedule,
            tries,
            attempt.retry_after,
            schedule::random_jitter(),
        ) {
            Some(delay) => {
                let due = after(Utc::now(), delay).timestamp_millis();
                Settle::Retry(Job { tries: tries as i32, ..job }, due)
            }
            None => Settle::Dead(
                Job { tries: tries as i32, ..job },
                format!("{tries} attempt(s) failed"),
            ),
        };
        (settle, took)
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
        body: Vec<u8>,
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
        let signature = match sign::signature_header(secrets, webhook_id, timestamp, &body) {
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
            .body(body)
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
