//! The webhook worker's recorder: attempts are written as they end, in batches, each batch in
//! one transaction (the delivery log in one statement, the endpoints' failure streaks, the
//! outbox rows settled in one statement each), then their entries settled in Redis in one
//! round trip, and only then are their slots freed. Per webhook that is a share of a handful
//! of statements instead of a handful of its own; the guarantees are those of one job at a
//! time: a job leaves the outbox only in the transaction that records its attempt, and its
//! entry is acknowledged only after that. Jobs put back without an attempt (an endpoint backed
//! off, over its share or its rate) and jobs with nothing left to deliver settle the same way.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::config::WebhooksConfig;
use crate::db::webhooks::{self as queries, EndpointEffect, Job, NewDelivery};
use crate::runtime::retry::{after, until_ok};
use crate::state::AppState;
use crate::webhooks::queue::{self, Settle};
use crate::webhooks::schedule;

/// Attempts written in one transaction at most.
const RECORD_BATCH: usize = 500;

/// A job's turn with the worker, on its way to the recorder with its entry and its slot.
pub struct Done {
    pub entry_id: String,
    pub job: Job,
    pub outcome: Outcome,
    pub slot: Option<OwnedSemaphorePermit>,
}

/// What came of a job.
pub enum Outcome {
    /// Nothing to deliver: its endpoint, event or message is gone, or the endpoint disabled.
    Dropped,
    /// Not attempted (its endpoint backed off, over its share of the slots or over its rate):
    /// due again then (Unix ms), no attempt spent.
    Later(i64),
    Attempted(Box<Attempted>),
}

/// An attempt made: what to log, what it does to the endpoint, and the receiver's
/// `Retry-After`.
pub struct Attempted {
    pub delivery: NewDelivery,
    pub effect: EndpointEffect,
    pub retry_after: Option<Duration>,
}

/// Writes what jobs came to as they come, in batches, until every attempt has ended.
pub async fn record(state: AppState, mut done: mpsc::Receiver<Done>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        record_batch(&state, std::mem::take(&mut batch)).await;
    }
}

/// Records a batch, settles its entries, and then frees its slots. Both wait out Postgres and
/// Redis: the receivers have these requests, and losing the record would send them again.
async fn record_batch(state: &AppState, batch: Vec<Done>) {
    let config = &state.config.webhooks;
    let settles = until_ok("recording webhook attempts", || async {
        let mut conn = state.db.get().await?;
        anyhow::Ok(write(&mut conn, config, &batch).await?)
    })
    .await;
    let settled: Vec<(String, Settle)> =
        batch.iter().map(|done| done.entry_id.clone()).zip(settles).collect();
    until_ok("settling webhook entries", || queue::settle(&state.redis, &settled)).await;
}

/// Writes a batch and returns what becomes of each of its jobs. An attempt whose message or
/// endpoint was deleted meanwhile breaks a foreign key of the log, and with it the batch's
/// transaction: then each is written alone, and those gone are dropped.
async fn write(
    conn: &mut AsyncPgConnection,
    config: &WebhooksConfig,
    batch: &[Done],
) -> diesel::QueryResult<Vec<Settle>> {
    let all: Vec<&Done> = batch.iter().collect();
    match write_together(conn, config, &all).await {
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {}
        written => return written,
    }
    let mut settles = Vec::with_capacity(batch.len());
    for done in batch {
        match write_together(conn, config, &[done]).await {
            Ok(mut settle) => settles.append(&mut settle),
            Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                tracing::debug!(event = %done.job.event_id, "webhook attempt not logged: its message or endpoint is gone");
                queries::delete_jobs(conn, &[&done.job]).await?;
                settles.push(Settle::Done);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(settles)
}

/// One transaction: the attempts logged, their endpoints' streaks, and each job's outbox row
/// deleted or rescheduled by what became of it (returned, in the batch's order).
async fn write_together(
    conn: &mut AsyncPgConnection,
    config: &WebhooksConfig,
    batch: &[&Done],
) -> diesel::QueryResult<Vec<Settle>> {
    conn.transaction(async |conn| {
        let deliveries: Vec<&NewDelivery> = batch
            .iter()
            .filter_map(|done| match &done.outcome {
                Outcome::Attempted(attempted) => Some(&attempted.delivery),
                _ => None,
            })
            .collect();
        queries::insert_attempts(conn, &deliveries).await?;
        let disabled = apply_effects(conn, batch).await?;
        let settles: Vec<Settle> =
            batch.iter().map(|done| next_step(config, done, &disabled)).collect();
        let mut finished = Vec::new();
        let mut rescheduled = Vec::new();
        for (done, settle) in batch.iter().zip(&settles) {
            match settle {
                // with its next try's count
                Settle::Retry(job, due_ms) => {
                    if let Some(due) = DateTime::from_timestamp_millis(*due_ms) {
                        rescheduled.push((job, due));
                    }
                }
                Settle::Done | Settle::Dead(..) => finished.push(&done.job),
            }
        }
        queries::delete_jobs(conn, &finished).await?;
        queries::reschedule_jobs(conn, &rescheduled).await?;
        Ok(settles)
    })
    .await
}

/// An attempt's time and what it does to its endpoint.
type Made = (DateTime<Utc>, EndpointEffect);

/// Applies what the batch's attempts do to their endpoints, as if one at a time in the order
/// they were made: the streaks of endpoints whose latest attempt succeeded end in one
/// statement; an endpoint with failures since its latest success in the batch gets that
/// success and the failures after it. Returns the endpoints this disabled, with the reason.
async fn apply_effects(
    conn: &mut AsyncPgConnection,
    batch: &[&Done],
) -> diesel::QueryResult<HashMap<String, String>> {
    let mut by_endpoint: HashMap<&str, (&Job, Vec<Made>)> = HashMap::new();
    for done in batch {
        if let Outcome::Attempted(attempted) = &done.outcome {
            let (_, attempts) = by_endpoint
                .entry(&done.job.webhook_endpoint_id)
                .or_insert_with(|| (&done.job, Vec::new()));
            attempts.push((attempted.delivery.created_at, attempted.effect));
        }
    }
    let mut recovered = Vec::new();
    let mut disabled = HashMap::new();
    for (endpoint, (job, mut attempts)) in by_endpoint {
        attempts.sort_by_key(|(at, _)| *at);
        let effects = streak(&attempts);
        if effects.iter().all(|(effect, _)| *effect == EndpointEffect::Succeeded) {
            recovered.push(endpoint);
            continue;
        }
        for (effect, at) in effects {
            if let Some(reason) = queries::apply_effect(conn, job, effect, at).await? {
                tracing::info!(%endpoint, %reason, "webhook endpoint disabled");
                disabled.insert(endpoint.to_owned(), reason);
            }
        }
    }
    queries::clear_failures(conn, &recovered).await?;
    Ok(disabled)
}

/// The effects that stand for one endpoint's attempts (in the order made): a 410 disables it
/// whatever else happened; otherwise its latest success, then the failures after it as one
/// streak, begun at the first of them and judged by the latest.
fn streak(attempts: &[Made]) -> Vec<(EndpointEffect, DateTime<Utc>)> {
    if let Some((at, _)) = attempts.iter().find(|(_, effect)| *effect == EndpointEffect::Gone) {
        return vec![(EndpointEffect::Gone, *at)];
    }
    let last_success =
        attempts.iter().rposition(|(_, effect)| *effect == EndpointEffect::Succeeded);
    let mut effects = Vec::new();
    if let Some(i) = last_success {
        effects.push((EndpointEffect::Succeeded, attempts[i].0));
    }
    let failures = &attempts[last_success.map_or(0, |i| i + 1)..];
    if let (Some((first, _)), Some((_, latest))) = (failures.first(), failures.last()) {
        effects.push((*latest, *first));
    }
    effects
}

/// What becomes of a job once its turn is recorded.
fn next_step(config: &WebhooksConfig, done: &Done, disabled: &HashMap<String, String>) -> Settle {
    let job = &done.job;
    let (delivery, retry_after) = match &done.outcome {
        Outcome::Dropped => return Settle::Done,
        Outcome::Later(due_ms) => return Settle::Retry(job.clone(), *due_ms),
        Outcome::Attempted(attempted) => (&attempted.delivery, attempted.retry_after),
    };
    if delivery.succeeded {
        return Settle::Done;
    }
    if let Some(reason) = disabled.get(&job.webhook_endpoint_id) {
        return Settle::Dead(job.clone(), format!("endpoint disabled: {reason}"));
    }
    let tries = job.tries.max(0) as usize + 1;
    let job = Job { tries: tries as i32, ..job.clone() };
    match schedule::next_delay(
        &config.retry_schedule,
        tries,
        retry_after,
        schedule::random_jitter(),
    ) {
        Some(delay) => Settle::Retry(job, after(Utc::now(), delay).timestamp_millis()),
        None => Settle::Dead(job, format!("{tries} attempt(s) failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_default()
    }

    fn failed(ms: i64) -> EndpointEffect {
        EndpointEffect::Failed { disable_if_failing_since: at(ms - 1000) }
    }

    #[test]
    fn a_batch_stands_for_its_attempts_made_one_at_a_time() {
        let ok = EndpointEffect::Succeeded;
        // failures, then a success: the streak ends
        let attempts = [(at(1), failed(1)), (at(2), failed(2)), (at(3), ok)];
        assert_eq!(streak(&attempts), vec![(ok, at(3))]);
        // a success, then failures: it ends, and a new one begins at the first failure,
        // judged by the latest
        let attempts = [(at(1), ok), (at(2), failed(2)), (at(3), failed(3))];
        assert_eq!(streak(&attempts), vec![(ok, at(1)), (failed(3), at(2))]);
        // failures only: the streak goes on from the first
        let attempts = [(at(1), failed(1)), (at(2), failed(2))];
        assert_eq!(streak(&attempts), vec![(failed(2), at(1))]);
        // a 410 anywhere disables
        let attempts = [(at(1), ok), (at(2), EndpointEffect::Gone), (at(3), ok)];
        assert_eq!(streak(&attempts), vec![(EndpointEffect::Gone, at(2))]);
    }
}
