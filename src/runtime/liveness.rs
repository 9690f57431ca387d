//! A worker's proof of life, and the lease it gives.
//!
//! Every consumer keeps a key in Redis that expires after `server.liveness_timeout`,
//! refreshed every second. Live workers take over what a consumer without its key left pending
//! (`queue::take_over`): a crashed worker's deliveries move within seconds instead of after the
//! visibility timeout, which stays the last resort for a worker that is alive but stuck.
//!
//! The same key is the worker's lease on its work: a worker that could not refresh it for
//! nearly the timeout (cut off from Redis) may already have been declared dead, so it starts no
//! provider call and abandons those in flight ([`Liveness::held`], [`Liveness::lost`]). It
//! counts from when it *sent* each refresh, before Redis set the expiry, so its own view ends
//! first, by [`MARGIN`] at least.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, Redis};

/// How often the key is refreshed.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How much earlier than Redis a worker considers its lease gone: the time it takes to stop.
const MARGIN: Duration = Duration::from_secs(1);

pub struct Liveness {
    consumer: String,
    timeout: Duration,
    /// When the last refresh that Redis acknowledged was sent.
    confirmed: Mutex<Option<Instant>>,
}

impl Liveness {
    pub fn new(consumer: String, timeout: Duration) -> Self {
        Self { consumer, timeout, confirmed: Mutex::new(None) }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Until when the lease holds, if it was ever confirmed.
    fn until(&self) -> Option<Instant> {
        let confirmed = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        confirmed.map(|at| at + self.timeout.saturating_sub(MARGIN))
    }

    /// Whether no other worker can have taken this one's work over.
    pub fn held(&self) -> bool {
        self.until().is_some_and(|until| Instant::now() < until)
    }

    /// Resolves once the lease is gone (at once if it is).
    pub async fn lost(&self) {
        while let Some(until) = self.until().filter(|until| Instant::now() < *until) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Refreshes the key once; returns whether Redis took it.
    pub async fn prove(&self, redis: &Redis) -> bool {
        let sent = Instant::now();
        match queue::prove_alive(redis, &self.consumer, self.timeout).await {
            Ok(()) => {
                *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
                true
            }
            Err(error) => {
                tracing::warn!(%error, consumer = %self.consumer, "cannot prove the worker alive");
                false
            }
        }
    }

    /// Refreshes the key every [`REFRESH`] until `stop`.
    pub async fn keep(&self, redis: &Redis, stop: CancellationToken) {
        super::duties::every(REFRESH, stop, || async {
            self.prove(redis).await;
        })
        .await
    }

    /// Withdraws the key at the end, so what this consumer left is taken over at once.
    pub async fn withdraw(&self, redis: &Redis) {
        if let Err(error) = queue::withdraw(redis, &self.consumer).await {
            tracing::warn!(%error, "cannot withdraw the worker's liveness key");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_lease_ends_a_margin_before_the_key() {
        let liveness = Liveness::new("w".into(), Duration::from_secs(5));
        assert!(!liveness.held(), "never confirmed");
        *liveness.confirmed.lock().unwrap() = Some(Instant::now());
        assert!(liveness.held());
        let start = Instant::now();
        liveness.lost().await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        assert!(!liveness.held());
    }
}
