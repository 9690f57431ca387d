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

use fred::prelude::LuaInterface;

use crate::queue::{QueueError, Redis};

/// The stream field holding the message id.
pub const MESSAGE_FIELD: &str = "m";

/// Appends one entry per message id to the stream KEYS[1]; ARGV: the field, then the ids.
const XADD_ALL: &str = r"
for i = 2, #ARGV do
    redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i])
end
return #ARGV - 1
";

/// Ids per script call: bounds how long one call holds Redis (a few hundred microseconds).
const ENQUEUE_CHUNK: usize = 500;

/// Appends one entry per message id to the delivery stream, in one round trip.
///
/// A script rather than a pipeline of XADDs: the client writes each pipelined command with a
/// system call of its own, one per accepted message, which cost the API process and Redis more
/// than anything else they did for it; a script call is one write however many ids it carries.
pub async fn enqueue(redis: &Redis, message_ids: &[String]) -> Result<(), QueueError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    let key = redis.keys().deliveries();
    let client = redis.pool().next();
    let calls = message_ids.chunks(ENQUEUE_CHUNK).map(|ids| {
        let args: Vec<&str> =
            std::iter::once(MESSAGE_FIELD).chain(ids.iter().map(String::as_str)).collect();
        client.eval::<i64, _, _, _>(XADD_ALL, vec![key.as_str()], args)
    });
    futures::future::try_join_all(calls).await?;
    Ok(())
}
