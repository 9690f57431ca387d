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

use crate::queue::{self, QueueError, Redis};

/// The stream field holding the message id.
pub const MESSAGE_FIELD: &str = "m";

/// Appends one entry per message id to the delivery stream, in one round trip.
pub async fn enqueue(redis: &Redis, message_ids: &[String]) -> Result<(), QueueError> {
    queue::append_all(redis, &redis.keys().deliveries(), MESSAGE_FIELD, message_ids).await
}
