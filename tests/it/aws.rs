//! The AWS connectors end to end: SES and SNS through `moto_server` (started by each test on a
//! free loopback port, read back through its own record of what it was sent), `/verify`, and SES
//! delivery receipts through signed SNS notifications (a certificate made here with the openssl
//! CLI, served by a local stub that also plays SNS's subscription confirmation).
//!
//! moto_server and openssl are required: a test fails, loudly, without them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestApp;
use crate::harness::stub::{Recorded, Reply, Stub};
use base64::Engine as _;
use serde_json::{Value, json};

/// A moto_server process on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = crate::harness::free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server is required for the AWS tests (pip install 'moto[server]'): {e}"
                )
            });
        let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(format!("{}/moto-api/data.json", moto.url)).await.is_ok() {
                return moto;
            }
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// moto's record of everything it holds, by service.
    async fn data(&self) -> Value {
        reqwest::get(format!("{}/moto-api/data.json", self.url))
            .await
            .expect("moto data")
            .json()
            .await
            .expect("moto data is JSON")
    }

    /// The email moto recorded with SES message id `id`.
    async fn email(&self, id: &str) -> Value {
        let data = self.data().await;
        data["ses"]["Message"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["id"] == id).cloned())
            .unwrap_or_else(|| panic!("moto has no email {id}: {}", data["ses"]))
    }

    /// The raw (MIME) email moto recorded with SES message id `id`.
    async fn raw_email(&self, id: &str) -> Value {
        let data = self.data().await;
        data["ses"]["RawMessage"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["id"] == id).cloned())
            .unwrap_or_else(|| panic!("moto has no raw email {id}: {}", data["ses"]))
    }

    /// An SES client as a user of the account would have, to set moto up.
    fn ses(&self) -> aws_sdk_sesv2::Client {
        use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
            .endpoint_url(&self.url)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_sesv2::Client::from_conf(config)
    }

    /// Verifies `address` as an SES identity, as a user would before sending from it.
    async fn verify_identity(&self, address: &str) {
        self.ses()
            .create_email_identity()
            .email_identity(address)
            .send()
            .await
            .expect("CreateEmailIdentity");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn app_with_overrides(trusted: Option<String>) -> TestApp {
    TestApp::spawn_with(|c| {
        c.providers.allow_endpoint_overrides = true;
        c.providers.sns_trusted_hosts = trusted.into_iter().collect();
    })
    .await
}

/// An SES credential taking the receipts of [`TOPIC`].
fn ses_provider(endpoint: &str, from: &str) -> Value {
    json!({
        "name": "SES", "channel": "email", "providerType": "ses",
        "credentials": {"accessKeyId": "AKIDTEST", "secretAccessKey": "test-secret"},
        "config": {"region": "us-east-1", "fromAddress": from, "endpointUrl": endpoint,
                   "snsTopicArns": [TOPIC]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_delivers_through_moto_with_sender_recipients_subject_and_bodies() {
    let moto = Moto::start().await;
    let app = app_with_overrides(None).await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;

    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "Zoë <zoe@example.com>",
               "content": {"subject": "Grüße ✓", "text": "Hallo Welt ✓",
                           "cc": ["cc@example.com"], "bcc": ["bcc@example.com"],
                           "replyTo": "reply@example.com"}}),
        )
        .await;
    let message = app.wait_for_status(&key, &id, "sent").await;
    assert_eq!(message["provider"]["type"], "ses");
    let ses_id = message["providerMessageId"].as_str().expect("providerMessageId");
    let email = moto.email(ses_id).await;
    assert_eq!(email["source"], "sender@example.com");
    assert_eq!(email["subject"], "Grüße ✓");
    assert_eq!(email["body"], "Hallo Welt ✓");
    // the display name travels as a MIME encoded-word
    assert_eq!(
        email["destinations"]["ToAddresses"],
        json!(["=?UTF-8?B?Wm/Dqw==?= <zoe@example.com>"])
    );
    assert_eq!(email["destinations"]["CcAddresses"], json!(["cc@example.com"]));
    assert_eq!(email["destinations"]["BccAddresses"], json!(["bcc@example.com"]));

    // html, from the message's own (verified) sender
    moto.verify_identity("news@example.com").await;
    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "bob@example.com",
               "content": {"subject": "News", "html": "<p>Hello <b>Bob</b></p>",
                           "from": "news@example.com"}}),
        )
        .await;
    let message = app.wait_for_status(&key, &id, "sent").await;
    let email = moto.email(message["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(email["source"], "news@example.com");
    assert_eq!(email["destinations"]["ToAddresses"], json!(["bob@example.com"]));
    assert_eq!(email["body"], "<p>Hello <b>Bob</b></p>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_sender_is_a_permanent_ses_rejection() {
    let moto = Moto::start().await;
    let app = app_with_overrides(None).await;
    let (owner, key) = app.sender("Sender").await;
    app.create_provider(&owner.token, ses_provider(&moto.url, "unverified@example.com")).await;
    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "a@example.com",
               "content": {"subject": "Hi", "text": "Hello"}}),
        )
        .await;
    let message = app.wait_for_status(&key, &id, "failed").await;
    // permanent: one attempt, no retry
    assert_eq!(message["attempts"], 1);
    let reason = message["statusReason"].as_str().unwrap();
    assert!(reason.starts_with("SES MessageRejected: "), "{reason}");
    assert!(reason.contains("unverified@example.com"), "{reason}");
    let failed = message["events"].as_array().unwrap().last().unwrap();
    assert_eq!(failed["details"]["tries"][0]["result"], "permanent");
    assert!(moto.data().await["ses"]["Message"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_delivers_sms_through_moto_and_verifies() {
    let moto = Moto::start().await;
    let app = app_with_overrides(None).await;
    let (owner, key) = app.sender("Sender").await;
    let provider = app
        .create_provider(
            &owner.token,
            json!({"name": "SNS", "channel": "sms", "providerType": "sns",
               "credentials": {"accessKeyId": "AKIDTEST", "secretAccessKey": "test-secret"},
               "config": {"region": "eu-west-1", "senderId": "RelayIt", "smsType": "Transactional",
                          "endpointUrl": moto.url}}),
        )
        .await;
    let id = app.send_message(&key, json!({"channel": "sms", "to": "+14155550123", "content": {"text": "Your code: 123 456 ✓"}}),
    )
    .await;
    let message = app.wait_for_status(&key, &id, "sent").await;
    let sns_id = message["providerMessageId"].as_str().unwrap();
    let data = moto.data().await;
    let sms = data["sns"]["SMS"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["message_id"] == sns_id))
        .unwrap_or_else(|| panic!("moto has no SMS {sns_id}: {}", data["sns"]));
    assert_eq!(sms["phone_number"], "+14155550123");
    assert_eq!(sms["message"], "Your code: 123 456 ✓");

    let (status, result) =
        app.post_as(&owner.token, &format!("/v1/providers/{provider}/verify"), json!({})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["detail"].as_str().unwrap().contains("eu-west-1"), "{result}");
}

/// A stand-in for SES's GetAccount (moto has none): the account behind `AKIDGOOD` may send;
/// any other key is refused as AWS refuses a bad signature.
async fn ses_account_stub() -> Stub {
    Stub::start(|request: &Recorded| {
        if (request.method.as_str(), request.path.as_str()) != ("GET", "/v2/email/account") {
            return Reply::text(404, "");
        }
        if request.header("authorization").unwrap_or_default().contains("Credential=AKIDGOOD/") {
            Reply::json(
                200,
                json!({"SendingEnabled": true, "ProductionAccessEnabled": false,
                    "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0}}),
            )
        } else {
            Reply::json(
                403,
                json!({"message": "The request signature we calculated does not match the signature you provided."}),
            )
            .with_header("x-amzn-ErrorType", "SignatureDoesNotMatch")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_verify_reports_the_account_or_the_refusal() {
    let stub = ses_account_stub().await;
    let app = app_with_overrides(None).await;
    let owner = app.sign_up("Vera").await;
    let endpoint = stub.url();
    let mut body = ses_provider(&endpoint, "sender@example.com");
    body["credentials"]["accessKeyId"] = json!("AKIDGOOD");
    let good = app.create_provider(&owner.token, body).await;
    let (status, result) =
        app.post_as(&owner.token, &format!("/v1/providers/{good}/verify"), json!({})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["detail"],
        "SES account in us-east-1: sending enabled, sandbox (verified recipients only), 3 of \
         200 messages sent in the last 24 hours, at most 1 per second"
    );

    let mut body = ses_provider(&endpoint, "sender@example.com");
    body["name"] = json!("Bad SES");
    let bad = app.create_provider(&owner.token, body).await;
    let (status, result) =
        app.post_as(&owner.token, &format!("/v1/providers/{bad}/verify"), json!({})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], false, "{result}");
    let detail = result["detail"].as_str().unwrap();
    assert!(detail.starts_with("credential: SES SignatureDoesNotMatch: "), "{detail}");
    assert!(!detail.contains("test-secret"), "{detail}");
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_overrides_are_refused_at_delivery_once_the_operator_disallows_them() {
    let moto = Moto::start().await;
    let mut app = app_with_overrides(None).await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;
    app.shutdown().await.expect("shutdown");
    app.restart_with(|c| c.providers.allow_endpoint_overrides = false).await;
    let id = app.send_message(&key, json!({"channel": "email", "to": "a@example.com", "content": {"subject": "Hi", "text": "x"}}),
    )
    .await;
    let message = app.wait_for_status(&key, &id, "failed").await;
    assert!(
        message["statusReason"].as_str().unwrap().contains("providers.allow_endpoint_overrides"),
        "{message}"
    );
    assert!(moto.data().await["ses"]["Message"].as_array().unwrap().is_empty());
}

// --------------------------------------------------------------------------------------------
// Delivery receipts
// --------------------------------------------------------------------------------------------

/// An RSA key and a self-signed certificate for it, made with the openssl CLI.
struct SigningKey {
    dir: tempfile::TempDir,
}

impl SigningKey {
    fn new() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=sns.test", "-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("the openssl CLI is required for the receipt tests: {e}"));
        assert!(status.success(), "openssl could not make a certificate");
        SigningKey { dir }
    }

    fn certificate(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("cert.pem")).unwrap()
    }

    /// Base64 of the RSA PKCS#1 v1.5 signature of `text` with `digest` (sha1 or sha256).
    fn sign(&self, text: &str, digest: &str) -> String {
        let input = self.dir.path().join(format!("input-{}", uuid::Uuid::now_v7()));
        std::fs::write(&input, text).unwrap();
        let output = Command::new("openssl")
            .args(["dgst", &format!("-{digest}"), "-sign"])
            .arg(self.dir.path().join("key.pem"))
            .arg(&input)
            .output()
            .expect("openssl dgst");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        base64::engine::general_purpose::STANDARD.encode(output.stdout)
    }
}

/// A stub playing SNS: serves the signing certificate at `/cert.pem` and takes subscription
/// confirmations at `/confirm?Token=...`.
async fn sns_stub(certificate: Vec<u8>) -> Stub {
    let certificate = String::from_utf8(certificate).expect("a PEM certificate");
    Stub::start(move |request: &Recorded| match request.path.as_str() {
        "/cert.pem" => Reply::text(200, certificate.clone()),
        "/confirm" => Reply::text(200, "<ConfirmSubscriptionResponse/>"),
        _ => Reply::text(404, ""),
    })
    .await
}

/// The requests `stub` had at `path`, as their query strings.
fn requests_at(stub: &Stub, path: &str) -> Vec<String> {
    stub.requests().into_iter().filter(|r| r.path == path).map(|r| r.query).collect()
}

/// An SNS message signed as SNS signs it (AWS's documented string to sign), written out here
/// independently of the server's code.
fn signed(key: &SigningKey, cert_url: &str, version: &str, mut fields: Value) -> Value {
    let kind = fields["Type"].as_str().unwrap().to_owned();
    let names: &[&str] = if kind == "Notification" {
        &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    } else {
        &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    };
    let mut text = String::new();
    for name in names {
        if let Some(value) = fields[name].as_str() {
            text.push_str(&format!("{name}\n{value}\n"));
        }
    }
    let digest = if version == "1" { "sha1" } else { "sha256" };
    fields["SignatureVersion"] = json!(version);
    fields["Signature"] = json!(key.sign(&text, digest));
    fields["SigningCertURL"] = json!(cert_url);
    fields
}

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

/// An SNS `Timestamp`, `minutes` from now.
fn timestamp(minutes: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A notification of [`TOPIC`] carrying `event`, published just now.
fn notification(event: Value) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": uuid::Uuid::now_v7().to_string(),
        "TopicArn": TOPIC,
        "Message": event.to_string(),
        "Timestamp": timestamp(0),
    })
}

/// A subscription confirmation of `topic`, signed, whose SubscribeURL is the stub's `/confirm`.
fn confirmation(key: &SigningKey, stub: &Stub, topic: &str, token: &str) -> Value {
    let addr = stub.addr;
    signed(
        key,
        &format!("http://{addr}/cert.pem"),
        "1",
        json!({"Type": "SubscriptionConfirmation", "MessageId": uuid::Uuid::now_v7().to_string(),
               "TopicArn": topic, "Token": token, "Message": "You have chosen to subscribe...",
               "SubscribeURL": format!("http://{addr}/confirm?Action=ConfirmSubscription&Token={token}"),
               "Timestamp": timestamp(0)}),
    )
}

fn ses_event(kind: &str, ses_id: &str) -> Value {
    ses_event_for(kind, ses_id, "a@example.com")
}

/// An SES event of `kind` whose recipient (delivered, bounced or complaining) is `to`.
fn ses_event_for(kind: &str, ses_id: &str, to: &str) -> Value {
    let mut event = json!({"eventType": kind, "mail": {"messageId": ses_id}});
    match kind {
        "Delivery" => {
            event["delivery"] = json!({"timestamp": "2026-11-27T10:00:01.000Z",
                "recipients": [to], "smtpResponse": "250 2.0.0 OK"})
        }
        "Bounce" => {
            event["bounce"] = json!({"bounceType": "Permanent", "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": to,
                                       "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]})
        }
        "Complaint" => {
            event["complaint"] = json!({"complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": to}]})
        }
        _ => {}
    }
    event
}

/// Posts an SNS message as SNS does (JSON in a text/plain body).
async fn post_sns(app: &TestApp, credential: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url(&format!("/v1/inbound/ses/{credential}")))
        .header("content-type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", body["Type"].as_str().unwrap_or_default())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn event_count(app: &TestApp, key: &str, id: &str) -> usize {
    let (_, message) = app.get_as(key, &format!("/v1/messages/{id}")).await;
    message["events"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_ses_receipts_move_messages_and_forgeries_change_nothing() {
    let key_pair = SigningKey::new();
    let stub = sns_stub(key_pair.certificate()).await;
    let stub_addr = stub.addr;
    let moto = Moto::start().await;
    let app = app_with_overrides(Some(stub_addr.to_string())).await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    let credential =
        app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;
    let cert_url = format!("http://{stub_addr}/cert.pem");

    // the subscription is confirmed at its SubscribeURL
    let confirmation = confirmation(&key_pair, &stub, TOPIC, "token-1");
    let (status, answer) = post_sns(&app, &credential, &confirmation).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("confirmed")), "{answer}");
    assert_eq!(requests_at(&stub, "/confirm"), ["Action=ConfirmSubscription&Token=token-1"]);

    let mut sent = Vec::new();
    for to in ["a@example.com", "b@example.com"] {
        let id = app
            .send_message(
                &key,
                json!({"channel": "email", "to": to, "content": {"subject": "Hi", "text": "x"}}),
            )
            .await;
        let message = app.wait_for_status(&key, &id, "sent").await;
        sent.push((id, message["providerMessageId"].as_str().unwrap().to_owned()));
    }
    let (first, first_ses) = &sent[0];
    let events_before = event_count(&app, &key, first).await;

    // forgeries: a tampered message, a foreign certificate host, an unsigned one
    let mut tampered =
        signed(&key_pair, &cert_url, "2", notification(ses_event("Delivery", "someone-else")));
    tampered["Message"] = json!(ses_event("Delivery", first_ses).to_string());
    let foreign = signed(
        &key_pair,
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "2",
        notification(ses_event("Delivery", first_ses)),
    );
    let mut unsigned = notification(ses_event("Delivery", first_ses));
    unsigned["SignatureVersion"] = json!("1");
    unsigned["Signature"] = json!("");
    unsigned["SigningCertURL"] = json!(cert_url);
    for forgery in [tampered, foreign, unsigned] {
        let (status, answer) = post_sns(&app, &credential, &forgery).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(event_count(&app, &key, first).await, events_before);

    // a genuine delivery, twice (SNS may repeat itself): applied once
    let delivery =
        signed(&key_pair, &cert_url, "2", notification(ses_event("Delivery", first_ses)));
    let (status, answer) = post_sns(&app, &credential, &delivery).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");
    let (status, answer) = post_sns(&app, &credential, &delivery).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("ignored")), "{answer}");
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "delivered", "{message}");
    let events = message["events"].as_array().unwrap();
    assert_eq!(events.len(), events_before + 1);
    let last = events.last().unwrap();
    assert_eq!(last["status"], "delivered");
    assert_eq!(last["details"]["eventType"], "Delivery");
    assert_eq!(last["details"]["smtpResponse"], "250 2.0.0 OK");
    assert_eq!(last["details"]["snsMessageId"], delivery["MessageId"]);

    // a complaint after delivery fails it (signature version 1 this time)
    let complaint =
        signed(&key_pair, &cert_url, "1", notification(ses_event("Complaint", first_ses)));
    let (status, answer) = post_sns(&app, &credential, &complaint).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(message["statusReason"], "the recipient complained (abuse)");
    // and a late delivery does not revive it
    let late = signed(&key_pair, &cert_url, "2", notification(ses_event("Delivery", first_ses)));
    let (_, answer) = post_sns(&app, &credential, &late).await;
    assert_eq!(answer["result"], "ignored");

    // a permanent bounce of the second message
    let (second, second_ses) = &sent[1];
    let bounce = signed(&key_pair, &cert_url, "2", notification(ses_event("Bounce", second_ses)));
    let (status, answer) = post_sns(&app, &credential, &bounce).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{second}")).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(
        message["statusReason"],
        "bounced (Permanent, General): smtp; 550 5.1.1 user unknown"
    );

    // other event types are acknowledged and ignored
    let open = signed(&key_pair, &cert_url, "2", notification(ses_event("Open", second_ses)));
    let (status, answer) = post_sns(&app, &credential, &open).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("ignored")), "{answer}");

    // the certificate was fetched once
    assert_eq!(requests_at(&stub, "/cert.pem").len(), 1);

    // another tenant's credential cannot touch these messages; unknown credentials are 404
    let other = app.sign_up("Mallory").await;
    let other_credential =
        app.create_provider(&other.token, ses_provider(&moto.url, "m@example.com")).await;
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{second}")).await;
    let before = message["events"].as_array().unwrap().len();
    let complaint =
        signed(&key_pair, &cert_url, "2", notification(ses_event("Complaint", second_ses)));
    let (status, answer) = post_sns(&app, &other_credential, &complaint).await;
    // held in Mallory's organization, where no message will ever carry that id
    assert_eq!((status, answer["result"].as_str()), (200, Some("held")), "{answer}");
    assert_eq!(event_count(&app, &key, second).await, before);
    let (status, _) = post_sns(&app, "prv_missing", &complaint).await;
    assert_eq!(status, 404);
    let (status, answer) = post_sns(&app, &credential, &json!({"Type": 1})).await;
    assert_eq!(status, 400, "{answer}");

    stub.stop().await;
}

/// The error message of a refusal.
fn refusal(status: u16, answer: &Value) -> String {
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    answer["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_credentials_own_topics_and_recent_messages_are_taken() {
    let key_pair = SigningKey::new();
    let stub = sns_stub(key_pair.certificate()).await;
    let cert_url = format!("http://{}/cert.pem", stub.addr);
    let moto = Moto::start().await;
    let app = app_with_overrides(Some(stub.addr.to_string())).await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    let credential =
        app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;

    // anyone's topic, validly signed by SNS, subscribed to the credential's URL: refused, and
    // the subscription is never confirmed
    let foreign_topic = "arn:aws:sns:us-east-1:999999999999:ses-events";
    let (status, answer) =
        post_sns(&app, &credential, &confirmation(&key_pair, &stub, foreign_topic, "t-1")).await;
    let message = refusal(status, &answer);
    assert!(message.contains(foreign_topic), "{message}");
    assert!(message.contains("is not one of this credential's snsTopicArns"), "{message}");
    assert!(requests_at(&stub, "/confirm").is_empty());

    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "a@example.com", "content": {"subject": "Hi", "text": "x"}}),
        )
        .await;
    let sent = app.wait_for_status(&key, &id, "sent").await;
    let ses_id = sent["providerMessageId"].as_str().unwrap().to_owned();
    let events = event_count(&app, &key, &id).await;

    // that topic's events for the message (its SES id read from a recipient's headers)
    let mut bounce = notification(ses_event("Bounce", &ses_id));
    bounce["TopicArn"] = json!(foreign_topic);
    let bounce = signed(&key_pair, &cert_url, "2", bounce);
    let (status, answer) = post_sns(&app, &credential, &bounce).await;
    assert!(refusal(status, &answer).contains("snsTopicArns"));

    // the credential's own topic, but a message older than an hour (a replay) or dated well
    // ahead of our clock
    for minutes in [-61, -24 * 60, 16] {
        let mut old = notification(ses_event("Bounce", &ses_id));
        old["Timestamp"] = json!(timestamp(minutes));
        let old = signed(&key_pair, &cert_url, "2", old);
        let (status, answer) = post_sns(&app, &credential, &old).await;
        let message = refusal(status, &answer);
        assert!(message.contains("minutes"), "{minutes}: {message}");
    }
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(event_count(&app, &key, &id).await, events);

    // a credential that lists no topic takes no SNS message, not even its organization's topic's
    let mut bare = ses_provider(&moto.url, "sender@example.com");
    bare["name"] = json!("SES without topics");
    bare["config"].as_object_mut().unwrap().remove("snsTopicArns");
    let bare = app.create_provider(&owner.token, bare).await;
    let (status, answer) =
        post_sns(&app, &bare, &confirmation(&key_pair, &stub, TOPIC, "t-2")).await;
    assert!(refusal(status, &answer).contains("lists no snsTopicArns"));
    assert!(requests_at(&stub, "/confirm").is_empty());

    // SNS retrying a delivery within the hour, from the credential's topic: taken
    let mut retried = notification(ses_event("Delivery", &ses_id));
    retried["Timestamp"] = json!(timestamp(-50));
    let retried = signed(&key_pair, &cert_url, "2", retried);
    let (status, answer) = post_sns(&app, &credential, &retried).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");
    let (status, answer) =
        post_sns(&app, &credential, &confirmation(&key_pair, &stub, TOPIC, "t-3")).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("confirmed")), "{answer}");
    assert_eq!(requests_at(&stub, "/confirm"), ["Action=ConfirmSubscription&Token=t-3"]);

    // topics must be SNS topic ARNs
    let mut body = ses_provider(&moto.url, "sender@example.com");
    body["config"]["snsTopicArns"] =
        json!([TOPIC, "arn:aws:sqs:us-east-1:123456789012:ses-events"]);
    let (status, answer) = app.post_as(&owner.token, "/v1/providers", body).await;
    assert_eq!(crate::harness::validation_fields(status, &answer), ["config.snsTopicArns.1"]);
    stub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_move_only_the_messages_their_credential_sent() {
    let key_pair = SigningKey::new();
    let stub = sns_stub(key_pair.certificate()).await;
    let cert_url = format!("http://{}/cert.pem", stub.addr);
    let moto = Moto::start().await;
    let trusted = stub.addr.to_string();
    let app = TestApp::spawn_with(|c| {
        c.providers.allow_endpoint_overrides = true;
        c.providers.sns_trusted_hosts = vec![trusted];
        c.delivery.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    // two credentials of one organization, both taking the same topic's receipts
    let mut credentials = Vec::new();
    for slug in ["ses-a", "ses-b"] {
        let mut body = ses_provider(&moto.url, "sender@example.com");
        body["name"] = json!(slug);
        body["slug"] = json!(slug);
        credentials.push(app.create_provider(&owner.token, body).await);
    }
    let (a, b) = (&credentials[0], &credentials[1]);
    let send = async |text: &str| {
        let id = app
            .send_message(
                &key,
                json!({"channel": "email", "to": "a@example.com", "provider": "ses-a",
                       "content": {"subject": "Hi", "text": text}}),
            )
            .await;
        let message = app.wait_for_status(&key, &id, "sent").await;
        (id, message["providerMessageId"].as_str().unwrap().to_owned())
    };

    // a receipt for A's message at B's URL changes nothing; at A's, it applies
    let (first, first_ses) = send("one").await;
    let delivery =
        signed(&key_pair, &cert_url, "2", notification(ses_event("Delivery", &first_ses)));
    let (status, answer) = post_sns(&app, b, &delivery).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("ignored")), "{answer}");
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{first}")).await;
    assert_eq!(message["status"], "sent");
    let (status, answer) = post_sns(&app, a, &delivery).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");

    // receipts that come before the send is recorded are held with their credential: B's
    // bounce (held first) does not touch A's message once it carries the id, A's delivery does
    let early = "0100018f-early-ses-id";
    for (credential, kind) in [(b, "Bounce"), (a, "Delivery")] {
        let receipt = signed(&key_pair, &cert_url, "2", notification(ses_event(kind, early)));
        let (status, answer) = post_sns(&app, credential, &receipt).await;
        assert_eq!((status, answer["result"].as_str()), (200, Some("held")), "{answer}");
    }
    let (second, _) = send("two").await;
    // as the worker's write of `sent` would, had SES been quicker to report than it to record
    app.sql(&format!("UPDATE messages SET provider_message_id = '{early}' WHERE id = '{second}'"))
        .await;
    let message = app.wait_for_status(&key, &second, "delivered").await;
    let statuses: Vec<&str> =
        message["events"].as_array().unwrap().iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, ["received", "queued", "processing", "sent", "delivered"]);
    // both released: B's found a message, of another credential, and moved nothing
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count("held_receipts").await > 0 {
        assert!(Instant::now() < deadline, "held receipts were never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, message) = app.get_as(&key, &format!("/v1/messages/{second}")).await;
    assert_eq!(message["status"], "delivered");
    stub.stop().await;
}

/// The number of emails moto has taken.
async fn emails_taken(moto: &Moto) -> usize {
    moto.data().await["ses"]["Message"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_and_complaints_suppress_the_next_send_until_the_entry_is_deleted() {
    let key_pair = SigningKey::new();
    let stub = sns_stub(key_pair.certificate()).await;
    let moto = Moto::start().await;
    let app = app_with_overrides(Some(stub.addr.to_string())).await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    let credential =
        app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;
    let cert_url = format!("http://{}/cert.pem", stub.addr);
    let suppressions = format!("/v1/projects/{}/suppressions", owner.project_id);
    let email =
        |to: &str| json!({"channel": "email", "to": to, "content": {"subject": "Hi", "text": "x"}});

    // a hard bounce and a complaint, each through the signed SNS path
    for (kind, to) in [("Bounce", "bounced@example.com"), ("Complaint", "angry@example.com")] {
        let id = app.send_message(&key, email(to)).await;
        let message = app.wait_for_status(&key, &id, "sent").await;
        let ses_id = message["providerMessageId"].as_str().unwrap();
        let event =
            signed(&key_pair, &cert_url, "2", notification(ses_event_for(kind, ses_id, to)));
        let (status, answer) = post_sns(&app, &credential, &event).await;
        assert_eq!((status, answer["result"].as_str()), (200, Some("applied")), "{answer}");
    }
    let (status, list) = app.get_as(&owner.token, &suppressions).await;
    assert_eq!(status, 200, "{list}");
    let entries = list["data"].as_array().unwrap();
    let reasons: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["address"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [("angry@example.com", "complaint"), ("bounced@example.com", "hard_bounce")]
    );
    assert!(entries.iter().all(|e| e["messageId"].as_str().is_some_and(|m| m.starts_with("msg_"))));
    let bounced = entries[1]["id"].as_str().unwrap().to_owned();

    // the next sends to those addresses (in another spelling) are not made
    let taken = emails_taken(&moto).await;
    for (to, why) in [
        ("Bounced <Bounced@Example.com>", "because it hard-bounced"),
        ("angry@example.com", "because its recipient complained"),
    ] {
        let id = app.send_message(&key, email(to)).await;
        let message = app.wait_for_status(&key, &id, "failed").await;
        let reason = message["statusReason"].as_str().unwrap();
        assert!(reason.contains("suppression list") && reason.contains(why), "{reason}");
        assert_eq!(message["attempts"], 0, "no attempt spent: {message}");
        assert!(message["provider"].is_null(), "no provider called: {message}");
        let last = message["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["details"]["failure"], "suppressed", "{last}");
        assert_eq!(
            last["details"]["suppression"]["reason"],
            if why.contains("bounced") { "hard_bounce" } else { "complaint" }
        );
    }
    assert_eq!(emails_taken(&moto).await, taken, "moto received nothing");

    // deleting the entry lets the next message through
    let (status, _) = app.delete_as(&owner.token, &format!("{suppressions}/{bounced}")).await;
    assert_eq!(status, 204);
    let id = app.send_message(&key, email("bounced@example.com")).await;
    app.wait_for_status(&key, &id, "sent").await;
    assert_eq!(emails_taken(&moto).await, taken + 1);
    stub.stop().await;
}

/// A project with one-click unsubscribe on: SES gets the whole MIME message (moto keeps no
/// header fields of simple content), with `List-Unsubscribe` and `List-Unsubscribe-Post`, and
/// still sends to every recipient; a project without it sends simple content as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_sends_the_unsubscribe_header_fields_when_the_project_has_them_on() {
    let moto = Moto::start().await;
    let app = TestApp::spawn_with(|c| {
        c.providers.allow_endpoint_overrides = true;
        c.server.public_url = "https://relay.example.com/".to_owned();
        // the project is switched on between two sends: read at every batch
        c.delivery.credential_cache_ttl = Duration::ZERO;
    })
    .await;
    let (owner, key) = app.sender("Sender").await;
    moto.verify_identity("sender@example.com").await;
    app.create_provider(&owner.token, ses_provider(&moto.url, "sender@example.com")).await;
    let email = json!({"channel": "email", "to": "Zoë <zoe@example.com>",
        "content": {"subject": "Grüße", "text": "Hallo", "html": "<p>Hallo</p>",
                    "replyTo": "help@example.com"}});

    // off: simple content, as before
    let id = app.send_message(&key, email.clone()).await;
    let message = app.wait_for_status(&key, &id, "sent").await;
    let simple = moto.email(message["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(simple["subject"], "Grüße");

    let project = format!("/v1/projects/{}", owner.project_id);
    let (status, view) = app
        .patch_as(
            &owner.token,
            &project,
            json!({"oneClickUnsubscribe": true, "unsubscribeMailto": "unsubscribe@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let id = app.send_message(&key, email).await;
    let message = app.wait_for_status(&key, &id, "sent").await;
    let raw = moto.raw_email(message["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(raw["source"], "sender@example.com");
    let destinations: Vec<&str> =
        raw["destinations"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    // moto lists the envelope's recipients and those of the To header
    assert!(
        !destinations.is_empty() && destinations.iter().all(|d| d.ends_with("<zoe@example.com>")),
        "{destinations:?}"
    );
    let mime = crate::harness::smtp_sink::Received {
        mail_from: String::new(),
        rcpt_to: vec![],
        data: raw["raw_data"].as_str().unwrap().to_owned(),
        user: None,
    };
    let list = mime.header("List-Unsubscribe").expect("List-Unsubscribe");
    let token = list
        .strip_prefix("<https://relay.example.com/u/")
        .and_then(|rest| {
            rest.strip_suffix(">, <mailto:unsubscribe@example.com?subject=unsubscribe>")
        })
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(mime.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    assert_eq!(mime.header("Reply-To").as_deref(), Some("help@example.com"));
    assert!(mime.header("Subject").unwrap().starts_with("=?utf-8?b?"), "encoded subject");
    assert!(mime.header("Content-Type").unwrap().starts_with("multipart/alternative"));

    // the link is the message's, and works
    let answer = reqwest::Client::new()
        .post(app.url(&format!("/u/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let (_, list) = app.get_as(&owner.token, &format!("{project}/suppressions")).await;
    assert_eq!(list["data"][0]["address"], "zoe@example.com", "{list}");
    assert_eq!(list["data"][0]["messageId"], id.as_str());
}
