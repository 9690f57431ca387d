//! `relayit serve`: builds the shared state once, starts the roles this process runs, and stops
//! them gracefully.
//!
//! Roles are tokio tasks: the HTTP server (always, for the operations routes; with the `/v1`
//! routes when the `api` role is on), the delivery worker and the webhook worker. Shutdown stops
//! accepting connections, lets in-flight requests and deliveries finish within
//! `server.shutdown_grace`, then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::cache::TenantCache;
use crate::auth::oauth::OAuth;
use crate::auth::password::Hasher;
use crate::config::Config;
use crate::crypto::{self, KeySource};
use crate::inbound::sns::SnsVerifier;
use crate::ingest::{Ingest, Limits};
use crate::providers::connector::Registry;
use crate::queue::Redis;
use crate::state::AppState;
use crate::{api, db, delivery, webhooks};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
    pub webhook: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { api: true, worker: true, webhook: true };

    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }

    fn names(&self) -> Vec<&'static str> {
        [(self.api, "api"), (self.worker, "worker"), (self.webhook, "webhook")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

type RoleResult = (&'static str, anyhow::Result<()>);

/// A started server: its address, its state, and the handles that stop it.
pub struct Running {
    addr: SocketAddr,
    state: AppState,
    http: actix_web::dev::ServerHandle,
    shutdown: CancellationToken,
    /// Stops the ingestion committer; cancelled only once the HTTP server has drained, so
    /// requests still in flight get their messages committed.
    ingest_stop: CancellationToken,
    tasks: JoinSet<RoleResult>,
    grace: Duration,
}

/// Starts the roles of `roles` with `config`. Fails, with a message fit for one line, when the
/// configuration, the master key, Postgres (when migrating) or Redis is unusable.
pub async fn start(config: Config, roles: Roles) -> anyhow::Result<Running> {
    config.validate()?;
    let (keys, source) = crypto::resolve_master_keys(&config, roles.is_all())?;
    match source {
        KeySource::GeneratedFile => tracing::warn!(
            path = %config.data_dir.join(crypto::KEY_FILE).display(),
            "generated a new master key; back this file up: without it, stored provider \
             credentials and webhook secrets cannot be decrypted"
        ),
        KeySource::ExistingFile => {
            tracing::info!(key_id = keys.current.id(), "using the master key file")
        }
        KeySource::Configured => {
            tracing::info!(key_id = keys.current.id(), "using the configured master key")
        }
    }

    if config.migrate_on_start {
        let applied = db::migrate(config.database.migrate_url())
            .await
            .map_err(|e| e.at(config.database.migrate_url()))?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
    }
    let pool = db::pool(&config.database)?;
    let replica = db::read_pool(&config.database)?;
    if !config.database.prepared_statements && !config.database.statement_timeout.is_zero() {
        tracing::info!(
            "database.prepared_statements = false: database.statement_timeout is not set per \
             session (it would outlive the transaction on a pooler's server connection); set \
             it on the role instead (ALTER ROLE ... SET statement_timeout)"
        );
    }
    let redis = Redis::connect(&config.redis).await.with_context(|| {
        format!(
            "cannot reach Redis at {}: start it, or point RelayIt at yours with REDIS_URL (or \
             redis.url in config.toml)",
            crate::config::redact_url(&config.redis.url)
        )
    })?;

    let (ingest, committer) = Ingest::channel();
    let key_cache_ttl = config.auth.key_cache_ttl;
    let passwords = Hasher::new(config.auth.max_concurrent_hashes, config.auth.hash_wait);
    let connectors = Arc::new(Registry::new(&config.providers)?);
    let sns_verifier = Arc::new(SnsVerifier::new(&config.providers.sns_trusted_hosts));
    let passkeys = crate::auth::passkeys::Passkeys::for_config(&config, &keys)?.map(Arc::new);
    let oauth = Arc::new(OAuth::new()?);
    let state = AppState {
        config: Arc::new(config),
        db: pool,
        db_replica: replica,
        redis,
        keys: Arc::new(keys),
        key_usage: Default::default(),
        passwords,
        tenants: Arc::new(TenantCache::new(key_cache_ttl)),
        ingest,
        metrics: Arc::new(crate::metrics::Metrics::new()?),
        connectors,
        sns_verifier,
        passkeys,
        oauth,
    };
    let shutdown = CancellationToken::new();
    let grace = state.config.server.shutdown_grace;
    let mut tasks = JoinSet::new();

    let factory_state = state.clone();
    let mut http = actix_web::HttpServer::new(move || api::app(factory_state.clone(), roles.api))
        // signals are handled below, for all roles at once
        .disable_signals()
        .shutdown_timeout(grace.as_secs().max(1));
    if state.config.server.workers > 0 {
        http = http.workers(state.config.server.workers);
    }
    let bind = state.config.bind_addr()?;
    let http = http.bind(bind).with_context(|| format!("server.bind {bind}: cannot listen"))?;
    let addr = http.addrs().first().copied().context("the HTTP server bound no address")?;
    let http = http.run();
    let http_handle = http.handle();
    tasks.spawn(async move { ("http", http.await.map_err(anyhow::Error::from)) });

    let ingest_stop = CancellationToken::new();
    if roles.api {
        let (pool, redis, token) = (state.db.clone(), state.redis.clone(), ingest_stop.clone());
        let metrics = state.metrics.clone();
        let limits = Limits {
            window: state.config.api.ingest_window,
            max_messages: state.config.api.ingest_max_batch,
            commits: state.config.api.ingest_commits,
        };
        tasks.spawn(async move {
            committer.run(pool, redis, metrics, limits, token).await;
            ("ingest", Ok(()))
        });
        let (pool, every, token) =
            (state.db.clone(), state.config.api.search_merge_interval, shutdown.clone());
        tasks.spawn(async move {
            crate::ingest::merge_search(pool, every, token).await;
            ("search-merge", Ok(()))
        });
        if state.tenants.enabled() {
            let (tenants, redis, token) =
                (state.tenants.clone(), state.redis.clone(), shutdown.clone());
            tasks.spawn(async move {
                tenants.run(redis, token).await;
                ("tenant-cache", Ok(()))
            });
        }
        let (state, token) = (state.clone(), shutdown.clone());
        tasks.spawn(async move {
            let every = state.config.auth.key_usage_flush;
            state.key_usage.run(state.db.clone(), every, token).await;
            ("key-usage", Ok(()))
        });
    }
    if roles.worker {
        let (state, token) = (state.clone(), shutdown.clone());
        tasks.spawn(async move { ("worker", delivery::run(state, token).await) });
    }
    if roles.webhook {
        let (state, token) = (state.clone(), shutdown.clone());
        tasks.spawn(async move { ("webhook", webhooks::run(state, token).await) });
    }
    tracing::info!(%addr, roles = ?roles.names(), version = env!("CARGO_PKG_VERSION"), "relayit started");
    Ok(Running { addr, state, http: http_handle, shutdown, ingest_stop, tasks, grace })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until SIGTERM or SIGINT, or until a role fails; then shuts down. An error means a
    /// role failed (the process should exit non-zero).
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let failure = tokio::select! {
            () = shutdown_signal() => None,
            Some(done) = self.tasks.join_next() => Some(describe(done)),
        };
        match &failure {
            None => tracing::info!("shutdown signal received; draining"),
            Some(e) => tracing::error!(error = %e, "a role stopped; shutting down"),
        }
        let drained = self.shutdown().await;
        match failure {
            Some(e) => Err(e),
            None => drained,
        }
    }

    /// Stops accepting connections, lets in-flight work finish within the grace period, and
    /// waits for every role to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let stop_http = self.http.stop(true);
        let drain = async {
            stop_http.await;
            self.ingest_stop.cancel();
            // requests that were in flight may have used API keys after the last flush
            self.state.key_usage.flush(&self.state.db).await;
            let mut first_error = None;
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = describe_result(done) {
                    tracing::error!(error = %e, "role failed while stopping");
                    first_error.get_or_insert(e);
                }
            }
            first_error
        };
        // actix enforces the grace on HTTP connections itself; this bounds the workers.
        let outcome = tokio::time::timeout(self.grace + Duration::from_secs(1), drain).await;
        self.state.redis.quit().await;
        match outcome {
            Ok(None) => {
                tracing::info!("stopped");
                Ok(())
            }
            Ok(Some(e)) => Err(e),
            Err(_) => {
                self.tasks.abort_all();
                tracing::warn!(grace = ?self.grace, "roles did not finish within the grace period");
                Ok(())
            }
        }
    }
}

fn describe_result(done: Result<RoleResult, tokio::task::JoinError>) -> anyhow::Result<()> {
    match done {
        Ok((_, Ok(()))) => Ok(()),
        Ok((role, Err(e))) => Err(e.context(format!("role {role}"))),
        Err(e) => Err(anyhow::anyhow!("a role task panicked: {e}")),
    }
}

/// A role that ends before shutdown was asked for is a failure, even if it returned Ok.
fn describe(done: Result<RoleResult, tokio::task::JoinError>) -> anyhow::Error {
    match describe_result(done) {
        Err(e) => e,
        Ok(()) => anyhow::anyhow!("a role stopped unexpectedly"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
