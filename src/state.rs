//! The state every role shares within one process: configuration, the Postgres pools, the
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
    /// The primary: every write, and every read that decides something.
    pub db: db::Pool,
    /// The replica's pool (`database.read_url`), when there is one: see [`AppState::db_read`].
    pub db_replica: Option<db::Pool>,
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

impl AppState {
    /// The pool for reads that tolerate lag (message lists and search, a message's events and
    /// delivery log, the dashboard's overviews): the replica's when `database.read_url` is set,
    /// else the primary's. A replica may be behind the primary by what it has yet to replay,
    /// so nothing that decides (claims, idempotency, authentication, a read before a write)
    /// reads through it.
    pub fn db_read(&self) -> &db::Pool {
        self.db_replica.as_ref().unwrap_or(&self.db)
    }
}
