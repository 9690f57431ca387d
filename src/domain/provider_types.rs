//! Provider types: the channel each one serves and the exact credentials and config it takes.
//!
//! A provider credential keeps `credentials` (sealed) and `config` (plain) as the client sent
//! them, once they have passed the typed schemas below; connectors parse them into the same
//! types, so what the API accepts is exactly what delivery can use. Every schema denies unknown
//! fields, so a typo is a 400 naming it rather than a setting silently ignored.
//!
//! The credential types deliberately do not implement `Debug`: they hold secrets, and a stray
//! `{:?}` in a log line should not compile.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ProvidersConfig;
use crate::domain::aws::is_sns_topic_arn;
use crate::domain::channel::Channel;
use crate::domain::recipient::is_e164;
use crate::domain::validate::Validator;

/// Which service delivers, and so which credentials and config it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    Ses,
    Smtp,
    Sns,
    WhatsappCloud,
    DiscordBot,
    Sandbox,
}

impl ProviderType {
    pub const ALL: [ProviderType; 6] = [
        ProviderType::Ses,
        ProviderType::Smtp,
        ProviderType::Sns,
        ProviderType::WhatsappCloud,
        ProviderType::DiscordBot,
        ProviderType::Sandbox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Ses => "ses",
            ProviderType::Smtp => "smtp",
            ProviderType::Sns => "sns",
            ProviderType::WhatsappCloud => "whatsapp_cloud",
            ProviderType::DiscordBot => "discord_bot",
            ProviderType::Sandbox => "sandbox",
        }
    }

    pub fn parse(text: &str) -> Option<ProviderType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The one channel this type serves; `None` for the sandbox, which serves them all.
    pub fn channel(self) -> Option<Channel> {
        match self {
            ProviderType::Ses | ProviderType::Smtp => Some(Channel::Email),
            ProviderType::Sns => Some(Channel::Sms),
            ProviderType::WhatsappCloud => Some(Channel::Whatsapp),
            ProviderType::DiscordBot => Some(Channel::Discord),
            ProviderType::Sandbox => None,
        }
    }

    /// Provider calls per second per credential unless configured otherwise
    /// (`delivery.rate_limits`, then a credential's own `rateLimit`); 0 = no limit. The
    /// providers' published starting quotas, so a new credential is not throttled by its
    /// provider out of the box: SES 14/s (the usual production sending rate; the SES sandbox
    /// allows 1/s, so set `rateLimit: 1` on a sandboxed account), SNS 20/s (SMS per account),
    /// WhatsApp Cloud 80/s (per business number), Discord 50/s (a bot's global limit). SMTP
    /// relays publish no common figure: 10/s is a conservative guess. The sandbox is unlimited,
    /// for benchmarks.
    pub fn default_rate_limit(self) -> u32 {
        match self {
            ProviderType::Ses => 14,
            ProviderType::Smtp => 10,
            ProviderType::Sns => 20,
            ProviderType::WhatsappCloud => 80,
            ProviderType::DiscordBot => 50,
            ProviderType::Sandbox => 0,
        }
    }

    pub fn serves(self, channel: Channel) -> bool {
        self.channel().is_none_or(|c| c == channel)
    }

    /// Checks `value` against this type's credentials schema, reporting into `check` under
    /// `credentials.`.
    pub fn check_credentials(self, value: &serde_json::Value, check: &mut Validator) {
        // credentials name no endpoints, so the server's rules do not matter to them
        let rules = ProvidersConfig::default();
        let part = Part { check, prefix: "credentials", rules: &rules };
        match self {
            ProviderType::Ses | ProviderType::Sns => part.check::<AwsCredentials>(value),
            ProviderType::Smtp => part.check::<SmtpCredentials>(value),
            ProviderType::WhatsappCloud => part.check::<WhatsappCredentials>(value),
            ProviderType::DiscordBot => part.check::<DiscordCredentials>(value),
            ProviderType::Sandbox => part.check::<SandboxCredentials>(value),
        }
    }

    /// Checks `value` against this type's config schema and the server's `rules`, reporting
    /// into `check` under `config.`.
    pub fn check_config(
        self,
        value: &serde_json::Value,
        rules: &ProvidersConfig,
        check: &mut Validator,
    ) {
        let part = Part { check, prefix: "config", rules };
        match self {
            ProviderType::Ses => part.check::<SesConfig>(value),
            ProviderType::Smtp => part.check::<SmtpConfig>(value),
            ProviderType::Sns => part.check::<SnsConfig>(value),
            ProviderType::WhatsappCloud => part.check::<WhatsappConfig>(value),
            ProviderType::DiscordBot => part.check::<DiscordConfig>(value),
            ProviderType::Sandbox => part.check::<SandboxConfig>(value),
        }
    }
}

/// `ses` and `sns`: an IAM access key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SesConfig {
    pub region: String,
    pub from_address: String,
    pub configuration_set: Option<String>,
    pub endpoint_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
    /// The SNS topics the credential's delivery receipts come from: an SNS message from any
    /// other topic is refused, and none is taken while the list is absent or empty
    /// (`crate::inbound::ses`).
    pub sns_topic_arns: Option<Vec<String>>,
}

/// `smtp`: both or neither (servers that relay without authentication).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from_address: String,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnsConfig {
    pub region: String,
    pub sender_id: Option<String>,
    pub origination_number: Option<String>,
    pub sms_type: Option<SmsType>,
    pub endpoint_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
}

/// SNS's own spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SmsType {
    Transactional,
    Promotional,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhatsappCredentials {
    pub access_token: String,
    /// Verifies the signature of incoming status callbacks.
    pub app_secret: Option<String>,
    /// What Meta's webhook set-up sends back (`hub.verify_token`) to prove the callback URL
    /// is this credential's.
    pub verify_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhatsappConfig {
    pub phone_number_id: String,
    pub api_version: Option<String>,
    pub base_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscordCredentials {
    pub bot_token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscordConfig {
    pub base_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
}

/// The sandbox has no secrets: `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxCredentials {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxConfig {
    pub latency_ms: Option<u64>,
    /// Share of attempts that fail, 0 to 1.
    pub fail_rate: Option<f64>,
    /// How attempts fail (default `retryable`).
    pub fail_mode: Option<FailMode>,
    /// Fail every message's first N attempts, then succeed: a deterministic failure pattern for
    /// tests. Counted by the message's attempts, which throttling does not spend.
    pub fail_first: Option<u32>,
    /// With `failMode: "throttled"`: the Retry-After the sandbox answers with.
    pub retry_after_ms: Option<u64>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Retryable,
    Permanent,
    /// Refuses the credentials (an authentication failure).
    Credential,
    /// Answers like a provider's 429.
    Throttled,
}

/// The `rateLimit` every type's config may carry: provider calls per second with the
/// credential, instead of its type's default (`delivery.rate_limits`). Read from the stored
/// config as it is, since the field means the same for every type.
pub fn rate_limit(config: &serde_json::Value) -> Option<u32> {
    config.get("rateLimit")?.as_u64().and_then(|rate| u32::try_from(rate).ok())
}

/// Far beyond any provider's rate; above it a limit would mean nothing.
const MAX_RATE_LIMIT: u32 = 100_000;

/// An SES credential's event topics: one per configuration set or identity it sends with,
/// usually one.
const MAX_SNS_TOPICS: usize = 20;

/// Longest text a setting or secret may be; far beyond any real one, short of abuse.
const MAX_TEXT_CHARS: usize = 4096;
/// A sandbox delay beyond this would only stall workers; below the default
/// `delivery.provider_timeout` (30 s), so a sandbox call ends on its own.
const MAX_SANDBOX_LATENCY_MS: u64 = 10_000;
/// Beyond this a sandbox would never deliver within the default attempts anyway.
const MAX_SANDBOX_FAIL_FIRST: u32 = 100;
/// A real provider's Retry-After is rarely longer.
const MAX_SANDBOX_RETRY_AFTER_MS: u64 = 3_600_000;

/// The checks of values that parsed: what serde's shapes cannot say.
trait Schema: DeserializeOwned {
    fn check(&self, part: &mut Part<'_>);
}

/// One part of a body (`credentials` or `config`) being checked: errors name fields under
/// `prefix`.
struct Part<'a> {
    check: &'a mut Validator,
    prefix: &'static str,
    rules: &'a ProvidersConfig,
}

impl Part<'_> {
    /// Parses `value` as `T` and checks its values; shape errors end the check of this part.
    fn check<T: Schema>(mut self, value: &serde_json::Value) {
        if let Some(parsed) = self.check.parse::<T>(self.prefix, value) {
            parsed.check(&mut self);
        }
    }

    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        let field = self.field(name);
        self.check.error(field, message);
    }

    /// Not blank and of sane length.
    fn text(&mut self, name: &str, value: &str) -> bool {
        if value.trim().is_empty() {
            self.error(name, "must not be blank");
            false
        } else if value.chars().count() > MAX_TEXT_CHARS {
            self.error(name, format!("must be at most {MAX_TEXT_CHARS} characters"));
            false
        } else {
            true
        }
    }

    /// A key, token or identifier: text without whitespace (a pasted trailing newline is the
    /// usual culprit, and would only surface as an authentication failure at delivery).
    fn token(&mut self, name: &str, value: &str) {
        if self.text(name, value) && value.chars().any(char::is_whitespace) {
            self.error(name, "must not contain whitespace");
        }
    }

    fn rate_limit(&mut self, value: Option<u32>) {
        if value.is_some_and(|rate| !(1..=MAX_RATE_LIMIT).contains(&rate)) {
            self.error("rateLimit", format!("must be between 1 and {MAX_RATE_LIMIT} per second"));
        }
    }

    fn email(&mut self, name: &str, value: &str) {
        let field = self.field(name);
        self.check.email(&field, value);
    }

    fn region(&mut self, name: &str, value: &str) {
        let valid = value.len() <= 32
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value.contains('-')
            && crate::domain::slug::is_valid(value);
        if !valid {
            self.error(name, "must be an AWS region such as us-east-1");
        }
    }

    /// `endpointUrl`/`baseUrl`: where the connector sends its calls instead of the provider's
    /// own API. Off by default: a tenant could otherwise aim the server's requests, carrying
    /// their credentials, at any host the server can reach.
    fn endpoint(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        if !self.rules.allow_endpoint_overrides {
            self.error(
                name,
                "is not allowed on this server (its operator can enable \
                 providers.allow_endpoint_overrides)",
            );
            return;
        }
        let valid = url::Url::parse(value)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !valid {
            self.error(name, "must be an http(s) URL");
        }
    }
}

impl Schema for AwsCredentials {
    fn check(&self, part: &mut Part<'_>) {
        part.token("accessKeyId", &self.access_key_id);
        part.token("secretAccessKey", &self.secret_access_key);
    }
}

impl Schema for SesConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        part.region("region", &self.region);
        part.email("fromAddress", &self.from_address);
        if let Some(set) = &self.configuration_set {
            part.token("configurationSet", set);
        }
        part.endpoint("endpointUrl", self.endpoint_url.as_deref());
        let topics = self.sns_topic_arns.as_deref().unwrap_or_default();
        if topics.len() > MAX_SNS_TOPICS {
            part.error("snsTopicArns", format!("must list at most {MAX_SNS_TOPICS} topics"));
        }
        for (i, arn) in topics.iter().enumerate() {
            if !is_sns_topic_arn(arn) {
                part.error(
                    &format!("snsTopicArns.{i}"),
                    "must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:ses-events",
                );
            }
        }
    }
}

impl Schema for SmtpCredentials {
    fn check(&self, part: &mut Part<'_>) {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                part.text("username", username);
                // passwords may contain spaces (some providers' app passwords do)
                part.text("password", password);
            }
            (Some(_), None) => part.error("password", "is required with username"),
            (None, Some(_)) => part.error("username", "is required with password"),
            (None, None) => {}
        }
    }
}

impl Schema for SmtpConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        part.token("host", &self.host);
        if self.port == 0 {
            part.error("port", "must be between 1 and 65535");
        }
        part.email("fromAddress", &self.from_address);
    }
}

impl Schema for SnsConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        part.region("region", &self.region);
        if let Some(sender) = &self.sender_id {
            let valid = (1..=11).contains(&sender.len())
                && sender.bytes().all(|b| b.is_ascii_alphanumeric())
                && sender.bytes().any(|b| b.is_ascii_alphabetic());
            if !valid {
                part.error("senderId", "must be 1 to 11 letters and digits, at least one letter");
            }
        }
        if let Some(number) = &self.origination_number
            && !is_e164(number)
        {
            part.error("originationNumber", "must be an E.164 number such as +14155550123");
        }
        part.endpoint("endpointUrl", self.endpoint_url.as_deref());
    }
}

impl Schema for WhatsappCredentials {
    fn check(&self, part: &mut Part<'_>) {
        part.token("accessToken", &self.access_token);
        if let Some(secret) = &self.app_secret {
            part.token("appSecret", secret);
        }
        if let Some(token) = &self.verify_token {
            part.token("verifyToken", token);
        }
    }
}

impl Schema for WhatsappConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        let id = &self.phone_number_id;
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
            part.error("phoneNumberId", "must be the numeric id of a WhatsApp Business number");
        }
        if let Some(version) = &self.api_version
            && !is_graph_version(version)
        {
            part.error("apiVersion", "must be a Graph API version such as v21.0");
        }
        part.endpoint("baseUrl", self.base_url.as_deref());
    }
}

impl Schema for DiscordCredentials {
    fn check(&self, part: &mut Part<'_>) {
        part.token("botToken", &self.bot_token);
    }
}

impl Schema for DiscordConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        part.endpoint("baseUrl", self.base_url.as_deref());
    }
}

impl Schema for SandboxCredentials {
    fn check(&self, _: &mut Part<'_>) {}
}

impl Schema for SandboxConfig {
    fn check(&self, part: &mut Part<'_>) {
        part.rate_limit(self.rate_limit);
        if self.latency_ms.is_some_and(|ms| ms > MAX_SANDBOX_LATENCY_MS) {
            part.error("latencyMs", format!("must be at most {MAX_SANDBOX_LATENCY_MS}"));
        }
        if self.fail_rate.is_some_and(|rate| !(0.0..=1.0).contains(&rate)) {
            part.error("failRate", "must be between 0 and 1");
        }
        if self.fail_first.is_some_and(|n| n > MAX_SANDBOX_FAIL_FIRST) {
            part.error("failFirst", format!("must be at most {MAX_SANDBOX_FAIL_FIRST}"));
        }
        if let Some(ms) = self.retry_after_ms {
            if self.fail_mode != Some(FailMode::Throttled) {
                part.error("retryAfterMs", "applies only with failMode \"throttled\"");
            } else if ms > MAX_SANDBOX_RETRY_AFTER_MS {
                part.error("retryAfterMs", format!("must be at most {MAX_SANDBOX_RETRY_AFTER_MS}"));
            }
        }
    }
}

/// `v21` or `v21.0`.
fn is_graph_version(version: &str) -> bool {
    let Some(number) = version.strip_prefix('v') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match number.split_once('.') {
        Some((major, minor)) => digits(major) && digits(minor),
        None => digits(number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(provider: ProviderType, credentials: serde_json::Value) -> Vec<String> {
        let mut check = Validator::new();
        provider.check_credentials(&credentials, &mut check);
        check
            .finish()
            .err()
            .map_or_else(Vec::new, |e| e.details().iter().map(|d| d.field.clone()).collect())
    }

    #[test]
    fn types_serve_their_channels() {
        assert!(ProviderType::Ses.serves(Channel::Email));
        assert!(!ProviderType::Ses.serves(Channel::Sms));
        assert!(ProviderType::Sandbox.serves(Channel::Discord));
        for t in ProviderType::ALL {
            assert_eq!(ProviderType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn credentials_are_checked_field_by_field() {
        assert!(
            fields(ProviderType::Ses, json!({"accessKeyId": "AK", "secretAccessKey": "s"}))
                .is_empty()
        );
        assert_eq!(
            fields(ProviderType::Ses, json!({"accessKeyId": "AK"})),
            ["credentials.secretAccessKey"]
        );
        assert_eq!(
            fields(ProviderType::Ses, json!({"accessKeyId": " ", "secretAccessKey": "a\n"})),
            ["credentials.accessKeyId", "credentials.secretAccessKey"]
        );
        assert_eq!(fields(ProviderType::Smtp, json!({"username": "u"})), ["credentials.password"]);
        assert!(fields(ProviderType::Smtp, json!({})).is_empty());
        assert_eq!(fields(ProviderType::Sandbox, json!({"x": 1})), ["credentials.x"]);
    }

    #[test]
    fn sandbox_config_checks_its_failure_patterns() {
        let config_fields = |config: serde_json::Value| {
            let mut check = Validator::new();
            let rules = ProvidersConfig::default();
            ProviderType::Sandbox.check_config(&config, &rules, &mut check);
            check.finish().err().map_or_else(Vec::new, |e| {
                e.details().iter().map(|d| d.field.clone()).collect::<Vec<_>>()
            })
        };
        for ok in [
            json!({"failFirst": 2}),
            json!({"failRate": 1, "failMode": "credential"}),
            json!({"failRate": 0.5, "failMode": "throttled", "retryAfterMs": 250}),
            json!({"failFirst": 1, "failMode": "permanent", "latencyMs": 10}),
        ] {
            assert!(config_fields(ok.clone()).is_empty(), "{ok}");
        }
        assert_eq!(config_fields(json!({"failFirst": 101})), ["config.failFirst"]);
        assert_eq!(config_fields(json!({"failFirst": -1})), ["config.failFirst"]);
        assert_eq!(config_fields(json!({"retryAfterMs": 5})), ["config.retryAfterMs"]);
        assert_eq!(
            config_fields(json!({"failMode": "throttled", "retryAfterMs": 3_600_001})),
            ["config.retryAfterMs"]
        );
        assert_eq!(config_fields(json!({"failMode": "flaky"})), ["config.failMode"]);
    }

    #[test]
    fn ses_config_lists_sns_topic_arns() {
        let config_fields = |topics: serde_json::Value| {
            let config = json!({"region": "us-east-1", "fromAddress": "a@example.com", "snsTopicArns": topics});
            let mut check = Validator::new();
            ProviderType::Ses.check_config(&config, &ProvidersConfig::default(), &mut check);
            check.finish().err().map_or_else(Vec::new, |e| {
                e.details().iter().map(|d| d.field.clone()).collect::<Vec<_>>()
            })
        };
        let topic = "arn:aws:sns:us-east-1:123456789012:ses-events";
        assert!(
            config_fields(json!([topic, "arn:aws-cn:sns:cn-north-1:123456789012:ses"])).is_empty()
        );
        assert!(config_fields(json!([])).is_empty());
        assert_eq!(
            config_fields(json!([topic, "ses-events", "arn:aws:sns:evil:123456789012:x"])),
            ["config.snsTopicArns.1", "config.snsTopicArns.2"]
        );
        assert_eq!(config_fields(json!(topic)), ["config.snsTopicArns"]);
        assert_eq!(config_fields(json!([topic, 5])), ["config.snsTopicArns.1"]);
        assert_eq!(config_fields(json!(vec![topic; 21])), ["config.snsTopicArns"]);
    }

    #[test]
    fn every_config_takes_a_rate_limit() {
        let valid = [
            (ProviderType::Ses, json!({"region": "us-east-1", "fromAddress": "a@example.com"})),
            (
                ProviderType::Smtp,
                json!({"host": "smtp.example.com", "port": 587, "tls": "starttls",
                       "fromAddress": "a@example.com"}),
            ),
            (ProviderType::Sns, json!({"region": "us-east-1"})),
            (ProviderType::WhatsappCloud, json!({"phoneNumberId": "123"})),
            (ProviderType::DiscordBot, json!({})),
            (ProviderType::Sandbox, json!({})),
        ];
        let rules = ProvidersConfig::default();
        for (provider, base) in valid {
            let fields = |rate: serde_json::Value| {
                let mut config = base.clone();
                config["rateLimit"] = rate;
                let mut check = Validator::new();
                provider.check_config(&config, &rules, &mut check);
                check.finish().err().map_or_else(Vec::new, |e| {
                    e.details().iter().map(|d| d.field.clone()).collect::<Vec<_>>()
                })
            };
            for ok in [json!(1), json!(14), json!(100_000)] {
                assert!(fields(ok.clone()).is_empty(), "{provider:?} {ok}");
                let mut config = base.clone();
                config["rateLimit"] = ok.clone();
                assert_eq!(rate_limit(&config).map(u64::from), ok.as_u64());
            }
            for bad in [json!(0), json!(100_001), json!(-1), json!(2.5), json!("5")] {
                assert_eq!(fields(bad.clone()), ["config.rateLimit"], "{provider:?} {bad}");
            }
            assert_eq!(rate_limit(&base), None);
        }
    }

    #[test]
    fn formats() {
        for ok in ["+14155550123", "+4420794600"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["14155550123", "+0123", "+1 415", "+", "+1234567890123456"] {
            assert!(!is_e164(bad), "{bad}");
        }
        for ok in ["v21.0", "v9"] {
            assert!(is_graph_version(ok), "{ok}");
        }
        for bad in ["21.0", "v", "v21.", "v.1", "v21.0.1", "vx"] {
            assert!(!is_graph_version(bad), "{bad}");
        }
    }
}
