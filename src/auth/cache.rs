//! An in-process cache of what `/v1/send` looks up on every request: the API key behind a
//! token hash, the project an organization-wide key names, and the template version a
//! message names.
//!
//! Without it every send costs a Postgres round trip or two before any work is done. With it,
//! a revoked key or a deleted project must still stop working at once on every process, so:
//! - every change that could make an entry wrong (key revoked, project renamed or deleted,
//!   organization deleted, template published, renamed or deleted) publishes on a Redis channel after its commit, and every process
//!   drops its whole cache when the message arrives (and the writing process before it
//!   answers, so its own next request already sees the change);
//! - entries are only served while this process's subscription is connected: a subscriber
//!   that lost its connection may have missed a message, so the cache is bypassed until it is
//!   back, and emptied when it reconnects;
//! - each entry also expires after `auth.key_cache_ttl` (0 disables the cache), and a key's
//!   own `expires_at` is checked on every hit.
//!
//! A generation counter, bumped by every invalidation, keeps a lookup that raced with an
//! invalidation from storing what it read before the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use tokio_util::sync::CancellationToken;

use crate::db::api_keys::ApiKey;
use crate::db::templates::Published;
use crate::queue::Redis;

#[derive(Default)]
struct Entries {
    keys: HashMap<Vec<u8>, (ApiKey, Instant)>,
    /// (organization id, project id or slug) -> project id.
    projects: HashMap<(String, String), (String, Instant)>,
    /// (project id, template id or slug, version asked for) -> the version to render.
    templates: HashMap<TemplateName, (Arc<Published>, Instant)>,
}

type TemplateName = (String, String, Option<i32>);

pub struct TenantCache {
    ttl: Duration,
    generation: AtomicU64,
    /// Whether the invalidation subscription is up (entries are served only then).
    subscribed: AtomicBool,
    entries: RwLock<Entries>,
}

/// Where a lookup started, for [`TenantCache::insert_key`] and friends.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl TenantCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            generation: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            entries: RwLock::default(),
        }
    }

    fn serving(&self) -> bool {
        self.enabled() && self.subscribed.load(Ordering::Acquire)
    }

    /// Read before a lookup whose result is to be cached.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The live key with this token hash, if cached.
    pub fn key(&self, hash: &[u8]) -> Option<ApiKey> {
        if !self.serving() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let (key, at) = entries.keys.get(hash)?;
        let expired = key.expires_at.is_some_and(|at| at <= Utc::now());
        (self.fresh(*at) && !expired).then(|| key.clone())
    }

    pub fn insert_key(&self, since: Generation, hash: Vec<u8>, key: ApiKey) {
        self.insert(since, |entries| {
            entries.keys.insert(hash, (key, Instant::now()));
        });
    }

    pub fn project(&self, organization_id: &str, named: &str) -> Option<String> {
        if !self.serving() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let (id, at) = entries.projects.get(&(organization_id.to_owned(), named.to_owned()))?;
        self.fresh(*at).then(|| id.clone())
    }

    pub fn insert_project(
        &self,
        since: Generation,
        organization_id: &str,
        named: &str,
        id: String,
    ) {
        self.insert(since, |entries| {
            entries
                .projects
                .insert((organization_id.to_owned(), named.to_owned()), (id, Instant::now()));
        });
    }

    /// The published template version a send names, if cached.
    pub fn template(
        &self,
        project_id: &str,
        named: &str,
        version: Option<i32>,
    ) -> Option<Arc<Published>> {
        if !self.serving() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let name = (project_id.to_owned(), named.to_owned(), version);
        let (found, at) = entries.templates.get(&name)?;
        self.fresh(*at).then(|| found.clone())
    }

    pub fn insert_template(
        &self,
        since: Generation,
        project_id: &str,
        named: &str,
        version: Option<i32>,
        published: Arc<Published>,
    ) {
        self.insert(since, |entries| {
            let name = (project_id.to_owned(), named.to_owned(), version);
            entries.templates.insert(name, (published, Instant::now()));
        });
    }

    fn insert(&self, since: Generation, add: impl FnOnce(&mut Entries)) {
        if !self.serving() {
            return;
        }
        let Ok(mut entries) = self.entries.write() else { return };
        // checked under the lock, which invalidation takes too
        if self.generation.load(Ordering::Acquire) != since.0 {
            return;
        }
        // a bound on memory: a flood of distinct keys starts the cache over
        if entries.keys.len() + entries.projects.len() + entries.templates.len() >= MAX_ENTRIES {
            *entries = Entries::default();
        }
        add(&mut entries);
    }

    /// Forgets everything.
    pub fn invalidate(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        *entries = Entries::default();
    }

    fn set_subscribed(&self, subscribed: bool) {
        if self.subscribed.swap(subscribed, Ordering::AcqRel) != subscribed {
            self.invalidate();
        }
    }

    /// Forgets everything here, and tells every other process to. Called after the commit of
    /// a change that could make an entry wrong (a revoked key must not be served from another
    /// process's cache).
    ///
    /// A publish that fails is retried in the background until it goes through or the entries
    /// it is about have expired anyway (the cache's TTL): the other processes' subscriptions
    /// may well be up while this one command failed (a timeout, a broken pooled connection).
    pub async fn invalidate_everywhere(&self, redis: &Redis) {
        self.invalidate();
        if publish_invalidation(redis).await {
            return;
        }
        let (redis, deadline) = (redis.clone(), tokio::time::Instant::now() + self.ttl);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(delay).await;
                if publish_invalidation(&redis).await {
                    tracing::info!("cache invalidation published after a retry");
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }

    /// Whether there is anything to run (a zero TTL turns the cache off).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Keeps the subscription to invalidations until `stop`; serves entries only while it is
    /// connected.
    pub async fn run(self: Arc<Self>, redis: Redis, stop: CancellationToken) {
        // Redis may be away at start-up: the cache just stays off until it is reachable
        let subscriber = loop {
            match redis.subscriber().await {
                Ok(subscriber) => break subscriber,
                Err(error) => tracing::warn!(%error, "cannot subscribe to cache invalidations yet"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        let channel = redis.keys().invalidations();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let resubscribe = subscriber.manage_subscriptions();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = messages.recv() => self.invalidate(),
                _ = reconnects.recv() => self.invalidate(),
                _ = check.tick() => {
                    // subscribe (again) until it holds; serve only while connected
                    let up = subscriber.is_connected()
                        && (subscriber.tracked_channels().iter().any(|c| **c == *channel)
                            || subscribe(&subscriber, &channel).await);
                    self.set_subscribed(up);
                }
            }
        }
        self.set_subscribed(false);
        resubscribe.abort();
        let _ = subscriber.quit().await;
    }
}

const MAX_ENTRIES: usize = 100_000;

/// Tells every process to drop its cache; says whether Redis took it.
async fn publish_invalidation(redis: &Redis) -> bool {
    match redis.publish(&redis.keys().invalidations(), "tenants").await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot publish a cache invalidation; retrying");
            false
        }
    }
}

async fn subscribe(subscriber: &SubscriberClient, channel: &str) -> bool {
    match subscriber.subscribe(channel).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot subscribe to cache invalidations");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires_in: Option<chrono::Duration>) -> ApiKey {
        let now = Utc::now();
        ApiKey {
            id: "key_1".into(),
            organization_id: "org_1".into(),
            project_id: None,
            name: "k".into(),
            prefix: "ri_".into(),
            scopes: vec!["send".into()],
            rate_limit: None,
            created_by: None,
            expires_at: expires_in.map(|d| now + d),
            last_used_at: None,
            revoked_at: None,
            created_at: now,
        }
    }

    #[test]
    fn serves_only_while_subscribed_and_forgets_on_invalidation() {
        let cache = TenantCache::new(Duration::from_secs(60));
        let since = cache.generation();
        cache.insert_key(since, b"h".to_vec(), key(None));
        assert!(cache.key(b"h").is_none(), "not subscribed: nothing stored or served");

        cache.set_subscribed(true);
        let since = cache.generation();
        cache.insert_key(since, b"h".to_vec(), key(None));
        cache.insert_project(since, "org_1", "web", "prj_1".into());
        assert_eq!(cache.key(b"h").map(|k| k.id), Some("key_1".into()));
        assert_eq!(cache.project("org_1", "web"), Some("prj_1".into()));
        assert_eq!(cache.project("org_2", "web"), None);

        cache.invalidate();
        assert!(cache.key(b"h").is_none());
        assert!(cache.project("org_1", "web").is_none());

        // a lookup that started before an invalidation stores nothing
        let stale = cache.generation();
        cache.invalidate();
        cache.insert_key(stale, b"h".to_vec(), key(None));
        assert!(cache.key(b"h").is_none());

        // losing the subscription empties the cache
        cache.insert_key(cache.generation(), b"h".to_vec(), key(None));
        cache.set_subscribed(false);
        cache.set_subscribed(true);
        assert!(cache.key(b"h").is_none());
    }

    #[test]
    fn expired_keys_and_entries_are_not_served() {
        let cache = TenantCache::new(Duration::from_secs(60));
        cache.set_subscribed(true);
        cache.insert_key(
            cache.generation(),
            b"gone".to_vec(),
            key(Some(chrono::Duration::seconds(-1))),
        );
        assert!(cache.key(b"gone").is_none());

        let short = TenantCache::new(Duration::from_millis(1));
        short.set_subscribed(true);
        short.insert_key(short.generation(), b"h".to_vec(), key(None));
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.key(b"h").is_none());

        let off = TenantCache::new(Duration::ZERO);
        off.set_subscribed(true);
        off.insert_key(off.generation(), b"h".to_vec(), key(None));
        assert!(off.key(b"h").is_none());
    }
}
