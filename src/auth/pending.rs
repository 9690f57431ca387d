//! The state of a sign-in ceremony between its two requests (a passkey challenge, an OAuth
//! redirect and its callback): kept in Redis, shared by every process, for a while and one use.
//! It is taken with GETDEL, so of two requests answering the same ceremony only one finds it.

use std::time::Duration;

use fred::prelude::KeysInterface;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::queue::QueueError;
use crate::state::AppState;

/// Keeps `value` under `key` for `ttl`.
pub async fn keep(
    state: &AppState,
    key: String,
    value: &impl Serialize,
    ttl: Duration,
) -> Result<(), ApiError> {
    let value = serde_json::to_string(value).map_err(ApiError::internal)?;
    let expire = fred::types::Expiration::EX(ttl.as_secs().max(1) as i64);
    let () = state
        .redis
        .pool()
        .next()
        .set(key, value, Some(expire), None, false)
        .await
        .map_err(QueueError::from)?;
    Ok(())
}

/// Takes what is kept under `key`: gone once read, `None` when unknown, expired or taken.
pub async fn take<T: DeserializeOwned>(
    state: &AppState,
    key: String,
) -> Result<Option<T>, ApiError> {
    let value: Option<String> =
        state.redis.pool().next().getdel(key).await.map_err(QueueError::from)?;
    // a state this version cannot read (kept by another version) is as good as expired
    Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
}
