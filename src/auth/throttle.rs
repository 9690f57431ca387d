//! Sign-in throttling: failed attempts are counted per email and per client IP in Redis, over a
//! fixed window, so a password cannot be guessed faster than the limit on any API process.

use std::time::Duration;

use fred::prelude::LuaInterface;

use crate::error::ApiError;
use crate::state::AppState;

/// More failures than this per client IP within the window are refused too; higher than the
/// per-email limit since one address may serve many people.
const IP_FACTOR: u64 = 4;

const COUNT_FAILURE: &str = "local n = redis.call('INCR', KEYS[1]) \
     if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
     local m = redis.call('INCR', KEYS[2]) \
     if m == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end \
     return n";

const READ: &str = "return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('PTTL', KEYS[1]), \
     tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('PTTL', KEYS[2])}";

fn keys(state: &AppState, email: &str, ip: &str) -> Vec<String> {
    let digest = crate::auth::tokens::hash(email);
    let email_key: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    vec![state.redis.keys().sign_in("email", &email_key), state.redis.keys().sign_in("ip", ip)]
}

/// Refuses with 429 (and Retry-After) when the email or the IP is over its limit.
pub async fn check(state: &AppState, email: &str, ip: &str) -> Result<(), ApiError> {
    let limit = u64::from(state.config.auth.sign_in_max_failures);
    let read: Vec<i64> = state
        .redis
        .pool()
        .next()
        .eval(READ, keys(state, email, ip), Vec::<String>::new())
        .await
        .map_err(crate::queue::QueueError::from)?;
    let [email_count, email_ttl, ip_count, ip_ttl] = read[..] else {
        return Err(ApiError::internal("unexpected throttle reply"));
    };
    let over = |count: i64, ttl: i64, max: u64| (count as u64 >= max).then_some(ttl.max(1) as u64);
    if let Some(ms) =
        over(email_count, email_ttl, limit).or(over(ip_count, ip_ttl, limit * IP_FACTOR))
    {
        return Err(ApiError::rate_limited(Duration::from_millis(ms))
            .with_message("too many failed sign-in attempts; try again later"));
    }
    Ok(())
}

pub async fn record_failure(state: &AppState, email: &str, ip: &str) -> Result<(), ApiError> {
    let window = state.config.auth.sign_in_window.as_millis().to_string();
    let _: i64 = state
        .redis
        .pool()
        .next()
        .eval(COUNT_FAILURE, keys(state, email, ip), vec![window])
        .await
        .map_err(crate::queue::QueueError::from)?;
    Ok(())
}

/// Forgets the email's failures after a successful sign-in.
pub async fn reset(state: &AppState, email: &str, ip: &str) -> Result<(), ApiError> {
    use fred::prelude::KeysInterface;
    let email_key = keys(state, email, ip).swap_remove(0);
    let _: i64 = state.redis.pool().del(email_key).await.map_err(crate::queue::QueueError::from)?;
    Ok(())
}
