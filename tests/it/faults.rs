//! Fault tests: Postgres or Redis goes away while the worker is delivering a burst, and comes
//! back; then we count. Every message accepted (answered 202) must end `sent`, through exactly
//! one successful provider call and with exactly one `sent` event (docs/architecture.md, invariants 1-3).
//!
//! Postgres is the shared server, so it is not stopped: the service reaches it through a TCP
//! proxy of the test's own, which is cut (every connection dropped, new ones closed at once)
//! and restored. Redis is a private `redis-server`, killed and started again empty, as a Redis
//! without persistence restarts: what it held is lost, and the sweeper must recover it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::harness::{Account, PrivateRedis, TestApp, free_port};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use relayit::config::Config;
use relayit::db::messages::Event;
use relayit::db::schema::{message_events as e, messages as m};
use relayit::server::Roles;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The burst: several seconds of work (each delivery holds its slot for the call and two
/// commits), so the outage falls in the middle of it.
const BURST: usize = 300;
const LATENCY_MS: u64 = 40;
const CONCURRENCY: usize = 16;
/// Generous: the machine running the tests may be busy with other work.
pub(crate) const WAIT: Duration = Duration::from_secs(120);
/// How soon after a crash, or after Redis came back empty, every message must be sent: the
/// delivery timeouts (minutes) must not be what recovery waits for.
const RECOVERY: Duration = Duration::from_secs(15);

/// Short sweeps and retries, so recovery happens within the test; a visibility timeout well
/// beyond the outages, so no delivery whose outcome is waiting to be written is taken over.
pub(crate) fn tolerant(config: &mut Config) {
    config.delivery.concurrency = CONCURRENCY;
    config.delivery.retry_base_delay = Duration::from_millis(200);
    config.delivery.retry_max_delay = Duration::from_secs(2);
    config.delivery.sweep_interval = Duration::from_millis(200);
    config.delivery.requeue_after = Duration::from_secs(4);
    config.delivery.visibility_timeout = Duration::from_secs(30);
    config.delivery.provider_timeout = Duration::from_secs(5);
}

/// A TCP proxy between the service and Postgres that the test can cut and restore, or have
/// swallow the server's answers.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    /// Answers are dropped; a connection that sends something then is closed shortly after,
    /// as when a network fails between a statement and its answer.
    swallow: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = watch::channel(false);
        let (swallow, swallowing) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                // cut: closed at once, like a server that is gone
                if *watching.borrow() {
                    continue;
                }
                let (mut watching, swallowing) = (watching.clone(), swallowing.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        () = forward(client, server, swallowing) => {}
                        // dropping both ends drops the connection mid-whatever
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut, swallow, task }
    }

    fn swallow(&self) {
        self.swallow.send_replace(true);
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
        self.swallow.send_replace(false);
    }
}

/// Copies both ways until either side closes; while `swallowing`, drops the server's bytes,
/// and closes both sides once the server has answered what the client sent (its
/// ReadyForQuery: a statement on its own has then committed), or 30 s after the client sent
/// something.
async fn forward(client: TcpStream, server: TcpStream, swallowing: watch::Receiver<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = {
        let swallowing = swallowing.clone();
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let n = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
                if *swallowing.borrow() {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if *swallowing.borrow() {
                // ReadyForQuery ('Z', length 5, transaction status) ends the server's answer
                if n >= 6 && buffer[n - 6] == b'Z' && buffer[n - 5..n - 1] == [0, 0, 0, 5] {
                    return;
                }
                continue;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    url.to_string()
}

/// Where the test databases live.
async fn postgres_addr() -> SocketAddr {
    let url = url::Url::parse(&crate::harness::admin_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5432);
    tokio::net::lookup_host((host, port)).await.unwrap().next().expect("the Postgres address")
}

/// A sandbox credential that takes LATENCY_MS per call, and a key to send with.
pub(crate) async fn setup(app: &TestApp, extra_config: Value) -> (Account, String) {
    let owner = app.sign_up("Owner").await;
    let mut config = json!({"latencyMs": LATENCY_MS});
    for (key, value) in extra_config.as_object().unwrap() {
        config[key] = value.clone();
    }
    let (status, body) = app
        .post_as(
            &owner.token,
            "/v1/providers",
            json!({"name": "Sandbox", "channel": "email", "providerType": "sandbox",
                   "credentials": {}, "config": config}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = app.create_api_key(&owner, &["send"], Some(&owner.project_id)).await;
    (owner, key)
}

pub(crate) fn email(n: usize) -> Value {
    json!({"channel": "email", "to": format!("user{n}@example.com"),
           "content": {"subject": "Hello", "text": "Hi there"}})
}

/// Sends `count` messages in one batch, which must all be accepted; returns their ids.
async fn send_batch(app: &TestApp, key: &str, count: usize) -> Vec<String> {
    let messages: Vec<Value> = (0..count).map(email).collect();
    let (status, body) = app.post_as(key, "/v1/send/batch", json!({"messages": messages})).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap_or_else(|| panic!("rejected: {item}")).to_owned())
        .collect();
    assert_eq!(ids.len(), count);
    ids
}

pub(crate) async fn count_status(conn: &mut AsyncPgConnection, status: &str) -> i64 {
    m::table.filter(m::status.eq(status)).count().get_result(conn).await.unwrap()
}

/// Successful provider calls so far, as the worker counted them.
fn sent_calls(app: &TestApp) -> u64 {
    app.running().state().metrics.deliveries.with_label_values(&["email", "sandbox", "sent"]).get()
}

pub(crate) async fn wait_for_sent(conn: &mut AsyncPgConnection, at_least: i64) {
    let start = Instant::now();
    while count_status(conn, "sent").await < at_least {
        assert!(start.elapsed() < WAIT, "the burst does not move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ready(app: &TestApp) {
    let start = Instant::now();
    loop {
        // a kept-alive connection the server just closed fails once: ask again
        let answer = app.client.get(app.url("/readyz")).send().await;
        if answer.as_ref().is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(start.elapsed() < WAIT, "the service did not recover: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every message is `sent`, then checks that each accepted one was sent exactly
/// once: one `sent` event, one successful provider call (in its history and in the worker's
/// count), one attempt. Messages the service committed without answering 202 (a request cut
/// off after its commit) would be there too, and are held to the same. A failure names the
/// messages at fault and shows their histories, so that one seen once (in CI) can be told.
pub(crate) async fn assert_each_sent_once(app: &TestApp, accepted: &[String]) {
    wait_all_sent(app, Instant::now() + WAIT).await;
    let mut conn = app.connect().await;
    let rows: Vec<(String, i32)> =
        m::table.select((m::id, m::attempts)).load(&mut conn).await.unwrap();
    let ids: HashSet<&String> = rows.iter().map(|(id, _)| id).collect();
    let missing: Vec<&String> = accepted.iter().filter(|id| !ids.contains(id)).collect();
    assert!(missing.is_empty(), "accepted messages are missing: {missing:?}");

    let (sent_events, calls) = histories(&mut conn).await;
    let faults: Vec<(&String, String)> = rows
        .iter()
        .filter_map(|(id, attempts)| {
            let sent = sent_events.get(id.as_str()).copied().unwrap_or(0);
            let called = calls.get(id.as_str()).copied().unwrap_or(0);
            ((*attempts, sent, called) != (1, 1, 1))
                .then(|| (id, format!("{attempts} attempts, {sent} sent events, {called} calls")))
        })
        .collect();
    if !faults.is_empty() {
        let mut shown = Vec::new();
        for (id, _) in faults.iter().take(3) {
            shown.push((id, history(&mut conn, id).await));
        }
        panic!("{} not sent exactly once: {faults:#?}; e.g. {shown:#?}", faults.len());
    }
    assert_eq!(sent_calls(app), ids.len() as u64, "successful provider calls");
    if ids.len() > accepted.len() {
        eprintln!("{} committed without a 202 answer", ids.len() - accepted.len());
    }
}

/// Per message: its `sent` events, and the provider calls its history lists.
pub(crate) async fn histories(
    conn: &mut AsyncPgConnection,
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let events: Vec<Event> = e::table.select(Event::as_select()).load(conn).await.unwrap();
    let mut sent_events: HashMap<String, usize> = HashMap::new();
    let mut calls: HashMap<String, usize> = HashMap::new();
    for event in &events {
        if event.status == "sent" {
            *sent_events.entry(event.message_id.clone()).or_default() += 1;
        }
        let tries = event.details["tries"].as_array().map_or(0, |tries| tries.len());
        *calls.entry(event.message_id.clone()).or_default() += tries;
    }
    (sent_events, calls)
}

/// A message's events, in order: status, time, details.
async fn history(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> Vec<(String, chrono::DateTime<chrono::Utc>, Value)> {
    e::table
        .filter(e::message_id.eq(id))
        .order(e::created_at)
        .select((e::status, e::created_at, e::details))
        .load(conn)
        .await
        .unwrap()
}

/// Waits until every message of the database is `sent`; fails, showing what is left and its
/// history, if they are not by `deadline`.
pub(crate) async fn wait_all_sent(app: &TestApp, deadline: Instant) {
    let mut conn = app.connect().await;
    let total: i64 = m::table.count().get_result(&mut conn).await.unwrap();
    loop {
        let sent = count_status(&mut conn, "sent").await;
        if sent == total {
            break;
        }
        let by_status: Vec<(String, i64)> = m::table
            .group_by(m::status)
            .select((m::status, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .unwrap();
        if Instant::now() > deadline {
            let stuck: Vec<(String, String, chrono::DateTime<chrono::Utc>)> = m::table
                .filter(m::status.ne("sent"))
                .select((m::id, m::status, m::updated_at))
                .limit(5)
                .load(&mut conn)
                .await
                .unwrap();
            let mut histories = Vec::new();
            for (id, _, _) in &stuck {
                histories.push(history(&mut conn, id).await);
            }
            panic!("{sent} of {total} sent: {by_status:?}; e.g. {stuck:#?} {histories:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_burst_loses_nothing_and_sends_each_message_once() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let app = TestApp::spawn_with(|c| {
        tolerant(c);
        c.database.url = through(&c.database.url, proxy.port);
        c.database.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let (_, key) = setup(&app, json!({})).await;
    let mut accepted = send_batch(&app, &key, BURST).await;
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 30).await;

    proxy.cut();
    // durable acknowledgement: without Postgres nothing is accepted
    for n in 0..3 {
        let (status, body) = app.post_as(&key, "/v1/send", email(n)).await;
        assert_eq!(status, 503, "{body}");
    }
    // the worker is cut off too: no outcome gets written (one in flight at the cut may land)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = count_status(&mut conn, "sent").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_status(&mut conn, "sent").await, frozen, "outcomes written without Postgres");
    assert!(frozen < BURST as i64, "the burst was over before the outage");

    proxy.restore();
    wait_ready(&app).await;
    accepted.extend(send_batch(&app, &key, 100).await);
    assert_each_sent_once(&app, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_burst_loses_nothing_and_sends_each_message_once() {
    redis_outage(1).await;
}

/// The same with the streams in partitions: each partition's reader finds its group lost, and
/// what every partition held is put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_with_partitioned_streams_loses_nothing_either() {
    redis_outage(3).await;
}

async fn redis_outage(partitions: u16) {
    let mut redis = PrivateRedis::start(free_port());
    let port = redis.port;
    let app = TestApp::spawn_with(|c| {
        tolerant(c);
        c.redis.stream_partitions = partitions;
        // what Redis lost is put back when it returns, not after the sweep's requeue_after
        c.delivery.requeue_after = Config::default().delivery.requeue_after;
        c.delivery.visibility_timeout = Config::default().delivery.visibility_timeout;
        c.redis.url = format!("redis://127.0.0.1:{port}");
        c.redis.command_timeout = Duration::from_millis(500);
        // A liveness lease well beyond the outage. Cut off from Redis for longer than its lease
        // (4 s by default: on a busy machine the outage below can come close), the worker
        // abandons the provider calls in flight when it lapses, as it must (another worker
        // could take its claims over), and their messages' histories then list a second call.
        c.server.liveness_timeout = Duration::from_secs(30);
    })
    .await;
    // a rate limit far above the burst's pace: checked on every call, and let through while
    // Redis is away
    let (_, key) = setup(&app, json!({"rateLimit": 10_000})).await;
    let mut accepted = send_batch(&app, &key, BURST).await;
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 30).await;

    redis.stop();
    // durable acknowledgement needs Postgres only: sends are still accepted, to be enqueued by
    // the sweeper once Redis is back
    for n in 0..3 {
        let (status, body) = app.post_as(&key, "/v1/send", email(n)).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(count_status(&mut conn, "sent").await < BURST as i64, "the burst was over");

    // back, and empty: the stream, its consumer group and the delayed set are gone
    let _redis = PrivateRedis::start(port);
    let back = Instant::now();
    wait_ready(&app).await;
    accepted.extend(send_batch(&app, &key, 100).await);
    wait_all_sent(&app, back + RECOVERY).await;
    assert_each_sent_once(&app, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_burst_is_taken_over_within_seconds() {
    // the API here, two workers as processes of their own, with the default timeouts
    let app =
        TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |_| {}).await;
    let (_, key) = setup(&app, json!({"latencyMs": 20})).await;
    let env = [("RELAYIT_DELIVERY__CONCURRENCY", "32")];
    let mut doomed = app.spawn_process("worker", &env);
    let _survivor = app.spawn_process("worker", &env);
    let mut accepted = Vec::new();
    for _ in 0..10 {
        accepted.extend(send_batch(&app, &key, 100).await);
    }
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 200).await;

    doomed.kill();
    let killed = Instant::now();
    assert!(count_status(&mut conn, "sent").await < 1000, "the burst was over before the kill");
    wait_all_sent(&app, killed + RECOVERY).await;

    // each sent once as far as Postgres knows; what the dead worker had sent without
    // recording it is sent again, and its history says so
    let (sent_events, _) = histories(&mut conn).await;
    for id in &accepted {
        assert_eq!(sent_events.get(id.as_str()), Some(&1), "{id}: sent events");
    }
    let taken_over: i64 = e::table
        .filter(e::status.eq("processing"))
        .filter(e::details.retrieve_as_text("previousAttempt").eq("outcome unknown"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(taken_over > 0, "nothing was taken over from the killed worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_postgres_past_its_claim_does_not_call_the_provider() {
    // short timeouts, so the claims of the worker cut off go stale within the test
    let short = |c: &mut Config| {
        c.delivery.visibility_timeout = Duration::from_secs(3);
        c.delivery.provider_timeout = Duration::from_secs(1);
        c.delivery.concurrency = CONCURRENCY;
    };
    let app = TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, short).await;
    let (_, key) = setup(&app, json!({"latencyMs": 5})).await;
    let proxy = Proxy::start(postgres_addr().await).await;
    // one connection and no credential cache: at any moment most of its deliveries are
    // waiting to read their route from Postgres, between their claim and their provider call
    let stale = app
        .spawn_peer_with(Roles { api: false, worker: true, webhook: false }, |c| {
            short(c);
            c.database.url = through(&c.database.url, proxy.port);
            c.database.max_connections = 1;
            c.database.connect_timeout = Duration::from_secs(1);
            c.delivery.credential_cache_ttl = Duration::ZERO;
        })
        .await;
    let calls = |running: &relayit::server::Running| {
        let deliveries = &running.state().metrics.deliveries;
        deliveries.with_label_values(&["email", "sandbox", "sent"]).get()
    };
    let accepted = send_batch(&app, &key, 600).await;
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 50).await;

    proxy.cut();
    // another worker takes over what the first one claimed, once its claims are stale
    let other =
        app.spawn_peer_with(Roles { api: false, worker: true, webhook: false }, short).await;
    wait_all_sent(&app, Instant::now() + WAIT).await;
    let before = calls(&stale);

    // back: its deliveries finish routing, long after their claims expired
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls(&stale), before, "a stale claim called the provider");
    let (sent_events, _) = histories(&mut conn).await;
    for id in &accepted {
        assert_eq!(sent_events.get(id.as_str()), Some(&1), "{id}: sent events");
    }
    let unknown: i64 = e::table
        .filter(e::details.retrieve_as_text("previousAttempt").eq("outcome unknown"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(unknown > 0, "no claim was taken over from the worker cut off");
    drop((stale, other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_answered_outcome_unknown() {
    let proxy = Proxy::start(postgres_addr().await).await;
    let app = TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |c| {
        c.database.url = through(&c.database.url, proxy.port);
        c.database.connect_timeout = Duration::from_secs(1);
        // One connection, and nothing else using it: the send then runs the statement the
        // warm-up below prepared on it, in one round trip, whose answer (ending with
        // ReadyForQuery) is the one swallowed. With more connections, the send could take one
        // where its statement is still to prepare (the preparation's answer would be the one
        // swallowed, and the insert never sent), or a periodic write's answer could close the
        // connection the send was to use.
        c.database.max_connections = 1;
        c.api.search_merge_interval = Duration::from_secs(3600);
        c.auth.key_usage_flush = Duration::from_secs(3600);
    })
    .await;
    let (_, key) = setup(&app, json!({})).await;
    let (status, body) = app.post_as(&key, "/v1/send", email(0)).await;
    assert_eq!(status, 202, "{body}");

    // the insert reaches Postgres and commits; its answer never comes back
    proxy.swallow();
    let (status, body) = app.post_as(&key, "/v1/send", email(1)).await;
    proxy.restore();
    assert_eq!(status, 503, "{body}");
    let text = body["error"]["message"].as_str().unwrap();
    assert!(text.contains("outcome is unknown") && text.contains("Idempotency-Key"), "{text}");
    // and indeed it was accepted: "nothing was accepted" would have been false
    let mut conn = app.connect().await;
    let total: i64 = m::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(total, 2, "the commit whose answer was lost");
}
