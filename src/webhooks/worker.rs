//! What the webhook worker does with the entries the runtime reads (`crate::runtime`: as many
//! as there are free slots of `webhooks.concurrency`, new ones and those a dead worker left
//! pending past `webhooks.visibility_timeout`). Each job is attempted in a task of its own: it loads the
//! endpoint, the event and its message, POSTs the signed event, records the attempt (and what it
//! does to the endpoint) in Postgres, and only then settles its entry in Redis (retry in the
//! delayed set, or the dead-letter stream, then acknowledge). A worker that dies anywhere in
//! between leaves the entry pending, and the job is attempted again: at least once, with the
//! same `webhook-id`.
//!
//! The payload is built at delivery time: `type`, `status` and `occurredAt` come from the event
//! (the status the message had then); `channel`, `to`, `attempts`, `providerMessageId` and
//! `metadata` from the message as it is now; `statusReason` from the message while it still has
//! the event's status, else null (it would explain another status).

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
use crate::runtime::retry::{after, before, until_ok};
use crate::runtime::{Batch, Consumer};
use crate::state::AppState;
use crate::webhooks::queue::{self, Entry, Settle, entry};
use crate::webhooks::{client, relay, schedule, secret, sign};

/// How much of a receiver's answer the delivery log keeps.
const RESPONSE_BODY_MAX: usize = 1024;

pub struct Worker {
    state: AppState,
    http: reqwest::Client,
}

/// Each entry's attempt runs in a task of its own, holding one slot.
impl Consumer for Arc<Worker> {
    async fn dispatch(
        &self,
        batch: Batch,
        mut free: OwnedSemaphorePermit,
        tasks: &mut JoinSet<()>,
        _stop: &CancellationToken,
    ) {
        // a job taken over is attempted again as it is: attempts are numbered in Postgres
        for raw in batch.entries {
            tasks.spawn(self.clone().handle(entry(raw), free.split(1)));
        }
    }

    fn recover(&self) -> impl Future<Output = ()> + Send + 'static {
        relay::recover(self.state.clone())
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
}

impl Attempt {
    fn failed(error: String, outcome: &'static str) -> Self {
        Self {
            succeeded: false,
            status_code: None,
            response_body: None,
            error: Some(error),
            retry_after: None,
            outcome,
        }
    }
}

impl Worker {
    pub fn new(state: AppState) -> reqwest::Result<Self> {
        let config = &state.config.webhooks;
        let http = client::build(config.timeout, config.allow_private_targets)?;
        Ok(Self { state, http })
    }

    /// One entry: its attempt, recorded, then settled. The slot is held throughout.
    async fn handle(self: Arc<Self>, entry: Entry, _slot: Option<OwnedSemaphorePermit>) {
        let settle = match entry.job {
            Some(job) => {
                let settle = self.deliver(job.clone()).await;
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

    /// Attempts a job once and records the attempt; returns what becomes of the job.
    async fn deliver(&self, job: Job) -> Settle {
        let db = &self.state.db;
        let target = until_ok("loading a webhook job", || async {
            let mut conn = db.get().await?;
            anyhow::Ok(queries::load_target(&mut conn, &job).await?)
        })
        .await;
        let Some((endpoint, event, message)) = target else {
            tracing::debug!(event = %job.event_id, "webhook job dropped: its endpoint or event is gone");
            return Settle::Done;
        };
        if !endpoint.is_active {
            tracing::debug!(event = %job.event_id, endpoint = %endpoint.id, "webhook job dropped: endpoint disabled");
            return Settle::Done;
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
        let Some(disabled) = recorded else { return Settle::Done };
        if let Some(reason) = &disabled {
            tracing::info!(endpoint = %endpoint.id, %reason, "webhook endpoint disabled");
        }
        if attempt.succeeded {
            return Settle::Done;
        }
        if let Some(reason) = disabled {
            return Settle::Dead(job, format!("endpoint disabled: {reason}"));
        }
        let tries = job.tries.max(0) as usize + 1;
        match schedule::next_delay(
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
                let outcome =
                    if text.contains("refused: the target") { "refused" } else { "failure" };
                return Attempt::failed(text, outcome);
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
