//! RelayIt behind PgBouncer (in session mode as is, in transaction mode without prepared
//! statements), and with its lag-tolerant reads on a streaming replica: real engines from
//! Debian's binaries, started by the tests on free ports.
//!
//! - PgBouncer (`pgbouncer`, 1.18 on Debian 12, which keeps no track of prepared statements) in
//!   `pool_mode = transaction`, in front of the tests' PostgreSQL: with
//!   `database.prepared_statements = false` the whole path works through it; with prepared
//!   statements a statement prepared on one server connection is missing on the next, which
//!   the first test provokes deterministically.
//! - A primary (`initdb`) and a streaming replica (`pg_basebackup -R`) of its own: the message
//!   log reads from the replica (pausing its replay hides new messages from the lists while
//!   sending, authentication and idempotency go on on the primary), and readiness reports the
//!   replica.
//!
//! A missing binary fails the test (`.ci/run` installs pgbouncer; PostgreSQL's server binaries
//! come with the postgresql package). PostgreSQL and PgBouncer refuse to run as root: as root
//! the tests run them as the `postgres` user, in directories it owns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use relayit::db::CacheStatement;
use serde_json::json;

use crate::harness::{TestApp, TestDb, admin_url, count, free_port, sandbox_provider};

/// The user to run PostgreSQL and PgBouncer as: `postgres` when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    let uid = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
    };
    if uid(&["-u"]) != 0 {
        return None;
    }
    Some((uid(&["-u", "postgres"]), uid(&["-g", "postgres"])))
}

/// The user of the tests' PostgreSQL (TEST_DATABASE_URL), whom PgBouncer logs in as.
fn admin_user() -> String {
    let admin = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    match admin.username() {
        "" => "postgres".to_owned(),
        user => user.to_owned(),
    }
}

/// `program` run as [`run_as`]'s user.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    if let Some((uid, gid)) = run_as() {
        // from a directory the user may enter (initdb looks at its own)
        command.uid(uid).gid(gid).current_dir("/");
    }
    command
}

/// A temporary directory [`run_as`]'s user owns.
fn owned_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    if let Some((uid, gid)) = run_as() {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown to postgres");
    }
    dir
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn succeeded(output: std::io::Result<Output>, what: &str) {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e} (is it installed?)"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// --- PgBouncer ------------------------------------------------------------------------------

/// A PgBouncer of the test's own in transaction mode, in front of the tests' PostgreSQL (any
/// database, as the admin URL's user), with `pool_size` server connections per database;
/// killed when dropped.
struct PgBouncer {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    fn start(mode: &str, pool_size: usize) -> PgBouncer {
        let admin = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        let user = admin_user();
        let password = admin.password().map(|p| format!(" password={p}")).unwrap_or_default();
        let dir = owned_tempdir();
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port} user={user}{password}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             admin_users = {user}\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 200\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            host = admin.host_str().unwrap_or("127.0.0.1"),
            server_port = admin.port().unwrap_or(5432),
            auth = path("userlist.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(dir.path().join("userlist.txt"), format!("\"{user}\" \"\"\n"))
            .expect("write userlist.txt");
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        // Debian puts it in /usr/sbin, which a user's PATH may lack
        let bin = Path::new("/usr/sbin/pgbouncer");
        let child = command(if bin.is_file() { bin } else { Path::new("pgbouncer") })
            .arg(dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer must be installed for this test (.ci/run installs it)");
        wait_for_port(port, "pgbouncer", &dir.path().join("pgbouncer.log"));
        PgBouncer { port, child, dir }
    }

    /// `url` (a database of the tests' PostgreSQL) through this PgBouncer.
    fn url(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("a database URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(self.port)).expect("a port");
        url.into()
    }

    /// `SHOW <what>` on the admin console (which speaks simple queries only: psql), its rows
    /// as column name -> value.
    fn show(&self, what: &str) -> Vec<std::collections::HashMap<String, String>> {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", &admin_user()])
            .args(["-d", "pgbouncer", "-AX", "-F", "|", "-P", "footer=off"])
            .args(["-c", &format!("SHOW {what}")])
            .output()
            .expect("psql must be installed for this test");
        assert!(
            output.status.success(),
            "SHOW {what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines = text.lines();
        let header: Vec<String> =
            lines.next().expect("a header").split('|').map(str::to_owned).collect();
        lines
            .map(|line| header.iter().cloned().zip(line.split('|').map(str::to_owned)).collect())
            .collect()
    }

    /// The row of `database` in `SHOW <what>`.
    fn show_for(&self, what: &str, database: &str) -> std::collections::HashMap<String, String> {
        let rows = self.show(what);
        rows.iter()
            .find(|row| row.get("database").map(String::as_str) == Some(database))
            .cloned()
            .unwrap_or_else(|| panic!("SHOW {what} has no row for {database}: {rows:?}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two connections of one pool through PgBouncer with two server connections: `a` runs a hot
/// (cached) statement, `b` then holds that server connection in a transaction, and `a` runs
/// its statement again, which PgBouncer sends to the other server connection. A statement
/// prepared by name is not there; an unnamed one is parsed with its execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_needs_prepared_statements_off() {
    let db = TestDb::empty().await;
    let bouncer = PgBouncer::start("transaction", 2);
    for prepared in [true, false] {
        let config = relayit::config::DatabaseConfig {
            url: bouncer.url(&db.url),
            max_connections: 2,
            prepared_statements: prepared,
            ..Default::default()
        };
        let pool = relayit::db::pool(&config).expect("a pool");
        let mut a = pool.get().await.expect("a connection through pgbouncer");
        let mut b = pool.get().await.expect("another connection through pgbouncer");
        let hot = || diesel::sql_query("SELECT 1 AS one").cached();

        hot().execute(&mut *a).await.expect("the first run");
        b.batch_execute("BEGIN").await.expect("BEGIN");
        diesel::sql_query("SELECT 2")
            .execute(&mut *b)
            .await
            .expect("a statement in b's transaction");
        let again = hot().execute(&mut *a).await;
        b.batch_execute("COMMIT").await.expect("COMMIT");

        if prepared {
            let error = again.expect_err("a named statement is missing on the other server");
            assert!(error.to_string().contains("does not exist"), "{error}");
        } else {
            again.expect("an unnamed statement runs on any server connection");
        }
        // both runs went through PgBouncer's two server connections, in transaction mode
        let pools = bouncer.show_for("POOLS", &db.name);
        assert_eq!(pools["pool_mode"], "transaction", "{pools:?}");
        let servers: u32 = ["sv_active", "sv_idle", "sv_used"]
            .iter()
            .map(|c| pools[*c].parse::<u32>().expect("a count"))
            .sum();
        assert_eq!(servers, 2, "{pools:?}\n{}", bouncer.log());
    }
}

/// The whole path through PgBouncer in transaction mode: sign-up, keys, providers, sending,
/// delivery (the worker's claims), the log; with fewer server connections than RelayIt opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayit_runs_through_pgbouncer_in_transaction_mode() {
    let bouncer = PgBouncer::start("transaction", 2);
    let app = TestApp::spawn_with(|c| {
        c.database.url = bouncer.url(&c.database.url);
        c.database.prepared_statements = false;
        c.database.max_connections = 6;
    })
    .await;
    let (status, ready) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");

    let (owner, key) = app.sender("Bouncer").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    let messages: Vec<_> = (0..10)
        .map(|i| json!({"channel": "sms", "to": format!("+1415555{i:04}"), "content": {"text": "hi"}}))
        .collect();
    let (status, batch) = app.post_as(&key, "/v1/send/batch", json!({"messages": messages})).await;
    assert_eq!(status, 202, "{batch}");
    let mut ids: Vec<String> = batch["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("accepted").to_owned())
        .collect();
    let one = json!({"channel": "sms", "to": "+14155550199", "content": {"text": "one"}});
    ids.push(app.send_message(&key, one).await);
    for id in &ids {
        app.wait_for_status(&key, id, "sent").await;
    }
    let (status, log) =
        app.get_as(&key, &format!("/v1/projects/{}/messages?status=sent", owner.project_id)).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["data"].as_array().expect("data").len(), ids.len(), "{log}");
    // a search, which the log's index serves
    let (status, found) = app
        .get_as(&key, &format!("/v1/projects/{}/messages?search=14155550199", owner.project_id))
        .await;
    assert_eq!(status, 200, "{found}");

    // RelayIt's pool holding four connections at once, each running a statement: four
    // clients of PgBouncer on its two server connections
    let pool = &app.running().state().db;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.expect("a pooled connection"));
    }
    for conn in &mut held {
        diesel::sql_query("SELECT 1").execute(&mut **conn).await.expect("a statement");
    }
    let clients = bouncer
        .show("CLIENTS")
        .iter()
        .filter(|c| c.get("database").map(String::as_str) == Some(app.db.name.as_str()))
        .count();
    drop(held);
    assert!(clients >= 4, "{clients} clients");

    // it all went through PgBouncer, in transaction mode, on at most two server connections
    let pools = bouncer.show_for("POOLS", &app.db.name);
    assert_eq!(pools["pool_mode"], "transaction", "{pools:?}");
    let servers: u32 = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
        .iter()
        .map(|c| pools[*c].parse::<u32>().expect("a count"))
        .sum();
    assert!(servers <= 2, "{pools:?}");
    let stats = bouncer.show_for("STATS", &app.db.name);
    let transactions: u64 = stats["total_xact_count"].parse().expect("a count");
    assert!(transactions > 50, "{stats:?}");
    let log = bouncer.log();
    assert!(!log.contains("prepared statement"), "{log}");
}

/// PgBouncer in session mode needs no setting: each of RelayIt's connections keeps one server
/// connection, prepared statements and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayit_runs_through_pgbouncer_in_session_mode_as_is() {
    let bouncer = PgBouncer::start("session", 8);
    let app = TestApp::spawn_with(|c| c.database.url = bouncer.url(&c.database.url)).await;
    let (owner, key) = app.sender("Session").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    let one = json!({"channel": "sms", "to": "+14155550199", "content": {"text": "one"}});
    let id = app.send_message(&key, one).await;
    app.wait_for_status(&key, &id, "sent").await;
    let (status, log) =
        app.get_as(&key, &format!("/v1/projects/{}/messages", owner.project_id)).await;
    assert_eq!((status, log["data"][0]["id"].as_str()), (200, Some(id.as_str())), "{log}");
    let pools = bouncer.show_for("POOLS", &app.db.name);
    assert_eq!(pools["pool_mode"], "session", "{pools:?}");
    let stats = bouncer.show_for("STATS", &app.db.name);
    assert!(stats["total_xact_count"].parse::<u64>().expect("a count") > 10, "{stats:?}");
}

// --- a primary and its streaming replica ----------------------------------------------------

/// PostgreSQL's server binaries (initdb, postgres, pg_basebackup), the newest installed.
fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    dirs.retain(|dir| dir.join("initdb").is_file() && dir.join("pg_basebackup").is_file());
    dirs.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect(
        "PostgreSQL's server binaries (initdb, pg_basebackup) must be installed for this test \
         (/usr/lib/postgresql/<version>/bin; the postgresql package)",
    )
}

/// One PostgreSQL server of the test's own, stopped (immediately) when dropped.
struct Postgres {
    port: u16,
    data: PathBuf,
    child: Option<Child>,
}

impl Postgres {
    /// Starts the server of `data` on a free port, with its socket in `dir`.
    fn start(data: PathBuf, dir: &Path) -> Postgres {
        let port = free_port();
        let log = data.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("a log file");
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown the log");
        }
        let child = command(pg_bindir().join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "fsync=off", "-c", "wal_level=replica", "-c", "max_wal_senders=4"])
            .args(["-c", "hot_standby=on", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("postgres must be installed for this test");
        wait_for_port(port, "postgres", &log);
        Postgres { port, data, child: Some(child) }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Waits until the server lets us in (a replica listens before it accepts connections).
    async fn connect(&self, database: &str) -> AsyncPgConnection {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match AsyncPgConnection::establish(&self.url(database)).await {
                Ok(conn) => return conn,
                Err(e) => assert!(Instant::now() < deadline, "{}: {e}", self.data.display()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server at once (SIGQUIT: the immediate shutdown, which also ends its
    /// backends; SIGKILL would leave them running).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A primary with RelayIt's schema in database `relayit`, and a streaming replica of it.
struct Replicated {
    primary: Postgres,
    replica: Postgres,
    _dir: tempfile::TempDir,
}

impl Replicated {
    async fn start() -> Replicated {
        let dir = owned_tempdir();
        let bin = pg_bindir();
        let primary_data = dir.path().join("primary");
        succeeded(
            command(bin.join("initdb"))
                .arg("-D")
                .arg(&primary_data)
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
                .output(),
            "initdb",
        );
        let primary = Postgres::start(primary_data, dir.path());
        relayit::db::migrate(&primary.url("relayit")).await.expect("migrate the primary");

        let replica_data = dir.path().join("replica");
        succeeded(
            command(bin.join("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres"])
                .arg("-D")
                .arg(&replica_data)
                .args(["-R", "-X", "stream", "--no-sync"])
                .output(),
            "pg_basebackup",
        );
        let replica = Postgres::start(replica_data, dir.path());
        let mut conn = replica.connect("relayit").await;
        #[derive(diesel::QueryableByName)]
        struct Recovery {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            standby: bool,
        }
        let recovery: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS standby")
            .get_result(&mut conn)
            .await
            .expect("ask the replica");
        assert!(recovery.standby, "the replica is not in recovery");
        Replicated { primary, replica, _dir: dir }
    }

    /// Runs `sql` on the replica (pausing and resuming its replay).
    async fn on_replica(&self, sql: &str) {
        let mut conn = self.replica.connect("relayit").await;
        diesel::sql_query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The ids of the project's message log, as the API lists it.
async fn listed(app: &TestApp, key: &str, project: &str) -> Vec<String> {
    let (status, page) = app.get_as(key, &format!("/v1/projects/{project}/messages")).await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Polls the log until `id` is listed.
async fn wait_listed(app: &TestApp, key: &str, project: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listed(app, key, project).await.iter().any(|listed| listed == id) {
        assert!(Instant::now() < deadline, "{id} never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_from_the_replica_and_decisions_from_the_primary() {
    let mut cluster = Replicated::start().await;
    let (primary, replica) = (cluster.primary.url("relayit"), cluster.replica.url("relayit"));
    let app = TestApp::spawn_with(|c| {
        c.database.url = primary;
        c.database.read_url = Some(replica);
        c.database.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let (status, ready) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["postgresReplica"], "ok", "{ready}");

    let (owner, key) = app.sender("Replica").await;
    app.create_provider(&owner.token, sandbox_provider("Sandbox", "sms")).await;
    let text = |to: &str| json!({"channel": "sms", "to": to, "content": {"text": "hi"}});
    let first = app.send_message(&key, text("+14155550101")).await;
    wait_listed(&app, &key, &owner.project_id, &first).await;

    // the replica stops replaying: what the primary commits from now on, it does not show
    cluster.on_replica("SELECT pg_wal_replay_pause()").await;
    // the same request twice, under one idempotency key
    let send_paused = || {
        app.client
            .post(app.url("/v1/send"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "paused-1")
            .json(&text("+14155550102"))
            .send()
    };
    let answer = send_paused().await.expect("send");
    assert_eq!(answer.status(), 202);
    let second = answer.json::<serde_json::Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // the worker claims and delivers it on the primary
    let mut conn = cluster.primary.connect("relayit").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&mut conn, &format!("messages WHERE id = '{second}' AND status = 'sent'")).await
        == 0
    {
        assert!(Instant::now() < deadline, "{second} was not delivered on the primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the same idempotency key is recognised (on the primary): the same message, not another
    let again = send_paused().await.expect("send again");
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again = again.json::<serde_json::Value>().await.expect("JSON");
    assert_eq!(again["id"], second.as_str(), "{again}");
    assert_eq!(count(&mut conn, "messages WHERE recipient = '+14155550102'").await, 1);
    // a key created now authenticates at once (keys are looked up on the primary)
    let fresh = app.create_api_key(&owner, &["send", "read"], Some(&owner.project_id)).await;
    app.send_message(&fresh, text("+14155550103")).await;
    // ... but the lists read the paused replica
    let ids = listed(&app, &key, &owner.project_id).await;
    assert!(ids.contains(&first) && !ids.contains(&second), "{ids:?}");
    // a message the replica does not have yet is read from the primary: its sender, polling
    // it, finds it
    let (status, found) = app.get_as(&key, &format!("/v1/messages/{second}")).await;
    assert_eq!((status, &found["status"]), (200, &json!("sent")), "{found}");
    // another tenant's message is still not found, on either
    let (stranger, _) = app.sender("Stranger").await;
    let (status, _) = app.get_as(&stranger.token, &format!("/v1/messages/{second}")).await;
    assert_eq!(status, 404);

    cluster.on_replica("SELECT pg_wal_replay_resume()").await;
    wait_listed(&app, &key, &owner.project_id, &second).await;

    // the replica goes away: readiness says so but stays ready (sending does not need it);
    // the lists answer 503 until it returns
    cluster.replica.stop();
    let (status, ready) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["postgresReplica"], "unreachable", "{ready}");
    assert_eq!(ready["checks"]["postgres"], "ok", "{ready}");
    let (status, body) =
        app.get_as(&key, &format!("/v1/projects/{}/messages", owner.project_id)).await;
    assert_eq!(status, 503, "{body}");
    app.send_message(&key, text("+14155550104")).await;
}
