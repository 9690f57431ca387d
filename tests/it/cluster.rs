//! RelayIt on a Redis Cluster and behind Sentinel: a real three-master cluster of Debian's
//! `redis-server`, started on free ports by the test and formed with `redis-cli --cluster
//! create`, named to RelayIt in fred's form (`redis-cluster://host:port?node=host:port&...`);
//! and a master found through a Sentinel (`redis-sentinel://host:port/0?sentinelServiceName=`).
//!
//! Every key but the rate limits' counters carries the `{relayit}` hash tag, so the streams,
//! the delayed sets, the Lua scripts and the pipelines all stay within one slot (each counter
//! has a slot of its own). What this checks is that nothing RelayIt does needs a single
//! server: sending and delivering, rate limits (scripts), the tenant cache's invalidations
//! (pub/sub), webhooks, and readiness.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::stub::{Reply, Stub};
use crate::harness::{TestApp, free_port, sandbox_provider};
use serde_json::json;

/// A Redis Cluster of three masters, killed when dropped.
struct RedisCluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("a directory for the cluster's node files");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed for this test");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &cluster.ports[0].to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
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

    /// The port of the master that holds RelayIt's slot.
    fn master_of_relayit(&self) -> u16 {
        let slot = Command::new("redis-cli")
            .args(["-p", &self.ports[0].to_string(), "cluster", "keyslot", "{relayit}"])
            .output()
            .expect("redis-cli");
        let slot: u16 = String::from_utf8_lossy(&slot.stdout).trim().parse().expect("a slot");
        let nodes = Command::new("redis-cli")
            .args(["-p", &self.ports[0].to_string(), "cluster", "nodes"])
            .output()
            .expect("redis-cli");
        for line in String::from_utf8_lossy(&nodes.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u16>().is_ok_and(|s| s == slot),
            });
            if serves {
                let port = fields[1].split(['@', ':']).nth(1).expect("host:port@bus");
                return port.parse().expect("a port");
            }
        }
        panic!("no master serves slot {slot}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayit_sends_delivers_and_signs_webhooks_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let receiver = Stub::start(|_| Reply::text(204, "")).await;
    let app = TestApp::spawn_with(|c| {
        c.redis.url = cluster.url();
        c.webhooks.allow_private_targets = true;
    })
    .await;

    let (status, ready) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!((status, &ready["checks"]["redis"]), (200, &json!("ok")), "{ready}");

    let (owner, key) = app.sender("Cluster").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    let (status, endpoint) = app
        .post_as(
            &owner.token,
            &format!("/v1/projects/{}/webhooks", owner.project_id),
            json!({"url": receiver.url(), "eventTypes": ["message.sent"]}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");

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

    // the keys live on the master of the {relayit} slot
    let master = cluster.master_of_relayit();
    let keys = Command::new("redis-cli")
        .args(["-p", &master.to_string(), "--scan", "--pattern", &format!("{}*", app.redis_prefix)])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&keys.stdout).contains("{relayit}:deliveries"), "{keys:?}");

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
