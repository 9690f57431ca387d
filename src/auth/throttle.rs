//! Sign-in and sign-up throttling, counted in Redis so every API process shares the limits.
//!
//! Sign-in guesses are limited per (email, client address) and per client address, over a fixed
//! window (`auth.sign_in_window`): past either limit the address is answered 429. A guess is
//! reserved, atomically with the check, *before* the password is verified, so a burst of
//! parallel guesses gets no more tries than the same guesses one after another. A correct
//! password gives the reservation back (and forgives the email's failures), a guess that was
//! never checked (no hashing slot, a database error) gives it back too.
//!
//! Failures are also counted per email alone, from any address, but only to slow sign-ins to
//! that email down ([`slowdown`]), never to refuse them: a refusal per email would let a
//! stranger who hammers an account lock its owner out.
//!
//! Sign-ins that name no email (a passkey that names its user, a provider's callback) count
//! against the address only, with the address's limit over all emails.
//!
//! Sign-ups (each one hashes a password) are limited per client address the same way, and so
//! are the starts of sign-ins without a password (a passkey challenge, a provider's redirect),
//! each of which keeps its state in Redis until it is answered or expires.

use std::time::Duration;

use fred::prelude::LuaInterface;

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::queue::QueueError;
use crate::state::AppState;

/// More failures than this many times `auth.sign_in_max_failures` from one client address,
/// over all emails, are refused too; more than per email since one address may serve many
/// people.
const ADDRESS_FACTOR: u64 = 4;

/// The delay after the email's first `sign_in_max_failures` failures; it doubles with each
/// further failure, up to `auth.sign_in_max_delay`.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// Reserves one count on each limited key (`KEYS[1..n]`, limits in `ARGV[2..n+1]`, window in
/// `ARGV[1]`) unless one of them is at its limit, and reads the keys after them. Answers
/// `{1, reads...}`, or `{0, ms until the full key expires}`.
const RESERVE: &str = r#"
local window = ARGV[1]
local limited = #ARGV - 1
for i = 1, limited do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = tonumber(window)
    end
    return {0, ttl}
  end
end
for i = 1, limited do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], window) end
end
local answer = {1}
for i = limited + 1, #KEYS do
  answer[#answer + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
return answer
"#;

/// Deletes the first `ARGV[1]` keys and gives one count back on each of the others (never
/// below zero, and never creating a key, so no count outlives its window).
const SETTLE: &str = r#"
local deleted = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if i <= deleted then
    redis.call('DEL', key)
  elseif tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
"#;

const COUNT: &str = r#"
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"#;

async fn eval(
    state: &AppState,
    script: &str,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<Vec<i64>, ApiError> {
    let reply: Vec<i64> =
        state.redis.pool().next().eval(script, keys, args).await.map_err(QueueError::from)?;
    Ok(reply)
}

/// The Redis keys of one sign-in: (email, address), address, email; only the address when
/// the email is not known (a passkey sign-in without one).
struct SignInKeys {
    pair: Option<String>,
    address: String,
    email: Option<String>,
}

impl SignInKeys {
    fn new(state: &AppState, email: Option<&str>, ip: &str) -> SignInKeys {
        let keys = state.redis.keys();
        // the email is never stored in Redis, only a digest of it
        let email_key = email.map(|email| {
            let digest = crate::auth::tokens::hash(email);
            digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
        SignInKeys {
            pair: email_key.as_ref().map(|e| keys.sign_in("pair", &format!("{e}:{ip}"))),
            address: keys.sign_in("ip", ip),
            email: email_key.map(|e| keys.sign_in("email", &e)),
        }
    }
}

/// A sign-in guess reserved against the limits: settle it with [`Guess::failed`],
/// [`Guess::succeeded`] or [`Guess::untested`]. Dropped unsettled, it counts as a failure
/// against the address (not against the email).
pub struct Guess {
    keys: SignInKeys,
    /// The email's failures within the window, from any address.
    email_failures: u64,
}

fn window_ms(window: Duration) -> String {
    window.as_millis().max(1).to_string()
}

fn refused(ms: i64, message: &str) -> ApiError {
    ApiError::rate_limited(Duration::from_millis(ms.max(1) as u64)).with_message(message)
}

/// Reserves a sign-in guess for `email` from client address `ip`; 429 with `Retry-After` when
/// the address is over its limit for this email or for all emails.
pub async fn reserve(state: &AppState, email: &str, ip: &str) -> Result<Guess, ApiError> {
    reserve_keys(state, SignInKeys::new(state, Some(email), ip)).await
}

/// Reserves a sign-in guess for no particular email (a passkey that names its user only once
/// checked) from client address `ip`: counted against the address's limit over all emails.
pub async fn reserve_address(state: &AppState, ip: &str) -> Result<Guess, ApiError> {
    reserve_keys(state, SignInKeys::new(state, None, ip)).await
}

async fn reserve_keys(state: &AppState, keys: SignInKeys) -> Result<Guess, ApiError> {
    let config = &state.config.auth;
    let limit = u64::from(config.sign_in_max_failures);
    let window = window_ms(config.sign_in_window);
    let (script_keys, args) = match (&keys.pair, &keys.email) {
        (Some(pair), Some(email)) => (
            vec![pair.clone(), keys.address.clone(), email.clone()],
            vec![window, limit.to_string(), (limit * ADDRESS_FACTOR).to_string()],
        ),
        _ => (vec![keys.address.clone()], vec![window, (limit * ADDRESS_FACTOR).to_string()]),
    };
    let reply = eval(state, RESERVE, script_keys, args).await?;
    match reply[..] {
        [1, email_failures] => Ok(Guess { keys, email_failures: email_failures.max(0) as u64 }),
        [1] => Ok(Guess { keys, email_failures: 0 }),
        [0, ms] => Err(refused(ms, "too many failed sign-in attempts; try again later")),
        _ => Err(ApiError::internal("unexpected sign-in throttle reply")),
    }
}

impl Guess {
    /// How long to hold this sign-in back for its email's recent failures.
    pub fn delay(&self, config: &AuthConfig) -> Duration {
        slowdown(self.email_failures, config.sign_in_max_failures, config.sign_in_max_delay)
    }

    /// A wrong password: the reservation stands, and the email's failures grow by one.
    pub async fn failed(self, state: &AppState) -> Result<(), ApiError> {
        if let Some(email) = self.keys.email {
            let window = window_ms(state.config.auth.sign_in_window);
            eval(state, COUNT, vec![email], vec![window]).await?;
        }
        Ok(())
    }

    /// The right password: the email's failures (from this address and from all) are
    /// forgiven, and the address gets its reservation back.
    pub async fn succeeded(self, state: &AppState) -> Result<(), ApiError> {
        let forgiven: Vec<String> = self.keys.pair.into_iter().chain(self.keys.email).collect();
        let deleted = forgiven.len().to_string();
        let keys = forgiven.into_iter().chain([self.keys.address]).collect();
        eval(state, SETTLE, keys, vec![deleted]).await?;
        Ok(())
    }

    /// The password was never checked: the reservation is given back.
    pub async fn untested(self, state: &AppState) -> Result<(), ApiError> {
        let keys = self.keys.pair.into_iter().chain([self.keys.address]).collect();
        eval(state, SETTLE, keys, vec!["0".into()]).await?;
        Ok(())
    }
}

/// The delay for a sign-in to an email that failed `failures` times within the window: none
/// up to `limit` failures (a user who mistypes is not slowed), then [`FIRST_DELAY`] doubling
/// with each further failure, at most `max`.
pub fn slowdown(failures: u64, limit: u32, max: Duration) -> Duration {
    let Some(beyond) = failures.checked_sub(u64::from(limit)) else { return Duration::ZERO };
    let doublings = beyond.min(16) as u32;
    (FIRST_DELAY * 2u32.pow(doublings)).min(max)
}

/// A sign-up counted against its client address's limit; [`SignUp::untested`] gives it back.
pub struct SignUp {
    key: String,
}

/// Counts a sign-up from client address `ip`; 429 with `Retry-After` over
/// `auth.sign_up_max_per_address` within `auth.sign_up_window`.
pub async fn reserve_sign_up(state: &AppState, ip: &str) -> Result<SignUp, ApiError> {
    let config = &state.config.auth;
    let key = state.redis.keys().sign_up(ip);
    let args = vec![window_ms(config.sign_up_window), config.sign_up_max_per_address.to_string()];
    let reply = eval(state, RESERVE, vec![key.clone()], args).await?;
    match reply[..] {
        [1] => Ok(SignUp { key }),
        [0, ms] => Err(refused(ms, "too many sign-ups from this address; try again later")),
        _ => Err(ApiError::internal("unexpected sign-up throttle reply")),
    }
}

impl SignUp {
    /// The password was never hashed (no hashing slot): the count is given back.
    pub async fn untested(self, state: &AppState) -> Result<(), ApiError> {
        eval(state, SETTLE, vec![self.key], vec!["0".into()]).await?;
        Ok(())
    }
}

/// Counts a sign-in started from client address `ip` (a passkey challenge, a provider's
/// redirect); 429 with `Retry-After` past `auth.sign_in_starts_per_address` within the window.
pub async fn count_start(state: &AppState, ip: &str) -> Result<(), ApiError> {
    let config = &state.config.auth;
    let key = state.redis.keys().sign_in("start", ip);
    let limit = config.sign_in_starts_per_address.to_string();
    let reply =
        eval(state, RESERVE, vec![key], vec![window_ms(config.sign_in_window), limit]).await?;
    match reply[..] {
        [1] => Ok(()),
        [0, ms] => Err(refused(ms, "too many sign-ins started from this address; try again later")),
        _ => Err(ApiError::internal("unexpected sign-in throttle reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowdown_starts_past_the_limit_doubles_and_is_capped() {
        let max = Duration::from_secs(3);
        let ms = |failures| slowdown(failures, 5, max).as_millis();
        assert_eq!([0, 4].map(ms), [0, 0]);
        assert_eq!(
            [5, 6, 7, 8, 9, 1000, u64::MAX].map(ms),
            [250, 500, 1000, 2000, 3000, 3000, 3000]
        );
        assert_eq!(slowdown(1000, 5, Duration::ZERO), Duration::ZERO);
    }
}
