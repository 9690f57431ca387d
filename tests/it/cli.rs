//! The `relayit` binary as an operator uses it: flags, key generation, configuration errors,
//! the master key of a single instance, and a clean exit on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestDb;
use crate::harness::process::{Serving, relayit};

fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("run relayit");
    (
        status.code().expect("exited normally"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn version_and_unknown_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(relayit(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("relayit {}", env!("CARGO_PKG_VERSION")));

    let (code, _, err) = run(relayit(dir.path()).args(["serve", "--role=api,courier"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'courier' for '--role"), "{err}");
    assert!(err.contains("possible values: all, api, worker, webhook"), "{err}");

    let (code, _, err) = run(relayit(dir.path()).args(["serve", "--turbo"]));
    assert_eq!(code, 2);
    assert!(err.contains("unexpected argument '--turbo'"), "{err}");
}

#[test]
fn the_benchmark_prints_its_usage() {
    let dir = tempfile::tempdir().unwrap();
    let bench = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relayit-bench"));
        command.env_clear().current_dir(dir.path()).stdin(Stdio::null());
        command
    };
    let (code, out, _) = run(bench().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("Usage: relayit-bench") && out.contains("--seconds"), "{out}");
    for wrong in [&["--bogus"][..], &["--seconds", "0"], &["--seconds"]] {
        let (code, _, err) = run(bench().args(wrong));
        assert_eq!(code, 2, "{wrong:?}");
        assert!(err.contains("--help") && !err.contains("backtrace"), "{err}");
    }
}

#[test]
fn generate_key_prints_32_random_bytes() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (code, first, _) = run(relayit(dir.path()).arg("generate-key"));
    assert_eq!(code, 0);
    let (_, second, _) = run(relayit(dir.path()).arg("generate-key"));
    assert_ne!(first, second);
    let bytes = base64::engine::general_purpose::STANDARD.decode(first.trim()).unwrap();
    assert_eq!(bytes.len(), 32);
}

#[test]
fn config_check_prints_the_effective_config_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let key = relayit::crypto::generate_key_base64();
    std::fs::write(dir.path().join("custom.toml"), "[delivery]\nmax_attempts = 3\n").unwrap();
    let (code, out, err) = run(relayit(dir.path())
        .args(["config", "check", "--config", "custom.toml"])
        .env("RELAYIT_SECURITY__ENCRYPTION_KEY", &key)
        .env("DATABASE_URL", "postgres://relayit:hunter22@db:5432/relayit")
        .env("RELAYIT_SERVER__BIND", "127.0.0.1:9999"));
    assert_eq!(code, 0, "{err}");
    let shown: toml::Table = toml::from_str(&out).expect("TOML output");
    assert_eq!(shown["delivery"]["max_attempts"].as_integer(), Some(3));
    assert_eq!(shown["server"]["bind"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(shown["security"]["encryption_key"].as_str(), Some("********"));
    assert_eq!(
        shown["database"]["url"].as_str(),
        Some("postgres://relayit:********@db:5432/relayit")
    );
    assert!(!out.contains(&key) && !out.contains("hunter22"));
}

#[test]
fn bad_configuration_fails_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, key) in [
        ("RELAYIT_SERVER__BIND", "localhost", "server.bind"),
        ("RELAYIT_DATABASE__MAX_CONNECTIONS", "-1", "database.max_connections"),
        ("RELAYIT_SECURITY__ENCRYPTION_KEY", "too-short", "security.encryption_key"),
    ] {
        for command in [&["serve"][..], &["config", "check"][..], &["migrate"][..]] {
            let (code, out, err) = run(relayit(dir.path()).args(command).env(var, value));
            assert_eq!(code, 1, "{command:?} {var}: {err}");
            assert!(out.is_empty());
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.starts_with("error: ") && err.contains(key), "{err}");
        }
    }
    let (code, _, err) = run(relayit(dir.path()).args(["serve", "--config", "missing.toml"]));
    assert_eq!(code, 1);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn split_roles_refuse_to_start_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    for roles in ["api", "worker", "webhook", "api,worker"] {
        let (code, _, err) = run(relayit(dir.path())
            .args(["serve", "--role", roles])
            .env("RELAYIT_DATA_DIR", dir.path()));
        assert_eq!(code, 1, "{roles}");
        assert!(err.contains("relayit generate-key") && err.contains("every process"), "{err}");
        assert!(!dir.path().join("master.key").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_or_redis_is_named_with_what_to_set() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    // a port nothing listens on
    let closed = crate::harness::free_port();
    let nowhere_pg = format!("postgres://postgres@127.0.0.1:{closed}/relayit");
    let (code, _, err) = run(relayit(dir.path())
        .arg("serve")
        .env("RELAYIT_DATA_DIR", dir.path())
        .env("DATABASE_URL", &nowhere_pg));
    assert_eq!(code, 1);
    assert!(err.contains(&format!("cannot reach PostgreSQL at {nowhere_pg}")), "{err}");
    assert!(err.contains("DATABASE_URL"), "{err}");

    let nowhere_redis = format!("redis://127.0.0.1:{closed}");
    let (code, _, err) = run(relayit(dir.path())
        .arg("serve")
        .env("RELAYIT_DATA_DIR", dir.path())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", &nowhere_redis)
        .env("RELAYIT_REDIS__COMMAND_TIMEOUT", "1s"));
    assert_eq!(code, 1);
    assert!(err.contains(&format!("cannot reach Redis at {nowhere_redis}")), "{err}");
    assert!(err.contains("REDIS_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(relayit(dir.path()).arg("migrate").env("DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("applied {} migration(s)", crate::harness::migration_count()));
    let (_, out, _) = run(relayit(dir.path()).arg("migrate").env("DATABASE_URL", &db.url));
    assert_eq!(out.trim(), "applied 0 migration(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_instance_generates_its_key_migrates_and_stops_on_sigterm() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}:", crate::harness::unique("cli"));

    let mut serving = Serving::start(dir.path(), &db, &prefix);
    serving.wait_ready().await;
    let key_file = dir.path().join("data/master.key");
    let key = std::fs::read_to_string(&key_file).expect("master.key generated");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let started = Instant::now();
    let (code, log) = serving.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert!(log.contains("back this file up"), "{log}");
    assert!(log.contains("applied migrations"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(key.trim()), "the key must never be logged");

    // a second start reuses the key and has nothing left to migrate
    let mut serving = Serving::start(dir.path(), &db, &prefix);
    serving.wait_ready().await;
    let (code, log) = serving.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    assert!(log.contains("using the master key file"), "{log}");
    assert!(!log.contains("applied migrations"), "{log}");
    crate::harness::clear_redis_prefix(&prefix).await.unwrap();
}

fn admin(dir: &Path, db_url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = relayit(dir)
        .arg("admin")
        .args(args)
        .env("DATABASE_URL", db_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relayit admin");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_provision_a_headless_install() {
    let app = crate::harness::TestApp::spawn_with(|c| c.auth.allow_signup = false).await;
    let dir = tempfile::tempdir().unwrap();
    let db = app.db.url.clone();

    let (code, user_id, err) = admin(
        dir.path(),
        &db,
        &["create-user", "--email", "Root@Example.com", "--name", "Root", "--password-stdin"],
        "a long enough password\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(user_id.starts_with("usr_"), "{user_id}");
    let (code, _, err) = admin(
        dir.path(),
        &db,
        &["create-user", "--email", "root@example.com", "--password-stdin"],
        "a long enough password\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = admin(
        dir.path(),
        &db,
        &["create-user", "--email", "x@example.com", "--password-stdin"],
        "short\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("password"), "{err}");

    let (code, org_id, err) = admin(
        dir.path(),
        &db,
        &["create-org", "--owner", "root@example.com", "--name", "Acme", "--slug", "acme"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(org_id.starts_with("org_"));
    let (code, _, err) =
        admin(dir.path(), &db, &["create-org", "--owner", "nobody@example.com", "--name", "X"], "");
    assert_eq!(code, 1);
    assert!(err.contains("nobody@example.com"), "{err}");

    let (code, key, err) = admin(
        dir.path(),
        &db,
        &["create-api-key", "--org", "acme", "--project", "default", "--scopes", "send,read"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(key.starts_with("rly_"), "{key}");
    let (code, _, err) =
        admin(dir.path(), &db, &["create-api-key", "--org", "acme", "--scopes", "root"], "");
    assert_eq!(code, 1);
    assert!(err.contains("scopes.0"), "{err}");

    // the provisioned user signs in, and the key works against the running service
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/v1/auth/sign-in",
            None,
            Some(serde_json::json!({"email": "root@example.com", "password": "a long enough password"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, projects) = app.get_as(&key, "/v1/projects").await;
    assert_eq!(status, 200);
    assert_eq!(projects["data"][0]["slug"], "default");
    assert_eq!(projects["data"][0]["organizationId"], org_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}:", crate::harness::unique("logs"));
    let mut serving = Serving::start_with(dir.path(), &db, &prefix, &[("RUST_LOG", "debug")]);
    serving.wait_ready().await;
    let base = format!("http://127.0.0.1:{}", serving.port);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let password = "a secret password 123";
    let signed_up: serde_json::Value = client
        .post(format!("{base}/v1/auth/sign-up"))
        .json(
            &serde_json::json!({"email": "logs@example.com", "password": password, "name": "Logs"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_up["token"].as_str().unwrap().to_owned();
    let created: serde_json::Value = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "k", "scopes": ["read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let listed = client.get(format!("{base}/v1/projects")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let provider = client
        .post(format!("{base}/v1/providers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "SES", "channel": "email", "providerType": "ses",
            "credentials": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": aws_secret},
            "config": {"region": "eu-west-1", "fromAddress": "noreply@example.com"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(provider.status(), 201);
    let projects: serde_json::Value = listed.json().await.unwrap();
    let webhook: serde_json::Value = client
        .post(format!("{base}/v1/projects/{}/webhooks", projects["data"][0]["id"].as_str().unwrap()))
        .bearer_auth(&token)
        .json(&serde_json::json!({"url": "https://hooks.example.com/x", "eventTypes": ["message.sent"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_secret = webhook["secret"].as_str().expect("webhook secret").to_owned();
    let failed = client
        .post(format!("{base}/v1/auth/sign-in"))
        .json(&serde_json::json!({"email": "logs@example.com", "password": "wrong but secret 456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    let (code, log) = serving.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.lines().count() > 5, "debug logging was on: {log}");
    for secret in [
        password,
        "wrong but secret 456",
        token.as_str(),
        key.as_str(),
        aws_secret,
        &webhook_secret,
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
    crate::harness::clear_redis_prefix(&prefix).await.unwrap();
}

/// The README's quick start is `cargo run --release -- serve`: with a second binary in the
/// package (relayit-bench), that only works while `relayit` is the default one.
#[test]
fn cargo_run_starts_relayit() {
    let manifest: toml::Table =
        toml::from_str(include_str!("../../Cargo.toml")).expect("Cargo.toml parses");
    assert_eq!(manifest["package"]["default-run"].as_str(), Some("relayit"));
}
