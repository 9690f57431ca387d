//! One tenant's share of a worker's slots: a bound on the work of one key (an organization for
//! the delivery worker, `delivery.organization_share` of `delivery.concurrency`; a webhook
//! endpoint for the webhook worker, `webhooks.max_in_flight_per_endpoint`). Tenants share the
//! slots; without a bound, one whose far end is slow (an SMTP server that stalls, a webhook
//! receiver that never answers) would soon hold every one, and everybody else's work would wait
//! behind its calls.
//!
//! A worker gives [`Shares::admit`] the entries it read (each as what it carries and its entry
//! id) with the tenant of each. Those over their tenant's share take no slot, and the reader
//! goes on to the entries behind them:
//!
//! - up to twice its share wait in the worker, without a slot, and start as soon as the
//!   tenant's work ends ([`Shares::ready`]), so a tenant with a backlog keeps its share busy:
//!   the waiting list is work-conserving;
//! - the others go back to the worker's delayed set, their return paced at the rate the
//!   tenant's work completes (its share of slots over the average length of its calls). A
//!   fixed short wait would bring a whole backlog back at once, to be deferred again but for
//!   the few that found room. Only the far end's time counts: work that waited on our own Redis
//!   or Postgres (an outage) says nothing of the tenant's pace, and counting it would pace the
//!   tenant's backlog slowly long after the outage ended.
//!
//! Waiting in the worker is bounded: a tenant waits there only while it has its share in
//! flight, each with at most twice its share: no more entries than twice the worker's slots.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a message waits before it is read again, whatever the pacing says: an estimate
/// gone stale (a provider that was slow and is fast again) costs at most this.
const MAX_DEFER: Duration = Duration::from_secs(30);
/// The shortest estimate of a delivery's length used for pacing.
const MIN_ESTIMATE: Duration = Duration::from_millis(10);
/// Weight of the latest delivery in the running average.
const WEIGHT: f64 = 0.2;
/// Messages that wait in the worker per organization, in multiples of its share: enough to
/// start its next deliveries as soon as slots free, however its deferred ones are paced.
const WAITING: usize = 2;
/// Organizations remembered (for the length of their deliveries) while idle, at most: past
/// that, the idle ones are forgotten.
const REMEMBERED: usize = 4096;

pub struct Shares {
    /// Deliveries one organization may have in flight at once.
    slots: usize,
    orgs: Mutex<HashMap<String, Org>>,
    /// Messages waiting in the worker, over all organizations (changed under the lock): the
    /// reader asks on every read, and mostly nothing waits.
    waiting: AtomicUsize,
}

/// An entry read from the stream: what it carries (a message id, a webhook job) and its id.
pub type Read = (String, String);

/// What becomes of the messages read in a batch.
#[derive(Debug, Default)]
pub struct Admission {
    /// To claim and deliver now.
    pub admitted: Vec<Read>,
    /// To put in the delayed set, due back at the time given (Unix ms).
    pub deferred: Vec<(Read, i64)>,
}

/// An organization with deliveries in flight, or messages waiting or deferred.
#[derive(Debug, Default)]
struct Org {
    in_flight: usize,
    /// Messages read while it had its share in flight, in the order read.
    waiting: VecDeque<Read>,
    /// Since when its deliveries have been in flight without a break: until one completes,
    /// the time since is the best guess of their length.
    busy_since: Option<Instant>,
    /// The running average length of its deliveries' provider calls, once one was timed.
    average: Option<Duration>,
    /// When its last deferred message is due back (Unix ms).
    next_due_ms: i64,
}

impl Org {
    /// The gap between deferred messages that matches the rate its deliveries complete.
    fn spacing(&self, slots: usize, now: Instant) -> Duration {
        let length = self
            .average
            .or_else(|| self.busy_since.map(|since| now.duration_since(since)))
            .unwrap_or_default()
            .max(MIN_ESTIMATE);
        length / slots as u32
    }
}

impl Shares {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            orgs: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
        })
    }

    fn orgs(&self) -> MutexGuard<'_, HashMap<String, Org>> {
        // the map stays consistent whatever panicked while it was held
        self.orgs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `more` deliveries could take some organization past its share.
    pub fn may_exceed(&self, more: usize) -> bool {
        let busiest = self.orgs().values().map(|org| org.in_flight).max().unwrap_or(0);
        busiest + more > self.slots
    }

    /// Decides for each entry `read` whether it starts now, waits in the worker, or is
    /// deferred, given the tenant of each (`orgs`, by what the entry carries; one without
    /// starts now).
    pub fn admit(&self, read: Vec<Read>, orgs: &HashMap<String, String>, now_ms: i64) -> Admission {
        let now = Instant::now();
        let mut known = self.orgs();
        let mut admitted_per_org: HashMap<&str, usize> = HashMap::new();
        let mut admission = Admission::default();
        for message in read {
            let Some(org_id) = orgs.get(&message.0) else {
                admission.admitted.push(message);
                continue;
            };
            let taken = admitted_per_org.entry(org_id).or_default();
            let org = known.entry(org_id.clone()).or_default();
            if org.in_flight + *taken < self.slots {
                *taken += 1;
                admission.admitted.push(message);
            } else if org.waiting.len() < WAITING * self.slots {
                org.waiting.push_back(message);
                self.waiting.fetch_add(1, Ordering::Relaxed);
            } else {
                let spacing = org.spacing(self.slots, now).as_millis() as i64;
                org.next_due_ms = org.next_due_ms.max(now_ms) + spacing.max(1);
                let due = org.next_due_ms.min(now_ms + MAX_DEFER.as_millis() as i64);
                admission.deferred.push((message, due));
            }
        }
        admission
    }

    /// Up to `max` waiting entries whose tenants have room again, to be admitted afresh.
    pub fn ready(&self, max: usize) -> Vec<Read> {
        let mut ready = Vec::new();
        if !self.holds_back() {
            return ready;
        }
        for org in self.orgs().values_mut() {
            let room = self.slots.saturating_sub(org.in_flight);
            let take = room.min(org.waiting.len()).min(max - ready.len());
            ready.extend(org.waiting.drain(..take));
            self.waiting.fetch_sub(take, Ordering::Relaxed);
            if ready.len() == max {
                break;
            }
        }
        ready
    }

    /// Whether entries wait in the worker for their tenant's work to end.
    pub fn holds_back(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Counts a piece of work of `org` (a tenant) in flight until the returned guard is
    /// dropped.
    pub fn hold(self: &Arc<Self>, org: &str) -> Held {
        let started = Instant::now();
        let mut orgs = self.orgs();
        if orgs.len() >= REMEMBERED {
            let now_ms = chrono::Utc::now().timestamp_millis();
            orgs.retain(|_, org| {
                org.in_flight > 0 || !org.waiting.is_empty() || org.next_due_ms > now_ms
            });
        }
        let entry = orgs.entry(org.to_owned()).or_default();
        if entry.in_flight == 0 {
            entry.busy_since = Some(started);
        }
        entry.in_flight += 1;
        Held { shares: self.clone(), org: org.to_owned(), took: None }
    }
}

/// Work in flight, counted in its tenant's share.
pub struct Held {
    shares: Arc<Shares>,
    org: String,
    took: Option<Duration>,
}

impl Held {
    /// Records how long the work's calls to the far end took, for the pacing.
    pub fn took(&mut self, length: Duration) {
        self.took = Some(length);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut orgs = self.shares.orgs();
        let Some(org) = orgs.get_mut(&self.org) else { return };
        org.in_flight = org.in_flight.saturating_sub(1);
        if let Some(length) = self.took {
            org.average = Some(match org.average {
                Some(average) => average.mul_f64(1.0 - WEIGHT) + length.mul_f64(WEIGHT),
                None => length,
            });
        }
        if org.in_flight == 0 {
            org.busy_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    /// Messages with made-up entries.
    fn read(ids: Vec<String>) -> Vec<Read> {
        ids.into_iter().map(|id| (id.clone(), format!("entry-{id}"))).collect()
    }

    fn names(reads: &[Read]) -> Vec<&str> {
        reads.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn owners(groups: &[(&str, usize)]) -> HashMap<String, String> {
        groups
            .iter()
            .flat_map(|(org, n)| ids(*n, org).into_iter().map(move |id| (id, format!("org_{org}"))))
            .collect()
    }

    #[test]
    fn an_organization_gets_no_more_than_its_share() {
        let shares = Shares::new(2);
        let orgs = owners(&[("a", 8), ("b", 1)]);
        assert!(!shares.may_exceed(2));
        assert!(shares.may_exceed(3));
        let batch = [ids(8, "a"), ids(1, "b"), vec!["gone".to_owned()]].concat();
        let admission = shares.admit(read(batch), &orgs, 1_000);
        assert_eq!(names(&admission.admitted), ["a0", "a1", "b0", "gone"]);
        // twice its share wait in the worker, the others in the delayed set
        let deferred: Vec<Read> = admission.deferred.into_iter().map(|(r, _)| r).collect();
        assert_eq!(names(&deferred), ["a6", "a7"]);
        assert!(shares.holds_back());

        // the admitted ones are claimed and delivered: no room until one ends
        let (a0, a1) = (shares.hold("org_a"), shares.hold("org_a"));
        assert!(shares.ready(10).is_empty());
        assert!(shares.may_exceed(1));
        // each one that ends makes room for one waiting, which is then claimed and delivered
        drop(a0);
        assert_eq!(names(&shares.ready(10)), ["a2"]);
        let a2 = shares.hold("org_a");
        drop(a1);
        assert_eq!(names(&shares.ready(10)), ["a3"]);
        let a3 = shares.hold("org_a");
        assert!(shares.ready(10).is_empty());
        drop((a2, a3));
        assert_eq!(names(&shares.ready(1)), ["a4"]);
        assert_eq!(names(&shares.ready(10)), ["a5"]);
        assert!(!shares.holds_back());
    }

    #[test]
    fn deferred_messages_come_back_at_the_pace_deliveries_complete() {
        let shares = Shares::new(2);
        let orgs = owners(&[("a", 10)]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // two in flight whose calls took 200 ms each: one slot frees every 100 ms
        let mut held = [shares.hold("org_a"), shares.hold("org_a")];
        held.iter_mut().for_each(|held| held.took(Duration::from_millis(200)));
        drop(held);
        let _busy = [shares.hold("org_a"), shares.hold("org_a")];
        let admission = shares.admit(read(ids(10, "a")), &orgs, now_ms);
        assert!(admission.admitted.is_empty());
        let dues: Vec<i64> = admission.deferred.iter().map(|(_, due)| due - now_ms).collect();
        // four wait in the worker, for the next free slots
        assert_eq!(dues.len(), 6);
        for (n, gap) in dues.iter().enumerate() {
            let expected = 100 * (n as i64 + 1);
            assert!((expected..expected + 60 * (n as i64 + 1)).contains(gap), "{dues:?}");
        }
        // the next batch is paced after those
        let later = shares.admit(read(ids(1, "a")), &orgs, now_ms).deferred;
        assert!(later[0].1 > admission.deferred[5].1, "{later:?} after {admission:?}");
    }

    #[test]
    fn time_spent_waiting_on_our_own_services_does_not_slow_the_pace() {
        let shares = Shares::new(1);
        let orgs = owners(&[("a", 4)]);
        let mut held = shares.hold("org_a");
        held.took(Duration::from_millis(10));
        drop(held);
        // a delivery that waited out a Redis outage and made no call, and one whose call was
        // quick after a long wait: neither tells of the provider's pace
        let stalled = shares.hold("org_a");
        std::thread::sleep(Duration::from_millis(300));
        drop(stalled);
        let mut waited = shares.hold("org_a");
        std::thread::sleep(Duration::from_millis(300));
        waited.took(Duration::from_millis(10));
        drop(waited);
        let _busy = shares.hold("org_a");
        let now_ms = chrono::Utc::now().timestamp_millis();
        let deferred = shares.admit(read(ids(4, "a")), &orgs, now_ms).deferred;
        assert_eq!(deferred.len(), 2);
        assert!(deferred[1].1 - now_ms <= 2 * MIN_ESTIMATE.as_millis() as i64, "{deferred:?}");
    }

    #[test]
    fn no_message_waits_longer_than_the_longest_deferral() {
        let shares = Shares::new(1);
        let orgs = owners(&[("a", 5)]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        drop(shares.hold("org_a"));
        // a provider that got slow: the estimate says a minute per delivery
        if let Some(org) = shares.orgs().get_mut("org_a") {
            org.average = Some(Duration::from_secs(60));
        }
        let _busy = shares.hold("org_a");
        let deferred = shares.admit(read(ids(5, "a")), &orgs, now_ms).deferred;
        assert_eq!(deferred.len(), 3);
        for (_, due) in deferred {
            assert_eq!(due - now_ms, MAX_DEFER.as_millis() as i64);
        }
    }

    #[test]
    fn idle_organizations_are_forgotten_past_a_bound() {
        let shares = Shares::new(1);
        for n in 0..REMEMBERED {
            drop(shares.hold(&format!("org_{n}")));
        }
        let busy = shares.hold("org_busy");
        assert_eq!(shares.orgs().len(), 1, "only the busy one is left");
        drop(busy);
    }
}
