//! RelayIt on a Redis Cluster and behind Sentinel: a real three-master cluster of Debian's
//! `redis-server`, started on free ports by the test and formed with `redis-cli --cluster
//! create`, named to RelayIt in fred's form (`redis-cluster://host:port?node=host:port&...`);
//! and a master found through a Sentinel (`redis-sentinel://host:port/0?sentinelServiceName=`).
//!
//! Every key but the rate limits' counters and the stream partitions past the first carries the
//! `{relayit}` hash tag, so each partition's streams, delayed sets and scripts stay within one
//! slot (each counter has a slot of its own). What this checks is that nothing RelayIt does
//! needs a single server: sending and delivering over partitions spread across the masters,
//! rate limits (scripts), the tenant cache's invalidations (pub/sub), webhooks, and readiness;
//! and that a master lost mid-burst, its replica promoted, loses no accepted message and sends
//! none twice.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::stub::{Reply, Stub};
use crate::harness::{TestApp, free_port, sandbox_provider};
use serde_json::json;

/// A Redis Cluster of three masters, each with `replicas` replicas, killed when dropped.
struct RedisCluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    fn start(replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a directory for the cluster's node files");
        let ports: Vec<u16> = (0..3 * (1 + replicas)).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--save", "", "--appendonly", "no"])
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server must be installed for this test (.ci/run installs it)")
            })
            .collect();
        let cluster = RedisCluster { ports, nodes, _dir: dir };
        for port in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> =
            cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed for this test");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &cluster.ports[0].to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            let info = String::from_utf8_lossy(&info.stdout).into_owned();
            if info.contains("cluster_state:ok") && cluster.replicas_synced(replicas) {
                return cluster;
            }
            assert!(Instant::now() < deadline, "the cluster never reached cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The cluster as `redis.url`: the first node, the others as seeds.
    fn url(&self) -> String {
        let seeds: Vec<String> =
            self.ports[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", self.ports[0], seeds.join("&"))
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed for this test");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A node that answers.
    fn alive(&self) -> u16 {
        let alive = self.ports.iter().find(|p| self.cli(**p, &["ping"]).contains("PONG"));
        *alive.expect("a node that answers")
    }

    /// The cluster's nodes as `CLUSTER NODES` lists them: (port, flags, slot ranges).
    fn nodes(&self) -> Vec<(u16, String, Vec<String>)> {
        let listing = self.cli(self.alive(), &["cluster", "nodes"]);
        listing
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let slots = fields.iter().skip(8).map(|s| s.to_string()).collect();
                Some((port, fields.get(2)?.to_string(), slots))
            })
            .collect()
    }

    /// Whether every master has its replicas, in sync.
    fn replicas_synced(&self, replicas: usize) -> bool {
        replicas == 0
            || self.ports.iter().all(|port| {
                let info = self.cli(*port, &["info", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            }) && self.nodes().iter().filter(|(_, flags, _)| flags.contains("slave")).count()
                == 3 * replicas
    }

    /// The port of the master that serves the slot of `key` (its hash tag).
    fn master_of(&self, key: &str) -> u16 {
        let slot: u16 =
            self.cli(self.alive(), &["cluster", "keyslot", key]).trim().parse().expect("a slot");
        for (port, flags, slots) in self.nodes() {
            let serves = slots.iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u16>().is_ok_and(|s| s == slot),
            });
            if serves && flags.contains("master") && !flags.contains("fail") {
                return port;
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Kills the node on `port` (as a crash would: no shutdown, nothing saved).
    fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|p| *p == port).expect("a node of the cluster");
        let _ = self.nodes[index].kill();
        let _ = self.nodes[index].wait();
    }

    /// The entries the group `workers` read from `stream` so far (XINFO GROUPS'
    /// `entries-read`), on its master.
    fn entries_read(&self, stream: &str) -> u64 {
        let info = self.cli(self.master_of(stream), &["xinfo", "groups", stream]);
        let lines: Vec<&str> = info.lines().collect();
        let at = lines.iter().position(|l| *l == "entries-read").expect("a group on the stream");
        lines[at + 1].trim().parse().expect("a count")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// Subscribes `receiver` to the `message.sent` events of `owner`'s project.
async fn subscribe(app: &TestApp, owner: &crate::harness::Account, receiver: &Stub) {
    let (status, endpoint) = app
        .post_as(
            &owner.token,
            &format!("/v1/projects/{}/webhooks", owner.project_id),
            json!({"url": receiver.url(), "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
}

/// Waits until `receiver` got a `message.sent` webhook for each of `accepted`.
async fn wait_for_webhooks(receiver: &Stub, accepted: &[String]) {
    let deadline = Instant::now() + crate::faults::WAIT;
    loop {
        let notified: std::collections::HashSet<String> = receiver
            .requests()
            .iter()
            .filter_map(|r| r.json()["data"]["id"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<&String> = accepted.iter().filter(|id| !notified.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} webhooks missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Partitions whose tags' slots (`{relayit}` 3122, `{relayit:1}` 1224, `{relayit:2}` 13483,
/// `{relayit:3}` 9354) fall on each of the three masters `redis-cli --cluster create` makes
/// (slots 0-5460, 5461-10922, 10923-16383).
const PARTITIONS: u16 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayit_sends_delivers_and_signs_webhooks_on_a_redis_cluster() {
    let cluster = RedisCluster::start(0);
    let receiver = Stub::start(|_| Reply::text(204, "")).await;
    let app = TestApp::spawn_with(|c| {
        c.redis.url = cluster.url();
        c.redis.stream_partitions = PARTITIONS;
        c.webhooks.allow_private_targets = true;
    })
    .await;

    let (status, ready) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!((status, &ready["checks"]["redis"]), (200, &json!("ok")), "{ready}");

    let (owner, key) = app.sender("Cluster").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    subscribe(&app, &owner, &receiver).await;

    // a batch and single sends, delivered by the worker reading the cluster's stream
    let messages: Vec<_> = (0..20)
        .map(|i| json!({"channel": "sms", "to": format!("+1415555{i:04}"), "content": {"text": "hi"}}))
        .collect();
    let (status, batch) = app.post_as(&key, "/v1/send/batch", json!({"messages": messages})).await;
    assert_eq!(status, 202, "{batch}");
    let mut ids: Vec<String> = batch["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().expect("accepted").to_owned())
        .collect();
    ids.push(
        app.send_message(
            &key,
            json!({"channel": "sms", "to": "+14155550199", "content": {"text": "one"}}),
        )
        .await,
    );
    for id in &ids {
        app.wait_for_status(&key, id, "sent").await;
    }

    // every `message.sent` reached the receiver, signed
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.requests().len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} webhooks",
            receiver.requests().len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.requests().iter().all(|r| r.header("webhook-signature").is_some()));

    // every partition's deliveries and webhooks were read, from streams on several masters
    let keys = app.running().state().redis.keys().clone();
    let mut masters = std::collections::HashSet::new();
    for p in 0..PARTITIONS {
        let partition = keys.partition(p);
        for stream in [partition.deliveries(), partition.webhooks()] {
            assert!(cluster.entries_read(&stream) > 0, "nothing was read from {stream}");
            masters.insert(cluster.master_of(&stream));
        }
    }
    assert_eq!(masters.len(), 3, "the partitions do not spread over the masters: {masters:?}");

    // a key's rate limit holds: its script ran against its counter, in a slot of its own
    let (status, limited) = app
        .post_as(
            &owner.token,
            "/v1/api-keys",
            json!({"name": "slow", "scopes": ["send"], "projectId": owner.project_id, "rateLimit": 1}),
        )
        .await;
    assert_eq!(status, 201, "{limited}");
    let slow = limited["key"].as_str().unwrap().to_owned();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let body = json!({"channel": "sms", "to": "+14155550197", "content": {"text": "x"}});
        answers.push(app.post_as(&slow, "/v1/send", body).await.0);
    }
    assert_eq!(answers[0], 202);
    assert!(answers.contains(&429), "{answers:?}");

    // a revoked key stops at once: the invalidation went over the cluster's pub/sub
    let (_, listed) = app.get_as(&owner.token, "/v1/api-keys").await;
    let key_id = listed["data"][1]["id"].as_str().unwrap().to_owned();
    let (status, _) = app.delete_as(&owner.token, &format!("/v1/api-keys/{key_id}")).await;
    assert_eq!(status, 204);
    let (status, _) = app
        .post_as(
            &key,
            "/v1/send",
            json!({"channel": "sms", "to": "+14155550198", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!(status, 401);
    receiver.stop().await;
}

/// A Redis master watched by one Sentinel, both killed when dropped.
struct Sentinel {
    master: crate::harness::PrivateRedis,
    sentinel_port: u16,
    sentinel: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start() -> Sentinel {
        let master = crate::harness::PrivateRedis::start(free_port());
        let dir = tempfile::tempdir().expect("a directory for the sentinel's config");
        let sentinel_port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                master.port
            ),
        )
        .expect("write sentinel.conf");
        let sentinel = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let asked = Command::new("redis-cli")
                .args(["-p", &sentinel_port.to_string()])
                .args(["sentinel", "get-master-addr-by-name", "mymaster"])
                .output();
            if asked.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("127.0.0.1")) {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinel did not start on {sentinel_port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sentinel { master, sentinel_port, sentinel, _dir: dir }
    }

    fn url(&self) -> String {
        format!("redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster", self.sentinel_port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
        self.master.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayit_finds_its_master_through_sentinel() {
    let sentinel = Sentinel::start();
    let app = TestApp::spawn_with(|c| c.redis.url = sentinel.url()).await;
    let (owner, key) = app.sender("Sentinel").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    let id = app
        .send_message(
            &key,
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "hi"}}),
        )
        .await;
    app.wait_for_status(&key, &id, "sent").await;
    // the streams are on the master the sentinel named
    let keys = Command::new("redis-cli")
        .args(["-p", &sentinel.master.port.to_string(), "--scan"])
        .args(["--pattern", &format!("{}*", app.redis_prefix)])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&keys.stdout).contains("{relayit}:deliveries"), "{keys:?}");
}

/// A master lost mid-burst, its replica promoted by the cluster: the sends go on through the
/// failover (those answered 202 count as accepted), and once the cluster is whole again every
/// accepted message is `sent` exactly once (one `sent` event, one provider call) with its
/// `message.sent` webhook delivered. What the replica had not received before the promotion
/// (stream entries, acknowledgements) is made good by the recovery paths: entries lost are put
/// back from Postgres by the sweeps, an entry acknowledged on the old master but pending again
/// on the new one is claimed in vain (its message is no longer claimable) and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_mid_burst_loses_no_message_and_sends_none_twice() {
    use crate::faults::{WAIT, assert_each_sent_once, count_status, email, setup, wait_for_sent};

    let mut cluster = RedisCluster::start(1);
    let receiver = Stub::start(|_| Reply::text(204, "")).await;
    let app = TestApp::spawn_with(|c| {
        crate::faults::tolerant(c);
        c.redis.url = cluster.url();
        c.redis.stream_partitions = PARTITIONS;
        c.webhooks.allow_private_targets = true;
        c.webhooks.timeout = Duration::from_secs(2);
        c.webhooks.visibility_timeout = Duration::from_secs(4);
        c.webhooks.requeue_after = Duration::from_secs(5);
    })
    .await;
    let (owner, key) = setup(&app, json!({})).await;
    subscribe(&app, &owner, &receiver).await;

    let send = |from: usize, count: usize| {
        let messages: Vec<_> = (from..from + count).map(email).collect();
        app.post_as(&key, "/v1/send/batch", json!({"messages": messages}))
    };
    let accepted_of = |body: &serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .map(str::to_owned)
            .collect()
    };
    let mut accepted = Vec::new();
    for batch in 0..3 {
        let (status, body) = send(batch * 100, 100).await;
        assert_eq!(status, 202, "{body}");
        accepted.extend(accepted_of(&body));
    }
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 50).await;

    // the master of the first partition (and of the install's other keys) dies
    let doomed = cluster.master_of("{relayit}");
    cluster.kill(doomed);
    let killed = Instant::now();
    assert!(count_status(&mut conn, "sent").await < 300, "the burst was over before the kill");

    // sends go on while the cluster fails over: some may be refused, none may be lost
    let mut next = 300;
    let promoted = loop {
        let (status, body) = send(next, 20).await;
        next += 20;
        if status == 202 {
            accepted.extend(accepted_of(&body));
        }
        let now_master = cluster.master_of("{relayit}");
        if now_master != doomed {
            break now_master;
        }
        assert!(killed.elapsed() < WAIT, "no replica was promoted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("{promoted} promoted {:?} after the kill", killed.elapsed());
    // and after it, the service takes sends again
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = send(next, 20).await;
        next += 20;
        if status == 202 {
            accepted.extend(accepted_of(&body));
            break;
        }
        assert!(Instant::now() < deadline, "sends are refused after the failover: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_each_sent_once(&app, &accepted).await;
    wait_for_webhooks(&receiver, &accepted).await;
    receiver.stop().await;
}

/// Two processes of each role (`api`, `worker`, `webhook`) against the cluster and Postgres;
/// sends go through both APIs, and one process of each role is killed mid-burst. Every
/// message accepted by either API ends `sent` with exactly one `sent` event (what the killed
/// worker had sent without recording it is sent again, and its history says so: the provider
/// call's outcome was unknown), and its `message.sent` webhook is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_each_role_lose_nothing_when_one_of_each_is_killed() {
    use crate::faults::{
        WAIT, count_status, email, histories, setup, wait_all_sent, wait_for_sent,
    };
    use relayit::server::Roles;

    let cluster = RedisCluster::start(0);
    let receiver = Stub::start(|_| Reply::text(204, "")).await;
    // the in-process API only sets the tenant up; the burst goes through the processes
    let app = TestApp::spawn_roles(Roles { api: true, worker: false, webhook: false }, |c| {
        c.redis.url = cluster.url();
        c.redis.stream_partitions = PARTITIONS;
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let (owner, key) = setup(&app, json!({"latencyMs": 20})).await;
    subscribe(&app, &owner, &receiver).await;

    let partitions = PARTITIONS.to_string();
    let shared = [
        ("RELAYIT_REDIS__STREAM_PARTITIONS", partitions.as_str()),
        ("RELAYIT_DELIVERY__CONCURRENCY", "16"),
        ("RELAYIT_DELIVERY__SWEEP_INTERVAL", "200ms"),
        ("RELAYIT_DELIVERY__REQUEUE_AFTER", "4s"),
        ("RELAYIT_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("RELAYIT_WEBHOOKS__TIMEOUT", "2s"),
        ("RELAYIT_WEBHOOKS__VISIBILITY_TIMEOUT", "4s"),
        ("RELAYIT_WEBHOOKS__REQUEUE_AFTER", "5s"),
    ];
    let api = |port: u16| {
        let bind = format!("127.0.0.1:{port}");
        let mut env = shared.to_vec();
        env.push(("RELAYIT_SERVER__BIND", &bind));
        (app.spawn_process("api", &env), format!("http://{bind}"))
    };
    let (mut doomed_api, doomed_url) = api(free_port());
    let (_api, url) = api(free_port());
    let mut doomed_worker = app.spawn_process("worker", &shared);
    let _worker = app.spawn_process("worker", &shared);
    let mut doomed_webhook = app.spawn_process("webhook", &shared);
    let _webhook = app.spawn_process("webhook", &shared);
    for base in [&doomed_url, &url] {
        let deadline = Instant::now() + WAIT;
        while !app
            .client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "{base} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // batches through both APIs, until told to stop; what each accepted is kept
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = tokio::spawn({
        let (client, key, stop) = (app.client.clone(), key.clone(), stop.clone());
        let bases = [doomed_url.clone(), url.clone()];
        async move {
            let (mut accepted, mut by_api) = (Vec::new(), [0; 2]);
            let mut n = 0;
            while !stop.is_cancelled() {
                let messages: Vec<_> = (n..n + 25).map(email).collect();
                let which = (n / 25) % 2;
                let base = &bases[which];
                n += 25;
                let answer = client
                    .post(format!("{base}/v1/send/batch"))
                    .bearer_auth(&key)
                    .json(&json!({"messages": messages}))
                    .send()
                    .await;
                let Ok(answer) = answer else { continue };
                if answer.status() != 202 {
                    continue;
                }
                let body: serde_json::Value = answer.json().await.unwrap_or_default();
                by_api[which] += 1;
                accepted.extend(
                    body["data"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["id"].as_str())
                        .map(str::to_owned),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, by_api)
        }
    });
    let mut conn = app.connect().await;
    wait_for_sent(&mut conn, 200).await;
    doomed_api.kill();
    doomed_worker.kill();
    doomed_webhook.kill();
    let killed = count_status(&mut conn, "sent").await;
    // the survivors go on taking sends
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let (accepted, by_api) = sender.await.expect("the sender");
    assert!(by_api.iter().all(|n| *n > 0), "batches accepted by each API: {by_api:?}");
    let total: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        relayit::db::schema::messages::table.count().get_result(&mut conn).await.unwrap()
    };
    assert!(killed < total, "the burst was over before the kills");
    eprintln!(
        "{} accepted ({by_api:?} batches), {killed} of {total} sent at the kills",
        accepted.len()
    );

    wait_all_sent(&app, Instant::now() + WAIT).await;
    let (sent_events, _) = histories(&mut conn).await;
    let faults: Vec<_> = accepted
        .iter()
        .filter(|id| sent_events.get(id.as_str()) != Some(&1))
        .map(|id| (id, sent_events.get(id.as_str())))
        .collect();
    assert!(faults.is_empty(), "not sent exactly once: {faults:?}");
    wait_for_webhooks(&receiver, &accepted).await;
    receiver.stop().await;
}
