//! The integration-test harness: each test gets its own PostgreSQL database, cloned from a
//! migrated template, and its own Redis key prefix, so tests run in parallel against the real
//! services. Nothing here is mocked; a missing service makes the test fail loudly.
//!
//! `TEST_DATABASE_URL` (an admin connection, default postgres://postgres@127.0.0.1:5432/postgres)
//! and `TEST_REDIS_URL` (default redis://127.0.0.1:6379) point the tests at other servers.

pub mod browser;
pub mod identity_provider;
pub mod process;
pub mod smtp_sink;
pub mod stub;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use relayit::config::Config;
use relayit::server::{self, Roles, Running};

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The URL of database `name` on the admin connection's server.
pub fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for the tests ({}): {e}", admin_url()))
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(sql).execute(conn).await
}

/// A fresh database, dropped (with its connections) when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// An empty database, without RelayIt's schema.
    pub async fn empty() -> TestDb {
        let name = unique("relayit_test");
        execute(&mut admin().await, &format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        TestDb { url: database_url(&name), name }
    }

    /// A database with every migration applied, cloned from a template built once per
    /// migration set.
    pub async fn migrated() -> TestDb {
        let template = ensure_template().await;
        let name = unique("relayit_test");
        let mut conn = admin().await;
        // CREATE DATABASE ... TEMPLATE refuses while another session briefly touches the
        // template (another test process cloning it at the same moment); retry a little.
        let mut tries = 0;
        loop {
            match execute(&mut conn, &format!("CREATE DATABASE {name} TEMPLATE {template}")).await {
                Ok(_) => break,
                Err(e) if tries < 50 && e.to_string().contains("being accessed by other users") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot clone the template database: {e}"),
            }
        }
        TestDb { url: database_url(&name), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we could borrow; use a runtime of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin_url()).await?;
                execute(&mut conn, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Name of the migrated template for the current migrations, built under an advisory lock so
/// that concurrent test processes build it once.
async fn ensure_template() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for file in &files {
        ctx.update(file.to_string_lossy().as_bytes());
        ctx.update(&std::fs::read(file).expect("read migration"));
    }
    let digest = ctx.finish();
    let hash: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
    let template = format!("relayit_template_{hash}");

    let mut conn = admin().await;
    execute(&mut conn, "SELECT pg_advisory_lock(72657079)").await.expect("lock");
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{template}') AS exists"
    ))
    .get_result(&mut conn)
    .await
    .expect("query pg_database");
    if !found.exists {
        let building = format!("{template}_building");
        execute(&mut conn, &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .expect("drop");
        execute(&mut conn, &format!("CREATE DATABASE {building}")).await.expect("create");
        relayit::db::migrate(&database_url(&building)).await.expect("migrate the template");
        execute(&mut conn, &format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .expect("rename the template");
    }
    execute(&mut conn, "SELECT pg_advisory_unlock(72657079)").await.expect("unlock");
    template
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read migrations dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Deletes every Redis key under `prefix`.
pub async fn clear_redis_prefix(prefix: &str) -> Result<(), relayit::queue::QueueError> {
    relayit::queue::clear_prefix(&redis_url(), prefix).await
}

/// A configuration for tests: its own database and Redis prefix, a random port, a fixed key.
pub fn test_config(db: &TestDb, redis_prefix: &str) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.server.workers = 2;
    config.server.shutdown_grace = std::time::Duration::from_secs(5);
    config.database.url = db.url.clone();
    config.database.max_connections = 4;
    config.redis.url = redis_url();
    config.redis.key_prefix = redis_prefix.to_owned();
    config.security.encryption_key = Some(relayit::crypto::generate_key_base64());
    config.migrate_on_start = false;
    config.log.level = "warn".into();
    // a test's sign-ups and sign-ins wait for a hashing slot however busy the machine is
    // (the load test sets its own wait)
    config.auth.hash_wait = std::time::Duration::from_secs(60);
    config
}

/// The service running in-process against its own database and Redis prefix.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub redis_prefix: String,
    running: Option<Running>,
    /// What it was started with (a restart reuses it, master key included).
    config: Config,
    // dropped last: the server must release its connections first
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration adjusted by `adjust` (roles: all).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_roles(Roles::ALL, adjust).await
    }

    /// Spawns only `roles` (for instance without the delivery worker, to look at messages
    /// before anything delivers them).
    pub async fn spawn_roles(roles: Roles, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::migrated().await;
        let redis_prefix = format!("{}:", unique("t"));
        let mut config = test_config(&db, &redis_prefix);
        adjust(&mut config);
        relayit::telemetry::init(&config.log);
        let running = server::start(config.clone(), roles).await.expect("start relayit");
        TestApp {
            addr: running.addr(),
            // a hung request fails the test instead of hanging it
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
            redis_prefix,
            running: Some(running),
            config,
            db,
        }
    }

    /// Starts the service again after `shutdown`, on the same database and Redis prefix with
    /// the same master key, as a replacement process would; `adjust` changes the configuration
    /// it was started with.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        assert!(self.running.is_none(), "shut the running instance down first");
        adjust(&mut self.config);
        let running =
            server::start(self.config.clone(), Roles::ALL).await.expect("restart relayit");
        self.addr = running.addr();
        self.running = Some(running);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Another process of the same install: `roles` on the same database and Redis prefix
    /// with the same master key, on a port of its own.
    pub async fn spawn_peer(&self, roles: Roles) -> Running {
        self.spawn_peer_with(roles, |_| {}).await
    }

    /// [`Self::spawn_peer`] with its configuration adjusted by `adjust`.
    pub async fn spawn_peer_with(&self, roles: Roles, adjust: impl FnOnce(&mut Config)) -> Running {
        let mut config = self.config.clone();
        adjust(&mut config);
        server::start(config, roles).await.expect("start a peer")
    }

    /// A `relayit serve --role=<roles>` process of the same install (database, Redis prefix,
    /// master key), with `env` on top (`RELAYIT_...` configuration); killed when dropped.
    pub fn spawn_process(&self, roles: &str, env: &[(&str, &str)]) -> process::Process {
        let config = &self.config;
        let data = tempfile::tempdir().expect("a data directory");
        let key = config.security.encryption_key.clone().expect("tests set a master key");
        let child = process::relayit(data.path())
            .args(["serve", &format!("--role={roles}")])
            .env("DATABASE_URL", &config.database.url)
            .env("REDIS_URL", &config.redis.url)
            .env("RELAYIT_REDIS__KEY_PREFIX", &config.redis.key_prefix)
            .env("RELAYIT_SECURITY__ENCRYPTION_KEY", key)
            .env("RELAYIT_SERVER__BIND", "127.0.0.1:0")
            .env("RELAYIT_MIGRATE_ON_START", "false")
            .env("RELAYIT_DATA_DIR", data.path())
            .env("RELAYIT_LOG__LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn relayit serve");
        process::Process { child, _data: data }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Shuts the server down gracefully and returns its verdict.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        let running = self.running.take().expect("not shut down yet");
        running.shutdown().await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let prefix = self.redis_prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(clear_redis_prefix(&prefix)).ok()
        })
        .join();
    }
}

/// The body of an error response, checked to have the contract's shape.
pub async fn error_body(response: reqwest::Response) -> serde_json::Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content-type {content_type:?}");
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    let error = &body["error"];
    assert!(error["code"].is_string(), "code in {body}");
    assert!(error["message"].is_string(), "message in {body}");
    assert!(error["details"].is_array(), "details in {body}");
    body
}

/// A signed-up user, their session token and the organization sign-up created.
#[derive(Debug, Clone)]
pub struct Account {
    pub token: String,
    pub user_id: String,
    pub email: String,
    pub org_id: String,
    pub project_id: String,
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// Sends a request and returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        if status >= 400 {
            let error = &body["error"];
            assert!(
                error["code"].is_string()
                    && error["message"].is_string()
                    && error["details"].is_array(),
                "{path}: error body of the wrong shape: {body}"
            );
        }
        (status, body)
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post_as(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch_as(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PATCH, path, Some(token), Some(body)).await
    }

    pub async fn delete_as(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a new user named `name` with a unique email.
    pub async fn sign_up(&self, name: &str) -> Account {
        let email = format!("{}@example.com", unique(&name.to_lowercase().replace(' ', "-")));
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/auth/sign-up",
                None,
                Some(serde_json::json!({"email": email, "password": PASSWORD, "name": name})),
            )
            .await;
        assert_eq!(status, 201, "sign-up: {body}");
        let token = body["token"].as_str().expect("token").to_owned();
        let (_, session) = self.get_as(&token, "/v1/auth/session").await;
        let org_id = session["activeOrganizationId"].as_str().expect("active org").to_owned();
        let (_, projects) = self.get_as(&token, "/v1/projects").await;
        let project_id = projects["data"][0]["id"].as_str().expect("default project").to_owned();
        Account {
            token,
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            email,
            org_id,
            project_id,
        }
    }
}

impl TestApp {
    /// Signs up `name` and makes them a member of `owner`'s organization with `role` through
    /// the invitation flow, setting it as their active organization.
    pub async fn add_member(&self, owner: &Account, name: &str, role: &str) -> Account {
        let mut account = self.sign_up(name).await;
        let (status, invitation) = self
            .post_as(
                &owner.token,
                &format!("/v1/organizations/{}/invitations", owner.org_id),
                serde_json::json!({"email": account.email, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "invite: {invitation}");
        let token = invitation["token"].as_str().expect("invitation token");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/invitations/{token}/accept"),
                Some(&account.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "accept: {body}");
        let (status, body) = self
            .post_as(
                &account.token,
                "/v1/auth/active-organization",
                serde_json::json!({"organizationId": owner.org_id}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        account.org_id = owner.org_id.clone();
        account.project_id = owner.project_id.clone();
        account
    }

    /// Creates an API key in `owner`'s organization and returns the full key.
    pub async fn create_api_key(
        &self,
        owner: &Account,
        scopes: &[&str],
        project: Option<&str>,
    ) -> String {
        let (status, body) = self
            .post_as(
                &owner.token,
                "/v1/api-keys",
                serde_json::json!({"name": "test key", "scopes": scopes, "projectId": project}),
            )
            .await;
        assert_eq!(status, 201, "create key: {body}");
        body["key"].as_str().expect("key").to_owned()
    }
}

/// A `POST /v1/providers` body for a `sandbox` credential.
pub fn sandbox_provider(name: &str, channel: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "channel": channel, "providerType": "sandbox", "credentials": {}})
}

/// The fields named by a 400 `validation_failed` answer.
pub fn validation_fields(status: u16, body: &serde_json::Value) -> Vec<String> {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}

/// `SELECT count(*) FROM {from}`: `from` may carry a `WHERE`.
pub async fn count(conn: &mut AsyncPgConnection, from: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!("SELECT count(*) AS n FROM {from}");
    let row: Count =
        diesel::sql_query(&sql).get_result(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.n
}

impl TestApp {
    /// A connection of its own to this test's database.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url).await.expect("connect to the test db")
    }

    /// `SELECT count(*) FROM {from}` on this test's database.
    pub async fn count(&self, from: &str) -> i64 {
        count(&mut self.connect().await, from).await
    }

    /// Runs SQL on this test's database (for arranging states the API does not offer, such as
    /// an invitation past its expiry).
    pub async fn sql(&self, sql: &str) {
        let mut conn = self.connect().await;
        execute(&mut conn, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl TestApp {
    /// Signs up `name` and creates an API key of its project that may send and read; returns
    /// the account and the key.
    pub async fn sender(&self, name: &str) -> (Account, String) {
        let owner = self.sign_up(name).await;
        let key = self.create_api_key(&owner, &["send", "read"], Some(&owner.project_id)).await;
        (owner, key)
    }

    /// Creates a provider credential (`POST /v1/providers` as `token`); returns its id.
    pub async fn create_provider(&self, token: &str, body: serde_json::Value) -> String {
        let (status, view) = self.post_as(token, "/v1/providers", body).await;
        assert_eq!(status, 201, "create provider: {view}");
        view["id"].as_str().expect("id").to_owned()
    }

    /// Sends a message (`POST /v1/send` with `key`); returns its id.
    pub async fn send_message(&self, key: &str, body: serde_json::Value) -> String {
        let (status, answer) = self.post_as(key, "/v1/send", body).await;
        assert_eq!(status, 202, "send: {answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    /// Polls the message through the API (with `token`) until its status is `status`, and
    /// returns it. Fails once it has settled on another status (`failed`, `canceled`), or
    /// after 30 s.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> serde_json::Value {
        let path = format!("/v1/messages/{id}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (code, message) = self.get_as(token, &path).await;
            assert_eq!(code, 200, "{message}");
            if message["status"] == status {
                return message;
            }
            assert!(
                message["status"] != "failed" && message["status"] != "canceled",
                "{status} expected: {message}"
            );
            assert!(std::time::Instant::now() < deadline, "never {status}: {message}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A claimed message as a connector receives it, for calling connectors directly.
pub fn message_for(
    channel: &str,
    to: &str,
    content: serde_json::Value,
) -> relayit::db::messages::Message {
    let now = chrono::Utc::now();
    relayit::db::messages::Message {
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        organization_id: "org_test".into(),
        project_id: "prj_test".into(),
        api_key_id: None,
        channel: channel.into(),
        recipient: to.into(),
        requested_provider: None,
        provider_credential_id: None,
        provider_type: None,
        status: "processing".into(),
        status_reason: None,
        attempts: 0,
        content,
        metadata: serde_json::json!({}),
        provider_message_id: None,
        idempotency_key: None,
        send_at: None,
        next_attempt_at: None,
        throttled_since: None,
        created_at: now,
        updated_at: now,
        template_id: None,
        template_version: None,
    }
}

/// A credential as the router hands it to a connector.
pub fn opened_credential(
    provider_type: relayit::domain::provider_types::ProviderType,
    secrets: serde_json::Value,
    config: serde_json::Value,
) -> relayit::providers::connector::OpenedCredential {
    let id = unique("prv");
    let secrets = secrets.as_object().expect("secrets are an object").clone();
    relayit::providers::connector::OpenedCredential::new(
        id.clone(),
        id,
        provider_type,
        config,
        secrets,
    )
}

/// How many migrations the repository holds (one directory each).
pub fn migration_count() -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::read_dir(dir)
        .expect("read migrations dir")
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().join("up.sql").is_file()))
        .count()
}

/// A free TCP port on localhost (free when asked; tests bind it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis server of a test's own, so stopping it disturbs no other test. It keeps nothing on
/// disk: started again on the same port, it starts empty, as a Redis without persistence does.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    pub fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { port, child }
    }

    pub fn stop(&mut self) {
        self.child.kill().expect("kill redis-server");
        self.child.wait().expect("reap redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
