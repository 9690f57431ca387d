//! PostgreSQL: the connection pool every role shares, the optional replica pool for reads
//! that tolerate lag, and the schema migrations.
//!
//! Everything that decides (claims, idempotency, authentication, sessions, whatever reads in
//! order to write) uses the primary's pool. The replica's (`database.read_url`) serves only
//! reads whose answer may be a little behind: message lists and search, a message's events
//! and delivery log, the dashboard's overviews. A replica replays asynchronously, so a client
//! that sends a message and lists at once may not see it yet; it appears once replayed.
//!
//! With `database.prepared_statements = false` the pools suit a pooler in transaction mode:
//! statements run unnamed (see vendor/diesel-async/RELAYIT-PATCH.md) and nothing is set per
//! session, since a `SET` would stay on whichever server connection it ran on, for whichever
//! client gets it next.
//!
//! Migrations are embedded in the binary and run under a session-level advisory lock, so any
//! number of processes may start at once: one applies them, the others wait and find nothing
//! left to do.

/// Applies "older than the cursor" to a boxed query ordered by `(created_at DESC, id DESC)`,
/// the keyset every list of the API pages through.
macro_rules! after_cursor {
    ($query:expr, $created_at:expr, $id:expr, $cursor:expr) => {
        match $cursor {
            Some(c) => $query.filter(
                $created_at
                    .lt(c.created_at)
                    .or($created_at.eq(c.created_at).and($id.lt(c.id.clone()))),
            ),
            None => $query,
        }
    };
}

pub mod api_keys;
pub mod delivery;
pub mod idempotency;
pub mod invitations;
pub mod linked_accounts;
pub mod messages;
pub mod organizations;
pub mod passkeys;
pub mod projects;
pub mod providers;
pub mod receipts;
pub mod rotation;
pub mod schema;
pub mod suppressions;
pub mod templates;
pub mod users;
pub mod webhook_endpoints;
pub mod webhooks;

use std::time::Duration;

use chrono::{DateTime, Utc};

use diesel::connection::CacheSize;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{Connection, QueryResult, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseConfig;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Arbitrary but fixed: identifies RelayIt's migration lock among other advisory locks.
const MIGRATION_LOCK_ID: i64 = 0x7265_6c61_7969_7401;

pub type Pool = DeadPool<AsyncPgConnection>;
pub type PooledConnection = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot build the database pool: {0}")]
    Pool(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// The error for an operator, naming the database: one that cannot be reached says where
    /// RelayIt looked and what to set.
    pub fn at(self, url: &str) -> anyhow::Error {
        let url = crate::config::redact_url(url);
        match self {
            DbError::Connect(_) => anyhow::Error::new(self).context(format!(
                "cannot reach PostgreSQL at {url}: start it, or point RelayIt at yours with \
                 DATABASE_URL (or database.url in config.toml)"
            )),
            other => anyhow::Error::new(other).context(format!("database {url}")),
        }
    }
}

/// Whether `error` says the database went away under a query, rather than that the query was
/// wrong: the connection died (Postgres restarted, the network dropped it), or the server
/// ended the session (shutdown, `pg_terminate_backend`, a crash of another backend). diesel
/// reports the latter with the server's message but not its SQLSTATE (class 57, operator
/// intervention), so it is recognised by the words every such message starts with.
pub fn database_went_away(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(_, info) => info.message().starts_with("terminating connection"),
        _ => false,
    }
}

/// Whether the connection broke with the statement sent (or about to be) and no answer
/// received: whether it took effect (a COMMIT, an autocommitted insert) is unknown.
pub fn connection_broke(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
}

/// Whether Postgres cancelled the statement for running past `database.statement_timeout`.
pub fn timed_out(error: &diesel::result::Error) -> bool {
    server_says(error, "canceling statement due to statement timeout")
}

/// Whether the statement gave up waiting for a lock (`lock_timeout`, migration 000017).
pub fn gave_up_waiting(error: &diesel::result::Error) -> bool {
    server_says(error, "canceling statement due to lock timeout")
}

/// Whether `error` is the server's, with `message`: diesel reports the SQLSTATE of neither
/// cancellation above (57014, 55P03), only the server's words.
fn server_says(error: &diesel::result::Error, message: &str) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info) if info.message() == message)
}

/// Builds the primary's pool (`database.url`), from within the process's main Tokio runtime.
/// Connections open lazily, so this succeeds while Postgres is down; `/readyz` reports it and
/// requests fail with 503 until it returns.
pub fn pool(config: &DatabaseConfig) -> Result<Pool, DbError> {
    pool_at(config, &config.url)
}

/// The replica's pool (`database.read_url`), sized and set up like the primary's; `None`
/// without one, when lag-tolerant reads use the primary's pool.
pub fn read_pool(config: &DatabaseConfig) -> Result<Option<Pool>, DbError> {
    config.read_url.as_deref().map(|url| pool_at(config, url)).transpose()
}

fn pool_at(config: &DatabaseConfig, url: &str) -> Result<Pool, DbError> {
    // A checkout runs no `SELECT 1`: that round trip cost every request and every ingestion
    // batch more than their own statements. A connection whose socket closed is still
    // discarded (deadpool checks `is_broken`), and a query on one that died unnoticed fails
    // like any other query against a database that went away.
    let mut setup = ManagerConfig::default();
    setup.recycling_method = RecyclingMethod::Fast;
    // A connection's I/O runs in a task on the runtime that opened it. Opened from an HTTP
    // worker's runtime, it would die when that runtime stops at shutdown, failing whatever
    // still writes then (the committer's last batches, the last key-usage flush); so every
    // connection is opened on the process's main runtime, which outlives them all.
    let main = tokio::runtime::Handle::try_current()
        .map_err(|e| DbError::Pool(format!("the pool needs the main Tokio runtime: {e}")))?;
    // set per session rather than in the URL, which may be a key=value string or carry
    // `options` of its own (and PgBouncer refuses an `options` startup parameter); not at all
    // without prepared statements, which means a pooler in transaction mode (see the module)
    let prepared = config.prepared_statements;
    let session = match config.statement_timeout.as_millis() {
        0 => None,
        _ if !prepared => None,
        ms => Some(format!("SET statement_timeout = {ms}")),
    };
    setup.custom_setup = Box::new(move |url| {
        let (url, session) = (url.to_owned(), session.clone());
        let opening = main.spawn(async move {
            use diesel_async::AsyncConnection;
            use diesel_async::SimpleAsyncConnection;
            let mut conn = AsyncPgConnection::establish(&url).await?;
            if !prepared {
                // with no statement cache, the patched diesel-async names no statement
                conn.set_prepared_statement_cache_size(CacheSize::Disabled);
            }
            if let Some(set) = session {
                conn.batch_execute(&set)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            }
            Ok(conn)
        });
        Box::pin(async move {
            opening.await.unwrap_or_else(|e| {
                Err(diesel::ConnectionError::BadConnection(format!("connection task failed: {e}")))
            })
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        with_dead_peer_detection(url),
        setup,
    );
    DeadPool::builder(manager)
        .max_size(config.max_connections)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// `url` with TCP keepalive and user-timeout settings, unless it sets them itself. A Postgres
/// host that vanishes without closing its connections (a failover, a cut network) otherwise
/// leaves a query on them waiting for the kernel to give up: about two hours when idle, fifteen
/// minutes of retransmissions when not. With these a dead peer is noticed within a minute, its
/// connection fails, and the pool opens another. (tokio-postgres reads both in seconds.)
fn with_dead_peer_detection(url: &str) -> String {
    const DEFAULTS: [(&str, &str); 4] = [
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_retries", "3"),
        ("tcp_user_timeout", "30"),
    ];
    let Ok(mut parsed) = url::Url::parse(url) else {
        // not a URL (a key=value string): left to tokio-postgres as given
        return url.to_owned();
    };
    let missing: Vec<_> = DEFAULTS
        .iter()
        .filter(|(key, _)| !parsed.query_pairs().any(|(present, _)| present == *key))
        .collect();
    if !missing.is_empty() {
        let mut query = parsed.query_pairs_mut();
        for (key, value) in missing {
            query.append_pair(key, value);
        }
    }
    parsed.into()
}

type SyncPgConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies every pending migration, creating the database first if it does not exist yet (so a
/// fresh install needs no manual `CREATE DATABASE`). Returns the versions applied.
pub async fn migrate(url: &str) -> Result<Vec<String>, DbError> {
    let url = url.to_owned();
    // diesel's migration harness is synchronous; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut conn = connect_or_create(&url)?;
        with_migration_lock(&mut conn, |conn| {
            conn.run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect())
                .map_err(|e| DbError::Migration(e.to_string()))
        })
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// Reverts every migration (tests and `relayit migrate --revert-all` on a scratch database).
pub async fn revert_all(url: &str) -> Result<Vec<String>, DbError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SyncPgConnection::establish(&url)?;
        with_migration_lock(&mut conn, |conn| {
            conn.revert_all_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect())
                .map_err(|e| DbError::Migration(e.to_string()))
        })
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

fn with_migration_lock<T>(
    conn: &mut SyncPgConnection,
    work: impl FnOnce(&mut SyncPgConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")).execute(conn)?;
    let result = work(conn);
    let unlock =
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")).execute(conn);
    // The lock dies with the session anyway; a failed unlock only matters if the work succeeded.
    let value = result?;
    unlock?;
    Ok(value)
}

fn connect_or_create(url: &str) -> Result<SyncPgConnection, DbError> {
    match SyncPgConnection::establish(url) {
        Err(e) if e.to_string().contains("does not exist") => {
            let message = e.to_string();
            let mut parsed = url::Url::parse(url).map_err(|e| DbError::Migration(e.to_string()))?;
            let name = parsed.path().trim_start_matches('/').to_owned();
            if name.is_empty() {
                return Err(DbError::Migration(message));
            }
            parsed.set_path("/postgres");
            let mut admin = SyncPgConnection::establish(parsed.as_str())?;
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            match diesel::sql_query(format!("CREATE DATABASE {quoted}")).execute(&mut admin) {
                Ok(_) => tracing::info!(database = %name, "created the database"),
                // another process created it meanwhile
                Err(diesel::result::Error::DatabaseError(_, info))
                    if info.message().contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
            Ok(SyncPgConnection::establish(url)?)
        }
        other => Ok(other?),
    }
}

/// A position in a list ordered newest first: the last row's `(created_at, id)`, written
/// `<created_at in Unix microseconds>.<id>`. Opaque to clients, but of a shape the OpenAPI
/// document can state ([`CURSOR_PATTERN`]), so that what it calls a cursor is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

/// The longest id a cursor carries; ids are far shorter.
const MAX_CURSOR_ID: usize = 100;

/// What [`Cursor::decode`] accepts, as a regular expression: 1 to 17 digits (until the year
/// 5000), a dot, then the id in printable ASCII. Empty is no cursor (the first page).
pub const CURSOR_PATTERN: &str = r"^([0-9]{1,17}\.[!-~]{1,100})?$";

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (micros, id) = text.split_once('.')?;
        let micros_ok =
            (1..=17).contains(&micros.len()) && micros.bytes().all(|b| b.is_ascii_digit());
        let id_ok =
            (1..=MAX_CURSOR_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
        if !(micros_ok && id_ok) {
            return None;
        }
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Cursor { created_at, id: id.to_owned() })
    }
}

/// A hand-written statement that each connection prepares once and then reuses.
///
/// diesel never caches `sql_query` statements, since it cannot know their text is constant:
/// each execution would pay a Parse round trip and a fresh plan. The hot paths (ingestion,
/// claiming, recording outcomes) run a few fixed statements thousands of times a second, so
/// they mark them `.cached()`, keyed by their SQL text in the connection's statement cache.
/// Only for constant SQL (text built at run time would grow the cache without bound), with its
/// result columns named, never `*`: Postgres refuses a prepared statement whose result type a
/// later migration changed, and workers keep theirs across a rolling upgrade.
///
/// `is_safe_to_cache_prepared` is a doc-hidden method of diesel's `QueryFragment`; the test
/// `hot_statements_stay_prepared_on_their_connection` fails if a diesel upgrade changes it.
#[derive(Debug, Clone)]
pub struct Cached<Q>(pub Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // no static id: the cache keys the statement by its SQL text and bind types
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

/// `.cached()` on a constant `sql_query` statement: see [`Cached`].
pub trait CacheStatement: QueryFragment<Pg> + Sized {
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q: QueryFragment<Pg>> CacheStatement for Q {}

/// Runs `SELECT 1` within `timeout`, for readiness checks.
pub async fn ping(pool: &Pool, timeout: Duration) -> Result<(), String> {
    let check = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::with_dead_peer_detection;

    #[test]
    fn dead_peer_detection_is_added_unless_the_url_sets_it() {
        assert_eq!(
            with_dead_peer_detection("postgres://u@db:5432/relayit"),
            "postgres://u@db:5432/relayit?keepalives_idle=30&keepalives_interval=10\
             &keepalives_retries=3&tcp_user_timeout=30"
        );
        assert_eq!(
            with_dead_peer_detection("postgres://u@db/relayit?sslmode=require&tcp_user_timeout=5"),
            "postgres://u@db/relayit?sslmode=require&tcp_user_timeout=5&keepalives_idle=30\
             &keepalives_interval=10&keepalives_retries=3"
        );
        assert_eq!(with_dead_peer_detection("host=db user=u"), "host=db user=u");
    }
}
