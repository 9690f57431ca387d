//! Which credentials deliver a message, in which order (the contract's routing rule): the
//! credential its sender named by slug, else the active credentials of its channel visible to
//! its project, the project's own first, lowest `priority` first.
//!
//! Opening credentials means a query and a decryption; messages of one project and channel
//! come in bursts, so each worker keeps the opened list of a route for
//! `delivery.credential_cache_ttl`. Changes to credentials reach deliveries within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::MasterKeys;
use crate::db::delivery as queries;
use crate::db::messages::Message;
use crate::db::providers::ProviderCredential;
use crate::domain::provider_types::ProviderType;
use crate::providers::connector::OpenedCredential;
use crate::providers::credentials;

/// One credential to try.
#[derive(Debug)]
pub enum Candidate {
    Ready(OpenedCredential),
    /// It cannot be used (its secrets do not open under the configured keys): trying it counts
    /// as a credential error, so the next one is tried and the events say why.
    Unusable {
        id: String,
        slug: String,
        provider_type: String,
        reason: String,
    },
}

impl Candidate {
    fn of(row: ProviderCredential, keys: &MasterKeys) -> Candidate {
        let opened = ProviderType::parse(&row.provider_type)
            .ok_or_else(|| format!("unknown provider type {}", row.provider_type))
            .and_then(|t| credentials::open(keys, &row).map(|secrets| (t, secrets)));
        match opened {
            Ok((provider_type, secrets)) => Candidate::Ready(OpenedCredential::new(
                row.id,
                row.slug,
                provider_type,
                row.config,
                secrets,
            )),
            Err(reason) => Candidate::Unusable {
                id: row.id,
                slug: row.slug,
                provider_type: row.provider_type,
                reason: format!("cannot open the credentials: {reason}"),
            },
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Candidate::Ready(c) => &c.id,
            Candidate::Unusable { id, .. } => id,
        }
    }

    pub fn slug(&self) -> &str {
        match self {
            Candidate::Ready(c) => &c.slug,
            Candidate::Unusable { slug, .. } => slug,
        }
    }

    pub fn provider_type(&self) -> &str {
        match self {
            Candidate::Ready(c) => c.provider_type.as_str(),
            Candidate::Unusable { provider_type, .. } => provider_type,
        }
    }
}

pub type Route = Arc<[Candidate]>;

/// A route is the same for every message of a project, channel and requested slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    organization_id: String,
    project_id: String,
    channel: String,
    requested: Option<String>,
}

/// Beyond this many cached routes, expired ones are dropped when a new one is added.
const PRUNE_ABOVE: usize = 1024;

pub struct Router {
    keys: Arc<MasterKeys>,
    ttl: Duration,
    cache: Mutex<HashMap<RouteKey, (Instant, Route)>>,
}

impl Router {
    pub fn new(keys: Arc<MasterKeys>, ttl: Duration) -> Self {
        Self { keys, ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The candidates for `message`, in order; empty when none is active for its channel (or
    /// the requested one is not).
    pub async fn route(&self, db: &crate::db::Pool, message: &Message) -> anyhow::Result<Route> {
        let key = RouteKey {
            organization_id: message.organization_id.clone(),
            project_id: message.project_id.clone(),
            channel: message.channel.clone(),
            requested: message.requested_provider.clone(),
        };
        if let Some(route) = self.cached(&key) {
            return Ok(route);
        }
        let mut conn = db.get().await?;
        let rows = queries::routes(
            &mut conn,
            &key.organization_id,
            &key.project_id,
            &key.channel,
            key.requested.as_deref(),
        )
        .await?;
        let route: Route = rows.into_iter().map(|row| Candidate::of(row, &self.keys)).collect();
        // An empty route is not kept: a credential added after a failure should serve the
        // next message at once.
        if !route.is_empty() && !self.ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if cache.len() >= PRUNE_ABOVE {
                cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
            }
            cache.insert(key, (Instant::now(), route.clone()));
        }
        Ok(route)
    }

    fn cached(&self, key: &RouteKey) -> Option<Route> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, route)| route.clone())
    }
}
