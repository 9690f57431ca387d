//! `relayit-bench`: measures RelayIt on this machine and prints one report.
//!
//! It starts the real `relayit serve --role=all` (the binary built beside this one) against a
//! scratch database and Redis prefix, with a sandbox provider, then measures: `/v1/send`
//! throughput and latency at several concurrencies (and with a template instead of content),
//! `/v1/send/batch` throughput, end-to-end throughput and send-to-`sent` latency, and the
//! process's peak RSS. For scale it also
//! measures the raw ceilings of the same Postgres and Redis (multi-row INSERT, pipelined XADD),
//! so each RelayIt number can be read as a fraction of what the storage allows.
//!
//! Then the message log: it seeds one project with a million messages straight into Postgres
//! (`--log-messages`) and times the log's pages, first and filtered, on the dashboard and
//! through the API, against `relayit serve --role=api`.
//!
//! Then outbound webhooks: a receiver inside the bench (a keep-alive HTTP/1.1 server on
//! 127.0.0.1 answering 204) takes every event POSTed to one or ten endpoints while messages are
//! sent, checks the Standard Webhooks signature of a sample, and the report gives deliveries
//! per second, send-to-webhook latency and the CPU each webhook cost.
//!
//! Last, scale: one, then two, processes of each sending role (`api`, `worker`), the sends
//! spread over the APIs, for how an install grows by adding processes. `--only send`, `--only
//! log`, `--only webhooks` or `--only scale` runs one of the four parts. `TEST_REDIS_URL` may
//! name a Redis Cluster (`redis-cluster://...`, with `--stream-partitions`).
//!
//! Every phase is bounded in count and time; all traffic goes to 127.0.0.1.
//!
//! `cargo run --release --bin relayit-bench [-- --seconds 5]`; `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL` point it at other servers (defaults: the local ones).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use fred::prelude::{ClientLike, StreamsInterface};
use serde_json::{Value, json};

/// Measures RelayIt on this machine and prints one report (Markdown tables): `/v1/send` and
/// `/v1/send/batch` through the API alone, a worker alone draining the backlog, and everything
/// in one process end to end, with the peak memory of each and the raw ceilings of the same
/// Postgres and Redis; then the message log of a project holding a million messages, first
/// and filtered pages on the dashboard and through the API; then outbound webhooks to a
/// receiver inside the bench (deliveries per second, send-to-webhook latency, CPU per webhook).
/// Run the release build (`cargo build --release`); it starts the `relayit` binary built beside
/// it. TEST_DATABASE_URL (an admin connection) and TEST_REDIS_URL point it at other servers than
/// the local ones.
#[derive(Debug, clap::Parser)]
#[command(name = "relayit-bench", version)]
struct Options {
    /// How long each measured load runs, in seconds (1 to 60)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// Messages seeded into one project for the message-log phase (0 skips it; at most 10
    /// million). Seeding a million takes about a minute
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    log_messages: u64,
    /// Messages sent in each scenario of the webhook phase (0 skips it; at most a million)
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    webhook_messages: u64,
    /// Runs only one part: `send` (sending and delivery), `log` (the message log),
    /// `webhooks` (outbound webhooks) or `scale` (one, then two, processes per role)
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Partitions of the servers' streams (`redis.stream_partitions`): with TEST_REDIS_URL
    /// naming a Redis Cluster (redis-cluster://...), as many as it has masters
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    stream_partitions: u16,
    /// The servers reach PostgreSQL through a pooler in transaction mode at this address
    /// (`host:port`, e.g. PgBouncer with a `* = host=... port=...` fallback, so the run's
    /// database is found): `database.prepared_statements = false`, migrations direct
    #[arg(long, value_name = "HOST:PORT")]
    pooler: Option<String>,
}

/// The parts of a run, in the order a whole run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Send,
    Log,
    Webhooks,
    Scale,
}

/// Configuration every server of the run is given (from the options).
static SERVER_ENV: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
/// `--pooler`: the address the servers reach PostgreSQL at.
static POOLER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn database_url(name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&admin_url())?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = <Options as clap::Parser>::parse();
    let partitions = options.stream_partitions.to_string();
    let mut env = vec![("RELAYIT_REDIS__STREAM_PARTITIONS", partitions)];
    if let Some(pooler) = &options.pooler {
        let _ = POOLER.set(pooler.clone());
        env.push(("RELAYIT_DATABASE__PREPARED_STATEMENTS", "false".to_owned()));
    }
    let _ = SERVER_ENV.set(env);
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let db_name = format!("relayit_bench_{stamp}");
    let prefix = format!("bench:{stamp}:");
    let mut admin =
        AsyncPgConnection::establish(&admin_url()).await.context("connect to Postgres")?;
    diesel::sql_query(format!("CREATE DATABASE {db_name}")).execute(&mut admin).await?;
    let result = run(&options, &db_name, &prefix).await;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stops the server as an orchestrator would (SIGTERM, then wait), so that it finishes
    /// what it accepted: killed, it could leave committed messages for the sweeper to enqueue
    /// minutes later, and the next phase would measure the sweeper's delay.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }

    /// Peak resident set size so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

/// The master key every server of a run shares (split roles must be given the same one).
fn master_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(relayit::crypto::generate_key_base64)
}

async fn start_server(db_url: &str, prefix: &str, role: &str) -> anyhow::Result<Server> {
    start_server_with(db_url, prefix, role, &[]).await
}

/// [`start_server`] with more configuration (`RELAYIT_...` variables).
async fn start_server_with(
    db_url: &str,
    prefix: &str,
    role: &str,
    config: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let exe: PathBuf = std::env::current_exe()?.with_file_name("relayit");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = std::env::temp_dir().join(format!("relayit-bench-{port}"));
    std::fs::create_dir_all(&data)?;
    // through the pooler, but migrations (a session lock) straight to the database
    let pooled = match POOLER.get() {
        Some(pooler) => {
            let mut url = url::Url::parse(db_url)?;
            let (host, port) = pooler.rsplit_once(':').context("--pooler is HOST:PORT")?;
            url.set_host(Some(host))?;
            url.set_port(Some(port.parse()?)).map_err(|()| anyhow::anyhow!("--pooler's port"))?;
            url.to_string()
        }
        None => db_url.to_owned(),
    };
    let child = Command::new(&exe)
        .args(["serve", &format!("--role={role}")])
        .env("DATABASE_URL", pooled)
        .env("RELAYIT_DATABASE__MIGRATE_URL", db_url)
        .env("REDIS_URL", redis_url())
        .env("RELAYIT_REDIS__KEY_PREFIX", prefix)
        .env("RELAYIT_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("RELAYIT_DATA_DIR", &data)
        .env("RELAYIT_SECURITY__ENCRYPTION_KEY", master_key())
        .env("RELAYIT_LOG__LEVEL", "warn")
        .env("RELAYIT_DATABASE__MAX_CONNECTIONS", "32")
        .envs(SERVER_ENV.get().into_iter().flatten().map(|(k, v)| (k, v)))
        .envs(config.iter().copied())
        // RELAYIT_BENCH_SERVER_LOG=<level> shows the servers' logs, at that level
        .envs(std::env::var("RELAYIT_BENCH_SERVER_LOG").map(|level| ("RELAYIT_LOG__LEVEL", level)))
        .stdout(if std::env::var_os("RELAYIT_BENCH_SERVER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .with_context(|| {
            format!("start {} (build it first: cargo build --release)", exe.display())
        })?;
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // every role serves the health routes
    while !client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        if Instant::now() > deadline {
            bail!("relayit did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(server)
}

/// A new user's organization: its owner's session token, its default project and a sandbox
/// credential for email.
struct Tenant {
    token: String,
    project: String,
    credential: String,
}

/// Signs up `email` and creates a sandbox credential for email.
async fn sign_up(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<Tenant> {
    let signed: Value = client
        .post(format!("{base}/v1/auth/sign-up"))
        .json(&json!({"email": email, "password": "benchmark password", "name": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = signed["token"].as_str().context("sign-up token")?.to_owned();
    let provider = client
        .post(format!("{base}/v1/providers"))
        .bearer_auth(&token)
        .json(&json!({"name": "Sandbox", "channel": "email", "providerType": "sandbox", "credentials": {}}))
        .send()
        .await?;
    if !provider.status().is_success() {
        bail!("cannot create the sandbox provider: {}", provider.text().await?);
    }
    let provider: Value = provider.json().await?;
    let credential = provider["id"].as_str().context("provider id")?.to_owned();
    let projects: Value =
        client.get(format!("{base}/v1/projects")).bearer_auth(&token).send().await?.json().await?;
    let project = projects["data"][0]["id"].as_str().context("default project")?.to_owned();
    Ok(Tenant { token, project, credential })
}

/// Signs up, creates a sandbox credential for email, and returns a send key.
async fn provision(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let tenant = sign_up(client, base, "bench@example.com").await?;
    publish_template(client, base, &tenant).await?;
    send_key(client, base, &tenant).await
}

/// Creates and publishes `tenant`'s template `bench`, which renders the very content [`email`]
/// sends (so that the two compare by the template's own cost): subject and text from two
/// variables.
async fn publish_template(
    client: &reqwest::Client,
    base: &str,
    tenant: &Tenant,
) -> anyhow::Result<()> {
    let templates = format!("{base}/v1/projects/{}/templates", tenant.project);
    let created = client
        .post(&templates)
        .bearer_auth(&tenant.token)
        .json(&json!({"name": "bench", "channel": "email", "content": {
            "subject": "{{ subject }}",
            "text": "Hello from {{ sender }}"}}))
        .send()
        .await?;
    anyhow::ensure!(created.status() == 201, "creating the template: {}", created.text().await?);
    let published =
        client.post(format!("{templates}/bench/publish")).bearer_auth(&tenant.token).send().await?;
    anyhow::ensure!(
        published.status() == 201,
        "publishing the template: {}",
        published.text().await?
    );
    Ok(())
}

/// A new API key of `tenant`'s project with the scope `send`.
async fn send_key(client: &reqwest::Client, base: &str, tenant: &Tenant) -> anyhow::Result<String> {
    let Tenant { token, project, .. } = tenant;
    let key: Value = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({"name": "bench", "scopes": ["send"], "projectId": project}))
        .send()
        .await?
        .json()
        .await?;
    Ok(key["key"].as_str().context("api key")?.to_owned())
}

/// A send body, rendered directly: on two cores the load generator's CPU is the server's loss,
/// so it builds no JSON tree per request.
fn email(i: usize) -> String {
    format!(
        r#"{{"channel":"email","to":"user{i}@example.com","content":{{"subject":"Benchmark","text":"Hello from relayit-bench"}}}}"#
    )
}

/// [`email`], naming the template of [`publish_template`] instead of giving its content.
fn templated_email(i: usize) -> String {
    format!(
        r#"{{"channel":"email","to":"user{i}@example.com","template":{{"id":"bench","variables":{{"subject":"Benchmark","sender":"relayit-bench"}}}}}}"#
    )
}

struct Load {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `concurrency` clients sending for `seconds` (and at most `max` requests).
async fn load(
    base: &str,
    key: &str,
    concurrency: usize,
    seconds: u64,
    max: usize,
    batch: usize,
    body: fn(usize) -> String,
) -> Load {
    let address = base.trim_start_matches("http://").to_owned();
    let path = if batch > 1 { "/v1/send/batch" } else { "/v1/send" };
    let counter = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let counter = counter.clone();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            );
            let mut connection = Http1::new(&address);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= max {
                        break;
                    }
                    let body = if batch > 1 {
                        let items: Vec<String> = (0..batch).map(|i| body(n * batch + i)).collect();
                        format!(r#"{{"messages":[{}]}}"#, items.join(","))
                    } else {
                        body(n)
                    };
                    let request = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
                    let sent = Instant::now();
                    if matches!(connection.post(request.as_bytes()).await, Ok(202)) {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    latencies.sort_unstable();
    Load { requests: latencies.len(), elapsed: started.elapsed(), latencies, errors }
}

/// A keep-alive HTTP/1.1 connection sending one request at a time, like wrk. The load shares
/// the server's two cores, so it is kept as light as a load generator can be: a general client
/// (reqwest) cost the server about a quarter of its throughput here.
struct Http1 {
    address: String,
    /// Opened on first use, and again after a failed exchange.
    stream: Option<tokio::net::TcpStream>,
    buffer: Vec<u8>,
    /// Where the last answer's body is in `buffer`.
    body: std::ops::Range<usize>,
}

impl Http1 {
    fn new(address: &str) -> Http1 {
        Http1 { address: address.to_owned(), stream: None, buffer: Vec::new(), body: 0..0 }
    }

    /// The body of the last answer.
    fn body(&self) -> &[u8] {
        self.buffer.get(self.body.clone()).unwrap_or_default()
    }

    /// Sends a rendered request and reads the whole answer; returns its status.
    async fn post(&mut self, request: &[u8]) -> std::io::Result<u16> {
        let exchange = self.exchange(request).await;
        if exchange.is_err() {
            self.stream = None;
        }
        exchange
    }

    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let stream = match &mut self.stream {
            Some(stream) => stream,
            none => {
                let stream = tokio::net::TcpStream::connect(&self.address).await?;
                stream.set_nodelay(true)?;
                none.insert(stream)
            }
        };
        stream.write_all(request).await?;
        self.buffer.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                response.parse(&self.buffer).map_err(|_| invalid("malformed response"))?
            {
                let status = response.code.ok_or_else(|| invalid("no status"))?;
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .ok_or_else(|| invalid("no content-length"))?;
                while self.buffer.len() < head + length {
                    if stream.read_buf(&mut self.buffer).await? == 0 {
                        return Err(invalid("closed mid-answer"));
                    }
                }
                self.body = head..head + length;
                return Ok(status);
            }
            if stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(invalid("closed before answering"));
            }
        }
    }
}

#[derive(QueryableByName)]
struct Stats {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    messages: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sent: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p50_ms: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p99_ms: Option<f64>,
    /// From the first message's creation to the last `sent`.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    created_to_last_sent_s: Option<f64>,
    /// From the first `sent` to the last.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    first_to_last_sent_s: Option<f64>,
}

/// Delivery of the messages created since `since`.
async fn delivery_stats(
    conn: &mut AsyncPgConnection,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Stats> {
    Ok(diesel::sql_query(
        "WITH m AS (SELECT id, created_at FROM messages WHERE created_at >= $1),
              s AS (SELECT m.created_at, e.created_at AS sent_at
                    FROM m JOIN message_events e ON e.message_id = m.id AND e.status = 'sent')
         SELECT (SELECT count(*) FROM m) AS messages,
                count(*) AS sent,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at) * 1000) AS p50_ms,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at) * 1000) AS p99_ms,
                extract(epoch FROM max(sent_at) - (SELECT min(created_at) FROM m))::float8 AS created_to_last_sent_s,
                extract(epoch FROM max(sent_at) - min(sent_at))::float8 AS first_to_last_sent_s
         FROM s",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .get_result(conn)
    .await?)
}

/// Waits (at most `limit`) until every message created since `since` is `sent`.
async fn wait_for_delivery(
    db_url: &str,
    since: chrono::DateTime<chrono::Utc>,
    limit: Duration,
) -> anyhow::Result<Stats> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let deadline = Instant::now() + limit;
    loop {
        let stats = delivery_stats(&mut conn, since).await?;
        if stats.sent >= stats.messages || Instant::now() > deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the machine did during a load, read before and after it: the server's group-commit
/// counters (`/metrics`) and the CPU time of relayit, Postgres and Redis (`/proc`). CPU per
/// message says where the time goes, and varies less from run to run than throughput does on
/// a shared machine.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    transactions: f64,
    messages: f64,
    commit_seconds: f64,
    relayit_cpu: f64,
    postgres_cpu: f64,
    redis_cpu: f64,
}

/// CPU seconds (user + system) of one process, all its threads; 0 if it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // fields after the parenthesised command name: state is the first, utime the 12th
    let Some((_, fields)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // /proc counts in USER_HZ, which is 100 on Linux
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every process whose command is `name`.
fn cpu_seconds_of(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(cpu_seconds)
        .sum()
}

async fn usage(client: &reqwest::Client, server: &Server) -> Usage {
    let text = match client.get(format!("{}/metrics", server.base)).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let metric = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Usage {
        transactions: metric("relayit_ingest_batch_messages_count"),
        messages: metric("relayit_ingest_batch_messages_sum"),
        commit_seconds: metric("relayit_ingest_commit_seconds_sum"),
        relayit_cpu: cpu_seconds(server.child.id()),
        postgres_cpu: cpu_seconds_of("postgres"),
        redis_cpu: cpu_seconds_of("redis-server"),
    }
}

/// Runs `load` (not started yet: futures are lazy) between two readings of `server`'s usage.
async fn measured(
    client: &reqwest::Client,
    server: &Server,
    load: impl std::future::Future<Output = Load>,
) -> (Load, (Usage, Usage)) {
    let before = usage(client, server).await;
    let result = load.await;
    (result, (before, usage(client, server).await))
}

/// One row of a load table; `usage` is read before and after the load.
fn print_load(label: &str, result: &Load, per_request: usize, usage: (Usage, Usage)) {
    let (before, after) = usage;
    let transactions = (after.transactions - before.transactions).max(1.0);
    let messages = ((result.requests * per_request) as f64).max(1.0);
    let micros = |cpu: fn(&Usage) -> f64| (cpu(&after) - cpu(&before)) / messages * 1e6;
    println!(
        "| {label} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {:.0} / {:.0} / {:.0} |",
        result.requests,
        messages / result.elapsed.as_secs_f64(),
        percentile(&result.latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&result.latencies, 0.99).as_secs_f64() * 1000.0,
        result.errors,
        (after.messages - before.messages) / transactions,
        (after.commit_seconds - before.commit_seconds) / transactions * 1000.0,
        micros(|u| u.relayit_cpu),
        micros(|u| u.postgres_cpu),
        micros(|u| u.redis_cpu),
    );
}

const TABLE_HEAD: &str = "| phase | requests | messages/s | p50 ms | p99 ms | errors | messages per commit | commit ms | CPU µs per message: relayit / Postgres / Redis |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

/// Raw ceilings: multi-row INSERTs of message rows, and pipelined XADDs.
async fn ceilings(db_url: &str, prefix: &str) -> anyhow::Result<(f64, f64)> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    diesel::sql_query("CREATE TEMP TABLE ceiling (LIKE messages INCLUDING DEFAULTS)")
        .execute(&mut conn)
        .await?;
    let rows = 50_000;
    let started = Instant::now();
    for chunk in 0..(rows / 1000) {
        diesel::sql_query(format!(
            "INSERT INTO ceiling (id, organization_id, project_id, channel, recipient, status, content)
             SELECT 'msg_' || {chunk} || '_' || g, 'org_x', 'prj_x', 'email', 'user' || g || '@example.com', 'queued',
                    '{{\"subject\": \"Benchmark\", \"text\": \"Hello\"}}'::jsonb
             FROM generate_series(1, 1000) g"
        ))
        .execute(&mut conn)
        .await?;
    }
    let insert_rate = rows as f64 / started.elapsed().as_secs_f64();

    let client = fred::clients::Client::new(
        fred::prelude::Config::from_url(&redis_url())?,
        None,
        None,
        None,
    );
    client.init().await?;
    let key = format!("{prefix}{{relayit}}:ceiling");
    let entries = 100_000;
    let started = Instant::now();
    for _ in 0..(entries / 1000) {
        let pipeline = client.pipeline();
        for i in 0..1000 {
            let () = pipeline.xadd(&key, false, None::<()>, "*", ("m", format!("msg_{i}"))).await?;
        }
        let _: Vec<String> = pipeline.all().await?;
    }
    let xadd_rate = entries as f64 / started.elapsed().as_secs_f64();
    let _: i64 = fred::prelude::KeysInterface::del(&client, &key).await?;
    client.quit().await?;
    Ok((insert_rate, xadd_rate))
}

#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lsn: String,
}

#[derive(QueryableByName)]
struct Bytes {
    #[diesel(sql_type = diesel::sql_types::Double)]
    bytes: f64,
}

/// The server's current WAL position: with [`wal_since`], what a phase made PostgreSQL write
/// (for the capacity model: disk and replication bandwidth per message).
async fn wal_position(db_url: &str) -> anyhow::Result<String> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let row: Lsn =
        diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn").get_result(&mut conn).await?;
    Ok(row.lsn)
}

/// The database's size on disk, in bytes (tables, indexes, TOAST).
async fn database_size(db_url: &str) -> anyhow::Result<f64> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let row: Bytes =
        diesel::sql_query("SELECT pg_database_size(current_database())::float8 AS bytes")
            .get_result(&mut conn)
            .await?;
    Ok(row.bytes)
}

/// WAL bytes written since `position`.
async fn wal_since(db_url: &str, position: &str) -> anyhow::Result<f64> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let row: Bytes = diesel::sql_query(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 AS bytes",
    )
    .bind::<diesel::sql_types::Text, _>(position)
    .get_result(&mut conn)
    .await?;
    Ok(row.bytes)
}

/// The sending part, the message log, then webhooks, on one database.
async fn run(options: &Options, db_name: &str, prefix: &str) -> anyhow::Result<()> {
    let db_url = database_url(db_name)?;
    let started = Instant::now();
    println!(
        "# relayit-bench ({} s per phase, {} cores)\n",
        options.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let runs = |part: Part| options.only.is_none_or(|only| only == part);
    if runs(Part::Send) {
        sending(options.seconds, &db_url, prefix).await?;
    }
    if runs(Part::Log) && options.log_messages > 0 {
        message_log(options.log_messages, &db_url, prefix).await?;
    }
    if runs(Part::Webhooks) && options.webhook_messages > 0 {
        webhooks(options.webhook_messages, &db_url, prefix).await?;
    }
    if runs(Part::Scale) {
        scaling(options.seconds, &db_url, prefix).await?;
    }
    println!("\nTotal time {:.0} s", started.elapsed().as_secs_f64());
    Ok(relayit::queue::clear_prefix(&redis_url(), prefix).await?)
}

/// Three servers in turn on one database: the API alone (what an API process accepts), then a
/// worker alone draining what it accepted (what a worker process delivers), then everything in
/// one process under sustained load (the end-to-end rate, send to `sent`).
async fn sending(seconds: u64, db_url: &str, prefix: &str) -> anyhow::Result<()> {
    let api = start_server(db_url, prefix, "api").await?;
    let client = reqwest::Client::new();
    let key = provision(&client, &api.base).await?;
    let since = chrono::Utc::now();
    println!("## API alone (`serve --role=api`)\n");
    println!("{TABLE_HEAD}");
    for concurrency in [1, 16, 64] {
        let (result, readings) =
            measured(&client, &api, load(&api.base, &key, concurrency, seconds, 500_000, 1, email))
                .await;
        print_load(&format!("/v1/send, {concurrency} connections"), &result, 1, readings);
    }
    let (batch, readings) =
        measured(&client, &api, load(&api.base, &key, 4, seconds, 1000, 1000, email)).await;
    print_load("/v1/send/batch x1000, 4 connections", &batch, 1000, readings);
    // after the phases the code before templates has too, so that they compare run for run
    let (result, readings) =
        measured(&client, &api, load(&api.base, &key, 64, seconds, 500_000, 1, templated_email))
            .await;
    print_load("/v1/send with a template, 64 connections", &result, 1, readings);

    let api_rss = api.peak_rss_mib().unwrap_or(0.0);
    api.stop();

    println!("\n## Delivery worker alone (`serve --role=worker`), draining that backlog\n");
    let (postgres_cpu, redis_cpu) = (cpu_seconds_of("postgres"), cpu_seconds_of("redis-server"));
    let worker = start_server(db_url, prefix, "worker").await?;
    let drained = wait_for_delivery(db_url, since, Duration::from_secs(seconds * 40)).await?;
    let micros = |cpu: f64| cpu / (drained.sent as f64).max(1.0) * 1e6;
    println!(
        "{} of {} messages `sent`, {:.0} messages/s; CPU µs per message: relayit {:.0} / Postgres {:.0} / Redis {:.0}",
        drained.sent,
        drained.messages,
        drained.sent as f64 / drained.first_to_last_sent_s.unwrap_or(f64::INFINITY),
        micros(cpu_seconds(worker.child.id())),
        micros(cpu_seconds_of("postgres") - postgres_cpu),
        micros(cpu_seconds_of("redis-server") - redis_cpu),
    );
    let worker_rss = worker.peak_rss_mib().unwrap_or(0.0);
    worker.stop();

    println!("\n## Everything in one process (`serve --role=all`), 64 connections sending\n");
    let all = start_server(db_url, prefix, "all").await?;
    let since = chrono::Utc::now();
    let wal_before = wal_position(db_url).await?;
    let (sustained, readings) =
        measured(&client, &all, load(&all.base, &key, 64, seconds * 2, 2_000_000, 1, email)).await;
    println!("{TABLE_HEAD}");
    print_load("/v1/send, 64 connections, worker running", &sustained, 1, readings);
    let e2e = wait_for_delivery(db_url, since, Duration::from_secs(seconds * 40)).await?;
    let wal_bytes = wal_since(db_url, &wal_before).await?;
    println!(
        "\nEnd to end (sandbox): {} of {} accepted messages `sent`, {:.0} messages/s from the first send to the last `sent`; send-to-sent p50 {:.0} ms, p99 {:.0} ms",
        e2e.sent,
        e2e.messages,
        e2e.sent as f64 / e2e.created_to_last_sent_s.unwrap_or(f64::INFINITY),
        e2e.p50_ms.unwrap_or(0.0),
        e2e.p99_ms.unwrap_or(0.0)
    );
    println!(
        "WAL written while they were accepted and delivered: {:.1} MiB, {:.0} bytes per message \
         (the whole server's; nothing else should write meanwhile)",
        wal_bytes / (1024.0 * 1024.0),
        wal_bytes / (e2e.sent as f64).max(1.0)
    );
    let all_rss = all.peak_rss_mib().unwrap_or(0.0);
    all.stop();
    println!(
        "Peak RSS of relayit: API {api_rss:.0} MiB, worker {worker_rss:.0} MiB, all roles {all_rss:.0} MiB"
    );

    let (insert_rate, xadd_rate) = ceilings(db_url, prefix).await?;
    println!(
        "\nRaw ceilings on this machine: multi-row INSERT {insert_rate:.0} rows/s; pipelined XADD {xadd_rate:.0} entries/s"
    );
    Ok(())
}

/// One, then two, processes of each sending role (`api`, `worker`) on one database and Redis:
/// 64 connections send for `seconds * 2`, spread over the API processes, while the workers
/// deliver; then the backlog drains. Reports the accepted and sent rates and the CPU per
/// message of relayit (all its processes), Postgres and Redis: how the install grows by adding
/// processes on this machine, for the capacity model (docs/scaling.md).
async fn scaling(seconds: u64, db_url: &str, prefix: &str) -> anyhow::Result<()> {
    println!("\n## Processes per role (`serve --role=api` and `--role=worker`, N of each)\n");
    println!(
        "| processes per role | accepted messages/s | sent messages/s | send-to-sent p50 ms | p99 ms | errors | CPU µs per message: relayit / Postgres (and PgBouncer) / Redis | WAL bytes per message | database growth, bytes per message |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let client = reqwest::Client::new();
    let mut key = None;
    for processes in [1, 2] {
        let mut apis = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..processes {
            apis.push(start_server(db_url, prefix, "api").await?);
            workers.push(start_server(db_url, prefix, "worker").await?);
        }
        let key = match &key {
            Some(key) => key,
            None => key.insert(provision(&client, &apis[0].base).await?),
        };
        let relayit_cpu = |servers: [&Vec<Server>; 2]| -> f64 {
            servers.iter().flat_map(|s| s.iter()).map(|s| cpu_seconds(s.child.id())).sum()
        };
        // a pooler's CPU counts with PostgreSQL's
        let postgres_cpu = || cpu_seconds_of("postgres") + cpu_seconds_of("pgbouncer");
        let before =
            (relayit_cpu([&apis, &workers]), postgres_cpu(), cpu_seconds_of("redis-server"));
        let since = chrono::Utc::now();
        let (wal_before, size_before) = (wal_position(db_url).await?, database_size(db_url).await?);
        let loads = apis
            .iter()
            .map(|api| load(&api.base, key, 64 / processes, seconds * 2, 2_000_000, 1, email));
        let loads = futures::future::join_all(loads).await;
        let accepted: usize = loads.iter().map(|l| l.requests).sum();
        let errors: usize = loads.iter().map(|l| l.errors).sum();
        let elapsed = loads.iter().map(|l| l.elapsed).max().unwrap_or_default();
        let stats = wait_for_delivery(db_url, since, Duration::from_secs(seconds * 40)).await?;
        let per_message = |total: f64| total / (stats.sent as f64).max(1.0);
        let micros = |cpu: f64| per_message(cpu) * 1e6;
        let wal = per_message(wal_since(db_url, &wal_before).await?);
        let disk = per_message(database_size(db_url).await? - size_before);
        println!(
            "| {processes} | {:.0} | {:.0} | {:.0} | {:.0} | {errors} | {:.0} / {:.0} / {:.0} | {wal:.0} | {disk:.0} |",
            accepted as f64 / elapsed.as_secs_f64(),
            stats.sent as f64 / stats.created_to_last_sent_s.unwrap_or(f64::INFINITY),
            stats.p50_ms.unwrap_or(0.0),
            stats.p99_ms.unwrap_or(0.0),
            micros(relayit_cpu([&apis, &workers]) - before.0),
            micros(postgres_cpu() - before.1),
            micros(cpu_seconds_of("redis-server") - before.2),
        );
        for server in apis.into_iter().chain(workers) {
            server.stop();
        }
    }
    Ok(())
}

/// One project's message log: `$4` messages over the last 30 days, in the order they were
/// created, for the organization `$1`, project `$2` and sandbox credential `$3`. Email (60%),
/// SMS (25%), WhatsApp (10%) and Discord (5%), each to one of many recipients; 55% delivered,
/// 37% sent, 5% failed, and among the newest 2,000 (the last hour or so) a few queued or
/// retrying, the rest of those 3% canceled. Ids are UUIDv7 of their creation time, as the
/// server writes them. The triggers of messages write the search rows, as on any insert;
/// events are left out: the log does not read them.
const SEED_LOG: &str = "
INSERT INTO messages (id, organization_id, project_id, channel, recipient, provider_credential_id,
    provider_type, status, status_reason, attempts, content, provider_message_id, created_at,
    updated_at, due_at)
SELECT 'msg_' || lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
           || substr(h, 1, 3) || '8' || substr(h, 4, 15),
       $1, $2, channel,
       CASE channel
           WHEN 'email' THEN 'user' || (g * 7919 % 200000) || '@example' || (g % 40) || '.com'
           WHEN 'discord' THEN (100000000000000000 + g * 7919 % 5000)::text
           ELSE '+1555' || lpad((g * 7919 % 2000000)::text, 7, '0')
       END,
       CASE WHEN status IN ('sent', 'delivered', 'failed', 'retrying') THEN $3 END,
       CASE WHEN status IN ('sent', 'delivered', 'failed', 'retrying') THEN 'sandbox' END,
       status,
       CASE status WHEN 'failed' THEN 'the provider refused the recipient' END,
       CASE status WHEN 'failed' THEN 3 WHEN 'queued' THEN 0 WHEN 'canceled' THEN 0 ELSE 1 END,
       CASE channel
           WHEN 'email' THEN jsonb_build_object(
               'subject', (ARRAY['Your order #' || g || ' has shipped', 'Reset your password',
                   'Welcome to Acme', 'Invoice ' || (g % 100000) || ' is ready',
                   'Your weekly summary', 'Sign-in from a new device'])[1 + g % 6],
               'text', 'Hello, this is message ' || g)
           ELSE jsonb_build_object('text', 'Your code is ' || (g * 7919 % 1000000))
       END,
       CASE WHEN status IN ('sent', 'delivered', 'failed') THEN 'sbx_' || h END,
       at, at + interval '2 seconds',
       CASE WHEN status IN ('queued', 'retrying') THEN at END
FROM (
    SELECT g, md5(g::text) AS h,
           now() - interval '30 days' * (($4 - g)::float8 / $4) AS at,
           CASE WHEN g % 20 < 12 THEN 'email' WHEN g % 20 < 17 THEN 'sms'
                WHEN g % 20 < 19 THEN 'whatsapp' ELSE 'discord' END AS channel,
           CASE WHEN g % 100 < 55 THEN 'delivered' WHEN g % 100 < 92 THEN 'sent'
                WHEN g % 100 < 97 THEN 'failed' WHEN g <= $4 - 2000 THEN 'canceled'
                WHEN g % 100 = 97 THEN 'retrying' ELSE 'queued' END AS status
    FROM generate_series(1::bigint, $4) g
) s
ORDER BY at";

/// Seeds the project's log (see [`SEED_LOG`]) and leaves the tables as a live server's would
/// be: the search entries merged, the rows vacuumed (hint bits set, the visibility map
/// written) and analyzed.
async fn seed_log(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    messages: u64,
) -> anyhow::Result<()> {
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Organization {
        #[diesel(sql_type = Text)]
        organization_id: String,
    }
    let organization: Organization =
        diesel::sql_query("SELECT organization_id FROM projects WHERE id = $1")
            .bind::<Text, _>(&tenant.project)
            .get_result(conn)
            .await?;
    diesel::sql_query(SEED_LOG)
        .bind::<Text, _>(&organization.organization_id)
        .bind::<Text, _>(&tenant.project)
        .bind::<Text, _>(&tenant.credential)
        .bind::<BigInt, _>(i64::try_from(messages)?)
        .execute(conn)
        .await
        .context("seed the message log")?;
    // None while the server's merger holds the lock: then it is merging them itself
    while relayit::db::messages::merge_search_pending(conn).await?.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    diesel::sql_query("VACUUM (ANALYZE) messages, message_search").execute(conn).await?;
    Ok(())
}

/// Requests timed per log request, each after [`LOG_WARM_UP`] untimed ones.
const LOG_REQUESTS: usize = 50;
const LOG_WARM_UP: usize = 5;

/// Times `LOG_REQUESTS` GETs of `path`, one at a time on one keep-alive connection, as the
/// session `token` (the dashboard's cookie, or the API's bearer token); returns the sorted
/// latencies and the rows of the last answer (table rows of a page, or `data` of the API).
async fn timed_gets(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    dashboard: bool,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(LOG_REQUESTS);
    let mut rows = 0;
    for i in 0..LOG_WARM_UP + LOG_REQUESTS {
        let request = client.get(format!("{base}{path}"));
        let request = if dashboard {
            request.header("Cookie", format!("{}={token}", relayit::auth::SESSION_COOKIE))
        } else {
            request.bearer_auth(token)
        };
        let sent = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        let elapsed = sent.elapsed();
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        if i >= LOG_WARM_UP {
            latencies.push(elapsed);
        }
        rows = if dashboard {
            // a row of the log's table; the head's row has th, not td
            body.matches("<tr><td").count()
        } else {
            let page: Value = serde_json::from_str(&body)?;
            page["data"].as_array().map_or(0, Vec::len)
        };
    }
    latencies.sort_unstable();
    Ok((latencies, rows))
}

/// The message log of one project holding `messages` messages, seeded straight into Postgres:
/// its first page and filtered pages, on the dashboard and through the API, timed by the client
/// over loopback (a request's time on the server, for practical purposes).
async fn message_log(messages: u64, db_url: &str, prefix: &str) -> anyhow::Result<()> {
    println!("\n## The message log of a project of {messages} messages (`serve --role=api`)\n");
    let api = start_server(db_url, prefix, "api").await?;
    let client = reqwest::Client::new();
    let tenant = sign_up(&client, &api.base, "log-bench@example.com").await?;
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let seeding = Instant::now();
    seed_log(&mut conn, &tenant, messages).await?;
    println!(
        "Seeded in {:.0} s (INSERT ... SELECT, search merge, VACUUM ANALYZE). {LOG_REQUESTS} requests each, one at a time, after {LOG_WARM_UP} untimed:\n",
        seeding.elapsed().as_secs_f64()
    );
    let dashboard = format!("/projects/{}/messages", tenant.project);
    let api_log = format!("/v1/projects/{}/messages", tenant.project);
    // recipients of the seed: `user119000@` is one address (5 messages in a million), and
    // `5550012` a thousand phone numbers (about 180 messages in a million)
    let requests = [
        ("dashboard, first page", dashboard.clone(), true),
        (
            "dashboard, `?status=failed&channel=sms`",
            format!("{dashboard}?status=failed&channel=sms"),
            true,
        ),
        (
            "dashboard, `?status=queued` (a status not final)",
            format!("{dashboard}?status=queued"),
            true,
        ),
        (
            "dashboard, `?search=user119000@` (part of a recipient)",
            format!("{dashboard}?search=user119000%40"),
            true,
        ),
        (
            "dashboard, `?search=5550012` (part of phone numbers)",
            format!("{dashboard}?search=5550012"),
            true,
        ),
        ("API, first page", api_log.clone(), false),
        (
            "API, `?status=failed&channel=sms`",
            format!("{api_log}?status=failed&channel=sms"),
            false,
        ),
        ("API, `?search=user119000@`", format!("{api_log}?search=user119000%40"), false),
    ];
    println!("| request | rows | p50 ms | p95 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (label, path, on_dashboard) in requests {
        let (latencies, rows) =
            timed_gets(&client, &api.base, &path, &tenant.token, on_dashboard).await?;
        println!(
            "| {label} | {rows} | {:.1} | {:.1} | {:.1} |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.95)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
    }
    api.stop();
    Ok(())
}

/// How the endpoints of one webhook scenario subscribe.
struct Scenario {
    label: &'static str,
    endpoints: usize,
    event_types: &'static [&'static str],
}

/// The webhook scenarios, each against a fresh `serve --role=all` and a new organization.
const SCENARIOS: [Scenario; 3] = [
    Scenario { label: "1 endpoint, `message.sent`", endpoints: 1, event_types: &["message.sent"] },
    Scenario {
        label: "10 endpoints, `message.sent`",
        endpoints: 10,
        event_types: &["message.sent"],
    },
    Scenario {
        label: "1 endpoint, every event type",
        endpoints: 1,
        event_types: &relayit::webhooks::EVENT_TYPES,
    },
];

/// The receiver checks the signature of its first POST and of every `SIGNATURE_SAMPLE`th after
/// it (the 1001st, the 2001st...).
const SIGNATURE_SAMPLE: usize = 1000;

/// How long the wait for the expected POSTs may go without a new one before the phase fails.
const WEBHOOK_STALL: Duration = Duration::from_secs(60);

/// One POST the receiver took.
struct Hit {
    /// When its whole request was in.
    at: Instant,
    /// The endpoint it was sent to (the receiver's path `/hook/{endpoint}`).
    endpoint: usize,
    event_type: String,
    /// The body's `data.id`.
    message_id: String,
}

/// What the receiver has taken so far.
#[derive(Default)]
struct Taken {
    hits: Vec<Hit>,
    /// (endpoint, `webhook-id`) of every POST: a redelivery has the same pair.
    distinct: std::collections::HashSet<(usize, String)>,
    signatures_checked: usize,
    /// What went wrong (a malformed request, a signature that does not verify): any fails the
    /// phase.
    failures: Vec<String>,
}

struct ReceiverState {
    /// Each endpoint's secret, by its index in the path; set once the endpoints exist.
    secrets: std::sync::OnceLock<Vec<String>>,
    taken: std::sync::Mutex<Taken>,
}

impl ReceiverState {
    fn taken(&self) -> std::sync::MutexGuard<'_, Taken> {
        // a handler that panicked holding the lock left nothing half-written that matters here
        self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A webhook receiver on 127.0.0.1: keep-alive HTTP/1.1, 204 to every POST, every POST
/// recorded. As light as the load generator, for the same reason: it shares the two cores.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request of the receiver, as far as the head goes.
struct ReceivedHead {
    head: usize,
    length: usize,
    endpoint: Option<usize>,
    webhook_id: String,
    timestamp: String,
    signature: String,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(ReceiverState {
            secrets: std::sync::OnceLock::new(),
            taken: std::sync::Mutex::new(Taken::default()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Err(error) = Receiver::serve(stream, &state).await {
                        state.taken().failures.push(format!("receiver connection: {error}"));
                    }
                });
            }
        });
        Ok(Receiver { base, state, task })
    }

    /// Serves one connection, request after request, until the client closes it.
    async fn serve(
        mut stream: tokio::net::TcpStream,
        state: &ReceiverState,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.set_nodelay(true)?;
        let mut buffer = Vec::with_capacity(8192);
        loop {
            let request = loop {
                if let Some(request) = Receiver::parse_head(&buffer)? {
                    break request;
                }
                if stream.read_buf(&mut buffer).await? == 0 {
                    return if buffer.is_empty() {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("closed mid-request"))
                    };
                }
            };
            let end = request.head + request.length;
            while buffer.len() < end {
                if stream.read_buf(&mut buffer).await? == 0 {
                    return Err(std::io::Error::other("closed mid-body"));
                }
            }
            let at = Instant::now();
            Receiver::take(state, at, &request, &buffer[request.head..end]);
            buffer.drain(..end);
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
        }
    }

    /// The head of the request at the start of `buffer`, once it is all there.
    fn parse_head(buffer: &[u8]) -> std::io::Result<Option<ReceivedHead>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let head = match request.parse(buffer) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(std::io::Error::other(format!("malformed request: {e}"))),
        };
        if request.method != Some("POST") {
            return Err(std::io::Error::other(format!("{:?}, not a POST", request.method)));
        }
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .unwrap_or_default()
                .to_owned()
        };
        let length = header("content-length")
            .parse::<usize>()
            .map_err(|_| std::io::Error::other("a POST without Content-Length"))?;
        let endpoint =
            request.path.and_then(|p| p.strip_prefix("/hook/")).and_then(|i| i.parse().ok());
        Ok(Some(ReceivedHead {
            head,
            length,
            endpoint,
            webhook_id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
        }))
    }

    /// Records one POST, and checks its signature if it is one of the sample.
    fn take(state: &ReceiverState, at: Instant, request: &ReceivedHead, body: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            data: Data<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let Some(endpoint) = request.endpoint else {
            state.taken().failures.push("a POST to a path that is no endpoint's".into());
            return;
        };
        let event = match serde_json::from_slice::<Event>(body) {
            Ok(event) => event,
            Err(e) => {
                state.taken().failures.push(format!("a body without `type` and `data.id`: {e}"));
                return;
            }
        };
        let mut taken = state.taken();
        let number = taken.hits.len() + 1;
        if number % SIGNATURE_SAMPLE == 1 {
            let secret = state.secrets.get().and_then(|s| s.get(endpoint));
            let checked = match secret {
                None => Err(format!("a POST to endpoint {endpoint}, which the bench did not make")),
                Some(secret) => check_signature(secret, request, body),
            };
            match checked {
                Ok(()) => taken.signatures_checked += 1,
                Err(e) => taken.failures.push(format!(
                    "the signature of POST {} (webhook-id {}): {e}",
                    number, request.webhook_id
                )),
            }
        }
        taken.distinct.insert((endpoint, request.webhook_id.clone()));
        taken.hits.push(Hit {
            at,
            endpoint,
            event_type: event.kind.into_owned(),
            message_id: event.data.id.into_owned(),
        });
    }
}

/// Whether `body` carries a valid Standard Webhooks signature under `secret`: a `webhook-timestamp`
/// within 5 minutes of now, and among the `webhook-signature` entries a `v1,` one equal to the
/// base64 HMAC-SHA256, under the secret's key bytes, of `<webhook-id>.<webhook-timestamp>.<body>`.
/// Computed twice: by hand here, from the specification, with ring's HMAC, and with RelayIt's
/// own signer (`relayit::webhooks::sign`, itself tested against the specification's published
/// vector); both must find their signature. The official `standardwebhooks` crate checks the
/// same in the test suite, but as a dev-dependency it cannot be used by a binary. A tampered
/// copy of the body must fail, so the check cannot pass whatever it is given.
fn check_signature(secret: &str, request: &ReceivedHead, body: &[u8]) -> Result<(), String> {
    use base64::Engine;
    let timestamp: i64 = request
        .timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {:?} is not a number", request.timestamp))?;
    let skew = (chrono::Utc::now().timestamp() - timestamp).abs();
    if skew > 300 {
        return Err(format!("webhook-timestamp {timestamp} is {skew} s from now"));
    }
    if request.webhook_id.is_empty() {
        return Err("no webhook-id".into());
    }
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .ok_or("the endpoint's secret is not `whsec_` and base64")?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let by_hand = |body: &[u8]| {
        let signed =
            [request.webhook_id.as_bytes(), b".", request.timestamp.as_bytes(), b".", body]
                .concat();
        request.signature.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .is_ok_and(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
        })
    };
    if !by_hand(body) {
        return Err(format!("no signature verifies: {:?}", request.signature));
    }
    let tampered = [body, b" "].concat();
    if by_hand(&tampered) {
        return Err("the signature also verifies a tampered body: the check is broken".into());
    }
    let ours = relayit::webhooks::sign::signature_header(
        &[secret.to_owned()],
        &request.webhook_id,
        timestamp,
        body,
    )?;
    if !request.signature.split(' ').any(|s| s == ours) {
        return Err(format!("RelayIt's signer gives {ours}, not among {:?}", request.signature));
    }
    Ok(())
}

/// Sends `count` messages over `concurrency` keep-alive connections as fast as they are
/// accepted; returns when each accepted message's request was sent (by the answer's id), how
/// long the whole took, and how many were not accepted.
async fn send_tracked(
    base: &str,
    key: &str,
    concurrency: usize,
    count: usize,
) -> (Vec<(String, Instant)>, Duration, usize) {
    #[derive(serde::Deserialize)]
    struct Accepted {
        id: String,
    }
    let address = base.trim_start_matches("http://").to_owned();
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let counter = counter.clone();
            let head = format!(
                "POST /v1/send HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            );
            let mut connection = Http1::new(&address);
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut errors = 0;
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let body = email(n);
                    let request = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
                    let at = Instant::now();
                    let accepted = match connection.post(request.as_bytes()).await {
                        Ok(202) => serde_json::from_slice::<Accepted>(connection.body()).ok(),
                        _ => None,
                    };
                    match accepted {
                        Some(accepted) => sent.push((accepted.id, at)),
                        None => errors += 1,
                    }
                }
                (sent, errors)
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(count);
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((s, e)) => {
                sent.extend(s);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    (sent, started.elapsed(), errors)
}

#[derive(QueryableByName)]
struct Expected {
    /// Messages of the project not `sent` yet.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pending: i64,
    /// (event, endpoint) pairs of the project that a subscription matches: the POSTs due.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    posts: i64,
}

/// The POSTs `project`'s events are due, once every message of it is `sent` (and so has all the
/// events it will have; the sandbox sends no receipts). The same rule as the trigger that
/// writes the jobs (migration `2026-11-27-000006_webhooks`).
async fn expected_posts(
    db_url: &str,
    project: &str,
    limit: Duration,
) -> anyhow::Result<(i64, Duration)> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let started = Instant::now();
    loop {
        let expected: Expected = diesel::sql_query(
            "SELECT (SELECT count(*) FROM messages WHERE project_id = $1 AND status <> 'sent') AS pending,
                    (SELECT count(*)
                     FROM messages m
                     JOIN message_events e ON e.message_id = m.id
                     JOIN webhook_endpoints w ON w.project_id = m.project_id AND w.is_active
                         AND 'message.' || e.status = ANY (w.event_types)
                     WHERE m.project_id = $1) AS posts",
        )
        .bind::<diesel::sql_types::Text, _>(project)
        .get_result(&mut conn)
        .await?;
        if expected.pending == 0 {
            return Ok((expected.posts, started.elapsed()));
        }
        if started.elapsed() > limit {
            bail!("{} messages still not `sent` after {limit:?}", expected.pending);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the receiver has taken `expected` distinct POSTs; fails on any receiver failure,
/// or when no new POST came for [`WEBHOOK_STALL`].
async fn wait_for_posts(receiver: &Receiver, expected: usize) -> anyhow::Result<()> {
    let mut last = (0, Instant::now());
    loop {
        let (distinct, posts) = {
            let taken = receiver.state.taken();
            if let Some(failure) = taken.failures.as_slice().first() {
                bail!(
                    "the webhook receiver failed ({} failures; {} POSTs taken): {failure}",
                    taken.failures.len(),
                    taken.hits.len()
                );
            }
            (taken.distinct.len(), taken.hits.len())
        };
        if distinct >= expected {
            return Ok(());
        }
        if posts > last.0 {
            last = (posts, Instant::now());
        } else if last.1.elapsed() > WEBHOOK_STALL {
            bail!(
                "only {distinct} of {expected} webhooks arrived ({posts} POSTs with redeliveries); none for {WEBHOOK_STALL:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One webhook scenario: a fresh `serve --role=all`, a new organization with its endpoints at a
/// new receiver, `messages` sent at 64 connections, then every expected POST awaited.
async fn webhook_scenario(
    scenario: &Scenario,
    number: usize,
    messages: usize,
    db_url: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let server = start_server_with(
        db_url,
        prefix,
        "all",
        &[("RELAYIT_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")],
    )
    .await?;
    let client = reqwest::Client::new();
    let tenant = sign_up(&client, &server.base, &format!("webhooks-{number}@example.com")).await?;
    let key = send_key(&client, &server.base, &tenant).await?;
    let receiver = Receiver::start().await?;
    let mut secrets = Vec::new();
    for endpoint in 0..scenario.endpoints {
        let created = client
            .post(format!("{}/v1/projects/{}/webhooks", server.base, tenant.project))
            .bearer_auth(&tenant.token)
            .json(&json!({"url": format!("{}/hook/{endpoint}", receiver.base), "eventTypes": scenario.event_types}))
            .send()
            .await?;
        if created.status() != 201 {
            bail!("cannot create a webhook endpoint: {}", created.text().await?);
        }
        let created: Value = created.json().await?;
        secrets.push(created["secret"].as_str().context("the endpoint's secret")?.to_owned());
    }
    let _ = receiver.state.secrets.set(secrets);

    let before = usage(&client, &server).await;
    let (sent, sending, errors) = send_tracked(&server.base, &key, 64, messages).await;
    let first_send = sent.iter().map(|(_, at)| *at).min().context("no message was accepted")?;
    let (expected, _) = expected_posts(db_url, &tenant.project, Duration::from_secs(600)).await?;
    let expected = usize::try_from(expected)?;
    wait_for_posts(&receiver, expected).await?;
    let after = usage(&client, &server).await;
    let rss = server.peak_rss_mib().unwrap_or(0.0);
    server.stop();

    let taken = receiver.state.taken();
    let last_post = taken.hits.iter().map(|h| h.at).max().context("no POST arrived")?;
    let sent_at: std::collections::HashMap<&str, Instant> =
        sent.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    // the `message.sent` POSTs, whatever else the endpoints take: the same event in each scenario
    let mut latencies: Vec<Duration> = taken
        .hits
        .iter()
        .filter(|h| h.event_type == "message.sent")
        .filter_map(|h| Some(h.at.saturating_duration_since(*sent_at.get(h.message_id.as_str())?)))
        .collect();
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let micros =
        |cpu: fn(&Usage) -> f64| (cpu(&after) - cpu(&before)) / expected.max(1) as f64 * 1e6;
    let redelivered = taken.hits.len() - taken.distinct.len();
    let spread = taken.hits.iter().fold(vec![0usize; scenario.endpoints], |mut counts, h| {
        if let Some(count) = counts.get_mut(h.endpoint) {
            *count += 1;
        }
        counts
    });
    println!(
        "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.0} / {:.0} / {:.0} | {rss:.0} |",
        scenario.label,
        sent.len(),
        errors,
        sent.len() as f64 / sending.as_secs_f64(),
        expected,
        redelivered,
        expected as f64 / last_post.duration_since(first_send).as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        taken.signatures_checked,
        micros(|u| u.relayit_cpu),
        micros(|u| u.postgres_cpu),
        micros(|u| u.redis_cpu),
    );
    if spread.contains(&0) {
        bail!("an endpoint took no POST: {spread:?}");
    }
    Ok(())
}

/// Outbound webhooks: each scenario of [`SCENARIOS`] in turn.
async fn webhooks(messages: u64, db_url: &str, prefix: &str) -> anyhow::Result<()> {
    println!(
        "\n## Outbound webhooks (`serve --role=all`, a fresh one per scenario), {messages} messages each, 64 connections sending\n"
    );
    println!(
        "| scenario | messages | errors | accepted msg/s | webhooks | redelivered | webhooks/s | send-to-webhook p50 ms | p99 ms | signatures checked | CPU µs per webhook: relayit / Postgres / Redis | peak RSS MiB |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (number, scenario) in SCENARIOS.iter().enumerate() {
        webhook_scenario(scenario, number, usize::try_from(messages)?, db_url, prefix).await?;
    }
    Ok(())
}
