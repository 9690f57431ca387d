//! Redis: the shared client pool, dedicated connections for blocking stream reads, and the key
//! layout of the design (`{relayit}:deliveries`, its delayed set and dead-letter stream, the
//! webhook streams, rate-limit state).
//!
//! Every key carries the `{relayit}` hash tag after the configured prefix, so on a Redis Cluster
//! they live in one slot and multi-key scripts and pipelines stay legal; except two kinds:
//!
//! - the rate-limit counters, which one single-key script reads and writes: each has a tag of
//!   its own (`{relayit:rl:<subject>}`), so the counters of many keys and credentials, touched
//!   on every send and delivery, spread over the cluster's masters;
//! - sign-in and sign-up state (`{relayit:auth}`: throttles, passkey and OAuth ceremonies),
//!   off the queue's master;
//! - the stream partitions past the first (`redis.stream_partitions`): partition `p` keeps its
//!   delivery and webhook streams, their delayed sets and the workers' liveness keys under
//!   `{relayit:p}`, so that the queues, the busiest keys there are, spread over the masters
//!   too, while each partition's scripts (moving due entries, taking over a dead worker's)
//!   stay within its one slot. A message goes to the partition its id hashes to
//!   ([`Keys::partition_of`]); so do its retries and its webhook jobs. Partition 0 is the
//!   `{relayit}` of an install with one.

use std::time::Duration;

use fred::clients::{Client, Pool, SubscriberClient};
use fred::prelude::{
    ClientLike, Config as FredConfig, KeysInterface, LuaInterface, PubsubInterface,
    ReconnectPolicy, StreamsInterface,
};
use fred::types::streams::{XReadResponse, XReadValue};
use fred::types::{Builder, Value};

use crate::config::RedisConfig;

pub mod deliveries;
pub mod rate_limit;

/// The consumer group every delivery (and webhook) worker joins.
pub const CONSUMER_GROUP: &str = "workers";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Key names, all under the configured prefix and the `{relayit}` hash tag (rate limits and
/// partitions past the first: a tag of their own, starting `{relayit:`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    base: String,
    partitions: u16,
}

impl Keys {
    /// The keys of an install with one stream partition.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), base: format!("{prefix}{{relayit}}"), partitions: 1 }
    }

    /// The keys of an install whose streams have `partitions` partitions (at least one).
    pub fn with_partitions(self, partitions: u16) -> Self {
        Self { partitions: partitions.max(1), ..self }
    }

    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The keys of stream partition `p`: its streams, delayed sets and liveness keys are those
    /// of the returned `Keys` (the first partition's are this install's own).
    pub fn partition(&self, p: u16) -> Keys {
        let base = match p {
            0 => format!("{}{{relayit}}", self.prefix),
            p => format!("{}{{relayit:{p}}}", self.prefix),
        };
        Keys { base, ..self.clone() }
    }

    /// The partition of a message (and of its webhook jobs), by its id: FNV-1a, so every
    /// process and version agrees.
    pub fn partition_of(&self, message_id: &str) -> u16 {
        if self.partitions == 1 {
            return 0;
        }
        let hash = message_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % u64::from(self.partitions)) as u16
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }

    /// Sign-in and sign-up state (throttles, ceremonies between two requests) under a tag of
    /// its own, `{relayit:auth}`: a flood of sign-in attempts lands on another master than the
    /// first partition's queue, while each throttle script's keys share one slot.
    fn auth(&self, name: &str) -> String {
        format!("{}{{relayit:auth}}:{name}", self.prefix)
    }

    pub fn deliveries(&self) -> String {
        self.key("deliveries")
    }
    pub fn deliveries_delayed(&self) -> String {
        self.key("deliveries:delayed")
    }
    pub fn deliveries_dead(&self) -> String {
        self.key("deliveries:dead")
    }
    pub fn webhooks(&self) -> String {
        self.key("webhooks")
    }
    pub fn webhooks_delayed(&self) -> String {
        self.key("webhooks:delayed")
    }
    pub fn webhooks_dead(&self) -> String {
        self.key("webhooks:dead")
    }
    /// A rate limit's counter, in a slot of its own (see the module's doc).
    pub fn rate_limit(&self, subject: &str) -> String {
        format!("{}{{relayit:rl:{subject}}}", self.prefix)
    }
    /// Sign-in guess counter: `pair` for an email digest and client address, `ip` for a
    /// client address, `email` for an email digest (failures from any address).
    pub fn sign_in(&self, kind: &str, subject: &str) -> String {
        self.auth(&format!("signin:{kind}:{subject}"))
    }
    /// A passkey ceremony between its two requests: `reg:<user id>:<challenge id>` for a
    /// registration (only its user can find it), `auth:<challenge id>` for a sign-in.
    pub fn passkey_challenge(&self, scope: &str) -> String {
        self.auth(&format!("passkey:{scope}"))
    }
    /// The liveness key of a stream consumer (a worker of one role in one process); one per
    /// partition, beside the streams, since the take-over script reads it.
    pub fn alive(&self, consumer: &str) -> String {
        self.key(&format!("alive:{consumer}"))
    }
    /// Sign-up counter for a client address.
    pub fn sign_up(&self, ip: &str) -> String {
        self.auth(&format!("signup:ip:{ip}"))
    }
    /// A started OAuth / OpenID Connect sign-in, by a digest of its `state`.
    pub fn oauth_state(&self, digest: &str) -> String {
        self.auth(&format!("oauth:{digest}"))
    }
    /// The pub/sub channel on which processes tell each other to drop cached tenant data.
    pub fn invalidations(&self) -> String {
        self.key("invalidations")
    }
    /// A pattern matching every key of this install (cleanup in tests and tools).
    pub fn pattern(&self) -> String {
        let escape = |text: &str| text.replace('{', "\\{").replace('}', "\\}");
        format!("{}\\{{relayit[:}}]*", escape(&self.prefix))
    }
}

/// One of a partition's keys, picked out of its [`Keys`] (`Keys::deliveries`, ...).
pub type KeyOf = fn(&Keys) -> String;

/// The process's Redis handles: a pool for ordinary commands, and the means to open a dedicated
/// connection for each blocking reader (a blocked XREADGROUP would stall a shared connection).
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    builder: Builder,
    keys: Keys,
    command_timeout: Duration,
}

impl Redis {
    /// Connects the pool; fails at once when Redis cannot be reached, so a misconfigured URL is
    /// reported at start-up. Afterwards the clients reconnect by themselves.
    pub async fn connect(config: &RedisConfig) -> Result<Self, QueueError> {
        let builder = builder(config)?;
        let pool = builder.build_pool(config.pool_size)?;
        pool.init().await?;
        Ok(Self {
            pool,
            builder,
            keys: Keys::new(&config.key_prefix).with_partitions(config.stream_partitions),
            command_timeout: config.command_timeout,
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection of its own, for one blocking stream reader.
    pub async fn dedicated(&self) -> Result<Client, QueueError> {
        let mut builder = self.builder.clone();
        // Blocking reads wait longer than any ordinary command; their callers bound them with
        // BLOCK, so no client-side timeout applies.
        builder.with_performance_config(|p| p.default_command_timeout = Duration::ZERO);
        let client = builder.build()?;
        client.init().await?;
        Ok(client)
    }

    /// A connection subscribed to nothing yet, for listening on pub/sub channels.
    pub async fn subscriber(&self) -> Result<SubscriberClient, QueueError> {
        let client = self.builder.build_subscriber_client()?;
        client.init().await?;
        Ok(client)
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), QueueError> {
        let _receivers: i64 = self.pool.next().publish(channel, message).await?;
        Ok(())
    }

    /// PING within the command timeout, for readiness checks.
    pub async fn ping(&self) -> Result<(), String> {
        let ping = self.pool.next().ping::<String>(None);
        match tokio::time::timeout(self.command_timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.command_timeout)
            )),
        }
    }

    pub async fn quit(&self) {
        // Best effort at shutdown: the connections close with the process either way.
        let _ = self.pool.quit().await;
    }
}

/// Creates the consumer group on `stream` (and the stream) unless it exists, and says whether
/// it did: of several workers finding the group missing (a Redis that lost its data), exactly
/// one creates it. Every worker process calls this at start, so the group being there already
/// is fine.
///
/// A new group starts at the beginning of the stream, not at its end: API processes may have
/// queued messages before the first worker ever started, and those must be delivered too.
pub async fn ensure_group(client: &Client, stream: &str) -> Result<bool, QueueError> {
    let created: Result<(), _> = client.xgroup_create(stream, CONSUMER_GROUP, "0", true).await;
    match created {
        Err(e) if e.details().starts_with("BUSYGROUP") => Ok(false),
        other => other.map(|()| true).map_err(Into::into),
    }
}

/// Says that `consumer` is alive for the next `ttl`: its liveness key, which other workers
/// look for before taking its pending entries over.
/// In every partition, in one round trip.
pub async fn prove_alive(redis: &Redis, consumer: &str, ttl: Duration) -> Result<(), QueueError> {
    let expire = fred::types::Expiration::PX(ttl.as_millis() as i64);
    let pipeline = redis.pool.next().pipeline();
    for p in 0..redis.keys.partitions {
        let key = redis.keys.partition(p).alive(consumer);
        let () = pipeline.set(key, 1, Some(expire.clone()), None, false).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}

/// Withdraws `consumer`'s liveness keys, so what it left pending is taken over at once.
pub async fn withdraw(redis: &Redis, consumer: &str) -> Result<(), QueueError> {
    let pipeline = redis.pool.next().pipeline();
    for p in 0..redis.keys.partitions {
        let () = pipeline.del(redis.keys.partition(p).alive(consumer)).await?;
    }
    let _: Vec<Value> = pipeline.all().await?;
    Ok(())
}

/// Takes over, for ARGV[2], up to ARGV[4] entries left pending by consumers of group ARGV[1]
/// whose liveness key (ARGV[3] .. name) has expired, and removes such consumers once they hold
/// nothing. Atomic, so two workers never take the same entries. Returns the dead consumers'
/// names and the entries taken.
const TAKE_OVER: &str = r"
local dead, taken = {}, {}
local budget = tonumber(ARGV[4])
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local name, pending
    for i = 1, #info, 2 do
        if info[i] == 'name' then name = info[i + 1] end
        if info[i] == 'pending' then pending = info[i + 1] end
    end
    if name ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. name) == 0 then
        if pending > 0 and budget > 0 then
            local ids = {}
            for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', budget, name)) do
                ids[#ids + 1] = p[1]
            end
            for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
                -- an entry deleted meanwhile has no fields
                if type(e) == 'table' and e[2] then taken[#taken + 1] = e end
            end
            dead[#dead + 1] = name
            budget = budget - #ids
            pending = pending - #ids
        end
        if pending == 0 then
            redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
        end
    end
end
return {dead, taken}
";

/// Entries taken over from dead consumers, and whose they were.
#[derive(Debug, Default)]
pub struct TakenOver {
    pub dead: Vec<String>,
    pub entries: Vec<RawEntry>,
}

/// Takes over up to `count` entries that consumers of `stream` (of partition `partition`)
/// without a liveness key left pending (they died, or lost Redis for longer than their
/// liveness timeout), for `consumer`.
pub async fn take_over(
    redis: &Redis,
    partition: u16,
    stream: &str,
    consumer: &str,
    count: u64,
) -> Result<TakenOver, QueueError> {
    let alive_prefix = redis.keys.partition(partition).alive("");
    let args = vec![CONSUMER_GROUP, consumer, alive_prefix.as_str(), &count.to_string()]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let value: Value = redis.pool.next().eval(TAKE_OVER, vec![stream], args).await?;
    let parse = || -> Option<TakenOver> {
        let mut parts = value.into_array().into_iter();
        let dead = parts.next()?.into_array().into_iter().filter_map(|v| v.into_string()).collect();
        let entries = parts
            .next()?
            .into_array()
            .into_iter()
            .map(|entry| {
                let mut entry = entry.into_array().into_iter();
                let id = entry.next()?.into_string()?;
                let mut fields = entry.next()?.into_array().into_iter();
                let mut map = std::collections::HashMap::new();
                while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
                    map.insert(field.into_string()?, value.into_string()?);
                }
                Some((id, map))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(TakenOver { dead, entries })
    };
    parse().ok_or_else(|| {
        QueueError::Redis(fred::error::Error::new(
            fred::error::ErrorKind::Parse,
            "unexpected answer to the take-over script",
        ))
    })
}

/// Appends one entry per value to the stream KEYS[1]; ARGV: the field, then the values.
const XADD_ALL: &str = r"
for i = 2, #ARGV do
    redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i])
end
return #ARGV - 1
";

/// Values per script call: bounds how long one call holds Redis (a few hundred microseconds).
const APPEND_CHUNK: usize = 500;

/// Appends an entry `{field: value}` to `stream` for each of `values`, in one round trip.
///
/// A script rather than a pipeline of XADDs: fred writes each pipelined command with a system
/// call of its own, so enqueueing cost relayit and Redis a write, a wake-up and a packet per
/// entry; a script call is one write however many entries it carries. Not atomic: after an
/// error some entries may be there, so callers retry the whole (duplicates are harmless).
pub async fn append_all<V: AsRef<str>>(
    redis: &Redis,
    stream: &str,
    field: &str,
    values: &[V],
) -> Result<(), QueueError> {
    let client = redis.pool().next();
    let calls = values.chunks(APPEND_CHUNK).map(|chunk| {
        let args: Vec<&str> =
            std::iter::once(field).chain(chunk.iter().map(|v| v.as_ref())).collect();
        client.eval::<i64, _, _, _>(XADD_ALL, vec![stream], args)
    });
    futures::future::try_join_all(calls).await?;
    Ok(())
}

/// A stream entry as read: its id and its fields.
pub type RawEntry = XReadValue<String, String, String>;

/// The id a worker holds for an entry of stream partition `partition`: the stream's own id on
/// the first partition, `<id>@<partition>` past it. The partition an entry was read from is
/// where it is acknowledged, whatever the partition its message hashes to now (the number of
/// partitions may have changed since it was added).
pub fn qualify(partition: u16, id: String) -> String {
    match partition {
        0 => id,
        p => format!("{id}@{p}"),
    }
}

/// The partition of an entry id that [`qualify`] gave, and the stream's own id.
pub fn unqualify(id: &str) -> (u16, &str) {
    match id.rsplit_once('@') {
        Some((id, p)) => (p.parse().unwrap_or(0), id),
        None => (0, id),
    }
}

/// Entry ids (as [`qualify`] gave them) by partition, each with the stream's own ids.
pub fn by_partition<'a>(
    ids: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeMap<u16, Vec<&'a str>> {
    let mut grouped = std::collections::BTreeMap::<u16, Vec<&str>>::new();
    for id in ids {
        let (p, id) = unqualify(id);
        grouped.entry(p).or_default().push(id);
    }
    grouped
}

/// Values by the partition their message id (`message_of`) hashes to.
pub fn route<T>(
    keys: &Keys,
    values: impl IntoIterator<Item = T>,
    message_of: impl Fn(&T) -> &str,
) -> std::collections::BTreeMap<u16, Vec<T>> {
    let mut grouped = std::collections::BTreeMap::<u16, Vec<T>>::new();
    for value in values {
        grouped.entry(keys.partition_of(message_of(&value))).or_default().push(value);
    }
    grouped
}

/// Reads up to `count` new entries of `stream` as `consumer` of the group, waiting up to
/// `block_ms` for the first.
pub async fn read_group(
    client: &Client,
    stream: &str,
    consumer: &str,
    count: u64,
    block_ms: u64,
) -> Result<Vec<RawEntry>, QueueError> {
    let value: Value = client
        .xreadgroup(CONSUMER_GROUP, consumer, Some(count), Some(block_ms), false, stream, ">")
        .await?;
    // nil when the wait ended without entries
    if value.is_null() {
        return Ok(Vec::new());
    }
    let mut response: XReadResponse<String, String, String, String> =
        value.into_xread_response()?;
    Ok(response.remove(stream).unwrap_or_default())
}

/// Takes over up to `count` entries of `stream` that consumers (this one included) read but
/// left unacknowledged for `min_idle_ms`: their worker died. Scans from `cursor` ("0-0" at
/// first) and returns where the next call goes on ("0-0" once the whole list was scanned).
pub async fn reclaim(
    client: &Client,
    stream: &str,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    count: u64,
) -> Result<(String, Vec<RawEntry>), QueueError> {
    Ok(client
        .xautoclaim_values::<String, String, String, _, _, _, _>(
            stream,
            CONSUMER_GROUP,
            consumer,
            min_idle_ms,
            cursor,
            Some(count),
            false,
        )
        .await?)
}

/// Moves the due members of a delayed set onto its stream, atomically: with several workers
/// running the mover, a member is moved by exactly one of them. KEYS: the set, the stream;
/// ARGV: now (ms), the most to move, the stream field.
const MOVE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
    redis.call('XADD', KEYS[2], '*', ARGV[3], id)
end
if #due > 0 then
    redis.call('ZREM', KEYS[1], unpack(due))
end
return #due
";

/// Moves up to `limit` members of `delayed` due by `now_ms` (their score) onto `stream`, each
/// as an entry `{field: member}`; returns how many it moved.
pub async fn move_due(
    redis: &Redis,
    delayed: &str,
    stream: &str,
    field: &str,
    now_ms: i64,
    limit: u32,
) -> Result<u32, QueueError> {
    Ok(redis
        .pool()
        .next()
        .eval(
            MOVE_DUE,
            vec![delayed, stream],
            vec![now_ms.to_string(), limit.to_string(), field.to_owned()],
        )
        .await?)
}

/// Removes `consumer` from the group of `stream` if it holds no pending entry (deleting one
/// that does would lose its entries). Returns whether it was removed.
pub async fn leave_group(
    client: &Client,
    stream: &str,
    consumer: &str,
) -> Result<bool, QueueError> {
    let pending: Vec<Value> =
        client.xpending(stream, CONSUMER_GROUP, ("-", "+", 1, consumer)).await?;
    if !pending.is_empty() {
        return Ok(false);
    }
    let _: i64 = client.xgroup_delconsumer(stream, CONSUMER_GROUP, consumer).await?;
    Ok(true)
}

/// Deletes every key of the install under `prefix` on the Redis at `url` (tests and tools
/// clean up after themselves with it; KEYS is fine there, never on a serving path).
pub async fn clear_prefix(url: &str, prefix: &str) -> Result<(), QueueError> {
    let client = Client::new(FredConfig::from_url(url)?, None, None, None);
    client.init().await?;
    let _: i64 = client
        .eval(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             n = n + redis.call('DEL', k) end return n",
            Vec::<String>::new(),
            vec![Keys::new(prefix).pattern()],
        )
        .await?;
    Ok(client.quit().await?)
}

/// Closes a dedicated connection at shutdown.
pub async fn close(client: Client) {
    // Best effort: the connection closes with the process either way.
    let _ = client.quit().await;
}

/// The longest wait between two reconnection attempts: half the command timeout, at most a
/// second. Each client of the pool reconnects on its own schedule, and a command given to one
/// still waiting to reconnect waits for it, up to the command timeout. With a cap of seconds
/// (it was 5 s), a Redis back after a 2 s restart was seen by some clients only 1 to 4 s later:
/// `/readyz` (one client) said ready while sends' enqueues (another) timed out, leaving those
/// messages to the sweeper's `delivery.requeue_after`; and a worker whose refreshes of its
/// liveness key went to a client still waiting lost its lease while its deliveries, through
/// the others, ran again, abandoning their provider calls (`runtime::liveness`). Below the
/// command timeout, a command waits out any client's reconnection once Redis is back.
fn reconnect_cap_ms(config: &RedisConfig) -> u32 {
    let cap = (config.command_timeout / 2).min(Duration::from_secs(1));
    u32::try_from(cap.as_millis()).unwrap_or(1_000).max(1)
}

fn builder(config: &RedisConfig) -> Result<Builder, QueueError> {
    let mut builder = Builder::from_config(FredConfig::from_url(&config.url)?);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = config.command_timeout;
            c.internal_command_timeout = config.command_timeout;
        })
        .with_performance_config(|p| p.default_command_timeout = config.command_timeout)
        // Reconnect forever with capped exponential backoff: a Redis restart must not need a
        // RelayIt restart.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, reconnect_cap_ms(config), 2));
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_after_the_prefix() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.deliveries(), "t1:{relayit}:deliveries");
        assert_eq!(keys.partition(0).deliveries(), "t1:{relayit}:deliveries");
        assert_eq!(keys.partition(3).webhooks_delayed(), "t1:{relayit:3}:webhooks:delayed");
        assert_eq!(keys.partition(3).alive("w"), "t1:{relayit:3}:alive:w");
        assert_eq!(keys.deliveries_delayed(), "t1:{relayit}:deliveries:delayed");
        assert_eq!(keys.webhooks_dead(), "t1:{relayit}:webhooks:dead");
        assert_eq!(keys.rate_limit("prv_1"), "t1:{relayit:rl:prv_1}");
        assert_eq!(keys.sign_up("::1"), "t1:{relayit:auth}:signup:ip:::1");
        assert_eq!(Keys::new("").deliveries(), "{relayit}:deliveries");
        assert_eq!(keys.pattern(), "t1:\\{relayit[:}]*");
    }

    #[test]
    fn messages_spread_over_partitions_the_same_way_everywhere() {
        let one = Keys::new("");
        assert_eq!(one.partition_of("msg_anything"), 0);
        let keys = Keys::new("").with_partitions(4);
        let ids: Vec<String> = (0..4000).map(|i| format!("msg_{i:026}")).collect();
        let routed = route(&keys, ids.iter(), |id| id.as_str());
        assert_eq!(routed.len(), 4, "every partition gets messages");
        for (p, ids) in &routed {
            assert!((800..1200).contains(&ids.len()), "partition {p}: {}", ids.len());
        }
        // stable: fixed inputs, fixed partitions (FNV-1a 64, worked out by hand), so a process of
        // another version agrees
        assert_eq!(keys.partition_of("msg_01JA0000000000000000000000"), 1);
        assert_eq!(
            Keys::new("").with_partitions(7).partition_of("msg_01JA0000000000000000000000"),
            3
        );
    }

    #[test]
    fn entry_ids_carry_their_partition() {
        assert_eq!(qualify(0, "1-0".into()), "1-0");
        assert_eq!(qualify(2, "1-0".into()), "1-0@2");
        assert_eq!(unqualify("1-0@2"), (2, "1-0"));
        assert_eq!(unqualify("1-0"), (0, "1-0"));
        let grouped = by_partition(["1-0", "2-0@1", "3-0", "4-0@1"]);
        assert_eq!(grouped[&0], ["1-0", "3-0"]);
        assert_eq!(grouped[&1], ["2-0", "4-0"]);
    }
}
