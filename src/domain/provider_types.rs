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

use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema as JsonSchema, Type,
};
use utoipa::openapi::{Ref, RefOr};

use crate::config::ProvidersConfig;
use crate::domain::aws::is_sns_topic_arn;
use crate::domain::channel::Channel;
use crate::domain::recipient::is_e164;
use crate::domain::schema;
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsCredentials {
    #[schema(value_type = AccessKeyId)]
    pub access_key_id: String,
    #[schema(value_type = Token)]
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SesConfig {
    #[schema(value_type = Region)]
    pub region: String,
    #[schema(value_type = crate::domain::schema::EmailAddress)]
    pub from_address: String,
    #[schema(value_type = Option<Token>)]
    pub configuration_set: Option<String>,
    #[schema(value_type = Option<EndpointUrl>)]
    pub endpoint_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
    /// The SNS topics the credential's delivery receipts come from: an SNS message from any
    /// other topic is refused, and none is taken while the list is absent or empty
    /// (`crate::inbound::ses`).
    #[schema(value_type = Option<SnsTopicArns>)]
    pub sns_topic_arns: Option<Vec<String>>,
}

/// `smtp`: both or neither (servers that relay without authentication).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpCredentials {
    #[schema(value_type = Option<Text>)]
    pub username: Option<String>,
    #[schema(value_type = Option<Text>)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpConfig {
    #[schema(value_type = Token)]
    pub host: String,
    #[schema(value_type = Port)]
    pub port: u16,
    pub tls: SmtpTls,
    #[schema(value_type = crate::domain::schema::EmailAddress)]
    pub from_address: String,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnsConfig {
    #[schema(value_type = Region)]
    pub region: String,
    #[schema(value_type = Option<SenderId>)]
    pub sender_id: Option<String>,
    #[schema(value_type = Option<crate::domain::schema::PhoneNumber>)]
    pub origination_number: Option<String>,
    pub sms_type: Option<SmsType>,
    #[schema(value_type = Option<EndpointUrl>)]
    pub endpoint_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
}

/// SNS's own spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum SmsType {
    Transactional,
    Promotional,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhatsappCredentials {
    #[schema(value_type = Token)]
    pub access_token: String,
    /// Verifies the signature of incoming status callbacks.
    #[schema(value_type = Option<Token>)]
    pub app_secret: Option<String>,
    /// What Meta's webhook set-up sends back (`hub.verify_token`) to prove the callback URL
    /// is this credential's.
    #[schema(value_type = Option<Token>)]
    pub verify_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhatsappConfig {
    #[schema(value_type = PhoneNumberId)]
    pub phone_number_id: String,
    #[schema(value_type = Option<GraphVersion>)]
    pub api_version: Option<String>,
    #[schema(value_type = Option<EndpointUrl>)]
    pub base_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscordCredentials {
    #[schema(value_type = Token)]
    pub bot_token: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscordConfig {
    #[schema(value_type = Option<EndpointUrl>)]
    pub base_url: Option<String>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
}

/// The sandbox has no secrets: `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCredentials {}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxConfig {
    /// How long each attempt takes.
    #[schema(value_type = Option<SandboxLatency>)]
    pub latency_ms: Option<u64>,
    /// Share of attempts that fail, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub fail_rate: Option<f64>,
    /// How attempts fail (default `retryable`).
    pub fail_mode: Option<FailMode>,
    /// Fail every message's first N attempts, then succeed: a deterministic failure pattern for
    /// tests. Counted by the message's attempts, which throttling does not spend.
    #[schema(value_type = Option<SandboxFailFirst>)]
    pub fail_first: Option<u32>,
    /// With `failMode: "throttled"` only: the Retry-After the sandbox answers with.
    #[schema(value_type = Option<SandboxRetryAfter>)]
    pub retry_after_ms: Option<u64>,
    /// Provider calls per second with this credential; see [`rate_limit()`].
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
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

/// The longest AWS region name.
const MAX_REGION_CHARS: usize = 32;
/// The longest WhatsApp phone number id.
const MAX_PHONE_NUMBER_ID_DIGITS: usize = 32;
/// Longest text a setting or secret may be; far beyond any real one, short of abuse.
const MAX_TEXT_CHARS: usize = 4096;
/// A sandbox delay beyond this would only stall workers; below the default
/// `delivery.provider_timeout` (30 s), so a sandbox call ends on its own.
const MAX_SANDBOX_LATENCY_MS: u64 = 10_000;
/// Beyond this a sandbox would never deliver within the default attempts anyway.
const MAX_SANDBOX_FAIL_FIRST: u32 = 100;
/// A real provider's Retry-After is rarely longer.
const MAX_SANDBOX_RETRY_AFTER_MS: u64 = 3_600_000;

crate::json_schema! {
    /// A key, token or identifier, as `Part::token` takes it.
    Token => schema::text(1, MAX_TEXT_CHARS)
        .pattern(Some(schema::no_whitespace()))
        .description(Some(format!("At most {MAX_TEXT_CHARS} characters, no whitespace.")))
}

/// The longest IAM access key id.
const MAX_ACCESS_KEY_ID_CHARS: usize = 128;

crate::json_schema! {
    /// An IAM access key id, as `AwsCredentials::check` takes it.
    AccessKeyId => schema::text(1, MAX_ACCESS_KEY_ID_CHARS)
        .pattern(Some("^[A-Za-z0-9_]+$"))
        .examples(["AKIAIOSFODNN7EXAMPLE"])
}

crate::json_schema! {
    /// A setting or secret that may hold spaces, as `Part::text` takes it.
    Text => schema::text(1, MAX_TEXT_CHARS)
        .pattern(Some(schema::not_blank()))
        .description(Some(format!("Not blank, at most {MAX_TEXT_CHARS} characters.")))
}

crate::json_schema! {
    /// An AWS region, as `Part::region` takes it.
    Region => schema::text(1, MAX_REGION_CHARS)
        .pattern(Some("^[a-z][a-z0-9]*(-[a-z0-9]+)+$"))
        .examples(["us-east-1"])
}

crate::json_schema! {
    /// `endpointUrl`/`baseUrl`, as `Part::endpoint` takes them.
    EndpointUrl => schema::text(1, crate::ssrf::MAX_URL_CHARS)
        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]"))
        .description(Some(
            "Where to send the provider calls instead of the provider's own API (an http(s) \
             URL). Only on servers with `providers.allow_endpoint_overrides`; the document of \
             a server without it does not list this field.",
        ))
}

crate::json_schema! {
    /// An SMTP port.
    Port => ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(u16::MAX))
}

crate::json_schema! {
    /// `snsTopicArns` of an `ses` config.
    SnsTopicArns => utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::domain::aws::SNS_TOPIC_ARN_PATTERN))
                .examples(["arn:aws:sns:us-east-1:123456789012:ses-events"]),
        )
        .max_items(Some(MAX_SNS_TOPICS))
        .description(Some(format!("At most {MAX_SNS_TOPICS} SNS topic ARNs.")))
}

crate::json_schema! {
    /// An SNS sender id.
    SenderId => schema::text(1, 11)
        .pattern(Some("^[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*$"))
        .description(Some("1 to 11 letters and digits, at least one letter."))
}

crate::json_schema! {
    /// A WhatsApp Business phone number id.
    PhoneNumberId => schema::text(1, MAX_PHONE_NUMBER_ID_DIGITS).pattern(Some("^[0-9]+$"))
}

crate::json_schema! {
    /// A Graph API version, as `is_graph_version` takes it.
    GraphVersion => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^v[0-9]+(\.[0-9]+)?$"))
        .examples(["v21.0"])
}

crate::json_schema! {
    /// `rateLimit` of any type's config.
    RateLimit => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_RATE_LIMIT))
        .description(Some(format!(
            "Provider calls per second with this credential, 1 to {MAX_RATE_LIMIT}, instead of \
             the server's default for its type."
        )))
}

crate::json_schema! {
    /// The sandbox's `latencyMs`.
    SandboxLatency => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_SANDBOX_LATENCY_MS))
}

crate::json_schema! {
    /// The sandbox's `failFirst`.
    SandboxFailFirst => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_SANDBOX_FAIL_FIRST))
}

crate::json_schema! {
    /// The sandbox's `retryAfterMs`.
    SandboxRetryAfter => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_SANDBOX_RETRY_AFTER_MS))
}

impl ProviderType {
    /// The OpenAPI schema of this type's `credentials`, with what its checks add to the shape.
    pub fn credentials_schema(self) -> RefOr<JsonSchema> {
        match self {
            ProviderType::Ses | ProviderType::Sns => reference::<AwsCredentials>(),
            ProviderType::Smtp => smtp_credentials(),
            ProviderType::WhatsappCloud => reference::<WhatsappCredentials>(),
            ProviderType::DiscordBot => reference::<DiscordCredentials>(),
            ProviderType::Sandbox => reference::<SandboxCredentials>(),
        }
    }

    /// The OpenAPI schema of this type's `config`, with what its checks add to the shape.
    pub fn config_schema(self) -> RefOr<JsonSchema> {
        match self {
            ProviderType::Ses => reference::<SesConfig>(),
            ProviderType::Smtp => reference::<SmtpConfig>(),
            ProviderType::Sns => reference::<SnsConfig>(),
            ProviderType::WhatsappCloud => reference::<WhatsappConfig>(),
            ProviderType::DiscordBot => reference::<DiscordConfig>(),
            ProviderType::Sandbox => sandbox_config(),
        }
    }

    /// Whether this type's config has required fields (so `config` itself is required).
    pub fn config_required(self) -> bool {
        !matches!(self, ProviderType::DiscordBot | ProviderType::Sandbox)
    }

    /// The component schemas that [`Self::credentials_schema`] and [`Self::config_schema`]
    /// refer to, and those they refer to.
    pub fn schemas(schemas: &mut Vec<(String, RefOr<JsonSchema>)>) {
        fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<JsonSchema>)>) {
            schemas.push((T::name().into_owned(), T::schema()));
            T::schemas(schemas);
        }
        add::<AwsCredentials>(schemas);
        add::<Text>(schemas);
        add::<WhatsappCredentials>(schemas);
        add::<DiscordCredentials>(schemas);
        add::<SandboxCredentials>(schemas);
        add::<SesConfig>(schemas);
        add::<SmtpConfig>(schemas);
        add::<SnsConfig>(schemas);
        add::<WhatsappConfig>(schemas);
        add::<DiscordConfig>(schemas);
        SandboxConfig::schemas(schemas);
    }
}

/// `smtp` credentials: `username` and `password` both, or neither. Alternatives of whole
/// objects rather than conditions beside the struct's schema, which generators handle poorly.
fn smtp_credentials() -> RefOr<JsonSchema> {
    let text = || RefOr::Ref(Ref::from_schema_name(Text::name()));
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let both = ObjectBuilder::new()
        .property("username", text())
        .property("password", text())
        .required("username")
        .required("password");
    let neither = ObjectBuilder::new().property("username", null()).property("password", null());
    let mut alternatives = OneOfBuilder::new().description(Some(
        "`username` and `password` (both), or neither for a relay that takes mail without \
         authentication.",
    ));
    for object in [both, neither] {
        alternatives = alternatives.item(
            object
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        );
    }
    alternatives.into()
}

/// `sandbox` config: `retryAfterMs` only with `failMode: "throttled"`, as two whole objects.
fn sandbox_config() -> RefOr<JsonSchema> {
    let RefOr::T(JsonSchema::Object(config)) = <SandboxConfig as utoipa::PartialSchema>::schema()
    else {
        return reference::<SandboxConfig>();
    };
    let mut any_mode = config.clone();
    any_mode
        .properties
        .insert("retryAfterMs".to_owned(), ObjectBuilder::new().schema_type(Type::Null).into());
    let mut throttled = config;
    throttled.properties.insert("failMode".to_owned(), schema::one_of(&["throttled"]).into());
    throttled.required.extend(["failMode".to_owned(), "retryAfterMs".to_owned()]);
    OneOfBuilder::new().item(any_mode).item(throttled).into()
}

fn reference<T: ToSchema>() -> RefOr<JsonSchema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

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
        let valid = value.len() <= MAX_REGION_CHARS
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
        // it goes into the Authorization header of every request (the SDK panics on one that
        // cannot be a header value): IAM's own alphabet
        let id = &self.access_key_id;
        let valid = (1..=MAX_ACCESS_KEY_ID_CHARS).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            part.error(
                "accessKeyId",
                format!("must be 1 to {MAX_ACCESS_KEY_ID_CHARS} letters, digits and underscores"),
            );
        }
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
        if id.is_empty()
            || id.len() > MAX_PHONE_NUMBER_ID_DIGITS
            || !id.bytes().all(|b| b.is_ascii_digit())
        {
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
    fn aws_access_key_ids_can_go_into_a_header() {
        // the SDK panics signing a request whose key id is no header value
        for bad in ["AKIA\u{e9}", "AKIA-1", "AKIA 1", ""] {
            let credentials = json!({"accessKeyId": bad, "secretAccessKey": "s"});
            assert_eq!(
                fields(ProviderType::Ses, credentials),
                ["credentials.accessKeyId"],
                "{bad}"
            );
        }
        let credentials = json!({"accessKeyId": "AKIA_EXAMPLE_01", "secretAccessKey": "s"});
        assert!(fields(ProviderType::Sns, credentials).is_empty());
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
