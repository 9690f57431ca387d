//! No secret and no message body reaches an info-level log line or span: each real connector
//! sends (and fails) once under a subscriber that records every info-level event and span,
//! with their fields, using the service's own log filter.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::harness::smtp_sink::SmtpSink;
use crate::harness::stub::{Reply, Stub};
use crate::harness::{message_for, opened_credential};
use relayit::domain::provider_types::ProviderType;
use relayit::providers::connector::Connector;
use relayit::providers::discord::Discord;
use relayit::providers::ses::Ses;
use relayit::providers::smtp::Smtp;
use relayit::providers::sns::Sns;
use relayit::providers::whatsapp::Whatsapp;
use serde_json::json;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const BODY: &str = "secret-plans-for-tuesday";

// One thread, so the scoped subscriber sees every poll of the connectors' futures.
#[tokio::test(flavor = "current_thread")]
async fn connectors_log_no_secret_and_no_body_at_info() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(relayit::telemetry::filter("info").unwrap())
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let graph = Stub::start(|_| Reply::json(200, json!({"messages": [{"id": "wamid.1"}]}))).await;
    let discord = Stub::start(|_| Reply::json(200, json!({"id": "1300000000000000000"}))).await;
    let sink = SmtpSink::start(Some(("mailer", "smtp-password-0001"))).await;

    let whatsapp = opened_credential(
        ProviderType::WhatsappCloud,
        json!({"accessToken": "EAAG-token-0001", "appSecret": "app-secret-0001"}),
        json!({"phoneNumberId": "106540352242922", "baseUrl": graph.url()}),
    );
    let message = message_for("whatsapp", "+16505551234", json!({"text": BODY}));
    let connector = Whatsapp::new(true).unwrap();
    connector.send(&message, &whatsapp).await.unwrap();
    graph.push(Reply::json(400, json!({"error": {"code": 100, "message": "Invalid parameter"}})));
    connector.send(&message, &whatsapp).await.unwrap_err();

    let bot = opened_credential(
        ProviderType::DiscordBot,
        json!({"botToken": "discord-token-0001"}),
        json!({"baseUrl": discord.url()}),
    );
    let message = message_for("discord", "1098765432109876543", json!({"text": BODY}));
    let connector = Discord::new(true).unwrap();
    connector.send(&message, &bot).await.unwrap();
    discord.push(Reply::json(403, json!({"code": 50001, "message": "Missing Access"})));
    connector.send(&message, &bot).await.unwrap_err();

    let smtp = opened_credential(
        ProviderType::Smtp,
        json!({"username": "mailer", "password": "smtp-password-0001"}),
        json!({"host": "127.0.0.1", "port": sink.port(), "tls": "none",
            "fromAddress": "hello@example.com"}),
    );
    let message = message_for("email", "alice@example.org", json!({"subject": "Hi", "text": BODY}));
    Smtp::new(true).send(&message, &smtp).await.unwrap();
    let rejected =
        message_for("email", "reject@example.org", json!({"subject": "Hi", "text": BODY}));
    Smtp::new(true).send(&rejected, &smtp).await.unwrap_err();

    // SES (REST-JSON) and SNS (query protocol, XML) as their APIs answer: the SDKs' own logs
    // must not show the body either, nor the secret key
    let aws = Stub::start(|request| match request.path.as_str() {
        "/v2/email/outbound-emails" => Reply::json(200, json!({"MessageId": "ses-0001"})),
        _ => Reply::text(
            200,
            "<PublishResponse><PublishResult><MessageId>sns-0001</MessageId></PublishResult>\
             </PublishResponse>",
        )
        .with_header("content-type", "text/xml"),
    })
    .await;
    let keys = json!({"accessKeyId": "AKIDLOGS", "secretAccessKey": "aws-secret-0001"});
    let ses = opened_credential(
        ProviderType::Ses,
        keys.clone(),
        json!({"region": "us-east-1", "fromAddress": "hello@example.com", "endpointUrl": aws.url()}),
    );
    let message = message_for("email", "alice@example.org", json!({"subject": "Hi", "text": BODY}));
    let connector = Ses::new(true);
    connector.send(&message, &ses).await.unwrap();
    aws.push(
        Reply::json(400, json!({"message": format!("rejected: {BODY}")}))
            .with_header("x-amzn-ErrorType", "MessageRejected"),
    );
    connector.send(&message, &ses).await.unwrap_err();
    let sns = opened_credential(
        ProviderType::Sns,
        keys,
        json!({"region": "us-east-1", "endpointUrl": aws.url()}),
    );
    let message = message_for("sms", "+14155550123", json!({"text": BODY}));
    Sns::new(true).send(&message, &sns).await.unwrap();

    tracing::info!("capture works");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("capture works"), "the capture itself: {logs}");
    for secret in [
        BODY,
        "EAAG-token-0001",
        "app-secret-0001",
        "discord-token-0001",
        "smtp-password-0001",
        "aws-secret-0001",
    ] {
        assert!(!logs.contains(secret), "{secret} logged at info:\n{logs}");
    }
    // serenity's request spans carry the body as bytes: not a trace of them either
    assert!(!logs.contains("serenity"), "serenity spans at info:\n{logs}");
    graph.stop().await;
    discord.stop().await;
    aws.stop().await;
}
