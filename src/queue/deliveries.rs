//! The delivery queue's contract, shared by ingestion (which enqueues) and the delivery worker
//! (which consumes).
//!
//! - `{relayit}:deliveries` is a stream; each entry has one field, `m`, the message id. Entries
//!   carry no content: the row in Postgres is the truth, and a worker claims it with a
//!   conditional UPDATE, so a duplicate entry can never cause a second send.
//! - `{relayit}:deliveries:delayed` is a ZSET of message ids scored by the due time in Unix
//!   milliseconds (retries, scheduled sends); a mover puts due ids back on the stream.
//! - `{relayit}:deliveries:dead` is a stream of `m` (message id) and `reason` for messages
//!   that failed for good.
//!
//! With `redis.stream_partitions` above one, each partition `p` past the first has its own
//! stream and delayed set under `{relayit:p}`; a message's entries (and its retries) go to the
//! partition its id hashes to. The dead-letter stream stays one.

use crate::queue::{self, QueueError, Redis};

/// The stream field holding the message id.
pub const MESSAGE_FIELD: &str = "m";

/// Appends one entry per message id to the delivery stream of its partition, in one round trip
/// per partition.
pub async fn enqueue(redis: &Redis, message_ids: &[String]) -> Result<(), QueueError> {
    let keys = redis.keys();
    let routed = queue::route(keys, message_ids, |id| id.as_str());
    let appends = routed.into_iter().map(|(p, ids)| async move {
        queue::append_all(redis, &keys.partition(p).deliveries(), MESSAGE_FIELD, &ids).await
    });
    futures::future::try_join_all(appends).await?;
    Ok(())
}
