//! Per-credential rate limits, checked before each provider call (docs/architecture.md, "Redis layout").
//!
//! A credential's rate is its config's `rateLimit`, else its provider type's default
//! (`delivery.rate_limits`); 0 means none, and then Redis is not even asked. The state is one
//! GCRA key per credential, `{relayit}:rl:<credential id>`, shared by every worker process.
//!
//! What a refusal does (in `deliver`): the credential is not called, and the route's next
//! credential is tried, as on a retryable error: the limit says "busy", not "broken", and
//! failover is what a second credential is for. When no credential takes the message, it is
//! rescheduled like a provider's 429, without spending an attempt, for when the limiter
//! promises a free slot (`rate_limit::acquire`: refused messages come back spread out, one per
//! interval, not all at once). A busy credential never makes a message fail or spend an
//! attempt, even when the others refuse it or fail temporarily (they are tried again with it
//! next time); only a permanent error, or `delivery.max_throttled_for`, ends the wait.
//!
//! The limit protects providers and neighbours, not durability: when Redis cannot answer, the
//! call goes ahead (with a warning), as on `/v1/send`.

use std::time::Duration;

use crate::config::RateLimits;
use crate::providers::connector::OpenedCredential;
use crate::queue::{Redis, rate_limit};

/// A credential at its rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Its rate, per second.
    pub rate: u32,
    /// How long until the slot the limiter promised this call.
    pub wait: Duration,
}

pub struct RateLimiter {
    redis: Redis,
    defaults: RateLimits,
}

impl RateLimiter {
    pub fn new(redis: Redis, defaults: RateLimits) -> Self {
        Self { redis, defaults }
    }

    /// Calls per second allowed with `credential`; 0 = no limit.
    pub fn rate(&self, credential: &OpenedCredential) -> u32 {
        crate::domain::provider_types::rate_limit(&credential.config)
            .unwrap_or_else(|| self.defaults.of(credential.provider_type))
    }

    /// Takes a call's worth of `credential`'s rate, or says how long to wait for one.
    pub async fn admit(&self, credential: &OpenedCredential) -> Result<(), Limited> {
        let rate = self.rate(credential);
        if rate == 0 {
            return Ok(());
        }
        match rate_limit::acquire(&self.redis, &credential.id, rate).await {
            Ok(decision) if decision.allowed => Ok(()),
            Ok(decision) => Err(Limited { rate, wait: decision.retry_after }),
            Err(error) => {
                tracing::warn!(%error, credential = %credential.id, "rate limit unavailable; not limiting");
                Ok(())
            }
        }
    }
}
