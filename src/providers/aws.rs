//! What the SES and SNS connectors share: SDK clients built from a tenant's sealed access key
//! and kept per credential (in a [`ClientCache`], as every connector keeps its clients), and
//! the classification of AWS errors (docs/architecture.md, invariant 5).
//!
//! A client is built once per credential and reused for every message (each one carries its
//! own signing setup; building one per message would be wasteful), and rebuilt only when the
//! credential changes (its key, region or endpoint). All clients share one HTTPS connection
//! pool.
//!
//! The SDK's own retries are off: the worker's attempt must be at most one provider call
//! (invariant 3), and it retries on its own schedule.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{
    BehaviorVersion, Credentials, Region, SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::SdkConfig;
use serde::de::DeserializeOwned;

use crate::domain::provider_types::{AwsCredentials, SesConfig, SnsConfig};
use crate::providers::client_cache::ClientCache;
use crate::providers::connector::{
    OpenedCredential, ProviderError, ProviderReceipt, describe, endpoint_override, truncate,
};

/// The raw HTTP response in SDK errors (the same type for every AWS service crate).
pub type HttpResponse = aws_sdk_sesv2::config::http::HttpResponse;

/// A TCP and TLS handshake with AWS takes well under this; the whole call is bounded by
/// `delivery.provider_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An AWS credential's config: where its clients call.
pub trait AwsConfig: DeserializeOwned {
    fn region(&self) -> &str;
    /// `endpointUrl`: a local emulator or a proxy instead of AWS.
    fn endpoint_url(&self) -> Option<&str>;
}

impl AwsConfig for SesConfig {
    fn region(&self) -> &str {
        &self.region
    }

    fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }
}

impl AwsConfig for SnsConfig {
    fn region(&self) -> &str {
        &self.region
    }

    fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }
}

/// One AWS service's clients, by credential.
pub struct Clients<C> {
    allow_endpoint_overrides: bool,
    http: OnceLock<SharedHttpClient>,
    cache: ClientCache<C>,
}

impl<C> Clients<C> {
    pub fn new(allow_endpoint_overrides: bool) -> Self {
        Self { allow_endpoint_overrides, http: OnceLock::new(), cache: ClientCache::default() }
    }

    /// The client for `credential` with its config, built with `build` when there is none yet
    /// for this version of the credential. Unusable credentials are a `Credential` error.
    pub fn get<T: AwsConfig>(
        &self,
        credential: &OpenedCredential,
        build: impl FnOnce(&SdkConfig) -> C,
    ) -> Result<(Arc<C>, T), ProviderError> {
        let config: T = credential.config_as()?;
        let endpoint = endpoint_override(config.endpoint_url(), self.allow_endpoint_overrides)?;
        let client = self.cache.get_or_build(credential, || {
            let keys: AwsCredentials = credential.secrets_as()?;
            let http = self.http.get_or_init(|| {
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https()
            });
            let mut sdk = SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(config.region().to_owned()))
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    keys.access_key_id,
                    keys.secret_access_key,
                    None,
                    None,
                    "relayit",
                )))
                .http_client(http.clone())
                .retry_config(RetryConfig::disabled())
                .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
            if let Some(url) = endpoint {
                sdk = sdk.endpoint_url(url);
            }
            Ok(build(&sdk.build()))
        })?;
        Ok((client, config))
    }

    /// How many clients are cached (for tests of the cache).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// The receipt of a message `service` accepted, by its MessageId. Without one the message
/// could not be followed, and sending it again would duplicate it: a permanent error.
pub fn receipt(service: &str, message_id: Option<&str>) -> Result<ProviderReceipt, ProviderError> {
    match message_id.filter(|id| !id.is_empty()) {
        Some(id) => Ok(ProviderReceipt { provider_message_id: id.to_owned() }),
        None => Err(ProviderError::Permanent(format!(
            "{service} accepted the message without a MessageId"
        ))),
    }
}

/// Error codes (AWS's own spellings, across SES v2 and SNS) that say the credentials, or the
/// account behind them, cannot send: the next credential is tried and this one flagged.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "InvalidSecurity",
    "OptInRequired",
    // SES: the account or its configuration set may not send
    "AccountSuspendedException",
    "SendingPausedException",
    // SES: the configured configuration set does not exist
    "NotFoundException",
];

/// "Slow down": rescheduled without spending an attempt.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "Throttled",
    "KMSThrottling",
    "RequestLimitExceeded",
];

/// Might work later.
const RETRYABLE_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    // SES: a sending quota (daily, or per second) is used up for now
    "LimitExceededException",
];

/// Will never work for this message (the default for other 4xx answers as well).
const PERMANENT_CODES: &[&str] = &[
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
    "InvalidParameter",
    "InvalidParameterValue",
    "ParameterValueInvalid",
    "ValidationError",
    "EndpointDisabled",
];

/// Classifies an AWS answer from its error `code`, `message` and HTTP `status` (None when
/// there was no answer). `service` names the provider in the text.
pub fn classify_answer(
    service: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> ProviderError {
    let mut text = service.to_owned();
    if let Some(code) = code {
        text.push_str(&format!(" {code}"));
    }
    text.push_str(&format!(": {}", message.unwrap_or("no error message")));
    if let Some(status) = status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    let text = truncate(text);
    let is = |codes: &[&str]| code.is_some_and(|c| codes.contains(&c));
    if is(CREDENTIAL_CODES) {
        ProviderError::Credential(text)
    } else if is(THROTTLING_CODES) || status == Some(429) {
        ProviderError::Throttled { message: text, retry_after: None }
    } else if is(RETRYABLE_CODES) {
        ProviderError::Retryable(text)
    } else if is(PERMANENT_CODES) {
        ProviderError::Permanent(text)
    } else {
        match status {
            Some(401 | 403) => ProviderError::Credential(text),
            Some(400..=499) => ProviderError::Permanent(text),
            _ => ProviderError::Retryable(text),
        }
    }
}

/// Classifies an SDK error of any AWS operation.
pub fn classify<E>(service: &str, error: &SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            let message = err.message().map(str::to_owned).unwrap_or_else(|| err.to_string());
            let status = context.raw().status().as_u16();
            classify_answer(service, err.code(), Some(&message), Some(status))
        }
        SdkError::ResponseError(context) => {
            let status = context.raw().status().as_u16();
            classify_answer(service, None, Some("unreadable answer"), Some(status))
        }
        SdkError::TimeoutError(_) => ProviderError::Retryable(format!("{service}: timed out")),
        SdkError::DispatchFailure(failure) => {
            let what = if failure.is_timeout() { "timed out" } else { "cannot connect" };
            ProviderError::Retryable(match std::error::Error::source(error) {
                Some(cause) => format!("{service}: {what}: {}", describe(cause)),
                None => format!("{service}: {what}"),
            })
        }
        // the request could not even be built: no later attempt would do better
        _ => ProviderError::Permanent(format!("{service}: cannot build the request: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sesv2::operation::send_email::SendEmailError;
    use aws_sdk_sesv2::types::error::{MessageRejected, TooManyRequestsException};
    use aws_smithy_types::body::SdkBody;

    fn kind(code: &str, status: u16) -> &'static str {
        classify_answer("SES", Some(code), Some("text"), Some(status)).kind()
    }

    #[test]
    fn aws_codes_map_to_kinds() {
        for code in ["MessageRejected", "MailFromDomainNotVerifiedException", "InvalidParameter"] {
            assert_eq!(kind(code, 400), "permanent", "{code}");
        }
        for code in ["SignatureDoesNotMatch", "InvalidClientTokenId", "AuthorizationError"] {
            assert_eq!(kind(code, 403), "credential", "{code}");
        }
        assert_eq!(kind("UnrecognizedClientException", 400), "credential");
        assert_eq!(kind("AccountSuspendedException", 400), "credential");
        for code in ["Throttling", "TooManyRequestsException", "Throttled"] {
            assert_eq!(kind(code, 400), "throttled", "{code}");
        }
        assert_eq!(kind("LimitExceededException", 400), "retryable");
        assert_eq!(kind("InternalFailure", 500), "retryable");
        // unknown codes go by status
        assert_eq!(kind("Whatever", 503), "retryable");
        assert_eq!(kind("Whatever", 429), "throttled");
        assert_eq!(kind("Whatever", 403), "credential");
        assert_eq!(kind("Whatever", 404), "permanent");
        assert_eq!(classify_answer("SNS", None, None, None).kind(), "retryable");
        let text = classify_answer("SES", Some("MessageRejected"), Some("not verified"), Some(400))
            .to_string();
        assert_eq!(text, "SES MessageRejected: not verified (HTTP 400)");
    }

    fn credential(secret: &str, config: serde_json::Value) -> OpenedCredential {
        let secrets = serde_json::json!({"accessKeyId": "AKID", "secretAccessKey": secret});
        let serde_json::Value::Object(secrets) = secrets else { unreachable!() };
        OpenedCredential::new(
            "prv_1".into(),
            "ses".into(),
            crate::domain::provider_types::ProviderType::Ses,
            config,
            secrets,
        )
    }

    #[test]
    fn clients_are_built_once_per_credential_and_again_when_it_changes() {
        let clients: Clients<u32> = Clients::new(true);
        let here = serde_json::json!({"region": "us-east-1", "fromAddress": "a@example.com"});
        let get = |credential: &OpenedCredential, value: u32| {
            let (client, config) = clients.get::<SesConfig>(credential, |_| value).unwrap();
            (*client, config.region)
        };
        for _ in 0..3 {
            assert_eq!(get(&credential("s1", here.clone()), 1), (1, "us-east-1".to_owned()));
        }
        assert_eq!(get(&credential("s2", here.clone()), 7), (7, "us-east-1".to_owned()));
        assert_eq!(clients.len(), 1);
        let moved = serde_json::json!({"region": "eu-west-1", "fromAddress": "a@example.com",
            "endpointUrl": "http://127.0.0.1:1"});
        assert_eq!(get(&credential("s2", moved.clone()), 8), (8, "eu-west-1".to_owned()));

        let strict: Clients<u32> = Clients::new(false);
        let refused = strict.get::<SesConfig>(&credential("s1", moved), |_| 1).unwrap_err();
        assert_eq!(refused.kind(), "credential");
        assert!(refused.to_string().contains("providers.allow_endpoint_overrides"), "{refused}");
        assert!(strict.is_empty());

        let keyless = OpenedCredential::new(
            "prv_2".into(),
            "ses".into(),
            crate::domain::provider_types::ProviderType::Ses,
            here,
            serde_json::Map::new(),
        );
        let error = clients.get::<SesConfig>(&keyless, |_| 1).unwrap_err();
        assert_eq!(error.kind(), "credential");
        let unconfigured = credential("s1", serde_json::Value::Null);
        assert_eq!(
            clients.get::<SesConfig>(&unconfigured, |_| 1).unwrap_err().kind(),
            "credential"
        );
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    #[test]
    fn sdk_errors_are_classified_with_their_status() {
        let rejected = SdkError::service_error(
            SendEmailError::MessageRejected(
                MessageRejected::builder().message("Email address is not verified.").build(),
            ),
            response(400),
        );
        let error = classify("SES", &rejected);
        assert_eq!(error.kind(), "permanent");
        assert!(error.to_string().contains("Email address is not verified."), "{error}");

        let throttled = SdkError::service_error(
            SendEmailError::TooManyRequestsException(
                TooManyRequestsException::builder().message("slow down").build(),
            ),
            response(429),
        );
        assert_eq!(classify("SES", &throttled).kind(), "throttled");

        // a signature refusal arrives as an unmodelled error carrying its code
        let meta = aws_sdk_sesv2::error::ErrorMetadata::builder()
            .code("SignatureDoesNotMatch")
            .message("The request signature we calculated does not match")
            .build();
        let refused = SdkError::service_error(SendEmailError::generic(meta), response(403));
        assert_eq!(classify("SES", &refused).kind(), "credential");

        let unavailable = SdkError::service_error(
            SendEmailError::generic(aws_sdk_sesv2::error::ErrorMetadata::builder().build()),
            response(503),
        );
        assert_eq!(classify("SES", &unavailable).kind(), "retryable");

        let timeout: SdkError<SendEmailError, HttpResponse> = SdkError::timeout_error("no answer");
        assert_eq!(classify("SES", &timeout).kind(), "retryable");
        let unbuildable: SdkError<SendEmailError, HttpResponse> =
            SdkError::construction_failure("bad input");
        assert_eq!(classify("SES", &unbuildable).kind(), "permanent");
    }
}
