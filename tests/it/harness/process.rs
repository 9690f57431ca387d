//! The `relayit` binary run as a separate process, as an operator runs it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestDb;

/// The binary with an empty environment (nothing leaks in from the test runner), run in
/// `dir` so no ./config.toml is picked up by accident.
pub fn relayit(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relayit"));
    command.env_clear().current_dir(dir).stdin(Stdio::null());
    command
}

/// `relayit serve --role=all` as a process of its own, on its own port, with the test's
/// database and Redis prefix (and a master key generated into `dir`).
pub struct Serving {
    child: Child,
    pub port: u16,
    /// Everything the process logged so far, drained continuously so a chatty process never
    /// blocks on a full pipe.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    pub fn start(dir: &Path, db: &TestDb, prefix: &str) -> Serving {
        Self::start_with(dir, db, prefix, &[])
    }

    pub fn start_with(dir: &Path, db: &TestDb, prefix: &str, env: &[(&str, &str)]) -> Serving {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = relayit(dir)
            .envs(env.iter().copied())
            .args(["serve", "--role=all"])
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", crate::harness::redis_url())
            .env("RELAYIT_REDIS__KEY_PREFIX", prefix)
            .env("RELAYIT_SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("RELAYIT_SERVER__SHUTDOWN_GRACE", "5s")
            .env("RELAYIT_DATA_DIR", dir.join("data"))
            .env("RELAYIT_LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relayit serve");
        let mut child = child;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        let drain = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let mut log = sink.lock().unwrap();
                match line {
                    Ok(line) => log.push_str(&line),
                    Err(e) => log.push_str(&format!("<unreadable log line: {e}>")),
                }
                log.push('\n');
            }
        });
        Serving { child, port, log, drain: Some(drain) }
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        loop {
            let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            if probe.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(drain) = self.drain.take() {
                    drain.join().unwrap();
                }
                panic!("relayit exited early ({status}): {}", self.log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "relayit did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and returns the exit code and everything logged.
    pub fn terminate(mut self) -> (i32, String) {
        let sent =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}

impl Serving {
    /// The process id, for reading `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Serving {
    /// A test that fails before `terminate` must not leave the process running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child `relayit` process, killed (SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    pub(super) _data: tempfile::TempDir,
}

impl Process {
    /// SIGKILL: no shutdown, no cleanup, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill relayit");
        self.child.wait().expect("reap relayit");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
