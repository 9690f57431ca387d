//! The consuming side of the delivery queue (its contract is `crate::queue::deliveries`):
//! reading and taking over stream entries as a member of the `workers` group, settling them
//! once their outcome is recorded (next attempt in the delayed set, failures on the
//! dead-letter stream, the entry acknowledged and deleted), and moving due retries back.

use fred::clients::Client;
use fred::prelude::{LuaInterface, SortedSetsInterface, StreamsInterface};
use fred::types::Value;
use fred::types::streams::XCap;

use crate::queue::deliveries::MESSAGE_FIELD;
use crate::queue::{self, CONSUMER_GROUP, Keys, QueueError, RawEntry, Redis};

/// One stream entry: its id, and the message it names (`None` for an entry without one, which
/// is acknowledged and dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub message_id: Option<String>,
}

fn entry((id, mut fields): RawEntry) -> Entry {
    Entry { id, message_id: fields.remove(MESSAGE_FIELD) }
}

/// Reads up to `count` new entries, waiting up to `block_ms` for the first.
pub async fn read(
    client: &Client,
    keys: &Keys,
    consumer: &str,
    count: u64,
    block_ms: u64,
) -> Result<Vec<Entry>, QueueError> {
    let entries = queue::read_group(client, &keys.deliveries(), consumer, count, block_ms).await?;
    Ok(entries.into_iter().map(entry).collect())
}

/// Takes over up to `count` entries left unacknowledged for `min_idle_ms` (their worker died),
/// scanning from `cursor`; returns where the next scan goes on ("0-0" once all was scanned).
pub async fn reclaim(
    client: &Client,
    keys: &Keys,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    count: u64,
) -> Result<(String, Vec<Entry>), QueueError> {
    let (next, entries) =
        queue::reclaim(client, &keys.deliveries(), consumer, min_idle_ms, cursor, count).await?;
    Ok((next, entries.into_iter().map(entry).collect()))
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

/// Applies a settlement in one round trip. Every part is safe to repeat after an error.
pub async fn settle(redis: &Redis, settlement: &Settlement) -> Result<(), QueueError> {
    let keys = redis.keys();
    let pipeline = redis.pool().next().pipeline();
    if !settlement.retries.is_empty() {
        let members: Vec<(f64, &str)> =
            settlement.retries.iter().map(|(id, due_ms)| (*due_ms as f64, id.as_str())).collect();
        let () =
            pipeline.zadd(keys.deliveries_delayed(), None, None, false, false, members).await?;
    }
    for (message_id, reason) in &settlement.dead {
        let cap = XCap::try_from(("MAXLEN", "~", DEAD_LETTER_MAX_LEN, None))?;
        let fields = vec![(MESSAGE_FIELD, message_id.as_str()), ("reason", reason.as_str())];
        let () = pipeline.xadd(keys.deliveries_dead(), false, cap, "*", fields).await?;
    }
    if !settlement.done.is_empty() {
        let ids: Vec<&str> = settlement.done.iter().map(String::as_str).collect();
        let () = pipeline.xack(keys.deliveries(), CONSUMER_GROUP, ids.clone()).await?;
        // deleted too, so the stream holds only work still to do
        let () = pipeline.xdel(keys.deliveries(), ids).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}

/// Moves the due ids of the delayed set back onto the stream, atomically: with several
/// workers running the mover, an id is moved by exactly one of them. KEYS: the set, the
/// stream; ARGV: now (ms), the most to move, the stream field. (The webhook queue uses it too.)
pub(crate) const MOVE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
    redis.call('XADD', KEYS[2], '*', ARGV[3], id)
end
if #due > 0 then
    redis.call('ZREM', KEYS[1], unpack(due))
end
return #due
";

/// Moves up to `limit` ids due by `now_ms`; returns how many it moved.
pub async fn move_due(redis: &Redis, now_ms: i64, limit: u32) -> Result<u32, QueueError> {
    let keys = redis.keys();
    Ok(redis
        .pool()
        .next()
        .eval(
            MOVE_DUE,
            vec![keys.deliveries_delayed(), keys.deliveries()],
            vec![now_ms.to_string(), limit.to_string(), MESSAGE_FIELD.to_owned()],
        )
        .await?)
}

/// Removes `consumer` from the group if it holds no pending entry (deleting one that does
/// would lose its entries). Returns whether it was removed.
pub async fn leave_group(client: &Client, keys: &Keys, consumer: &str) -> Result<bool, QueueError> {
    let pending: Vec<Value> =
        client.xpending(keys.deliveries(), CONSUMER_GROUP, ("-", "+", 1, consumer)).await?;
    if !pending.is_empty() {
        return Ok(false);
    }
    let _: i64 = client.xgroup_delconsumer(keys.deliveries(), CONSUMER_GROUP, consumer).await?;
    Ok(true)
}
