//! Rate limits as GCRA (the generic cell rate algorithm) in one Lua script per check, so every
//! process shares one limit per subject and a check is one round trip.
//!
//! A limit of `rate` per second allows bursts of up to `rate` at once, then one every
//! `1/rate` seconds. State is a single key holding the "theoretical arrival time", expiring
//! when idle.
//!
//! Two flavours: [`check`] answers a refused caller with the time until capacity returns (the
//! API's `Retry-After`), and [`acquire`] also gives it a place in line (provider credentials,
//! whose refused messages are rescheduled rather than refused): see there.

use std::time::Duration;

use fred::prelude::LuaInterface;

use crate::queue::{QueueError, Redis};

const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, allow_at - now, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, 0, math.floor((now + tolerance - new_tat) / interval)}
"#;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// When refused: how long until the request would fit.
    pub retry_after: Duration,
    /// When allowed: how many more would fit right now.
    pub remaining: u64,
}

/// Runs a GCRA `script` for `rate` per second on `subject`'s state: one emission interval,
/// a burst tolerance of one second's worth, and the cost when the script takes one.
async fn eval(
    redis: &Redis,
    script: &str,
    subject: &str,
    rate: u32,
    cost: Option<u32>,
) -> Result<Vec<i64>, QueueError> {
    let interval = 1000.0 / f64::from(rate.max(1));
    let tolerance = interval * f64::from(rate.max(1));
    let mut args = vec![interval.to_string(), tolerance.to_string()];
    args.extend(cost.map(|c| c.to_string()));
    Ok(redis.pool().next().eval(script, vec![redis.keys().rate_limit(subject)], args).await?)
}

/// Checks (and, when allowed, spends) `cost` units of `rate` per second for `subject`.
pub async fn check(
    redis: &Redis,
    subject: &str,
    rate: u32,
    cost: u32,
) -> Result<Decision, QueueError> {
    let reply = eval(redis, GCRA, subject, rate, Some(cost.max(1))).await?;
    let [allowed, wait_ms, remaining] = reply[..] else {
        return Ok(Decision { allowed: true, retry_after: Duration::ZERO, remaining: 0 });
    };
    Ok(Decision {
        allowed: allowed == 1,
        retry_after: Duration::from_millis(wait_ms.max(0) as u64),
        remaining: remaining.max(0) as u64,
    })
}

/// [`GCRA`] for one unit, plus a line of refused callers: `next` is the first slot not yet
/// promised to one. A refused caller is told to come back at that slot, and the line moves one
/// interval on. Both live in one hash, expiring once idle.
const GCRA_IN_LINE: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tat', 'next')
local tat = tonumber(state[1]) or now
if tat < now then tat = now end
local line = tonumber(state[2]) or 0
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at <= now then
  redis.call('HSET', KEYS[1], 'tat', new_tat)
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(math.max(new_tat, line) - now)))
  return {1, 0}
end
if line < allow_at then line = allow_at end
redis.call('HSET', KEYS[1], 'next', line + interval)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(line + interval - now)))
return {0, math.ceil(line - now)}
"#;

/// Takes one unit of `rate` per second for `subject`, or, when refused, a place in line: the
/// `retry_after` of a refusal is when a slot is free that no earlier refused caller was
/// promised. Callers that come back when told therefore return spread out, one per interval;
/// with a plain [`check`], a backlog of N would all come back at the same moment, one would get
/// through, and the rest would go round again, N times over. Returning late, or not at all,
/// costs nothing: the promise reserves no capacity, it only spaces the returns.
pub async fn acquire(redis: &Redis, subject: &str, rate: u32) -> Result<Decision, QueueError> {
    let reply = eval(redis, GCRA_IN_LINE, subject, rate, None).await?;
    let [allowed, wait_ms] = reply[..] else {
        return Ok(Decision { allowed: true, retry_after: Duration::ZERO, remaining: 0 });
    };
    Ok(Decision {
        allowed: allowed == 1,
        retry_after: Duration::from_millis(wait_ms.max(0) as u64),
        remaining: 0,
    })
}
