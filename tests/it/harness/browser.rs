//! A real browser for the dashboard's tests: Debian's headless Chromium driven through the
//! system's chromedriver (WebDriver), one of each per test. Nothing is downloaded: without
//! `/usr/bin/chromedriver` and `/usr/bin/chromium` (the packages `chromium-driver` and
//! `chromium`, which `scripts/test` installs) the test fails, saying so. `CHROMEDRIVER` and
//! `CHROMIUM` point elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    driver: Child,
    pub client: Client,
}

fn program(variable: &str, default: &str) -> String {
    let path = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium and chromium-driver (scripts/test does), \
         or set {variable}"
    );
    path
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_path = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let port = super::free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < WAIT, "chromedriver does not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let options = json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--lang=en-US"],
        });
        let capabilities = serde_json::Map::from_iter([("goog:chromeOptions".to_owned(), options)]);
        // the driver is on loopback: plain HTTP, no TLS stack to choose
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser { driver, client }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Waits for the element `css` to be on the page.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    pub async fn fill(&self, css: &str, text: &str) {
        self.retrying(css, |element| async move { element.send_keys(text).await }).await
    }

    /// Clicks the element `css`, once it is on the page (again, if the page replaced it
    /// meanwhile).
    pub async fn click(&self, css: &str) {
        self.retrying(css, |element| async move { element.click().await.map(|_| ()) }).await
    }

    /// The text of the element `css`, once it is on the page.
    pub async fn text(&self, css: &str) -> String {
        self.retrying(css, |element| async move { element.text().await }).await
    }

    /// Waits until the element `css` shows a text containing `expected` (a page loaded after a
    /// click, a row the page refreshed); returns that text.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.ok(),
                Err(_) => None,
            };
            if let Some(text) = text.as_ref().filter(|t| t.contains(expected)) {
                return text.clone();
            }
            assert!(started.elapsed() < WAIT, "{css} never showed {expected:?}: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `act` on the element `css`, found again while the page replaces it under our feet (a
    /// navigation, the log's refresh): a stale element is not a failure, until `WAIT`.
    async fn retrying<T, F, Fut>(&self, css: &str, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let started = Instant::now();
        loop {
            let element = self.find(css).await;
            match act(element).await {
                Ok(done) => return done,
                Err(e) if e.to_string().contains("stale") && started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{css}: {e}"),
            }
        }
    }

    /// Gives the browser a virtual authenticator (WebDriver's WebAuthn extension): a platform
    /// authenticator that keeps discoverable credentials, verifies its user and consents by
    /// itself, as a laptop's fingerprint reader would with its owner's finger on it. Returns
    /// its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let options = json!({
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        let answer = self.webauthn(http::Method::POST, "authenticator", Some(options)).await;
        answer.as_str().expect("the authenticator's id").to_owned()
    }

    /// The credentials the virtual authenticator `id` holds.
    pub async fn authenticator_credentials(&self, id: &str) -> Vec<serde_json::Value> {
        let path = format!("authenticator/{id}/credentials");
        let answer = self.webauthn(http::Method::GET, &path, None).await;
        answer.as_array().expect("a list of credentials").clone()
    }

    async fn webauthn(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let command = WebAuthn { method, path: path.to_owned(), body };
        self.client
            .issue_cmd(command)
            .await
            .unwrap_or_else(|e| panic!("WebDriver webauthn/{path}: {e}"))
    }

    /// Scrolls the element `css` into view (for a screenshot of what is further down).
    pub async fn scroll_to(&self, css: &str) {
        let element = self.find(css).await;
        let argument = serde_json::to_value(element).expect("an element reference");
        self.client
            .execute("arguments[0].scrollIntoView({block: 'center'})", vec![argument])
            .await
            .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.expect("the current URL").path().to_owned()
    }

    /// Saves what the browser shows as `<name>.png` in the tests' screenshot folder
    /// (`target/tmp/screenshots`, where `scripts/screenshots` takes the README's from).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Ends the browser session (Chromium quits) and the driver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if let Err(e) = client.close().await {
            eprintln!("closing the browser: {e}");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A command of WebDriver's WebAuthn extension, which fantoccini has no method for.
#[derive(Debug)]
struct WebAuthn {
    method: http::Method,
    path: String,
    body: Option<serde_json::Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(|body| body.to_string()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // a test that failed midway: the driver takes its browser with it
        let _ = self.driver.kill();
    }
}
