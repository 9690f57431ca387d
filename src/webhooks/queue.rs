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
//!
//! With `redis.stream_partitions` above one, a job goes to the stream and delayed set of its
//! message's partition (`crate::queue`), where that message's deliveries go; the dead-letter
//! stream stays one.

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
    let appends =
        queue::route(keys, now, |job| &job.message_id).into_iter().map(|(p, jobs)| {
            let encoded: Vec<String> = jobs.into_iter().map(encode).collect();
            async move {
                queue::append_all(redis, &keys.partition(p).webhooks(), JOB_FIELD, &encoded).await
            }
        });
    futures::future::try_join_all(appends).await?;
    if !later.is_empty() {
        let pipeline = redis.pool().next().pipeline();
        for (p, later) in queue::route(keys, later, |(job, _)| &job.message_id) {
            let members: Vec<(f64, String)> =
                later.iter().map(|(job, due_ms)| (*due_ms as f64, encode(job))).collect();
            let delayed = keys.partition(p).webhooks_delayed();
            let () = pipeline.zadd(delayed, None, None, false, false, members).await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
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
            Settle::Retry(job, due_ms) => later.push((job, *due_ms)),
            Settle::Dead(job, reason) => {
                let cap = XCap::try_from(("MAXLEN", "~", DEAD_LETTER_MAX_LEN, None))?;
                let fields = vec![(JOB_FIELD, encode(job)), ("reason", reason.clone())];
                let () = pipeline.xadd(keys.webhooks_dead(), false, cap, "*", fields).await?;
            }
        }
    }
    for (p, later) in queue::route(keys, later, |(job, _)| &job.message_id) {
        let members: Vec<(f64, String)> =
            later.into_iter().map(|(job, due_ms)| (due_ms as f64, encode(job))).collect();
        let delayed = keys.partition(p).webhooks_delayed();
        let () = pipeline.zadd(delayed, None, None, false, false, members).await?;
    }
    for (p, ids) in queue::by_partition(settled.iter().map(|(id, _)| id.as_str())) {
        let stream = keys.partition(p).webhooks();
        let () = pipeline.xack(&stream, CONSUMER_GROUP, ids.clone()).await?;
        let () = pipeline.xdel(&stream, ids).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}
