//! One organization's share of a worker's delivery slots (`delivery.organization_share` of
//! `delivery.concurrency`): a tenant whose provider is slow (an SMTP tarpit, a sandbox with a
//! long latency) would otherwise hold every slot, and every other tenant's messages would wait
//! behind its calls.
//!
//! Only when a batch could take an organization past its share does the worker look up whose
//! messages it read; those over the share are not claimed, and wait a moment in the delayed set
//! ([`DEFER`]) without an event or a spent attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a message over its organization's share waits before it is read again.
pub const DEFER: Duration = Duration::from_secs(1);

pub struct Shares {
    slots: usize,
    in_flight: Mutex<HashMap<String, usize>>,
}

impl Shares {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self { slots, in_flight: Mutex::new(HashMap::new()) })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `more` deliveries could take some organization past its share.
    pub fn may_exceed(&self, more: usize) -> bool {
        let busiest = self.in_flight().values().copied().max().unwrap_or(0);
        busiest + more > self.slots
    }

    /// Splits message `ids` into those to claim and those to defer, given the organization of
    /// each (`orgs`; an id without one is claimed, and found to be gone).
    pub fn admit(
        &self,
        ids: Vec<String>,
        orgs: &HashMap<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let in_flight = self.in_flight();
        let mut taken: HashMap<&str, usize> = HashMap::new();
        let (mut admitted, mut deferred) = (Vec::new(), Vec::new());
        for id in ids {
            let Some(org) = orgs.get(&id) else {
                admitted.push(id);
                continue;
            };
            let room = self.slots.saturating_sub(in_flight.get(org).copied().unwrap_or(0));
            let taken = taken.entry(org).or_default();
            if *taken < room {
                *taken += 1;
                admitted.push(id);
            } else {
                deferred.push(id);
            }
        }
        (admitted, deferred)
    }

    /// Counts a delivery of `org` in flight until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, org: &str) -> Held {
        *self.in_flight().entry(org.to_owned()).or_default() += 1;
        Held { shares: self.clone(), org: org.to_owned() }
    }
}

/// A delivery in flight, counted in its organization's share.
pub struct Held {
    shares: Arc<Shares>,
    org: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut in_flight = self.shares.in_flight();
        if let Some(count) = in_flight.get_mut(&self.org) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.org);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn an_organization_gets_no_more_than_its_share() {
        let shares = Shares::new(2);
        let orgs: HashMap<String, String> = ids(3, "a")
            .into_iter()
            .map(|id| (id, "org_a".to_owned()))
            .chain(ids(1, "b").into_iter().map(|id| (id, "org_b".to_owned())))
            .collect();
        assert!(!shares.may_exceed(2));
        assert!(shares.may_exceed(3));
        let batch = [ids(3, "a"), ids(1, "b"), vec!["gone".to_owned()]].concat();
        let (admitted, deferred) = shares.admit(batch, &orgs);
        assert_eq!(admitted, ["a0", "a1", "b0", "gone"]);
        assert_eq!(deferred, ["a2"]);

        let held = shares.hold("org_a");
        let (admitted, deferred) = shares.admit(ids(3, "a"), &orgs);
        assert_eq!((admitted.len(), deferred.len()), (1, 2));
        assert!(shares.may_exceed(2));
        drop(held);
        assert!(!shares.may_exceed(2));
        assert!(shares.in_flight().is_empty());
    }
}
