//! The Amazon SES connector (API v2): `SendEmail` with simple content (subject, text and/or
//! html bodies, all UTF-8), from the message's `from` or the credential's `fromAddress`, with
//! reply-to, cc, bcc and the credential's configuration set; `GetAccount` to verify.
//!
//! An email the worker adds header fields to (one-click unsubscribe, `Extras`) goes as raw
//! content instead: the MIME message the SMTP connector builds, header fields included. Simple
//! content takes header fields too, but caps each value at 870 characters (a link and a mailto
//! address may be longer), and a raw message is what every SES-compatible service (and moto,
//! which the tests read back) keeps whole.
//!
//! SES's MessageId becomes the message's provider message id, which delivery receipts
//! (`crate::inbound`) look messages up by.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::BuildError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent as SesContent, RawMessage};

use crate::db::messages::Message;
use crate::domain::content::EmailContent;
use crate::domain::provider_types::SesConfig;
use crate::providers::aws::{Clients, classify, receipt};
use crate::providers::connector::{
    Connector, Extras, OpenedCredential, ProviderError, SendFuture, VerifyFuture,
};
use crate::providers::smtp::build_email;

pub struct Ses {
    clients: Clients<Client>,
}

impl Ses {
    pub fn new(allow_endpoint_overrides: bool) -> Self {
        Self { clients: Clients::new(allow_endpoint_overrides) }
    }
}

impl Connector for Ses {
    fn send<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
    ) -> SendFuture<'a> {
        self.send_with(message, credential, Extras::NONE)
    }

    fn send_with<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
        extras: &'a Extras,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let (client, config): (_, SesConfig) = self.clients.get(credential, Client::new)?;
            // Stored content passed validation at ingestion; serde's text is left out since it
            // may quote the body.
            let email: EmailContent = serde_json::from_value(message.content.clone())
                .map_err(|_| ProviderError::Permanent("the content is not an email".to_owned()))?;
            let content = if extras.email_headers.is_empty() {
                simple_content(&email)
            } else {
                let (mime, _) = build_email(message, &config.from_address, extras)?;
                raw_content(mime.formatted())
            }
            .map_err(|e| ProviderError::Permanent(format!("SES: cannot build the message: {e}")))?;
            let from = email.from.as_deref().unwrap_or(&config.from_address);
            let listed = |list: &[String]| {
                (!list.is_empty()).then(|| list.iter().map(|a| encode_address(a)).collect())
            };
            let destination = Destination::builder()
                .to_addresses(encode_address(&message.recipient))
                .set_cc_addresses(listed(&email.cc))
                .set_bcc_addresses(listed(&email.bcc))
                .build();
            let reply_to = email.reply_to.as_ref().and_then(|r| listed(r.as_slice()));
            let output = client
                .send_email()
                .from_email_address(encode_address(from))
                .destination(destination)
                .set_reply_to_addresses(reply_to)
                .set_configuration_set_name(config.configuration_set.clone())
                .content(content)
                .send()
                .await
                .map_err(|e| classify("SES", &e))?;
            tracing::debug!(message = %message.id, credential = %credential.id, "SES accepted");
            receipt("SES", output.message_id())
        })
    }

    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async move {
            let (client, config): (_, SesConfig) = self.clients.get(credential, Client::new)?;
            let account = client.get_account().send().await.map_err(|e| classify("SES", &e))?;
            let region = &config.region;
            if !account.sending_enabled() {
                return Err(ProviderError::Credential(format!(
                    "SES: sending is disabled for this account in {region}"
                )));
            }
            let access = if account.production_access_enabled() {
                "production access"
            } else {
                "sandbox (verified recipients only)"
            };
            let mut detail = format!("SES account in {region}: sending enabled, {access}");
            if let Some(quota) = account.send_quota() {
                detail.push_str(&format!(
                    ", {} of {} messages sent in the last 24 hours, at most {} per second",
                    quota.sent_last24_hours(),
                    quota.max24_hour_send(),
                    quota.max_send_rate()
                ));
            }
            Ok(detail)
        })
    }
}

/// Subject and bodies, each declared UTF-8 (SES would otherwise assume ASCII).
fn simple_content(email: &EmailContent) -> Result<SesContent, BuildError> {
    let utf8 = |data: &str| Content::builder().data(data).charset("UTF-8").build();
    let mut body = Body::builder();
    if let Some(text) = &email.text {
        body = body.text(utf8(text)?);
    }
    if let Some(html) = &email.html {
        body = body.html(utf8(html)?);
    }
    let message = aws_sdk_sesv2::types::Message::builder()
        .subject(utf8(&email.subject)?)
        .body(body.build())
        .build();
    Ok(SesContent::builder().simple(message).build())
}

/// A whole MIME message. The envelope still comes from the destination and sender given beside
/// it, so bcc recipients (whom the MIME does not name) get it too.
fn raw_content(mime: Vec<u8>) -> Result<SesContent, BuildError> {
    let raw = RawMessage::builder().data(Blob::new(mime)).build()?;
    Ok(SesContent::builder().raw(raw).build())
}

/// SES takes addresses as ASCII: a display name with other characters must be a MIME
/// encoded-word (RFC 2047), as in `=?UTF-8?B?...?= <a@example.com>`.
fn encode_address(address: &str) -> String {
    let Some((name, rest)) = address.rsplit_once('<') else { return address.to_owned() };
    let name = name.trim().trim_matches('"');
    if name.is_ascii() {
        return address.to_owned();
    }
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
    format!("=?UTF-8?B?{encoded}?= <{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_encoded_only_when_not_ascii() {
        assert_eq!(encode_address("a@example.com"), "a@example.com");
        assert_eq!(encode_address("Ann <a@example.com>"), "Ann <a@example.com>");
        assert_eq!(encode_address("Zoë <z@example.com>"), "=?UTF-8?B?Wm/Dqw==?= <z@example.com>");
        assert_eq!(
            encode_address("\"Zoë\" <z@example.com>"),
            "=?UTF-8?B?Wm/Dqw==?= <z@example.com>"
        );
    }

    #[test]
    fn content_is_utf8_with_the_bodies_given() {
        let email = EmailContent {
            subject: "Grüße".into(),
            text: Some("Hallo".into()),
            html: None,
            from: None,
            reply_to: None,
            cc: vec![],
            bcc: vec![],
        };
        let content = simple_content(&email).unwrap();
        let simple = content.simple().unwrap();
        let subject = simple.subject().unwrap();
        assert_eq!((subject.data(), subject.charset()), ("Grüße", Some("UTF-8")));
        let body = simple.body().unwrap();
        assert_eq!(body.text().unwrap().data(), "Hallo");
        assert!(body.html().is_none());
    }
}
