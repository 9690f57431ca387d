//! The consuming side of the delivery queue (its contract is `crate::queue::deliveries`): what
//! an entry names, and settling entries once their outcome is recorded (next attempt in the
//! delayed set, failures on the dead-letter stream, the entry acknowledged and deleted).
//! Reading and taking over entries is the runtime's (`crate::runtime`).

use fred::prelude::{SortedSetsInterface, StreamsInterface};
use fred::types::Value;
use fred::types::streams::XCap;

use crate::queue::deliveries::MESSAGE_FIELD;
use crate::queue::{self, CONSUMER_GROUP, QueueError, RawEntry, Redis};

/// One stream entry: its id, and the message it names (`None` for an entry without one, which
/// is acknowledged and dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub message_id: Option<String>,
}

pub fn entry((id, mut fields): RawEntry) -> Entry {
    Entry { id, message_id: fields.remove(MESSAGE_FIELD) }
}

/// What to do in Redis once a batch of outcomes is recorded in Postgres.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Message ids and when (Unix ms) their next attempt is due.
    pub retries: Vec<(String, i64)>,
    /// Message ids that failed for good, and why.
    pub dead: Vec<(String, String)>,
    /// Stream entries that are done with.
    pub done: Vec<String>,
}

/// The dead-letter stream keeps about this many entries: Postgres holds every failed message
/// anyway, and a stream nobody trims would grow for as long as the service runs.
const DEAD_LETTER_MAX_LEN: i64 = 100_000;

/// Applies a settlement in one round trip (a pipeline: on a Redis Cluster, one per master
/// concerned). Every part is safe to repeat after an error. Retries go to the delayed set of
/// their message's partition; entries are acknowledged on the partition they were read from.
pub async fn settle(redis: &Redis, settlement: &Settlement) -> Result<(), QueueError> {
    let keys = redis.keys();
    let pipeline = redis.pool().next().pipeline();
    let retries = queue::route(keys, &settlement.retries, |(id, _)| id.as_str());
    for (p, retries) in retries {
        let members: Vec<(f64, &str)> =
            retries.iter().map(|(id, due_ms)| (*due_ms as f64, id.as_str())).collect();
        let delayed = keys.partition(p).deliveries_delayed();
        let () = pipeline.zadd(delayed, None, None, false, false, members).await?;
    }
    for (message_id, reason) in &settlement.dead {
        let cap = XCap::try_from(("MAXLEN", "~", DEAD_LETTER_MAX_LEN, None))?;
        let fields = vec![(MESSAGE_FIELD, message_id.as_str()), ("reason", reason.as_str())];
        let () = pipeline.xadd(keys.deliveries_dead(), false, cap, "*", fields).await?;
    }
    for (p, ids) in queue::by_partition(settlement.done.iter().map(String::as_str)) {
        let stream = keys.partition(p).deliveries();
        let () = pipeline.xack(&stream, CONSUMER_GROUP, ids.clone()).await?;
        // deleted too, so the stream holds only work still to do
        let () = pipeline.xdel(&stream, ids).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}
