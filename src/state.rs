//! The state every role shares within one process: configuration, the Postgres pool, the
//! Redis handles, the master keys and the provider connectors. Built once at start-up; cheap to
//! clone.

use std::sync::Arc;

use crate::auth::cache::TenantCache;
use crate::auth::oauth::OAuth;
use crate::auth::passkeys::Passkeys;
use crate::auth::password::Hasher;
use crate::auth::usage::KeyUsage;
use crate::config::Config;
use crate::crypto::MasterKeys;
use crate::db;
use crate::inbound::sns::SnsVerifier;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::providers::connector::Registry;
use crate::queue::Redis;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: db::Pool,
    pub redis: Redis,
    pub keys: Arc<MasterKeys>,
    pub key_usage: Arc<KeyUsage>,
    /// Hashes and verifies passwords, a bounded number at once.
    pub passwords: Hasher,
    /// API keys and projects as `/v1/send` resolves them, kept coherent over Redis pub/sub.
    pub tenants: Arc<TenantCache>,
    /// Hands `/v1/send`'s rows to the group committer (running in processes with the api role).
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// The provider connectors (and the clients they cache), for the worker and `/verify`.
    pub connectors: Arc<Registry>,
    /// Checks the signatures of SNS messages (delivery receipts), caching certificates.
    pub sns_verifier: Arc<SnsVerifier>,
    /// The WebAuthn relying party; `None` when this server offers no passkeys.
    pub passkeys: Option<Arc<Passkeys>>,
    /// Signs in with OAuth / OpenID Connect providers, caching what discovery found.
    pub oauth: Arc<OAuth>,
}
