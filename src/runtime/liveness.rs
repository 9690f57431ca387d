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
//!
//! A lease that lapsed and was proven again is a new one ([`Liveness::term`]): while it had
//! lapsed, another worker may have taken this one's claims over, so the claims made under the
//! old term start no call even once the key holds again ([`Liveness::holds`]).

use std::sync::{Mutex, MutexGuard};
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
    lease: Mutex<Lease>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Lease {
    /// When the last refresh that Redis acknowledged was sent.
    confirmed: Option<Instant>,
    /// Which unbroken stretch of holding the lease this is: counts the refreshes acknowledged
    /// after the lease had lapsed (or before any).
    term: u64,
}

impl Liveness {
    pub fn new(consumer: String, timeout: Duration) -> Self {
        Self { consumer, timeout, lease: Mutex::new(Lease::default()) }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn lease(&self) -> MutexGuard<'_, Lease> {
        super::lock(&self.lease)
    }

    /// Until when the lease holds, if it was ever confirmed.
    fn until(&self, lease: &Lease) -> Option<Instant> {
        lease.confirmed.map(|at| at + self.timeout.saturating_sub(MARGIN))
    }

    /// Whether `lease` holds now.
    fn holding(&self, lease: &Lease) -> bool {
        self.until(lease).is_some_and(|until| Instant::now() < until)
    }

    /// Whether no other worker can have taken this one's work over.
    pub fn held(&self) -> bool {
        self.term().is_some()
    }

    /// The current term of the lease, if it holds: what a claim made now is under.
    pub fn term(&self) -> Option<u64> {
        let lease = *self.lease();
        self.holding(&lease).then_some(lease.term)
    }

    /// Whether the lease holds, without a break since `term` (a claim made under it is still
    /// this worker's alone).
    pub fn holds(&self, term: Option<u64>) -> bool {
        term.is_some() && self.term() == term
    }

    /// Resolves once the lease of `term` is gone (at once if it is): expired, or broken and
    /// proven again since.
    pub async fn lost(&self, term: Option<u64>) {
        loop {
            let lease = *self.lease();
            let until = self.until(&lease).filter(|until| Instant::now() < *until);
            match until {
                Some(until) if term == Some(lease.term) => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Refreshes the key once; returns whether Redis took it.
    pub async fn prove(&self, redis: &Redis) -> bool {
        let sent = Instant::now();
        match queue::prove_alive(redis, &self.consumer, self.timeout).await {
            Ok(()) => {
                self.acknowledged(sent);
                true
            }
            Err(error) => {
                tracing::warn!(%error, consumer = %self.consumer, "cannot prove the worker alive");
                false
            }
        }
    }

    /// Notes a refresh sent at `sent` that Redis acknowledged just now.
    fn acknowledged(&self, sent: Instant) {
        let mut lease = self.lease();
        // Acknowledged after the lease ended (in this worker's view, which ends first): the
        // key may have been gone meanwhile, and this worker taken for dead, so it is a new term.
        if !self.holding(&lease) {
            lease.term += 1;
        }
        lease.confirmed = Some(sent);
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
        assert_eq!(liveness.term(), None);
        liveness.acknowledged(Instant::now());
        assert!(liveness.held());
        let term = liveness.term();
        let start = Instant::now();
        liveness.lost(term).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        assert!(!liveness.held());
        assert!(!liveness.holds(term));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_proven_again_after_it_lapsed_is_a_new_term() {
        let liveness = Liveness::new("w".into(), Duration::from_secs(5));
        liveness.acknowledged(Instant::now());
        let claimed = liveness.term();
        // refreshed in time: the same term
        tokio::time::advance(Duration::from_secs(3)).await;
        liveness.acknowledged(Instant::now());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(liveness.holds(claimed), "refreshed before it ended");
        // not refreshed for longer than the lease, then refreshed: held, but not for the
        // claims made before the break (another worker may have taken them over)
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!liveness.held());
        liveness.acknowledged(Instant::now());
        assert!(liveness.held());
        assert!(!liveness.holds(claimed), "a claim of the lapsed term");
        assert!(liveness.holds(liveness.term()), "a claim made since");
        // and a call of the lapsed term is abandoned at once
        tokio::time::timeout(Duration::from_millis(1), liveness.lost(claimed))
            .await
            .expect("lost at once");
        assert!(!liveness.holds(None), "a claim made while it had lapsed");
    }
}
