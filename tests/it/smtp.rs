//! The SMTP connector against a local SMTP server (tests/common/smtp_sink.rs): a proper MIME
//! message end to end from `/v1/send` (from, to, cc, bcc only in the envelope, reply-to, UTF-8
//! subject, text and HTML alternatives, our Message-ID as the provider message id), pooled
//! connections, replies mapped to their kinds, and `/verify` (AUTH then NOOP).

use crate::harness::smtp_sink::SmtpSink;
use crate::harness::{TestApp, message_for, opened_credential};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use relayit::domain::provider_types::ProviderType;
use relayit::providers::connector::Connector;
use relayit::providers::smtp::Smtp;
use reqwest::Method;
use serde_json::json;

const USER: &str = "mailer@example.com";
const PASSWORD: &str = "app password 1";

fn config(port: u16) -> serde_json::Value {
    json!({"host": "127.0.0.1", "port": port, "tls": "none", "fromAddress": "Acme <hello@example.com>"})
}

/// A header value with RFC 2047 `=?utf-8?b?...?=` words, decoded (the space between two
/// encoded words is not part of the text).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for word in value.split(' ') {
        let inner = word.strip_prefix("=?utf-8?b?").and_then(|w| w.strip_suffix("?="));
        let joined = last_encoded && inner.is_some();
        if !out.is_empty() && !joined {
            out.push(' ');
        }
        match inner {
            Some(encoded) => {
                out.push_str(&String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap())
            }
            None => out.push_str(word),
        }
        last_encoded = inner.is_some();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_out_as_proper_mime() {
    let sink = SmtpSink::start(Some((USER, PASSWORD))).await;
    // the sink is on this machine
    let app = TestApp::spawn_with(|c| c.providers.allow_private_targets = true).await;
    let (owner, key) = app.sender("Sam").await;
    let provider = app
        .create_provider(
            &owner.token,
            json!({"name": "SMTP", "channel": "email", "providerType": "smtp",
                "credentials": {"username": USER, "password": PASSWORD}, "config": config(sink.port())}),
        )
        .await;
    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "Alice <alice@example.org>",
                "content": {"subject": "Votre commande ✓", "text": "It shipped.",
                    "html": "<p>It <b>shipped</b>.</p>", "replyTo": "support@example.com",
                    "cc": ["carol@example.org"], "bcc": ["audit@example.com"]}}),
        )
        .await;
    let id = id.as_str();
    let sent = app.wait_for_status(&key, id, "sent").await;
    let message_id = format!("<{id}@example.com>");
    assert_eq!(sent["providerMessageId"], message_id.as_str());

    let received = sink.messages();
    assert_eq!(received.len(), 1);
    let email = &received[0];
    assert_eq!(email.user.as_deref(), Some(USER), "authenticated");
    assert_eq!(email.mail_from, "hello@example.com");
    assert_eq!(email.rcpt_to, ["alice@example.org", "carol@example.org", "audit@example.com"]);
    assert_eq!(email.header("From").as_deref(), Some("Acme <hello@example.com>"));
    assert_eq!(email.header("To").as_deref(), Some("Alice <alice@example.org>"));
    assert_eq!(email.header("Cc").as_deref(), Some("carol@example.org"));
    assert_eq!(email.header("Reply-To").as_deref(), Some("support@example.com"));
    assert_eq!(email.header("Bcc"), None, "bcc only in the envelope");
    assert_eq!(email.header("Message-ID"), Some(message_id));
    let subject = email.header("Subject").unwrap();
    assert_eq!(decode_words(&subject), "Votre commande ✓", "{subject}");
    assert!(email.header("Date").is_some());
    assert_eq!(email.header("MIME-Version").as_deref(), Some("1.0"));
    assert!(email.header("Content-Type").unwrap().starts_with("multipart/alternative"));
    let plain = email.data.find("Content-Type: text/plain; charset=utf-8").expect("a text part");
    let html = email.data.find("Content-Type: text/html; charset=utf-8").expect("an html part");
    assert!(plain < html, "text first, html preferred");
    assert!(email.data.contains("\r\n\r\nIt shipped.\r\n"), "{}", email.data);
    assert!(email.data.contains("<p>It <b>shipped</b>.</p>"), "{}", email.data);

    // verify: a NOOP over an authenticated connection
    let path = format!("/v1/providers/{provider}/verify");
    let noops = sink.noops();
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    // over the connection the worker pooled (which the pool itself checks with a NOOP first)
    assert!(sink.noops() > noops, "a NOOP answered");

    let (status, _) = app
        .patch_as(
            &owner.token,
            &format!("/v1/providers/{provider}"),
            json!({"credentials": {"password": "wrong"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["detail"].as_str().unwrap().starts_with("credential: SMTP 127.0.0.1:"),
        "{result}"
    );
    assert!(result["detail"].as_str().unwrap().contains("535"), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_map_to_kinds_and_connections_are_pooled() {
    let sink = SmtpSink::start(Some((USER, PASSWORD))).await;
    let smtp = Smtp::new(true);
    let credential = opened_credential(
        ProviderType::Smtp,
        json!({"username": USER, "password": PASSWORD}),
        config(sink.port()),
    );
    let email = |to: &str| {
        message_for(
            "email",
            to,
            json!({"subject": "Hello", "text": "Hi there", "html": "<p>Hi</p>"}),
        )
    };
    for to in ["a@example.org", "b@example.org", "c@example.org"] {
        let receipt = smtp.send(&email(to), &credential).await.unwrap();
        assert!(receipt.provider_message_id.ends_with("@example.com>"));
        // the pool takes a connection back in a task of its own
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(sink.connections(), 1, "one pooled connection for the burst");
    assert_eq!(sink.auths(), 1, "authenticated once");

    let rejected = smtp.send(&email("reject@example.org"), &credential).await.unwrap_err();
    assert_eq!(rejected.kind(), "permanent", "{rejected}");
    assert!(rejected.to_string().contains("550"), "{rejected}");
    let later = smtp.send(&email("later@example.org"), &credential).await.unwrap_err();
    assert_eq!(later.kind(), "retryable", "{later}");
    assert!(later.to_string().contains("451"), "{later}");

    let wrong = opened_credential(
        ProviderType::Smtp,
        json!({"username": USER, "password": "nope"}),
        config(sink.port()),
    );
    let refused = smtp.send(&email("a@example.org"), &wrong).await.unwrap_err();
    assert_eq!(refused.kind(), "credential", "{refused}");
    assert!(refused.to_string().contains("535"), "{refused}");
    let anonymous = opened_credential(ProviderType::Smtp, json!({}), config(sink.port()));
    let required = smtp.send(&email("a@example.org"), &anonymous).await.unwrap_err();
    assert_eq!(required.kind(), "credential", "530: {required}");

    // nobody listening: worth another try
    let closed = crate::harness::free_port();
    let gone = opened_credential(ProviderType::Smtp, json!({}), config(closed));
    assert_eq!(smtp.send(&email("a@example.org"), &gone).await.unwrap_err().kind(), "retryable");
    assert_eq!(sink.messages().len(), 3, "nothing more was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_hosts_are_refused_unless_the_operator_allows_them() {
    let sink = SmtpSink::start(Some((USER, PASSWORD))).await;
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Mallory").await;
    // the sink itself, this machine by name, a cloud metadata service
    for host in ["127.0.0.1", "localhost", "169.254.169.254"] {
        let mut config = config(sink.port());
        config["host"] = json!(host);
        let provider = app
            .create_provider(
                &owner.token,
                json!({"name": format!("SMTP {host}"), "channel": "email", "providerType": "smtp",
                    "credentials": {"username": USER, "password": PASSWORD}, "config": config}),
            )
            .await;
        let path = format!("/v1/providers/{provider}/verify");
        let (status, result) = app.call(Method::POST, &path, Some(&owner.token), None).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["ok"], false, "{host}: {result}");
        let detail = result["detail"].as_str().unwrap();
        assert!(detail.starts_with("credential: SMTP host"), "{detail}");
        assert!(detail.contains("providers.allow_private_targets"), "{detail}");
    }
    // and nothing is delivered through them either
    let id = app
        .send_message(
            &key,
            json!({"channel": "email", "to": "alice@example.org",
                "content": {"subject": "Hi", "text": "Hello"}}),
        )
        .await;
    let message = app.wait_for_status(&key, &id, "failed").await;
    assert!(message["statusReason"].as_str().unwrap().contains("private"), "{message}");
    assert_eq!(sink.connections(), 0, "no connection reached the private host");
}
