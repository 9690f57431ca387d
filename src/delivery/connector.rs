//! What a provider connector is: one call that hands a message to a provider with one tenant
//! credential, and the classification of every way it can go wrong. The worker's retry,
//! failover and dead-letter decisions rest on that classification alone (design.md, invariant
//! 5), so each connector maps its provider's answers onto [`ProviderError`] and nothing else.
//!
//! A connector may also verify a credential (`POST /v1/providers/{id}/verify`): one cheap
//! authenticated call, whose refusal is an answer (`{ok: false}`), not an error of ours.
//!
//! The [`Registry`] picks the connector for a provider type; one per process, shared by the
//! API and the worker, so clients a connector caches per credential serve both.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::ProvidersConfig;
use crate::db::messages::Message;
use crate::delivery::sandbox::Sandbox;
use crate::delivery::ses::Ses;
use crate::delivery::sns::Sns;
use crate::providers::ProviderType;

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
/// parse it into their type's config from `crate::providers`, the schema the API validated).
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

/// One provider's client. Object-safe (a boxed future) so the registry can hand out any of
/// them; a connector that keeps per-credential clients caches them itself, by credential id.
pub trait Connector: Send + Sync {
    /// Makes one attempt to deliver `message` with `credential`: at most one provider call.
    fn send<'a>(&'a self, message: &'a Message, credential: &'a OpenedCredential)
    -> SendFuture<'a>;

    /// Checks `credential` with one cheap authenticated call; `None` when this connector cannot.
    fn verify<'a>(&'a self, _credential: &'a OpenedCredential) -> Option<VerifyFuture<'a>> {
        None
    }
}

/// The connectors by provider type.
#[derive(Default)]
pub struct Registry {
    sandbox: Sandbox,
    ses: Ses,
    sns: Sns,
}

impl Registry {
    /// The connectors, under the operator's rules for providers.
    pub fn new(rules: &ProvidersConfig) -> Self {
        Self {
            sandbox: Sandbox,
            ses: Ses::new(rules.allow_endpoint_overrides),
            sns: Sns::new(rules.allow_endpoint_overrides),
        }
    }

    pub fn connector(&self, provider_type: ProviderType) -> &dyn Connector {
        match provider_type {
            ProviderType::Sandbox => &self.sandbox,
            ProviderType::Ses => &self.ses,
            ProviderType::Sns => &self.sns,
            ProviderType::Smtp | ProviderType::WhatsappCloud | ProviderType::DiscordBot => {
                &NotAvailable
            }
        }
    }
}

/// The real providers' connectors come later; until then their messages fail honestly rather
/// than pretend to be sent.
struct NotAvailable;

impl Connector for NotAvailable {
    fn send<'a>(&'a self, _: &'a Message, credential: &'a OpenedCredential) -> SendFuture<'a> {
        let text = format!("{} connector not available yet", credential.provider_type.as_str());
        Box::pin(async move { Err(ProviderError::Permanent(text)) })
    }
}
