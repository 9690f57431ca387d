//! The service under bursts it must survive, run as a real `relayit` process so that its
//! memory can be read from `/proc`: password hashing (19 MiB each) is bounded, so a burst of
//! sign-ins costs a few hashes' worth of memory, not one per request, and whatever cannot get
//! its turn is answered 503 with `Retry-After`, never dropped.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::harness::process::Serving;
use crate::harness::{PASSWORD, TestDb, unique};

/// Concurrent sign-ins: unbounded, they would hold 300 × 19 MiB (5.7 GB) of hashes at once.
const BURST: usize = 300;
/// The process's peak resident memory must stay under this; with two hashes at a time it
/// stays around a hundred MiB.
const PEAK_BOUND_KIB: u64 = 512 * 1024;

/// The process's peak resident set (`VmHWM`) in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// How one sign-in of the burst was answered.
#[derive(Debug)]
struct Answer {
    right_password: bool,
    status: u16,
    retry_after: Option<String>,
    code: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_holds_memory_to_the_hashing_bound() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}:", unique("load"));
    // two hashes at a time, and sign-in limits high enough that every guess is checked
    let mut serving = Serving::start_with(
        dir.path(),
        &db,
        &prefix,
        &[
            ("RELAYIT_AUTH__MAX_CONCURRENT_HASHES", "2"),
            ("RELAYIT_AUTH__HASH_WAIT", "2s"),
            ("RELAYIT_AUTH__SIGN_IN_MAX_FAILURES", "1000000"),
        ],
    );
    serving.wait_ready().await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let email = "load@example.com";
    let signed_up = client
        .post(serving.url("/v1/auth/sign-up"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Load"}))
        .send()
        .await
        .expect("sign-up");
    assert_eq!(signed_up.status(), 201);
    let before = peak_rss_kib(serving.pid());

    // every other sign-in has the right password
    let burst = tokio::spawn({
        let (client, url) = (client.clone(), serving.url("/v1/auth/sign-in"));
        join_all((0..BURST).map(move |n| {
            let right_password = n % 2 == 0;
            let password = if right_password { PASSWORD } else { "not the password" };
            let request = client.post(&url).json(&json!({"email": email, "password": password}));
            async move {
                let response = request.send().await.unwrap_or_else(|e| panic!("sign-in {n}: {e}"));
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                let body: serde_json::Value =
                    response.json().await.unwrap_or_else(|e| panic!("sign-in {n}: {e}"));
                let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
                Answer { right_password, status, retry_after, code }
            }
        }))
    });
    // the process stays ready throughout
    let mut probes = 0;
    loop {
        let ready = client.get(serving.url("/readyz")).send().await.expect("/readyz answers");
        assert_eq!(ready.status(), 200, "/readyz during the burst");
        probes += 1;
        if burst.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers = burst.await.expect("the burst");

    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for answer in &answers {
        *counts.entry(answer.status).or_default() += 1;
        let normal = if answer.right_password { 200 } else { 401 };
        match answer.status {
            status if status == normal => {}
            503 => {
                assert_eq!(answer.code, "unavailable", "{answer:?}");
                assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
            }
            _ => panic!("neither the normal answer nor 503: {answer:?}"),
        }
    }
    // argon2 ran, for right and wrong passwords alike
    assert!(counts.get(&200).is_some_and(|n| *n > 0), "{counts:?}");
    assert!(counts.get(&401).is_some_and(|n| *n > 0), "{counts:?}");

    let peak = peak_rss_kib(serving.pid());
    eprintln!(
        "burst of {BURST} sign-ins: {counts:?}, {probes} readiness probes, peak RSS {} MiB \
         (before the burst {} MiB)",
        peak / 1024,
        before / 1024
    );
    assert!(peak < PEAK_BOUND_KIB, "peak RSS {} MiB", peak / 1024);

    let (code, log) = serving.terminate();
    assert_eq!(code, 0, "{log}");
    crate::harness::clear_redis_prefix(&prefix).await.unwrap();
}
