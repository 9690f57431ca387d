//! What a provider connector is: one call that hands a message to a provider with one tenant
//! credential, and the classification of every way it can go wrong. The worker's retry,
//! failover and dead-letter decisions rest on that classification alone (docs/architecture.md, invariant
//! 5), so each connector maps its provider's answers onto [`ProviderError`] and nothing else.
//!
//! A connector may also verify a credential (`POST /v1/providers/{id}/verify`): one cheap
//! authenticated call, whose refusal is an answer (`{ok: false}`), not an error of ours.
//!
//! The [`Registry`] picks the connector for a provider type. There is one per process, built at
//! start-up and shared by the API (`/verify`) and the worker, so the clients a connector keeps
//! per credential (SDK clients, connection pools, rate limiters) serve both, across messages.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::ProvidersConfig;
use crate::db::messages::Message;
use crate::domain::provider_types::ProviderType;
use crate::providers::discord::Discord;
use crate::providers::sandbox::Sandbox;
use crate::providers::ses::Ses;
use crate::providers::smtp::Smtp;
use crate::providers::sns::Sns;
use crate::providers::whatsapp::Whatsapp;

/// A provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReceipt {
    /// The provider's id for the message (receipts and searches refer to it).
    pub provider_message_id: String,
}

/// Why a provider did not take a message; each kind carries the provider's own error text,
/// which ends up in the message's events and, when it fails for good, in its `statusReason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Might work later: 5xx, timeouts, network errors. Spends an attempt; the next credential
    /// is tried.
    #[error("{0}")]
    Retryable(String),
    /// Will never work for this message: invalid recipient, rejected content.
    #[error("{0}")]
    Permanent(String),
    /// The provider refused the credentials. The next credential is tried, and this one is
    /// flagged with the error.
    #[error("{0}")]
    Credential(String),
    /// The provider asked us to slow down (429): rescheduled without spending an attempt.
    #[error("{message}")]
    Throttled { message: String, retry_after: Option<Duration> },
}

impl ProviderError {
    /// The kind as recorded in event details.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Retryable(_) => "retryable",
            ProviderError::Permanent(_) => "permanent",
            ProviderError::Credential(_) => "credential",
            ProviderError::Throttled { .. } => "throttled",
        }
    }
}

/// A credential ready for a connector: its secrets opened, its config as stored (connectors
/// parse it into their type's config from `crate::domain::provider_types`, the schema the API validated).
pub struct OpenedCredential {
    pub id: String,
    pub slug: String,
    pub provider_type: ProviderType,
    pub config: Value,
    secrets: Map<String, Value>,
}

impl OpenedCredential {
    pub fn new(
        id: String,
        slug: String,
        provider_type: ProviderType,
        config: Value,
        secrets: Map<String, Value>,
    ) -> Self {
        Self { id, slug, provider_type, config, secrets }
    }

    pub fn secrets(&self) -> &Map<String, Value> {
        &self.secrets
    }

    /// The config as its type's schema (`crate::domain::provider_types`). The API validated it; a row that
    /// no longer parses is the credential's fault.
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_value(self.config.clone()).map_err(|e| {
            ProviderError::Credential(format!(
                "the stored {} config is invalid: {e}",
                self.provider_type.as_str()
            ))
        })
    }

    /// The secrets as their type's schema. The parse error is not kept: it could quote a secret.
    pub fn secrets_as<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_value(Value::Object(self.secrets.clone())).map_err(|_| {
            ProviderError::Credential(format!(
                "the stored {} credentials do not match their schema",
                self.provider_type.as_str()
            ))
        })
    }

    /// A digest of the secrets and config, telling a cached client built from an older version
    /// of this credential (a PATCH changed its token or host) from a current one.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        // serde_json's maps are ordered, so equal values give equal bytes
        ctx.update(serde_json::to_string(&self.secrets).unwrap_or_default().as_bytes());
        ctx.update(b"\0");
        ctx.update(self.config.to_string().as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

// Never print the secrets, whatever a log line formats.
impl fmt::Debug for OpenedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedCredential")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("provider_type", &self.provider_type)
            .finish_non_exhaustive()
    }
}

pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ProviderReceipt, ProviderError>> + Send + 'a>>;

/// What the provider said of a credential it accepted (the `detail` of `{ok: true}`), or why it
/// did not (`{ok: false}`).
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ProviderError>> + Send + 'a>>;

/// What the worker adds to a message on its way out, which its sender did not write (and
/// cannot: `/v1/send` takes no such field): the one-click unsubscribe header fields of a
/// project that switched them on (`crate::unsubscribe`). Connectors that have no use for it
/// ignore it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// Header fields an email carries besides those made from its content: name and value,
    /// printable ASCII.
    pub email_headers: Vec<(&'static str, String)>,
}

impl Extras {
    /// Nothing added.
    pub const NONE: &'static Extras = &Extras { email_headers: Vec::new() };
}

/// One provider's client. Object-safe (a boxed future) so the registry can hand out any of
/// them; a connector that keeps per-credential clients caches them itself, by credential id.
pub trait Connector: Send + Sync {
    /// Makes one attempt to deliver `message` with `credential`: at most one provider call.
    fn send<'a>(&'a self, message: &'a Message, credential: &'a OpenedCredential)
    -> SendFuture<'a>;

    /// [`Connector::send`] with what the worker adds to the message (`extras`). Connectors that
    /// put none of it on the wire keep this default.
    fn send_with<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
        extras: &'a Extras,
    ) -> SendFuture<'a> {
        let _ = extras;
        self.send(message, credential)
    }

    /// Checks `credential` with one cheap authenticated call (`POST /v1/providers/{id}/verify`).
    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a>;
}

/// The connectors by provider type.
pub struct Registry {
    sandbox: Sandbox,
    ses: Ses,
    sns: Sns,
    whatsapp: Whatsapp,
    discord: Discord,
    smtp: Smtp,
}

impl Registry {
    /// `rules` says whether credentials may aim connectors elsewhere (`endpointUrl`,
    /// `baseUrl`): checked at each call too, since the operator may have turned overrides off
    /// since a credential was stored.
    pub fn new(rules: &ProvidersConfig) -> anyhow::Result<Self> {
        let overrides = rules.allow_endpoint_overrides;
        Ok(Self {
            sandbox: Sandbox,
            ses: Ses::new(overrides),
            sns: Sns::new(overrides),
            whatsapp: Whatsapp::new(overrides)?,
            discord: Discord::new(overrides)?,
            smtp: Smtp::new(rules.allow_private_targets),
        })
    }

    pub fn connector(&self, provider_type: ProviderType) -> &dyn Connector {
        match provider_type {
            ProviderType::Sandbox => &self.sandbox,
            ProviderType::Ses => &self.ses,
            ProviderType::Sns => &self.sns,
            ProviderType::WhatsappCloud => &self.whatsapp,
            ProviderType::DiscordBot => &self.discord,
            ProviderType::Smtp => &self.smtp,
        }
    }
}

/// `endpointUrl`/`baseUrl` of a credential, allowed only where the operator allows overrides.
pub fn endpoint_override(url: Option<&str>, allowed: bool) -> Result<Option<&str>, ProviderError> {
    match url {
        Some(_) if !allowed => Err(ProviderError::Credential(
            "the credential sets its own endpoint (endpointUrl/baseUrl), but this server does \
             not allow endpoint overrides (providers.allow_endpoint_overrides)"
                .to_owned(),
        )),
        other => Ok(other),
    }
}

/// Longest provider error text kept.
const MAX_ERROR_TEXT: usize = 500;

/// An HTTP answer's `Retry-After` in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: f64 =
        headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// A provider's HTTP answer as JSON, or the error it means: `classify` reads an unsuccessful
/// one (status, body, `Retry-After`). `provider` names the provider in error texts.
pub async fn json_answer(
    provider: &str,
    response: reqwest::Response,
    classify: impl FnOnce(reqwest::StatusCode, &[u8], Option<Duration>) -> ProviderError,
) -> Result<Value, ProviderError> {
    let status = response.status();
    let header_retry = retry_after(response.headers());
    let body = response.bytes().await.map_err(|e| {
        ProviderError::Retryable(format!("{provider} answer cut short: {}", describe(&e)))
    })?;
    if !status.is_success() {
        return Err(classify(status, &body, header_retry));
    }
    // Accepted, most likely: sending again could deliver twice.
    serde_json::from_slice(&body).map_err(|_| {
        ProviderError::Permanent(format!(
            "{provider} answered {status} with a body that is not JSON: {}",
            excerpt(&body)
        ))
    })
}

/// An error with its causes (`error sending request: connection refused`): transport errors'
/// own text rarely says what went wrong.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    truncate(text)
}

/// The start of an answer that is not the expected JSON, for an error text.
pub fn excerpt(body: &[u8]) -> String {
    truncate(String::from_utf8_lossy(body).trim().to_owned())
}

/// A provider's error text cut to a length that fits events and `statusReason`.
pub fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
