//! The SMTP connector: email through the tenant's own mail server, with lettre.
//!
//! Each credential keeps a pooled transport (cached, rebuilt when the credential changes), so
//! a burst of messages reuses authenticated connections instead of paying a handshake each.
//! `tls` picks implicit TLS (`tls`, usually port 465), a required STARTTLS upgrade
//! (`starttls`, usually 587) or plain text (`none`, for local relays only).
//!
//! The message is proper MIME: a text part, an HTML part, or both as `multipart/alternative`;
//! `From` (the content's, else the credential's `fromAddress`), `Reply-To`, `Cc`, `Bcc` (in the
//! envelope only), a UTF-8 subject, a `Message-ID` we generate, which is the provider message
//! id, and the header fields the worker adds (one-click unsubscribe, `Extras`). Replies: 535
//! (and the other authentication codes) refuse the credential, other 5xx refuse the message,
//! 4xx and connection trouble are worth another try.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::db::messages::Message;
use crate::domain::content::{Addresses, EmailContent};
use crate::domain::provider_types::{SmtpConfig, SmtpCredentials, SmtpTls};
use crate::providers::client_cache::ClientCache;
use crate::providers::connector::{
    Connector, Extras, OpenedCredential, ProviderError, ProviderReceipt, SendFuture, VerifyFuture,
    truncate,
};
use crate::ssrf::{self, Unreachable};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// How long one SMTP command may take (connection, each reply).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Replies that refuse the credentials: authentication required (530), mechanism too weak
/// (534), authentication failed (535), encryption required for the mechanism (538).
const AUTH_CODES: &[&str] = &["530", "534", "535", "538"];

pub struct Smtp {
    transports: ClientCache<Transport>,
    /// `providers.allow_private_targets`: whether hosts may be private addresses.
    allow_private: bool,
}

impl Smtp {
    pub fn new(allow_private: bool) -> Self {
        Self { transports: ClientCache::default(), allow_private }
    }

    /// The credential's pooled transport. A new one connects to an address of the host
    /// resolved and checked now (`crate::ssrf`), never to the name, so DNS answering
    /// differently later cannot aim it elsewhere; TLS still verifies the host's name.
    async fn transport(
        &self,
        credential: &OpenedCredential,
        config: &SmtpConfig,
    ) -> Result<std::sync::Arc<Transport>, ProviderError> {
        if let Some(transport) = self.transports.get(credential) {
            return Ok(transport);
        }
        let secrets: SmtpCredentials = credential.secrets_as()?;
        let host = config.host.as_str();
        let addresses =
            ssrf::resolve_allowed(host, config.port, self.allow_private).await.map_err(|e| {
                let why = format!("SMTP host {host} {e}");
                match e {
                    // a DNS hiccup may pass
                    Unreachable::Unresolved(_) => ProviderError::Retryable(why),
                    Unreachable::Forbidden => ProviderError::Credential(format!(
                        "{why} (refused unless providers.allow_private_targets)"
                    )),
                }
            })?;
        let address = addresses[0].ip().to_string();
        let tls = |name: &str| {
            TlsParameters::new(name.to_owned())
                .map_err(|e| ProviderError::Credential(format!("SMTP host {host}: {e}")))
        };
        let tls = match config.tls {
            SmtpTls::Tls => Tls::Wrapper(tls(host)?),
            SmtpTls::Starttls => Tls::Required(tls(host)?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = Transport::builder_dangerous(address)
            .port(config.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let (Some(username), Some(password)) = (secrets.username, secrets.password) {
            builder = builder.credentials(Credentials::new(username, password));
        }
        Ok(self.transports.insert(credential, builder.build()))
    }
}

impl Connector for Smtp {
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
            let config: SmtpConfig = credential.config_as()?;
            let (email, message_id) = build_email(message, &config.from_address, extras)?;
            let transport = self.transport(credential, &config).await?;
            transport.send(email).await.map_err(|e| classify(&config, &e))?;
            Ok(ProviderReceipt { provider_message_id: message_id })
        })
    }

    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async move {
            let config: SmtpConfig = credential.config_as()?;
            let transport = self.transport(credential, &config).await?;
            // connects, upgrades, authenticates, then NOOP
            match transport.test_connection().await {
                Ok(true) => Ok(format!(
                    "{}:{} accepted the connection and answered NOOP",
                    config.host, config.port
                )),
                Ok(false) => Err(ProviderError::Retryable(format!(
                    "{}:{} did not answer NOOP",
                    config.host, config.port
                ))),
                Err(error) => Err(classify(&config, &error)),
            }
        })
    }
}

/// The email for `message` and its Message-ID (`<message id@sender's domain>`: the same for
/// every attempt, so a receiver can tell a repeated delivery). `from_address` is the
/// credential's, for content that names no sender; `extras` adds its header fields. The SES
/// connector sends the same MIME when it has header fields to add.
pub fn build_email(
    message: &Message,
    from_address: &str,
    extras: &Extras,
) -> Result<(lettre::Message, String), ProviderError> {
    let content: EmailContent = serde_json::from_value(message.content.clone())
        .map_err(|e| ProviderError::Permanent(format!("not email content: {e}")))?;
    let address = |text: &str, what: &str| {
        text.parse::<Mailbox>().map_err(|e| {
            ProviderError::Permanent(format!("{what} `{text}` is not an address: {e}"))
        })
    };
    let from = match &content.from {
        Some(from) => address(from, "from")?,
        None => from_address
            .parse::<Mailbox>()
            .map_err(|e| ProviderError::Credential(format!("fromAddress `{from_address}`: {e}")))?,
    };
    let message_id = format!("<{}@{}>", message.id, from.email.domain());
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(address(&message.recipient, "to")?)
        .subject(content.subject.as_str())
        .message_id(Some(message_id.clone()));
    for reply_to in content.reply_to.as_ref().map(Addresses::as_slice).unwrap_or_default() {
        builder = builder.reply_to(address(reply_to, "replyTo")?);
    }
    for cc in &content.cc {
        builder = builder.cc(address(cc, "cc")?);
    }
    for bcc in &content.bcc {
        builder = builder.bcc(address(bcc, "bcc")?);
    }
    for (name, value) in &extras.email_headers {
        let name = HeaderName::new_from_ascii((*name).to_owned()).map_err(|e| {
            ProviderError::Permanent(format!("cannot add the header field {name}: {e}"))
        })?;
        // lettre folds a long value at its spaces
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let built = match (content.text, content.html) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
        (None, Some(html)) => builder.singlepart(SinglePart::html(html)),
        (None, None) => {
            return Err(ProviderError::Permanent("the email has neither text nor html".to_owned()));
        }
    };
    let email =
        built.map_err(|e| ProviderError::Permanent(format!("cannot build the email: {e}")))?;
    Ok((email, message_id))
}

/// What an SMTP failure means for the message.
fn classify(config: &SmtpConfig, error: &lettre::transport::smtp::Error) -> ProviderError {
    let text = truncate(format!("SMTP {}:{}: {error}", config.host, config.port));
    let code = error.status().map(|c| c.to_string());
    if code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c)) {
        ProviderError::Credential(text)
    } else if error.is_permanent() {
        ProviderError::Permanent(text)
    } else if error.is_client() {
        // lettre refused before the server could (e.g. no common authentication mechanism)
        ProviderError::Permanent(text)
    } else {
        // 4xx, timeouts, network, TLS, an unreadable reply
        ProviderError::Retryable(text)
    }
}
