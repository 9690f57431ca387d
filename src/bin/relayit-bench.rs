//! `relayit-bench`: measures RelayIt on this machine and prints one report.
//!
//! It starts the real `relayit serve --role=all` (the binary built beside this one) against a
//! scratch database and Redis prefix, with a sandbox provider, then measures: `/v1/send`
//! throughput and latency at several concurrencies, `/v1/send/batch` throughput, end-to-end
//! throughput and send-to-`sent` latency, and the process's peak RSS. For scale it also
//! measures the raw ceilings of the same Postgres and Redis (multi-row INSERT, pipelined XADD),
//! so each RelayIt number can be read as a fraction of what the storage allows.
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

struct Options {
    seconds: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut seconds = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context("--seconds needs a value")?.parse()?,
            other => bail!("unknown argument {other}; usage: relayit-bench [--seconds N]"),
        }
    }
    Ok(Options { seconds: seconds.clamp(1, 60) })
}

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
    let options = options()?;
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
    /// Peak resident set size so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

async fn start_server(db_url: &str, prefix: &str) -> anyhow::Result<Server> {
    let exe: PathBuf = std::env::current_exe()?.with_file_name("relayit");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = std::env::temp_dir().join(format!("relayit-bench-{port}"));
    std::fs::create_dir_all(&data)?;
    let child = Command::new(&exe)
        .args(["serve", "--role=all"])
        .env("DATABASE_URL", db_url)
        .env("REDIS_URL", redis_url())
        .env("RELAYIT_REDIS__KEY_PREFIX", prefix)
        .env("RELAYIT_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("RELAYIT_DATA_DIR", &data)
        .env("RELAYIT_LOG__LEVEL", "warn")
        .env("RELAYIT_DATABASE__MAX_CONNECTIONS", "32")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("start {} (build it first: cargo build --release)", exe.display())
        })?;
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
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

/// Signs up, creates a sandbox credential for email, and returns a send key.
async fn provision(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let signed: Value = client
        .post(format!("{base}/v1/auth/sign-up"))
        .json(&json!({"email": "bench@example.com", "password": "benchmark password", "name": "Bench"}))
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
    let projects: Value =
        client.get(format!("{base}/v1/projects")).bearer_auth(&token).send().await?.json().await?;
    let project = projects["data"][0]["id"].as_str().context("default project")?;
    let key: Value = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "scopes": ["send"], "projectId": project}))
        .send()
        .await?
        .json()
        .await?;
    Ok(key["key"].as_str().context("api key")?.to_owned())
}

fn email(i: usize) -> Value {
    json!({"channel": "email", "to": format!("user{i}@example.com"),
           "content": {"subject": "Benchmark", "text": "Hello from relayit-bench"}})
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
) -> Load {
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let counter = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, counter) = (client.clone(), counter.clone());
            let (url, key) = if batch > 1 {
                (format!("{base}/v1/send/batch"), key.to_owned())
            } else {
                (format!("{base}/v1/send"), key.to_owned())
            };
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= max {
                        break;
                    }
                    let body = if batch > 1 {
                        json!({"messages": (0..batch).map(|i| email(n * batch + i)).collect::<Vec<_>>()})
                    } else {
                        email(n)
                    };
                    let sent = Instant::now();
                    match client.post(&url).bearer_auth(&key).json(&body).send().await {
                        Ok(r) if r.status() == 202 => latencies.push(sent.elapsed()),
                        _ => errors += 1,
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

#[derive(QueryableByName)]
struct Stats {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sent: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p50_ms: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p99_ms: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    span_s: Option<f64>,
}

async fn delivery_stats(db_url: &str) -> anyhow::Result<Stats> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    Ok(diesel::sql_query(
        "SELECT count(*) AS sent,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.created_at - m.created_at) * 1000) AS p50_ms,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.created_at - m.created_at) * 1000) AS p99_ms,
                extract(epoch FROM max(e.created_at) - min(m.created_at))::float8 AS span_s
         FROM messages m JOIN message_events e ON e.message_id = m.id AND e.status = 'sent'",
    )
    .get_result(&mut conn)
    .await?)
}

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

async fn clear_prefix(prefix: &str) -> anyhow::Result<()> {
    use fred::prelude::LuaInterface;
    let client = fred::clients::Client::new(
        fred::prelude::Config::from_url(&redis_url())?,
        None,
        None,
        None,
    );
    client.init().await?;
    let pattern = relayit::queue::Keys::new(prefix).pattern();
    let _: i64 = client
        .eval(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('DEL', k) end return n",
            Vec::<String>::new(),
            vec![pattern],
        )
        .await?;
    client.quit().await?;
    Ok(())
}

async fn run(options: &Options, db_name: &str, prefix: &str) -> anyhow::Result<()> {
    let db_url = database_url(db_name)?;
    let server = start_server(&db_url, prefix).await?;
    let client = reqwest::Client::new();
    let key = provision(&client, &server.base).await?;
    let started = Instant::now();
    let mut accepted = 0usize;

    println!(
        "# relayit-bench ({} s per phase, {} cores)\n",
        options.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| phase | requests | messages/s | p50 ms | p99 ms | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for concurrency in [1, 16, 64] {
        let result = load(&server.base, &key, concurrency, options.seconds, 200_000, 1).await;
        accepted += result.requests;
        println!(
            "| /v1/send, {concurrency} connections | {} | {:.0} | {:.2} | {:.2} | {} |",
            result.requests,
            result.requests as f64 / result.elapsed.as_secs_f64(),
            percentile(&result.latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&result.latencies, 0.99).as_secs_f64() * 1000.0,
            result.errors
        );
    }
    let batch = load(&server.base, &key, 4, options.seconds, 400, 1000).await;
    accepted += batch.requests * 1000;
    println!(
        "| /v1/send/batch x1000, 4 connections | {} | {:.0} | {:.1} | {:.1} | {} |",
        batch.requests,
        (batch.requests * 1000) as f64 / batch.elapsed.as_secs_f64(),
        percentile(&batch.latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&batch.latencies, 0.99).as_secs_f64() * 1000.0,
        batch.errors
    );

    // end to end: wait (bounded) for the worker to deliver what was accepted
    let deadline = Instant::now() + Duration::from_secs(options.seconds * 12);
    let mut stats = delivery_stats(&db_url).await?;
    while (stats.sent as usize) < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stats = delivery_stats(&db_url).await?;
    }
    match stats.span_s.filter(|s| *s > 0.0) {
        Some(span) => println!(
            "\nEnd to end (sandbox): {} of {accepted} accepted messages `sent`, {:.0} messages/s over the run; send-to-sent p50 {:.0} ms, p99 {:.0} ms",
            stats.sent,
            stats.sent as f64 / span,
            stats.p50_ms.unwrap_or(0.0),
            stats.p99_ms.unwrap_or(0.0)
        ),
        None => {
            println!("\nEnd to end: no message reached `sent` (is the delivery worker running?)")
        }
    }
    println!("Peak RSS of relayit: {:.0} MiB", server.peak_rss_mib().unwrap_or(0.0));
    drop(server);

    let (insert_rate, xadd_rate) = ceilings(&db_url, prefix).await?;
    println!(
        "\nRaw ceilings on this machine: multi-row INSERT {insert_rate:.0} rows/s; pipelined XADD {xadd_rate:.0} entries/s"
    );
    println!("Total time {:.0} s", started.elapsed().as_secs_f64());
    clear_prefix(prefix).await
}
