//! Backing off endpoints that keep failing. After `webhooks.backoff_after_failures`
//! consecutive failed attempts (timeouts, connection errors, 5xx, 429: the receiver is down or
//! overwhelmed), an endpoint's jobs are not attempted until its backoff ends: they go back to
//! the delayed set, due then, without spending an attempt or a slot. The backoff starts at
//! `webhooks.backoff_initial` and doubles every time the endpoint fails again after one, up to
//! `webhooks.backoff_max`; any answer that shows the receiver alive and well (a 2xx, or a 3xx or
//! 4xx other than 429, which come back fast and say nothing of its load) ends it.
//!
//! The state is per process, in memory: it is soft (losing it on a restart costs a few attempts
//! at most), each process learns of a dead endpoint within `backoff_after_failures` attempts of
//! its own, and asking Redis before every job would cost a round trip on the path of every
//! healthy endpoint too. Attempts still happen after each backoff, so an endpoint failing for
//! `webhooks.disable_after` is still disabled.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Endpoints remembered at most; past that, those whose last failure is long past are
/// forgotten.
const REMEMBERED: usize = 4096;

pub struct Health {
    after_failures: u32,
    initial: Duration,
    max: Duration,
    endpoints: Mutex<HashMap<String, Streak>>,
}

/// An endpoint's run of failures.
#[derive(Debug, Default)]
struct Streak {
    failures: u32,
    /// Backoffs so far in this run.
    backoffs: u32,
    /// When the current backoff ends (Unix ms); 0 when none was imposed.
    until_ms: i64,
    last_failure_ms: i64,
}

impl Health {
    pub fn new(after_failures: u32, initial: Duration, max: Duration) -> Self {
        Self { after_failures, initial, max, endpoints: Mutex::new(HashMap::new()) }
    }

    fn endpoints(&self) -> MutexGuard<'_, HashMap<String, Streak>> {
        crate::runtime::lock(&self.endpoints)
    }

    /// When `endpoint`'s backoff ends (Unix ms), if it is backed off at `now_ms`.
    pub fn backed_off_until(&self, endpoint: &str, now_ms: i64) -> Option<i64> {
        let endpoints = self.endpoints();
        let until = endpoints.get(endpoint)?.until_ms;
        (until > now_ms).then_some(until)
    }

    /// Records an attempt that reached (or tried to reach) `endpoint`: `down` when it failed for
    /// want of a working receiver. Returns the backoff this failure started, if any.
    pub fn record(&self, endpoint: &str, down: bool, now_ms: i64) -> Option<Duration> {
        let mut endpoints = self.endpoints();
        if !down {
            endpoints.remove(endpoint);
            return None;
        }
        if endpoints.len() >= REMEMBERED {
            let forget_before = now_ms - 2 * self.max.as_millis() as i64;
            endpoints.retain(|_, streak| {
                streak.until_ms > now_ms || streak.last_failure_ms > forget_before
            });
        }
        let streak = endpoints.entry(endpoint.to_owned()).or_default();
        streak.failures = streak.failures.saturating_add(1);
        streak.last_failure_ms = now_ms;
        // a failure of a request started before the backoff does not lengthen it
        if self.after_failures == 0
            || streak.failures < self.after_failures
            || streak.until_ms > now_ms
        {
            return None;
        }
        let backoff = self.initial.saturating_mul(1 << streak.backoffs.min(20)).min(self.max);
        streak.backoffs += 1;
        streak.until_ms = now_ms + backoff.as_millis() as i64;
        Some(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_back_off_longer_each_time_and_a_success_ends_it() {
        let health = Health::new(3, Duration::from_secs(5), Duration::from_secs(12));
        let ep = "wh_1";
        assert_eq!(health.record(ep, true, 0), None);
        assert_eq!(health.record(ep, true, 1), None);
        assert_eq!(health.backed_off_until(ep, 2), None);
        assert_eq!(health.record(ep, true, 2), Some(Duration::from_secs(5)));
        assert_eq!(health.backed_off_until(ep, 3), Some(5_002));
        assert_eq!(health.backed_off_until("wh_other", 3), None);
        // requests already in flight fail meanwhile: the backoff stays as it is
        assert_eq!(health.record(ep, true, 4), None);
        assert_eq!(health.backed_off_until(ep, 5_002), None, "over");
        // the first failure after it backs off again, twice as long, up to the max
        assert_eq!(health.record(ep, true, 6_000), Some(Duration::from_secs(10)));
        assert_eq!(health.record(ep, true, 17_000), Some(Duration::from_secs(12)));
        assert_eq!(health.record(ep, false, 30_000), None);
        assert_eq!(health.backed_off_until(ep, 30_001), None);
        assert_eq!(health.record(ep, true, 30_002), None, "a fresh count");
    }

    #[test]
    fn zero_failures_never_back_off() {
        let health = Health::new(0, Duration::from_secs(5), Duration::from_secs(5));
        for n in 0..100 {
            assert_eq!(health.record("wh_1", true, n), None);
        }
        assert_eq!(health.backed_off_until("wh_1", 100), None);
    }
}
