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
//! - some wait in the worker, without a slot, and start as soon as the tenant's work ends
//!   ([`Shares::ready`]), so a tenant with a backlog keeps its share busy: the waiting list is
//!   work-conserving. As many wait as the tenant's pace starts within a second, and twice its
//!   share at least, so a fast tenant's backlog waits here rather than going round the delayed
//!   set; over all tenants, no more than twice the worker's slots;
//! - the others go back to the worker's delayed set, their return paced at the rate the
//!   tenant's work completes (its share of slots over the average length of its calls). A
//!   fixed short wait would bring a whole backlog back at once, to be deferred again but for
//!   the few that found room. Only the far end's time counts: work that waited on our own Redis
//!   or Postgres (an outage) says nothing of the tenant's pace, and counting it would pace the
//!   tenant's backlog slowly long after the outage ended.
//!
//! Waiting in the worker is bounded: a tenant waits there only while it has its share in
//! flight, and no more entries than twice the worker's slots wait in all. Reading more than
//! may still wait would only defer the surplus: the reader reads no more than
//! [`Shares::room`] (less the work it has read and not yet admitted), and while there is none
//! it pauses until some work ends (for up to `crate::runtime::MAX_READ_PAUSE`).
//!
//! A worker that learns an entry's tenant only once it has started on it (the webhook worker,
//! reading what a batch delivers) admits with [`Shares::admit_held`], which counts what it
//! admits in flight at once, so concurrent admissions never share the same room.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The longest a message waits before it is read again, whatever the pacing says: an estimate
/// gone stale (a provider that was slow and is fast again) costs at most this.
const MAX_DEFER: Duration = Duration::from_secs(30);
/// The shortest estimate of a delivery's length used for pacing (a provider or receiver that
/// answers at once would bring a whole backlog back in the same instant).
const MIN_ESTIMATE: Duration = Duration::from_millis(1);
/// Weight of the latest delivery in the running average.
const WEIGHT: f64 = 0.2;
/// Messages that wait in the worker per organization, in multiples of its share, at least:
/// enough to start its next deliveries as soon as slots free, however its deferred ones are
/// paced. Over all organizations, at most this many times the worker's slots wait.
const WAITING: usize = 2;
/// More wait when the organization's pace starts them within this long: a fast tenant's
/// backlog then waits in the worker rather than going round the delayed set.
const WAIT_HORIZON: Duration = Duration::from_secs(1);
/// Organizations remembered (for the length of their deliveries) while idle, at most: past
/// that, the idle ones are forgotten.
const REMEMBERED: usize = 4096;

pub struct Shares {
    /// Deliveries one organization may have in flight at once.
    slots: usize,
    /// Messages that may wait in the worker, over all organizations.
    max_waiting: usize,
    orgs: Mutex<HashMap<String, Org>>,
    /// Messages waiting in the worker, over all organizations (changed under the lock): the
    /// reader asks on every read, and mostly nothing waits.
    waiting: AtomicUsize,
    /// Entries read and not admitted yet, by a worker that admits them once it has loaded them
    /// ([`Shares::admitting`]): some may come to wait.
    admitting: AtomicUsize,
    /// Told each time a piece of work ends.
    ended: Notify,
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

/// An [`Admission`] whose entries admitted are already counted in flight.
pub struct HeldAdmission {
    pub admitted: Vec<(Read, Option<Held>)>,
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
    /// When its last deferred message is due back (Unix µs: a fast tenant's are spaced by
    /// less than a millisecond).
    next_due_us: i64,
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

    /// How many of its messages may wait in the worker: those its pace starts within
    /// [`WAIT_HORIZON`], and twice its share at least. Before any of its calls has ended, the
    /// time the first have been running is the guess of their length, as for the spacing: a
    /// tenant whose first calls are quick does not see its backlog sent round the delayed set
    /// (behind everything read since) for want of a measure, and one whose first calls hang
    /// soon has no more than twice its share waiting.
    fn may_wait(&self, slots: usize, now: Instant) -> usize {
        let length = self.average.or_else(|| self.busy_since.map(|since| now - since));
        let paced = length.map_or(0, |length| {
            (WAIT_HORIZON.as_secs_f64() / length.as_secs_f64().max(1e-6) * slots as f64) as usize
        });
        paced.max(WAITING * slots)
    }
}

impl Shares {
    /// Shares of `slots` each, in a worker of `worker_slots`.
    pub fn new(slots: usize, worker_slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            max_waiting: WAITING * worker_slots.max(slots).max(1),
            orgs: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            admitting: AtomicUsize::new(0),
            ended: Notify::new(),
        })
    }

    fn orgs(&self) -> MutexGuard<'_, HashMap<String, Org>> {
        super::lock(&self.orgs)
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
        self.admit_in(&mut self.orgs(), read, orgs, now_ms, false)
    }

    /// Like [`Shares::admit`], and each entry admitted is counted in flight at once, with the
    /// guard [`Shares::hold`] would give (`None` for one without a tenant): for admissions made
    /// concurrently, which must not each see the room the others are taking.
    pub fn admit_held(
        self: &Arc<Self>,
        read: Vec<Read>,
        orgs: &HashMap<String, String>,
        now_ms: i64,
    ) -> HeldAdmission {
        let admission = self.admit_in(&mut self.orgs(), read, orgs, now_ms, true);
        let admitted = admission
            .admitted
            .into_iter()
            .map(|read| {
                let held = orgs.get(&read.0).map(|org| Held {
                    shares: self.clone(),
                    org: org.clone(),
                    took: None,
                });
                (read, held)
            })
            .collect();
        HeldAdmission { admitted, deferred: admission.deferred }
    }

    fn admit_in(
        &self,
        known: &mut HashMap<String, Org>,
        read: Vec<Read>,
        orgs: &HashMap<String, String>,
        now_ms: i64,
        hold: bool,
    ) -> Admission {
        let now = Instant::now();
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
                if hold {
                    org.busy_since = org.busy_since.or(Some(now));
                    org.in_flight += 1;
                } else {
                    *taken += 1;
                }
                admission.admitted.push(message);
            } else if org.waiting.len() < org.may_wait(self.slots, now)
                && self.waiting.load(Ordering::Relaxed) < self.max_waiting
            {
                org.waiting.push_back(message);
                self.waiting.fetch_add(1, Ordering::Relaxed);
            } else {
                let spacing = org.spacing(self.slots, now).as_micros() as i64;
                org.next_due_us = org.next_due_us.max(now_ms * 1000) + spacing.max(1);
                let due = (org.next_due_us + 999) / 1000;
                admission.deferred.push((message, due.min(now_ms + MAX_DEFER.as_millis() as i64)));
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

    /// [`Shares::ready`] as stream entries, what each carries in `field`.
    pub fn ready_entries(&self, max: usize, field: &str) -> Vec<crate::queue::RawEntry> {
        self.ready(max)
            .into_iter()
            .map(|(carried, id)| (id, HashMap::from([(field.to_owned(), carried)])))
            .collect()
    }

    /// Whether entries wait in the worker for their tenant's work to end, or may soon (some
    /// are being admitted).
    pub fn holds_back(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 || self.admitting.load(Ordering::Relaxed) > 0
    }

    /// Counts `entries` read as being admitted until the returned guard is dropped, which is
    /// to be once they are admitted, waiting or deferred.
    pub fn admitting(self: &Arc<Self>, entries: usize) -> Admitting {
        self.admitting.fetch_add(entries, Ordering::Relaxed);
        Admitting { shares: self.clone(), entries }
    }

    /// How many more entries may wait in the worker: reading more than this at once would
    /// defer the surplus of a tenant at its share, to the back of the stream.
    pub fn room(&self) -> usize {
        let taken = self.waiting.load(Ordering::Relaxed) + self.admitting.load(Ordering::Relaxed);
        self.max_waiting.saturating_sub(taken)
    }

    /// Resolves once a piece of work has ended since the last call.
    pub async fn ended(&self) {
        self.ended.notified().await
    }

    /// Counts a piece of work of `org` (a tenant) in flight until the returned guard is
    /// dropped.
    pub fn hold(self: &Arc<Self>, org: &str) -> Held {
        let started = Instant::now();
        let mut orgs = self.orgs();
        if orgs.len() >= REMEMBERED {
            let now_ms = chrono::Utc::now().timestamp_millis();
            orgs.retain(|_, org| {
                org.in_flight > 0 || !org.waiting.is_empty() || org.next_due_us > now_ms * 1000
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

/// Entries being admitted ([`Shares::admitting`]).
pub struct Admitting {
    shares: Arc<Shares>,
    entries: usize,
}

impl Drop for Admitting {
    fn drop(&mut self) {
        self.shares.admitting.fetch_sub(self.entries, Ordering::Relaxed);
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
        drop(orgs);
        self.shares.ended.notify_one();
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
        let shares = Shares::new(2, 8);
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
    fn admissions_that_count_at_once_never_share_the_same_room() {
        let shares = Shares::new(2, 8);
        let orgs = owners(&[("a", 4)]);
        // without counting, a second admission before the first's work starts sees its room
        assert_eq!(shares.admit(read(ids(2, "a")), &orgs, 1_000).admitted.len(), 2);
        assert_eq!(shares.admit(read(ids(2, "a")), &orgs, 1_000).admitted.len(), 2);
        let shares = Shares::new(2, 8);
        let first = shares.admit_held(read(ids(2, "a")), &orgs, 1_000);
        assert_eq!(first.admitted.len(), 2);
        assert!(first.admitted.iter().all(|(_, held)| held.is_some()));
        let rest = vec!["a2".to_owned(), "a3".to_owned()];
        let second = shares.admit_held(read(rest), &orgs, 1_000);
        assert!(second.admitted.is_empty() && second.deferred.is_empty());
        assert!(shares.ready(10).is_empty());
        // the first's work ends: the second's start
        drop(first);
        assert_eq!(names(&shares.ready(10)), ["a2", "a3"]);
    }

    #[test]
    fn deferred_messages_come_back_at_the_pace_deliveries_complete() {
        let shares = Shares::new(2, 8);
        let orgs = owners(&[("a", 10)]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // two in flight whose calls took 2 s each: one slot frees every second
        let mut held = [shares.hold("org_a"), shares.hold("org_a")];
        held.iter_mut().for_each(|held| held.took(Duration::from_secs(2)));
        drop(held);
        let _busy = [shares.hold("org_a"), shares.hold("org_a")];
        let admission = shares.admit(read(ids(10, "a")), &orgs, now_ms);
        assert!(admission.admitted.is_empty());
        let dues: Vec<i64> = admission.deferred.iter().map(|(_, due)| due - now_ms).collect();
        // four wait in the worker, for the next free slots
        assert_eq!(dues.len(), 6);
        for (n, gap) in dues.iter().enumerate() {
            let expected = 1000 * (n as i64 + 1);
            assert!((expected..expected + 600 * (n as i64 + 1)).contains(gap), "{dues:?}");
        }
        // the next batch is paced after those
        let later = shares.admit(read(ids(1, "a")), &orgs, now_ms).deferred;
        assert!(later[0].1 > admission.deferred[5].1, "{later:?} after {admission:?}");
    }

    #[test]
    fn a_fast_tenants_backlog_waits_in_the_worker_up_to_its_bound() {
        let shares = Shares::new(2, 8);
        let orgs = owners(&[("a", 40)]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // calls of a millisecond: two slots start 2,000 a second
        let mut held = shares.hold("org_a");
        held.took(Duration::from_millis(1));
        drop(held);
        let admission = shares.admit(read(ids(40, "a")), &orgs, now_ms);
        assert_eq!(admission.admitted.len(), 2);
        // the worker's bound on waiting (twice its 8 slots) is all that defers the rest, and
        // those come back at the tenant's pace: half a millisecond apart
        assert_eq!(admission.deferred.len(), 40 - 2 - 16);
        let last = admission.deferred.last().map_or(0, |(_, due)| due - now_ms);
        assert!((10..=12).contains(&last), "{last}");
    }

    #[test]
    fn a_tenant_whose_first_calls_just_started_has_its_backlog_wait_in_the_worker() {
        let shares = Shares::new(2, 8);
        let orgs = owners(&[("a", 20)]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // no call of its own has ended: no measure of its pace yet, and none needed to wait
        let admission = shares.admit_held(read(ids(20, "a")), &orgs, now_ms);
        assert_eq!(admission.admitted.len(), 2);
        // all the worker lets wait (twice its 8 slots), not twice the tenant's share
        assert_eq!(admission.deferred.len(), 20 - 2 - 16);
        assert_eq!(shares.room(), 0);

        // first calls that hang: soon no more than twice its share may wait
        let shares = Shares::new(2, 8);
        let _busy = [shares.hold("org_a"), shares.hold("org_a")];
        if let Some(org) = shares.orgs().get_mut("org_a") {
            org.busy_since = Instant::now().checked_sub(Duration::from_secs(2));
        }
        let admission = shares.admit_held(read(ids(20, "a")), &orgs, now_ms);
        assert!(admission.admitted.is_empty());
        assert_eq!(admission.deferred.len(), 20 - 4);
    }

    #[test]
    fn entries_being_admitted_take_room_and_call_the_reader_back() {
        let shares = Shares::new(2, 8);
        assert_eq!(shares.room(), 16);
        assert!(!shares.holds_back());
        let admitting = shares.admitting(10);
        // some of them may come to wait
        assert_eq!(shares.room(), 6);
        assert!(shares.holds_back());
        let orgs = owners(&[("a", 10)]);
        let admission = shares.admit_held(read(ids(10, "a")), &orgs, 1_000);
        drop(admitting);
        assert_eq!(admission.admitted.len(), 2);
        assert_eq!(shares.room(), 16 - 8, "eight wait");
        assert!(shares.holds_back());
        drop(admission);
        assert_eq!(names(&shares.ready(10)), ["a2", "a3"]);
    }

    #[test]
    fn time_spent_waiting_on_our_own_services_does_not_slow_the_pace() {
        // no more than two wait in the worker, however fast the pace
        let shares = Shares::new(1, 1);
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
        // two calls of 10 ms, one slot
        assert!(deferred[1].1 - now_ms <= 20, "{deferred:?}");
    }

    #[test]
    fn no_message_waits_longer_than_the_longest_deferral() {
        let shares = Shares::new(1, 8);
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
        let shares = Shares::new(1, 8);
        for n in 0..REMEMBERED {
            drop(shares.hold(&format!("org_{n}")));
        }
        let busy = shares.hold("org_busy");
        assert_eq!(shares.orgs().len(), 1, "only the busy one is left");
        drop(busy);
    }
}
