//! Configuration: built-in defaults < a TOML file < `RELAYIT_*` environment variables.
//!
//! The file is `--config PATH`, else `./config.toml` when present. Environment variables use `__`
//! for nesting (`RELAYIT_SERVER__BIND`); the conventional `DATABASE_URL` and `REDIS_URL` are
//! honoured too, below their `RELAYIT_` spellings. Loading validates every value, so a bad one
//! stops start-up with a single line that names the key and says how to fix it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::domain::provider_types::ProviderType;

/// Shown instead of a secret wherever configuration is printed.
pub const REDACTED: &str = "********";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where state that is not in Postgres lives (the generated master key of a single instance).
    pub data_dir: PathBuf,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    pub server: ServerConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub security: SecurityConfig,
    pub auth: AuthConfig,
    pub providers: ProvidersConfig,
    pub webhooks: WebhooksConfig,
    pub delivery: DeliveryConfig,
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    /// The externally visible base URL (`https://relayit.example.com`); empty when unknown.
    pub public_url: String,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long shutdown waits for in-flight requests and deliveries.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A worker proves every second that it is alive (a Redis key that expires after this);
    /// once it has not for this long, other workers take over the deliveries and webhook jobs
    /// it held, and it stops calling providers and receivers itself. At least 2s.
    #[serde(with = "humantime_serde")]
    pub liveness_timeout: Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that appends to it).
    pub behind_proxy: bool,
    /// With `behind_proxy`: the networks (CIDRs) of the proxies in front of RelayIt besides the
    /// last one. The client is the rightmost `X-Forwarded-For` address outside them: what lies
    /// further left, the client wrote itself.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// How long `/v1/send` gathers concurrent requests into one transaction (group commit).
    #[serde(with = "humantime_serde")]
    pub ingest_window: Duration,
    /// Messages per ingestion transaction at most.
    pub ingest_max_batch: usize,
    /// Ingestion transactions in flight at once.
    pub ingest_commits: usize,
    /// How often the search indexes' pending entries are merged (`ingest::merge_search`).
    #[serde(with = "humantime_serde")]
    pub search_merge_interval: Duration,
    /// Messages per second each API key may send; 0 = no limit. A key's own `rateLimit`
    /// takes precedence.
    pub send_rate_limit: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            ingest_window: Duration::ZERO,
            ingest_max_batch: 2000,
            ingest_commits: 4,
            search_merge_interval: Duration::from_secs(1),
            send_rate_limit: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    /// A replica (or a pooler in front of replicas) for the reads that tolerate lag: message
    /// lists and search, a message's events and delivery log, the dashboard's overviews. Unset,
    /// they read from `url`.
    pub read_url: Option<String>,
    /// Where migrations run (`relayit migrate`, `migrate_on_start`); unset, `url`. They hold a
    /// session-level advisory lock, so this must be a session: the primary itself, or a
    /// pooler in session mode, never one in transaction mode.
    pub migrate_url: Option<String>,
    /// Server-side prepared statements: each connection prepares its statements once, by
    /// name, and reuses them. `false` runs every statement unnamed in one round trip and sets
    /// nothing per session (`statement_timeout` included), for a pooler in transaction mode
    /// (PgBouncer's `pool_mode = transaction`).
    pub prepared_statements: bool,
    /// Connections per pool (the replica's pool, with `read_url`, has as many again).
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest a statement of the service's pool may run (waiting for locks included) before
    /// Postgres cancels it; 0 = no limit. Migrations are not bound by it.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// Prepended to every key, before the `{relayit}` hash tag, so that several installs (or
    /// tests) can share one Redis.
    pub key_prefix: String,
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Partitions of the delivery and webhook streams, each under a hash tag of its own, so
    /// that on a Redis Cluster the queues spread over the masters; every worker reads them all.
    /// 1 keeps one stream of each (all an install on one Redis needs).
    pub stream_partitions: u16,
}

#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Base64 of 32 bytes; seals provider credentials and webhook secrets.
    pub encryption_key: Option<String>,
    /// Keys that sealed older rows and still open them (rotation).
    pub previous_keys: Vec<String>,
}

impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("encryption_key", &self.encryption_key.as_ref().map(|_| REDACTED))
            .field("previous_keys", &vec![REDACTED; self.previous_keys.len()])
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub allow_signup: bool,
    /// Sessions expire after this long without use.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// And this long after they were opened, however much they are used.
    #[serde(with = "humantime_serde")]
    pub session_max_lifetime: Duration,
    /// Failed sign-ins per email from one client address within `sign_in_window` before that
    /// address's further attempts on the email get 429 (four times as many per client address
    /// over all emails). Failures from elsewhere never refuse an email, they only slow it down
    /// (`sign_in_max_delay`), so a stranger cannot lock its owner out.
    pub sign_in_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub sign_in_window: Duration,
    /// The longest a sign-in waits because of its email's failures from any address within
    /// `sign_in_window`: none up to `sign_in_max_failures`, then 250 ms doubling with each
    /// further failure up to this. 0 turns the delay off.
    #[serde(with = "humantime_serde")]
    pub sign_in_max_delay: Duration,
    /// Sign-ups (that pass validation) per client address within `sign_up_window`; more get 429.
    pub sign_up_max_per_address: u32,
    #[serde(with = "humantime_serde")]
    pub sign_up_window: Duration,
    /// Sign-ins started without a password (a passkey challenge, a provider's redirect) per
    /// client address within `sign_in_window`; more get 429. Each start keeps a few hundred
    /// bytes in Redis until it is answered or expires, so a flood of them is bounded here.
    pub sign_in_starts_per_address: u32,
    /// Password hashes (sign-in, sign-up) running at once in a process, 19 MiB each; 0 means
    /// one per CPU core.
    pub max_concurrent_hashes: usize,
    /// How long a sign-in or sign-up waits for a hashing slot before it is answered 503 with
    /// `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub hash_wait: Duration,
    /// How often API keys' `lastUsedAt` is written (uses are gathered in memory meanwhile).
    #[serde(with = "humantime_serde")]
    pub key_usage_flush: Duration,
    /// How long a process may keep an API key (and the projects keys name) in memory; changes
    /// are also announced over Redis pub/sub, so this only bounds staleness if that fails.
    /// 0 looks every request up in Postgres.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// Offers passkeys (WebAuthn) to sign in. They need `server.public_url`, whose host is
    /// the relying party id and whose origin the browser must be on: without it, none.
    pub passkeys: bool,
    /// The OAuth 2 / OpenID Connect providers people may sign in with (`[[auth.oauth]]`).
    /// Last: TOML writes tables after plain keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oauth: Vec<OAuthProviderConfig>,
}

/// What kind of provider an `[[auth.oauth]]` entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthKind {
    /// GitHub (or GitHub Enterprise with `api_url` and the endpoint URLs): OAuth 2 and its
    /// REST API for the user and their emails.
    Github,
    /// Google: OpenID Connect with the issuer `https://accounts.google.com`.
    Google,
    /// Any OpenID Connect provider, found by discovery from its `issuer`.
    Oidc,
}

impl OAuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthKind::Github => "github",
            OAuthKind::Google => "google",
            OAuthKind::Oidc => "oidc",
        }
    }
}

/// One `[[auth.oauth]]` provider.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProviderConfig {
    /// The operator's id for the provider: in URLs (`/v1/auth/oauth/{id}/...`) and on linked
    /// accounts, so it must not change once people have signed in with it.
    pub id: String,
    pub kind: OAuthKind,
    /// The button label; by default "GitHub", "Google", or the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub client_id: String,
    /// The client secret itself; prefer `client_secret_env`, which keeps it out of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The OpenID Connect issuer (required for `oidc`; `google` uses Google's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Endpoint overrides: GitHub Enterprise, providers whose discovery is wrong, tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_url: Option<String>,
    /// GitHub's REST API (GitHub Enterprise: `https://HOST/api/v3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The scopes asked for; by default `openid email profile` (OpenID Connect) or
    /// `read:user user:email` (GitHub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for OAuthProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthProviderConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| REDACTED))
            .field("client_secret_env", &self.client_secret_env)
            .field("issuer", &self.issuer)
            .field("authorization_url", &self.authorization_url)
            .field("token_url", &self.token_url)
            .field("userinfo_url", &self.userinfo_url)
            .field("api_url", &self.api_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Google's OpenID Connect issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GITHUB_AUTHORIZATION_URL: &str = "https://github.com/login/oauth/authorize";
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
pub const GITHUB_API_URL: &str = "https://api.github.com";

impl OAuthProviderConfig {
    /// The button label.
    pub fn display_name(&self) -> &str {
        match (&self.name, self.kind) {
            (Some(name), _) => name,
            (None, OAuthKind::Github) => "GitHub",
            (None, OAuthKind::Google) => "Google",
            (None, OAuthKind::Oidc) => &self.id,
        }
    }

    /// The OpenID Connect issuer (none for GitHub).
    pub fn issuer_url(&self) -> Option<&str> {
        match self.kind {
            OAuthKind::Github => None,
            OAuthKind::Google => Some(self.issuer.as_deref().unwrap_or(GOOGLE_ISSUER)),
            OAuthKind::Oidc => self.issuer.as_deref(),
        }
    }

    /// The scopes to ask for.
    pub fn scopes(&self) -> Vec<String> {
        match (&self.scopes, self.kind) {
            (Some(scopes), _) => scopes.clone(),
            (None, OAuthKind::Github) => vec!["read:user".into(), "user:email".into()],
            (None, _) => vec!["openid".into(), "email".into(), "profile".into()],
        }
    }

    /// The client secret, from the file or from the environment variable it names.
    pub fn secret(&self, key: &str) -> Result<String, ConfigError> {
        match (&self.client_secret, &self.client_secret_env) {
            (Some(secret), None) if !secret.is_empty() => Ok(secret.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(secret) if !secret.trim().is_empty() => Ok(secret.trim().to_owned()),
                _ => Err(ConfigError::invalid(
                    &format!("{key}.client_secret_env"),
                    format!("environment variable `{var}` is not set (or empty)"),
                )),
            },
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                &format!("{key}.client_secret"),
                "give either client_secret or client_secret_env, not both",
            )),
            _ => Err(ConfigError::invalid(
                &format!("{key}.client_secret"),
                "is required: the client secret, or client_secret_env naming the environment \
                 variable that holds it",
            )),
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(ConfigError::invalid(
                &format!("{key}.id"),
                "must be 1 to 64 lower-case letters, digits and `-`, e.g. \"github\"",
            ));
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ConfigError::invalid(&format!("{key}.name"), "must not be blank"));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::invalid(&format!("{key}.client_id"), "is required"));
        }
        self.secret(key)?;
        match self.kind {
            OAuthKind::Oidc if self.issuer.is_none() => {
                return Err(ConfigError::invalid(
                    &format!("{key}.issuer"),
                    "is required for kind = \"oidc\": the provider's issuer URL, e.g. \
                     https://login.example.com",
                ));
            }
            OAuthKind::Github if self.issuer.is_some() || self.userinfo_url.is_some() => {
                return Err(ConfigError::invalid(
                    &format!("{key}.issuer"),
                    "is for OpenID Connect providers; GitHub takes authorization_url, token_url \
                     and api_url",
                ));
            }
            OAuthKind::Google | OAuthKind::Oidc if self.api_url.is_some() => {
                return Err(ConfigError::invalid(
                    &format!("{key}.api_url"),
                    "is for kind = \"github\" only",
                ));
            }
            _ => {}
        }
        let urls = [
            ("issuer", &self.issuer),
            ("authorization_url", &self.authorization_url),
            ("token_url", &self.token_url),
            ("userinfo_url", &self.userinfo_url),
            ("api_url", &self.api_url),
        ];
        for (name, value) in urls {
            if let Some(value) = value
                && !provider_url_ok(value)
            {
                return Err(ConfigError::invalid(
                    &format!("{key}.{name}"),
                    format!(
                        "`{value}` is not an https URL (http only for localhost and loopback \
                         addresses)"
                    ),
                ));
            }
        }
        if self.scopes.as_ref().is_some_and(|s| s.iter().any(|s| s.is_empty() || s.contains(' '))) {
            return Err(ConfigError::invalid(
                &format!("{key}.scopes"),
                "must list scopes one by one, none empty or with spaces",
            ));
        }
        Ok(())
    }
}

/// An https URL, or http on localhost or a loopback address (a provider on this host, tests).
fn provider_url_ok(raw: &str) -> bool {
    let Ok(url) = url::Url::parse(raw) else { return false };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.host().is_some() && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Lets provider credentials carry `endpointUrl`/`baseUrl` (local peers, proxies, tests).
    pub allow_endpoint_overrides: bool,
    /// Lets SMTP credentials reach private, loopback, link-local and metadata addresses (a local
    /// relay, development); checked on the addresses connected to.
    pub allow_private_targets: bool,
    /// Hosts (`host` or `host:port`) trusted besides `sns.<region>.amazonaws.com` to serve SNS
    /// signing certificates and subscription confirmation URLs, over http or https: for local
    /// SNS emulators and tests. Empty in production.
    pub sns_trusted_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Lets webhook endpoints target private, loopback and link-local addresses.
    pub allow_private_targets: bool,
    /// Webhook requests in flight at once per webhook worker process.
    pub concurrency: usize,
    /// How long a webhook request may take before it counts as a failed attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The delay before each attempt of an event, the first one included: the number of
    /// entries is the number of attempts. Each delay varies by +-20% (jitter).
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// An endpoint whose attempts have all failed for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// How long a webhook job may stay unacknowledged before another webhook worker takes it
    /// over; must exceed `timeout`.
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// A job pushed to Redis (or due) this long ago and still not settled is pushed again: Redis
    /// lost it. Must exceed `visibility_timeout`.
    #[serde(with = "humantime_serde")]
    pub requeue_after: Duration,
    /// Requests in flight to one endpoint at once per webhook worker process, at most half of
    /// `concurrency` whatever is set, so one slow endpoint never holds every slot.
    pub max_in_flight_per_endpoint: usize,
    /// Consecutive failed attempts (timeouts, connection errors, 5xx, 429) after which an
    /// endpoint is backed off: its jobs wait, without an attempt, until the backoff ends. 0
    /// never backs off.
    pub backoff_after_failures: u32,
    /// The first backoff of a failing endpoint; each further one doubles, up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl WebhooksConfig {
    /// Requests one endpoint may have in flight at once in a worker process.
    pub fn endpoint_slots(&self) -> usize {
        self.max_in_flight_per_endpoint.min(self.concurrency / 2).max(1)
    }
}

/// A list of humantime durations (`["0s", "5s", "5m"]`).
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(list: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> =
            list.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
        texts.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let list = Vec::<humantime_serde::Serde<Duration>>::deserialize(deserializer)?;
        Ok(list.into_iter().map(humantime_serde::Serde::into_inner).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Deliveries in flight at once per worker process.
    pub concurrency: usize,
    pub max_attempts: u32,
    /// How long a claimed stream entry may stay unacknowledged before another worker takes it
    /// over; must exceed the slowest provider call.
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// A provider call still running after this is abandoned as a retryable failure; must be
    /// shorter than `visibility_timeout`.
    #[serde(with = "humantime_serde")]
    pub provider_timeout: Duration,
    /// How often the sweeper looks for scheduled messages that are due and for messages left
    /// behind (see `requeue_after`).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// A message left this long in `received` (unscheduled) or `queued`, or overdue this long in
    /// `retrying`, is put on the stream again (its stream entry was lost).
    #[serde(with = "humantime_serde")]
    pub requeue_after: Duration,
    /// How long a worker reuses the provider credentials it opened; "0s" reads them for every
    /// message.
    #[serde(with = "humantime_serde")]
    pub credential_cache_ttl: Duration,
    /// A message throttled without a break (provider 429s or our own rate limits, which spend
    /// no attempt) for longer than this fails: otherwise it could wait forever.
    #[serde(with = "humantime_serde")]
    pub max_throttled_for: Duration,
    /// The share of `concurrency` one organization's deliveries may hold at once in a worker
    /// process, so that a tenant's slow provider cannot hold every slot: (0, 1].
    pub organization_share: f64,
    /// Last: TOML writes tables after plain keys.
    pub rate_limits: RateLimits,
}

impl DeliveryConfig {
    /// Deliveries one organization may have in flight at once in a worker process.
    pub fn organization_slots(&self) -> usize {
        ((self.concurrency as f64 * self.organization_share) as usize).max(1)
    }
}

/// What the workers' retention duty deletes, and when (`delivery::retention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often each worker process runs the duty.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows deleted per statement: each statement holds its rows locked until it commits.
    pub batch_size: usize,
    /// Messages in a final status are deleted (with their events, search entries and webhook
    /// attempts) once their last change is this old; 0 keeps them for ever. A project's
    /// `messageRetentionDays` takes precedence.
    #[serde(with = "humantime_serde")]
    pub messages: Duration,
    /// Webhook delivery attempts are deleted once this old; 0 keeps them for ever.
    #[serde(with = "humantime_serde")]
    pub webhook_deliveries: Duration,
}

impl RetentionConfig {
    /// The shortest retention period other than "for ever": what a webhook attempt or a
    /// message's history must outlive (its retries, a late receipt).
    pub const MIN_PERIOD: Duration = Duration::from_secs(24 * 3600);
    /// Rows per statement at most.
    pub const MAX_BATCH: usize = 10_000;
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 24 * 3600);
        Self {
            interval: Duration::from_secs(3600),
            batch_size: 1000,
            messages: days(30),
            webhook_deliveries: days(30),
        }
    }
}

/// Provider calls per second per credential, by provider type; 0 = no limit. A credential's
/// own `rateLimit` (in its config) takes precedence; a type not named here has its default
/// ([`ProviderType::default_rate_limit`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RateLimits(BTreeMap<ProviderType, u32>);

impl RateLimits {
    /// The rate of a provider type's credentials (0 = none).
    pub fn of(&self, provider_type: ProviderType) -> u32 {
        self.0.get(&provider_type).copied().unwrap_or_else(|| provider_type.default_rate_limit())
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self(ProviderType::ALL.into_iter().map(|t| (t, t.default_rate_limit())).collect())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            migrate_on_start: true,
            server: ServerConfig::default(),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            security: SecurityConfig::default(),
            auth: AuthConfig::default(),
            providers: ProvidersConfig::default(),
            webhooks: WebhooksConfig::default(),
            delivery: DeliveryConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8080".into(),
            public_url: String::new(),
            workers: 0,
            shutdown_grace: Duration::from_secs(30),
            liveness_timeout: Duration::from_secs(5),
            behind_proxy: false,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

impl DatabaseConfig {
    /// Where migrations run: `migrate_url`, else `url`.
    pub fn migrate_url(&self) -> &str {
        self.migrate_url.as_deref().unwrap_or(&self.url)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/relayit".into(),
            read_url: None,
            migrate_url: None,
            prepared_statements: true,
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: String::new(),
            pool_size: 4,
            command_timeout: Duration::from_secs(5),
            stream_partitions: 1,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_signup: true,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(30 * 24 * 3600),
            sign_in_max_failures: 5,
            sign_in_window: Duration::from_secs(15 * 60),
            sign_in_max_delay: Duration::from_secs(3),
            sign_up_max_per_address: 20,
            sign_up_window: Duration::from_secs(3600),
            sign_in_starts_per_address: 100,
            max_concurrent_hashes: 0,
            hash_wait: Duration::from_secs(2),
            key_usage_flush: Duration::from_secs(5),
            key_cache_ttl: Duration::from_secs(10),
            passkeys: true,
            oauth: Vec::new(),
        }
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            allow_private_targets: false,
            concurrency: 256,
            timeout: Duration::from_secs(15),
            retry_schedule: vec![
                Duration::ZERO,
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            disable_after: Duration::from_secs(5 * 24 * 3600),
            visibility_timeout: Duration::from_secs(60),
            requeue_after: Duration::from_secs(600),
            max_in_flight_per_endpoint: 32,
            backoff_after_failures: 5,
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            concurrency: 1024,
            max_attempts: 8,
            visibility_timeout: Duration::from_secs(300),
            retry_base_delay: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(600),
            provider_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            requeue_after: Duration::from_secs(300),
            credential_cache_ttl: Duration::from_secs(30),
            max_throttled_for: Duration::from_secs(24 * 3600),
            organization_share: 0.5,
            rate_limits: RateLimits::default(),
        }
    }
}

/// The sections and keys at the top of the configuration. `RELAYIT_*` variables outside them are
/// ignored rather than refused: orchestrators set some of their own (Kubernetes adds
/// `RELAYIT_SERVICE_HOST` for a service named relayit), and they must not stop start-up.
const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "migrate_on_start",
    "server",
    "api",
    "log",
    "database",
    "redis",
    "security",
    "auth",
    "providers",
    "webhooks",
    "delivery",
    "retention",
];

fn top_level(key: &str) -> &str {
    let end = [key.find('.'), key.find("__")].into_iter().flatten().min();
    &key[..end.unwrap_or(key.len())]
}

/// A configuration that cannot be used; its `Display` is the one line shown at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), reason: reason.into() }
    }

    /// The key at fault, for `Invalid` errors.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::File { .. } => None,
        }
    }
}

impl Config {
    /// Whether passkeys can be used: switched on, and a public URL to bind them to. WebAuthn
    /// binds credentials to a domain name: a public URL with an IP address allows none.
    pub fn passkeys_enabled(&self) -> bool {
        self.auth.passkeys
            && url::Url::parse(&self.server.public_url).is_ok_and(|u| u.domain().is_some())
    }

    /// The layered sources: defaults, then the file, then the environment.
    ///
    /// An explicit `path` must exist; without one, `./config.toml` is read when present.
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    reason: "not found; pass an existing file to --config".into(),
                });
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new("config.toml").is_file() => {
                figment = figment.merge(Toml::file_exact("config.toml"))
            }
            None => {}
        }
        Ok(figment
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
            .merge(Env::prefixed("RELAYIT_").split("__").filter(|key| {
                let top = top_level(key.as_str());
                TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
            })))
    }

    /// Loads and validates the configuration from its usual sources.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(path)?)
    }

    /// Extracts and validates a configuration from any set of sources.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(describe_figment_error)?;
        // An empty value means "not set" (compose passes `${VAR:-}` through as "").
        if config.security.encryption_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            config.security.encryption_key = None;
        }
        for url in [&mut config.database.read_url, &mut config.database.migrate_url] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                *url = None;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: formats, ranges and the relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        if !self.server.public_url.is_empty() {
            let ok = url::Url::parse(&self.server.public_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(ConfigError::invalid(
                    "server.public_url",
                    "must be an http(s) URL such as https://relayit.example.com, or empty",
                ));
            }
        }
        postgres_url("database.url", &self.database.url)?;
        if let Some(url) = &self.database.read_url {
            postgres_url("database.read_url", url)?;
        }
        if let Some(url) = &self.database.migrate_url {
            postgres_url("database.migrate_url", url)?;
        }
        // fred's forms: one server, a cluster (seed nodes as `?node=host:port`) or Sentinel,
        // each with TLS (`rediss`)
        let redis_ok = url::Url::parse(&self.redis.url).is_ok_and(|u| {
            matches!(
                u.scheme(),
                "redis"
                    | "rediss"
                    | "redis-cluster"
                    | "rediss-cluster"
                    | "redis-sentinel"
                    | "rediss-sentinel"
            )
        });
        if !redis_ok {
            return Err(ConfigError::invalid(
                "redis.url",
                "must be a redis:// or rediss:// URL (redis://127.0.0.1:6379), a cluster's \
                 (redis-cluster://host:port?node=host2:port2) or Sentinel's \
                 (redis-sentinel://host:port/0?sentinelServiceName=mymaster)",
            ));
        }
        if self.redis.key_prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                "redis.key_prefix",
                "must not contain `{` or `}` (RelayIt adds its own {relayit} hash tag)",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                "is not a tracing filter; use a level such as \"info\" or e.g. \"relayit=debug,info\"",
            ));
        }
        positive("database.max_connections", self.database.max_connections)?;
        positive("redis.pool_size", self.redis.pool_size)?;
        let partitions = usize::from(self.redis.stream_partitions);
        if !(1..=MAX_STREAM_PARTITIONS).contains(&partitions) {
            return Err(ConfigError::invalid(
                "redis.stream_partitions",
                format!("must be between 1 and {MAX_STREAM_PARTITIONS}"),
            ));
        }
        // a worker waiting on every partition holds a slot for each
        for (key, concurrency) in [
            ("delivery.concurrency", self.delivery.concurrency),
            ("webhooks.concurrency", self.webhooks.concurrency),
        ] {
            if concurrency < partitions {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be at least redis.stream_partitions ({partitions})"),
                ));
            }
        }
        positive("api.ingest_max_batch", self.api.ingest_max_batch)?;
        positive("api.ingest_commits", self.api.ingest_commits)?;
        nonzero_duration("api.search_merge_interval", self.api.search_merge_interval)?;
        positive("delivery.concurrency", self.delivery.concurrency)?;
        positive("delivery.max_attempts", self.delivery.max_attempts as usize)?;
        nonzero_duration("database.connect_timeout", self.database.connect_timeout)?;
        nonzero_duration("redis.command_timeout", self.redis.command_timeout)?;
        nonzero_duration("delivery.visibility_timeout", self.delivery.visibility_timeout)?;
        nonzero_duration("delivery.provider_timeout", self.delivery.provider_timeout)?;
        nonzero_duration("delivery.sweep_interval", self.delivery.sweep_interval)?;
        nonzero_duration("delivery.requeue_after", self.delivery.requeue_after)?;
        nonzero_duration("delivery.max_throttled_for", self.delivery.max_throttled_for)?;
        let share = self.delivery.organization_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(ConfigError::invalid(
                "delivery.organization_share",
                "must be more than 0 and at most 1 (a share of delivery.concurrency)",
            ));
        }
        if self.server.liveness_timeout < Duration::from_secs(2) {
            return Err(ConfigError::invalid(
                "server.liveness_timeout",
                "must be at least 2s: workers prove they are alive every second",
            ));
        }
        if self.delivery.provider_timeout >= self.delivery.visibility_timeout {
            return Err(ConfigError::invalid(
                "delivery.provider_timeout",
                "must be shorter than delivery.visibility_timeout, or a slow provider call \
                 would be taken over and sent twice",
            ));
        }
        positive("webhooks.concurrency", self.webhooks.concurrency)?;
        if self.webhooks.retry_schedule.is_empty() {
            return Err(ConfigError::invalid(
                "webhooks.retry_schedule",
                "must list at least one delay (the first attempt's, usually \"0s\")",
            ));
        }
        nonzero_duration("webhooks.timeout", self.webhooks.timeout)?;
        positive("webhooks.max_in_flight_per_endpoint", self.webhooks.max_in_flight_per_endpoint)?;
        nonzero_duration("webhooks.backoff_initial", self.webhooks.backoff_initial)?;
        if self.webhooks.backoff_max < self.webhooks.backoff_initial {
            return Err(ConfigError::invalid(
                "webhooks.backoff_max",
                "must be at least webhooks.backoff_initial",
            ));
        }
        nonzero_duration("webhooks.disable_after", self.webhooks.disable_after)?;
        if self.webhooks.timeout >= self.webhooks.visibility_timeout {
            return Err(ConfigError::invalid(
                "webhooks.timeout",
                "must be shorter than webhooks.visibility_timeout, or a slow receiver would be \
                 called again while the first request still runs",
            ));
        }
        if self.webhooks.requeue_after <= self.webhooks.visibility_timeout {
            return Err(ConfigError::invalid(
                "webhooks.requeue_after",
                "must be longer than webhooks.visibility_timeout, or jobs still being delivered \
                 would be pushed again",
            ));
        }
        nonzero_duration("auth.session_ttl", self.auth.session_ttl)?;
        nonzero_duration("auth.session_max_lifetime", self.auth.session_max_lifetime)?;
        nonzero_duration("retention.interval", self.retention.interval)?;
        if !(1..=RetentionConfig::MAX_BATCH).contains(&self.retention.batch_size) {
            return Err(ConfigError::invalid(
                "retention.batch_size",
                format!("must be between 1 and {}", RetentionConfig::MAX_BATCH),
            ));
        }
        retention_period("retention.messages", self.retention.messages)?;
        retention_period("retention.webhook_deliveries", self.retention.webhook_deliveries)?;
        nonzero_duration("auth.sign_in_window", self.auth.sign_in_window)?;
        nonzero_duration("auth.key_usage_flush", self.auth.key_usage_flush)?;
        positive("auth.sign_in_max_failures", self.auth.sign_in_max_failures as usize)?;
        positive("auth.sign_up_max_per_address", self.auth.sign_up_max_per_address as usize)?;
        nonzero_duration("auth.sign_up_window", self.auth.sign_up_window)?;
        positive("auth.sign_in_starts_per_address", self.auth.sign_in_starts_per_address as usize)?;
        if self.delivery.retry_max_delay < self.delivery.retry_base_delay {
            return Err(ConfigError::invalid(
                "delivery.retry_max_delay",
                "must not be shorter than delivery.retry_base_delay",
            ));
        }
        if let Some(key) = &self.security.encryption_key {
            MasterKey::from_base64(key).map_err(|e| {
                ConfigError::invalid(
                    "security.encryption_key",
                    format!("{e}; generate one with `relayit generate-key`"),
                )
            })?;
        }
        for (i, host) in self.providers.sns_trusted_hosts.iter().enumerate() {
            if crate::inbound::sns::TrustedHost::parse(host).is_none() {
                return Err(ConfigError::invalid(
                    &format!("providers.sns_trusted_hosts.{i}"),
                    format!("`{host}` is not a host or host:port, e.g. 127.0.0.1:9911"),
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, provider) in self.auth.oauth.iter().enumerate() {
            let key = format!("auth.oauth.{i}");
            provider.validate(&key)?;
            if !ids.insert(provider.id.as_str()) {
                return Err(ConfigError::invalid(
                    &format!("{key}.id"),
                    format!(
                        "`{}` names another [[auth.oauth]] provider too; ids are unique",
                        provider.id
                    ),
                ));
            }
        }
        for (i, key) in self.security.previous_keys.iter().enumerate() {
            MasterKey::from_base64(key).map_err(|e| {
                ConfigError::invalid(
                    &format!("security.previous_keys.{i}"),
                    format!("{e}; list the exact keys that sealed older data"),
                )
            })?;
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            ConfigError::invalid(
                "server.bind",
                format!("`{}` is not host:port; use e.g. 0.0.0.0:8080", self.server.bind),
            )
        })
    }

    /// The configuration as TOML with every secret replaced by `********`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.security.encryption_key.is_some() {
            shown.security.encryption_key = Some(REDACTED.into());
        }
        for key in &mut shown.security.previous_keys {
            *key = REDACTED.into();
        }
        for provider in &mut shown.auth.oauth {
            if provider.client_secret.is_some() {
                provider.client_secret = Some(REDACTED.into());
            }
        }
        shown.database.url = redact_url(&shown.database.url);
        shown.database.read_url = shown.database.read_url.as_deref().map(redact_url);
        shown.database.migrate_url = shown.database.migrate_url.as_deref().map(redact_url);
        shown.redis.url = redact_url(&shown.redis.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Hides the password of a URL (`postgres://user:********@host/db`).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            // set_password only fails for URLs that cannot carry one, ruled out by the guard
            let _ = url.set_password(Some(REDACTED));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => REDACTED.to_owned(),
    }
}

/// A worker holds a dedicated connection per partition: past a few per master, more only cost.
const MAX_STREAM_PARTITIONS: usize = 64;

fn postgres_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql"));
    if !ok {
        return Err(ConfigError::invalid(
            key,
            "must be a postgres:// URL, e.g. postgres://user:password@host:5432/relayit",
        ));
    }
    Ok(())
}

fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn nonzero_duration(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(key, "must be a positive duration such as \"5s\""));
    }
    Ok(())
}

/// A retention period: "0s" (for ever) or at least a day.
fn retention_period(key: &str, value: Duration) -> Result<(), ConfigError> {
    if !value.is_zero() && value < RetentionConfig::MIN_PERIOD {
        return Err(ConfigError::invalid(
            key,
            "must be at least a day (\"1day\"), or \"0s\" to keep everything",
        ));
    }
    Ok(())
}

/// Turns figment's error into one line that names the key, the problem and where the value came
/// from (the file, or the environment variable to fix).
fn describe_figment_error(error: figment::Error) -> ConfigError {
    let key = error.path.join(".");
    let source = match (&error.metadata, error.path.is_empty()) {
        (Some(meta), false) if meta.name.contains("environment") => {
            let var = if key == "database.url" || key == "redis.url" {
                format!("RELAYIT_{} (or {})", env_name(&key), key.replace('.', "_").to_uppercase())
            } else {
                format!("RELAYIT_{}", env_name(&key))
            };
            format!(" (set by environment variable {var})")
        }
        (Some(meta), _) => match &meta.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", meta.name),
        },
        (None, _) => String::new(),
    };
    let reason = match &error.kind {
        figment::error::Kind::UnknownField(..) => {
            return ConfigError::invalid(
                &key,
                format!("unknown key{source}; see config.toml for the keys RelayIt reads"),
            );
        }
        kind => format!("{kind}{source}"),
    };
    ConfigError::invalid(if key.is_empty() { "(root)" } else { &key }, reason)
}

fn env_name(key: &str) -> String {
    key.replace('.', "__").to_uppercase()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(None)
    }

    #[test]
    fn repository_config_toml_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let from_file = Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::file_exact(&path)),
        )
        .expect("config.toml loads");
        assert_eq!(from_file, Config::default(), "config.toml must document the defaults");
        // every key must be spelled out in the file, not only inherited from the defaults
        let raw: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let defaults: toml::Table = toml::from_str(&Config::default().to_redacted_toml()).unwrap();
        for (section, value) in defaults {
            match value {
                toml::Value::Table(keys) => {
                    let in_file = raw.get(&section).and_then(|v| v.as_table()).cloned();
                    let in_file = in_file.unwrap_or_else(|| panic!("[{section}] missing"));
                    for key in keys.keys() {
                        assert!(
                            in_file.contains_key(key),
                            "{section}.{key} missing in config.toml"
                        );
                    }
                }
                _ => assert!(raw.contains_key(&section), "{section} missing in config.toml"),
            }
        }
    }

    #[test]
    fn layering_defaults_file_environment() {
        Jail::expect_with(|jail| {
            assert_eq!(load_in_jail(jail).unwrap(), Config::default());

            jail.create_file(
                "config.toml",
                "[server]\nbind = \"127.0.0.1:9000\"\n[database]\nmax_connections = 3\n",
            )?;
            let config = load_in_jail(jail).unwrap();
            assert_eq!(config.server.bind, "127.0.0.1:9000");
            assert_eq!(config.database.max_connections, 3);
            assert_eq!(config.redis.url, RedisConfig::default().url);

            jail.set_env("RELAYIT_SERVER__BIND", "127.0.0.1:9001");
            jail.set_env("RELAYIT_DELIVERY__RETRY_BASE_DELAY", "250ms");
            jail.set_env("RELAYIT_MIGRATE_ON_START", "false");
            jail.set_env("RELAYIT_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
            jail.set_env("RELAYIT_DELIVERY__RATE_LIMITS__SES", "1");
            jail.set_env("RELAYIT_DELIVERY__MAX_THROTTLED_FOR", "2h");
            jail.set_env("RELAYIT_RETENTION__MESSAGES", "0s");
            jail.set_env("RELAYIT_RETENTION__WEBHOOK_DELIVERIES", "7days");
            let config = load_in_jail(jail).unwrap();
            assert_eq!(config.retention.messages, Duration::ZERO);
            assert_eq!(config.retention.webhook_deliveries, Duration::from_secs(7 * 24 * 3600));
            assert_eq!(config.delivery.rate_limits.of(ProviderType::Ses), 1);
            assert_eq!(config.delivery.rate_limits.of(ProviderType::Sns), 20);
            assert_eq!(config.delivery.max_throttled_for, Duration::from_secs(7200));
            assert_eq!(config.server.bind, "127.0.0.1:9001");
            assert_eq!(config.database.max_connections, 3);
            assert_eq!(config.delivery.retry_base_delay, Duration::from_millis(250));
            assert!(!config.migrate_on_start);
            assert!(config.webhooks.allow_private_targets);

            jail.set_env("RELAYIT_DATABASE__READ_URL", "postgres://r@replica:5432/relayit");
            jail.set_env("RELAYIT_DATABASE__MIGRATE_URL", "");
            jail.set_env("RELAYIT_DATABASE__PREPARED_STATEMENTS", "false");
            let database = load_in_jail(jail).unwrap().database;
            assert_eq!(database.read_url.as_deref(), Some("postgres://r@replica:5432/relayit"));
            // empty is unset (compose passes `${VAR:-}` through as "")
            assert_eq!(database.migrate_url, None);
            assert_eq!(database.migrate_url(), database.url);
            assert!(!database.prepared_statements);

            jail.set_env("RELAYIT_WEBHOOKS__RETRY_SCHEDULE", r#"["0s","200ms","1m"]"#);
            let schedule = load_in_jail(jail).unwrap().webhooks.retry_schedule;
            let expected = [0, 200, 60_000].map(Duration::from_millis);
            assert_eq!(schedule, expected);
            jail.set_env("RELAYIT_WEBHOOKS__RETRY_SCHEDULE", "[]");
            let err = load_in_jail(jail).unwrap_err();
            assert_eq!(err.key(), Some("webhooks.retry_schedule"), "{err}");
            jail.set_env("RELAYIT_WEBHOOKS__RETRY_SCHEDULE", r#"["0s"]"#);
            jail.set_env("RELAYIT_WEBHOOKS__TIMEOUT", "2m");
            let err = load_in_jail(jail).unwrap_err();
            assert_eq!(err.key(), Some("webhooks.timeout"), "{err}");
            jail.set_env("RELAYIT_WEBHOOKS__TIMEOUT", "15s");

            jail.set_env("DATABASE_URL", "postgres://a@db:5432/x");
            jail.set_env("REDIS_URL", "redis://cache:6379");
            let config = load_in_jail(jail).unwrap();
            assert_eq!(config.database.url, "postgres://a@db:5432/x");
            assert_eq!(config.redis.url, "redis://cache:6379");
            // the RELAYIT_ spelling is the more specific one and wins
            jail.set_env("RELAYIT_DATABASE__URL", "postgres://b@db:5432/y");
            assert_eq!(load_in_jail(jail).unwrap().database.url, "postgres://b@db:5432/y");

            // variables that are not RelayIt settings are left alone
            jail.set_env("RELAYIT_SERVICE_HOST", "10.0.0.1");
            jail.set_env("RELAYIT_PORT", "tcp://10.0.0.1:8080");
            assert!(load_in_jail(jail).is_ok());

            jail.set_env(
                "RELAYIT_SECURITY__PREVIOUS_KEYS",
                format!("[\"{}\"]", "A".repeat(43) + "="),
            );
            assert_eq!(load_in_jail(jail).unwrap().security.previous_keys.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn explicit_file_must_exist() {
        let err = Config::load(Some(Path::new("/nonexistent/relayit.toml"))).unwrap_err();
        assert!(err.to_string().contains("--config"), "{err}");
    }

    #[test]
    fn redis_urls_take_freds_forms() {
        let with = |url: &str| {
            let mut config = Config::default();
            config.redis.url = url.to_owned();
            config.validate()
        };
        for fine in [
            "redis://127.0.0.1:6379",
            "rediss://user:secret@cache.example.com:6380/1",
            "redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=127.0.0.1:7003",
            "rediss-cluster://user:secret@cluster.example.com:6379",
            "redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster",
            "rediss-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster",
        ] {
            assert!(with(fine).is_ok(), "{fine}: {:?}", with(fine));
        }
        for refused in ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis-clusterx://a:1"] {
            let err = with(refused).unwrap_err();
            assert_eq!(err.key(), Some("redis.url"), "{refused}: {err}");
            assert!(err.to_string().contains("redis-cluster://"), "{err}");
        }
    }

    #[test]
    fn each_worker_has_a_slot_for_every_partition() {
        let mut config = Config::default();
        config.redis.stream_partitions = 8;
        assert!(config.validate().is_ok());
        config.webhooks.concurrency = 7;
        let err = config.validate().unwrap_err();
        assert_eq!(err.key(), Some("webhooks.concurrency"), "{err}");
        assert!(err.to_string().contains("redis.stream_partitions (8)"), "{err}");
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "RELAYIT_DATABASE__MAX_CONNECTIONS",
                "lots",
                "database.max_connections",
                "RELAYIT_DATABASE__MAX_CONNECTIONS",
            ),
            ("RELAYIT_DATABASE__MAX_CONNECTIONS", "0", "database.max_connections", "at least 1"),
            ("RELAYIT_SERVER__BIND", "nowhere", "server.bind", "0.0.0.0:8080"),
            ("DATABASE_URL", "mysql://x", "database.url", "postgres://"),
            ("RELAYIT_DATABASE__READ_URL", "mysql://x", "database.read_url", "postgres://"),
            ("RELAYIT_DATABASE__MIGRATE_URL", "db:5432", "database.migrate_url", "postgres://"),
            (
                "RELAYIT_DATABASE__PREPARED_STATEMENTS",
                "sometimes",
                "database.prepared_statements",
                "RELAYIT_DATABASE__PREPARED_STATEMENTS",
            ),
            ("RELAYIT_REDIS__URL", "http://x", "redis.url", "redis://"),
            ("RELAYIT_REDIS__KEY_PREFIX", "a{b}", "redis.key_prefix", "hash tag"),
            (
                "RELAYIT_REDIS__STREAM_PARTITIONS",
                "65",
                "redis.stream_partitions",
                "between 1 and 64",
            ),
            (
                "RELAYIT_REDIS__STREAM_PARTITIONS",
                "0",
                "redis.stream_partitions",
                "between 1 and 64",
            ),
            (
                "RELAYIT_SECURITY__ENCRYPTION_KEY",
                "c2hvcnQ=",
                "security.encryption_key",
                "relayit generate-key",
            ),
            ("RELAYIT_SECURITY__PREVIOUS_KEYS", "[\"!!\"]", "security.previous_keys.0", "base64"),
            (
                "RELAYIT_DELIVERY__VISIBILITY_TIMEOUT",
                "soon",
                "delivery.visibility_timeout",
                "RELAYIT_DELIVERY__VISIBILITY_TIMEOUT",
            ),
            (
                "RELAYIT_DELIVERY__RETRY_MAX_DELAY",
                "1ms",
                "delivery.retry_max_delay",
                "retry_base_delay",
            ),
            (
                "RELAYIT_DELIVERY__PROVIDER_TIMEOUT",
                "10m",
                "delivery.provider_timeout",
                "visibility_timeout",
            ),
            ("RELAYIT_LOG__FORMAT", "xml", "log.format", "pretty"),
            ("RELAYIT_DELIVERY__MAX_THROTTLED_FOR", "0s", "delivery.max_throttled_for", "positive"),
            (
                "RELAYIT_DELIVERY__RATE_LIMITS__SMTP",
                "-1",
                "delivery.rate_limits.smtp",
                "RELAYIT_DELIVERY__RATE_LIMITS__SMTP",
            ),
            (
                "RELAYIT_DELIVERY__RATE_LIMITS__NOPE",
                "1",
                "delivery.rate_limits.nope",
                "whatsapp_cloud",
            ),
            ("RELAYIT_SERVER__PUBLIC_URL", "ftp://x", "server.public_url", "http(s)"),
            (
                "RELAYIT_SERVER__TRUSTED_PROXIES",
                "[\"10.0.0.0/33\"]",
                "server.trusted_proxies.0",
                "invalid IP address",
            ),
            ("RELAYIT_SERVER__NOPE", "1", "server.nope", "unknown key"),
            ("RELAYIT_LOG__LEVEL", "relayit=loud", "log.level", "tracing filter"),
            ("RELAYIT_AUTH__SESSION_MAX_LIFETIME", "0s", "auth.session_max_lifetime", "positive"),
            ("RELAYIT_RETENTION__MESSAGES", "23h", "retention.messages", "\"0s\" to keep"),
            (
                "RELAYIT_RETENTION__WEBHOOK_DELIVERIES",
                "1h",
                "retention.webhook_deliveries",
                "at least a day",
            ),
            ("RELAYIT_RETENTION__BATCH_SIZE", "0", "retention.batch_size", "between 1 and"),
            ("RELAYIT_RETENTION__BATCH_SIZE", "10001", "retention.batch_size", "between 1 and"),
            ("RELAYIT_RETENTION__INTERVAL", "0s", "retention.interval", "positive"),
        ];
        for (var, value, key, hint) in cases {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = load_in_jail(jail).expect_err(var);
                let line = err.to_string();
                assert_eq!(err.key(), Some(*key), "{var}={value}: {line}");
                assert!(line.contains(hint), "{var}={value}: `{line}` lacks `{hint}`");
                assert!(!line.contains('\n'), "one line: {line}");
                Ok(())
            });
        }
    }

    #[test]
    fn oauth_providers_are_read_and_validated() {
        let good = r#"
[[auth.oauth]]
id = "github"
kind = "github"
client_id = "Iv1.abc"
client_secret_env = "TEST_GITHUB_SECRET"

[[auth.oauth]]
id = "google"
kind = "google"
client_id = "123.apps.googleusercontent.com"
client_secret = "g-secret-value"

[[auth.oauth]]
id = "corp-sso"
kind = "oidc"
name = "Corp SSO"
issuer = "https://login.example.com/realms/corp"
client_id = "relayit"
client_secret = "s"
scopes = ["openid", "email"]
"#;
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", good)?;
            jail.set_env("TEST_GITHUB_SECRET", "gh-secret-value");
            let config = load_in_jail(jail).unwrap();
            let [github, google, corp] = &config.auth.oauth[..] else { panic!("three providers") };
            assert_eq!(github.display_name(), "GitHub");
            assert_eq!(github.secret("k").unwrap(), "gh-secret-value");
            assert_eq!(github.scopes(), ["read:user", "user:email"]);
            assert_eq!(google.issuer_url(), Some(GOOGLE_ISSUER));
            assert_eq!(google.scopes(), ["openid", "email", "profile"]);
            assert_eq!(corp.display_name(), "Corp SSO");
            assert_eq!(corp.scopes(), ["openid", "email"]);
            // the secret written in the file is never shown
            let shown = config.to_redacted_toml();
            assert!(!shown.contains("g-secret-value") && shown.contains("TEST_GITHUB_SECRET"));
            assert!(!format!("{config:?}").contains("g-secret-value"));

            jail.set_env("TEST_GITHUB_SECRET", "");
            let err = load_in_jail(jail).unwrap_err();
            assert_eq!(err.key(), Some("auth.oauth.0.client_secret_env"), "{err}");
            Ok(())
        });

        let provider =
            |extra: &str| format!("[[auth.oauth]]\nid = \"p\"\nclient_id = \"c\"\n{extra}\n");
        let cases: &[(String, &str, &str)] = &[
            (provider("kind = \"oidc\"\nclient_secret = \"s\""), "auth.oauth.0.issuer", "required"),
            (
                provider("kind = \"oidc\"\nclient_secret = \"s\"\nissuer = \"http://idp.example.com\""),
                "auth.oauth.0.issuer",
                "https",
            ),
            (
                provider("kind = \"github\"\nclient_secret = \"s\"\napi_url = \"not a url\""),
                "auth.oauth.0.api_url",
                "https",
            ),
            (
                provider("kind = \"google\"\nclient_secret = \"s\"\napi_url = \"https://x.example\""),
                "auth.oauth.0.api_url",
                "github",
            ),
            (provider("kind = \"github\""), "auth.oauth.0.client_secret", "client_secret_env"),
            (
                provider("kind = \"github\"\nclient_secret = \"s\"\nclient_secret_env = \"V\""),
                "auth.oauth.0.client_secret",
                "not both",
            ),
            (provider("kind = \"gitlab\"\nclient_secret = \"s\""), "auth.oauth.0.kind", "oidc"),
            (
                provider("kind = \"github\"\nclient_secret = \"s\"\nscopes = [\"a b\"]"),
                "auth.oauth.0.scopes",
                "spaces",
            ),
            (
                provider("kind = \"github\"\nclient_secret = \"s\"")
                    + &provider("kind = \"google\"\nclient_secret = \"s\""),
                "auth.oauth.1.id",
                "unique",
            ),
            (
                "[[auth.oauth]]\nid = \"Git Hub\"\nkind = \"github\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
                    .to_owned(),
                "auth.oauth.0.id",
                "lower-case",
            ),
        ];
        for (file, key, hint) in cases {
            Jail::expect_with(|jail| {
                jail.create_file("config.toml", file)?;
                let err = load_in_jail(jail).expect_err(file);
                let line = err.to_string();
                assert_eq!(err.key(), Some(*key), "{file}: {line}");
                assert!(line.contains(hint), "{file}: `{line}` lacks `{hint}`");
                Ok(())
            });
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", "[delivery]\nmax_attempts = \"many\"\n")?;
            let line = load_in_jail(jail).unwrap_err().to_string();
            assert!(
                line.contains("delivery.max_attempts") && line.contains("config.toml"),
                "{line}"
            );
            Ok(())
        });
    }

    #[test]
    fn redaction_hides_keys_and_url_passwords() {
        let mut config = Config::default();
        config.security.encryption_key = Some(crate::crypto::generate_key_base64());
        config.security.previous_keys = vec![crate::crypto::generate_key_base64()];
        config.database.url = "postgres://relayit:hunter22@db:5432/relayit".into();
        config.database.read_url = Some("postgres://relayit:replica77@r:5432/relayit".into());
        config.database.migrate_url = Some("postgres://owner:direct55@db:5432/relayit".into());
        config.redis.url = "redis://:sesame99@cache:6379".into();
        let shown = config.to_redacted_toml();
        for secret in [
            config.security.encryption_key.as_deref().unwrap(),
            &config.security.previous_keys[0],
            "hunter22",
            "replica77",
            "direct55",
            "sesame99",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(shown.contains("postgres://relayit:********@db:5432/relayit"), "{shown}");
        assert!(!format!("{config:?}").contains(&config.security.previous_keys[0]));
    }
}
