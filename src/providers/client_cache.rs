//! Per-credential provider clients, kept across messages.
//!
//! Some clients hold state that must outlive one call: SMTP connection pools, Discord's rate
//! limiter (its buckets are per bot token), AWS SDK clients (their signing setup). Building one
//! per message would reconnect every time and forget every rate limit, so connectors keep them
//! here, by credential id, in the process's one `Registry` (shared by the worker and
//! `/verify`). An entry
//! remembers the credential's fingerprint: when its secrets or config change (a PATCH), the
//! next call builds a fresh client. Entries unused for [`IDLE_TTL`] are dropped, so credentials
//! that were deleted do not pin their connections forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::providers::connector::{OpenedCredential, ProviderError};

/// How long an unused client is kept.
pub const IDLE_TTL: Duration = Duration::from_secs(3600);

struct Entry<T> {
    fingerprint: [u8; 32],
    client: Arc<T>,
    used: Instant,
}

pub struct ClientCache<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for ClientCache<T> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<T> ClientCache<T> {
    /// The client for `credential`, built with `build` when there is none for its current
    /// version.
    pub fn get_or_build(
        &self,
        credential: &OpenedCredential,
        build: impl FnOnce() -> Result<T, ProviderError>,
    ) -> Result<Arc<T>, ProviderError> {
        match self.get(credential) {
            Some(client) => Ok(client),
            // Built outside the lock: building may take a moment, and other credentials'
            // calls should not wait for it. Two racing builds for one credential keep the
            // later one.
            None => Ok(self.insert(credential, build()?)),
        }
    }

    /// The client kept for `credential`'s current version, if any.
    pub fn get(&self, credential: &OpenedCredential) -> Option<Arc<T>> {
        let fingerprint = credential.fingerprint();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(&credential.id).filter(|e| e.fingerprint == fingerprint)?;
        entry.used = Instant::now();
        Some(entry.client.clone())
    }

    /// Keeps `client` for `credential`'s current version (for clients built asynchronously,
    /// after [`Self::get`] found none); drops the entries unused for [`IDLE_TTL`].
    pub fn insert(&self, credential: &OpenedCredential, client: T) -> Arc<T> {
        let client = Arc::new(client);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, entry| now.duration_since(entry.used) < IDLE_TTL);
        let fingerprint = credential.fingerprint();
        entries.insert(
            credential.id.clone(),
            Entry { fingerprint, client: client.clone(), used: now },
        );
        client
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider_types::ProviderType;
    use serde_json::json;

    fn credential(id: &str, token: &str) -> OpenedCredential {
        let secrets = json!({"botToken": token}).as_object().unwrap().clone();
        OpenedCredential::new(id.into(), id.into(), ProviderType::DiscordBot, json!({}), secrets)
    }

    #[test]
    fn one_client_per_credential_version() {
        let cache = ClientCache::<u32>::default();
        let mut built = 0;
        let mut get = |c: &OpenedCredential| {
            *cache
                .get_or_build(c, || {
                    built += 1;
                    Ok(built)
                })
                .unwrap()
        };
        assert_eq!(get(&credential("prv_a", "t1")), 1);
        assert_eq!(get(&credential("prv_a", "t1")), 1, "reused");
        assert_eq!(get(&credential("prv_b", "t1")), 2, "per credential");
        assert_eq!(get(&credential("prv_a", "t2")), 3, "rebuilt when the token changed");
        assert_eq!(get(&credential("prv_a", "t2")), 3);
        assert_eq!(cache.len(), 2);
    }
}
