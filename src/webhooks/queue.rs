//! The webhook queue, in Redis:
//!
//! - `{relayit}:webhooks` is a stream whose entries carry one field, `job`: a [`Job`] as JSON
//!   (endpoint, message, event, event type, and the attempts made so far). Webhook workers read
//!   it as members of the `workers` group; an entry stays pending until its attempt is recorded
//!   and settled, so one left by a dead worker is taken over (XAUTOCLAIM) after
//!   `webhooks.visibility_timeout`.
//! - `{relayit}:webhooks:delayed` is a ZSET of jobs (JSON) scored by the due time of their next
//!   attempt in Unix milliseconds; a mover puts due ones on the stream.
//! - `{relayit}:webhooks:dead` is a stream of `job` and `reason` for jobs whose attempts are
//!   exhausted (or whose endpoint was disabled meanwhile).

use fred::prelude::{SortedSetsInterface, StreamsInterface};
use fred::types::Value;
use fred::types::streams::XCap;

use crate::db::webhooks::Job;
use crate::queue::{self, CONSUMER_GROUP, QueueError, Redis};

/// The stream field holding the job.
pub const JOB_FIELD: &str = "job";

/// The dead-letter stream keeps about this many entries (the delivery log in Postgres holds
/// every attempt anyway).
const DEAD_LETTER_MAX_LEN: i64 = 100_000;

pub fn encode(job: &Job) -> String {
    // a struct of strings and an integer always serializes
    serde_json::to_string(job).unwrap_or_default()
}

/// Puts jobs on the queue: `now` on the stream, `later` in the delayed set with their due time
/// (Unix ms), a command each. Fails if any command failed, so the caller can keep the jobs and
/// try again (duplicates are harmless: `webhook-id` is stable and attempts are
/// numbered in Postgres).
pub async fn push(redis: &Redis, now: &[Job], later: &[(Job, i64)]) -> Result<(), QueueError> {
    if now.is_empty() && later.is_empty() {
        return Ok(());
    }
    let keys = redis.keys();
    let encoded: Vec<String> = now.iter().map(encode).collect();
    queue::append_all(redis, &keys.webhooks(), JOB_FIELD, &encoded).await?;
    if !later.is_empty() {
        let members: Vec<(f64, String)> =
            later.iter().map(|(job, due_ms)| (*due_ms as f64, encode(job))).collect();
        let _: Value = redis
            .pool()
            .next()
            .zadd(keys.webhooks_delayed(), None, None, false, false, members)
            .await?;
    }
    Ok(())
}

/// What becomes of a stream entry once its attempt is recorded.
#[derive(Debug)]
pub enum Settle {
    /// Nothing more to do.
    Done,
    /// Attempt again at the due time (Unix ms), as this job.
    Retry(Job, i64),
    /// Exhausted: to the dead-letter stream, with the reason.
    Dead(Job, String),
}

/// Settles a batch of entries in one round trip: retries (and jobs put back without an
/// attempt) into the delayed set, exhausted jobs onto the dead-letter stream, then every entry
/// acknowledged and deleted. Safe to repeat: the next step is written before the entries are
/// acknowledged, so a failure in between leaves a duplicate at worst, never a lost job.
pub async fn settle(redis: &Redis, settled: &[(String, Settle)]) -> Result<(), QueueError> {
    if settled.is_empty() {
        return Ok(());
    }
    let keys = redis.keys();
    let pipeline = redis.pool().next().pipeline();
    let mut later = Vec::new();
    for (_, settle) in settled {
        match settle {
            Settle::Done => {}
            Settle::Retry(job, due_ms) => later.push((*due_ms as f64, encode(job))),
            Settle::Dead(job, reason) => {
                let cap = XCap::try_from(("MAXLEN", "~", DEAD_LETTER_MAX_LEN, None))?;
                let fields = vec![(JOB_FIELD, encode(job)), ("reason", reason.clone())];
                let () = pipeline.xadd(keys.webhooks_dead(), false, cap, "*", fields).await?;
            }
        }
    }
    if !later.is_empty() {
        let () = pipeline.zadd(keys.webhooks_delayed(), None, None, false, false, later).await?;
    }
    let ids: Vec<&str> = settled.iter().map(|(id, _)| id.as_str()).collect();
    let () = pipeline.xack(keys.webhooks(), CONSUMER_GROUP, ids.clone()).await?;
    let () = pipeline.xdel(keys.webhooks(), ids).await?;
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}
