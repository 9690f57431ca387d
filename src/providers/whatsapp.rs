//! The WhatsApp Cloud API connector: one `POST {baseUrl}/{apiVersion}/{phoneNumberId}/messages`
//! per attempt, with the tenant's access token as a bearer token.
//!
//! One HTTP client (and so one connection pool) serves every credential: the token travels
//! with each request. Graph answers errors as `{"error": {"code", "message", "error_data":
//! {"details"}}}`; [`classify`] maps its codes (and, for codes it does not know, the HTTP
//! status) onto the worker's error kinds. Delivery receipts arrive separately, as signed
//! callbacks (`crate::inbound::whatsapp`).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::messages::Message;
use crate::domain::content::WhatsappContent;
use crate::domain::provider_types::{WhatsappConfig, WhatsappCredentials};
use crate::providers::connector::{
    Connector, OpenedCredential, ProviderError, ProviderReceipt, SendFuture, VerifyFuture,
    describe, endpoint_override, excerpt, json_answer, truncate,
};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Graph version used when a credential names none; each version is supported for about
/// two years after its release.
pub const DEFAULT_API_VERSION: &str = "v23.0";

/// Graph error codes that mean "slow down": application, account and business-account rate
/// limits, Cloud API throughput, the per-recipient pair rate limit and the spam rate limit.
const THROTTLED: &[i64] = &[4, 17, 32, 613, 80007, 130429, 131048, 131056];
/// The token or the app's permissions were refused (190: token expired or invalid; 0, 3, 10
/// and 200-299: authorization and permission errors; 131031: business account locked).
const CREDENTIAL: &[i64] = &[0, 3, 10, 190, 131031];
/// Temporary trouble on Meta's side.
const RETRYABLE: &[i64] = &[1, 2, 131000, 131016, 131057, 133004];
/// This message will never go: bad parameters, undeliverable, outside the 24-hour window,
/// unsupported type, missing or invalid template.
const PERMANENT: &[i64] =
    &[100, 131008, 131009, 131021, 131026, 131030, 131047, 131051, 131052, 131053, 133010];

pub struct Whatsapp {
    http: reqwest::Client,
    overrides: bool,
}

impl Whatsapp {
    pub fn new(overrides: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("RelayIt/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, overrides })
    }

    /// `{baseUrl}/{apiVersion}/{phoneNumberId}{tail}`.
    fn url(&self, config: &WhatsappConfig, tail: &str) -> Result<String, ProviderError> {
        let base = endpoint_override(config.base_url.as_deref(), self.overrides)?
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        let version = config.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        Ok(format!("{base}/{version}/{}{tail}", config.phone_number_id))
    }

    /// Sends `request` with the credential's token and returns the JSON answer, or the error
    /// Graph's answer means.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        secrets: &WhatsappCredentials,
    ) -> Result<Value, ProviderError> {
        let response = request.bearer_auth(&secrets.access_token).send().await.map_err(|e| {
            ProviderError::Retryable(format!("cannot reach Graph: {}", describe(&e)))
        })?;
        json_answer("Graph", response, classify).await
    }
}

impl Connector for Whatsapp {
    fn send<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let config: WhatsappConfig = credential.config_as()?;
            let secrets: WhatsappCredentials = credential.secrets_as()?;
            let content: WhatsappContent = serde_json::from_value(message.content.clone())
                .map_err(|e| ProviderError::Permanent(format!("not WhatsApp content: {e}")))?;
            let body = message_body(&message.recipient, &content)?;
            let request = self.http.post(self.url(&config, "/messages")?).json(&body);
            let answer = self.call(request, &secrets).await?;
            let id = answer["messages"][0]["id"].as_str().filter(|id| !id.is_empty());
            match id {
                Some(id) => Ok(ProviderReceipt { provider_message_id: id.to_owned() }),
                // Taken, most likely; sending again could deliver it twice.
                None => Err(ProviderError::Permanent(
                    "Graph accepted the message without giving its id (messages[0].id)".to_owned(),
                )),
            }
        })
    }

    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async move {
            let config: WhatsappConfig = credential.config_as()?;
            let secrets: WhatsappCredentials = credential.secrets_as()?;
            let url = self.url(&config, "")?;
            let request =
                self.http.get(url).query(&[("fields", "display_phone_number,verified_name")]);
            let answer = self.call(request, &secrets).await?;
            let number = answer["display_phone_number"].as_str().unwrap_or("?");
            let name = answer["verified_name"].as_str().unwrap_or("?");
            Ok(format!(
                "phone number {} is {number} ({name}) and the token may use it",
                config.phone_number_id
            ))
        })
    }
}

/// The body Graph documents for a message to one person: `to` without its `+`, and either a
/// text or a template.
pub fn message_body(to: &str, content: &WhatsappContent) -> Result<Value, ProviderError> {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to.strip_prefix('+').unwrap_or(to),
    });
    match (&content.text, &content.template) {
        (Some(text), None) => {
            body["type"] = json!("text");
            body["text"] = json!({"preview_url": false, "body": text});
        }
        (None, Some(template)) => {
            let mut value = json!({"name": template.name, "language": {"code": template.language}});
            if let Some(components) = &template.components {
                value["components"] = json!(components);
            }
            body["type"] = json!("template");
            body["template"] = value;
        }
        _ => {
            return Err(ProviderError::Permanent(
                "WhatsApp content needs exactly one of text and template".to_owned(),
            ));
        }
    }
    Ok(body)
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: Option<i64>,
    message: Option<String>,
    error_subcode: Option<i64>,
    error_data: Option<GraphErrorData>,
}

#[derive(Deserialize)]
struct GraphErrorData {
    details: Option<String>,
}

/// What a Graph error answer means for the message.
pub fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> ProviderError {
    let Ok(GraphErrorBody { error }) = serde_json::from_slice::<GraphErrorBody>(body) else {
        let text = format!("Graph answered {status}: {}", excerpt(body));
        return by_status(status, text, retry_after);
    };
    let mut text = match error.code {
        Some(code) => format!("Graph error {code}"),
        None => format!("Graph error (HTTP {})", status.as_u16()),
    };
    if let Some(subcode) = error.error_subcode {
        text.push_str(&format!(" (subcode {subcode})"));
    }
    if let Some(message) = error.message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(&message);
    }
    if let Some(details) = error.error_data.and_then(|d| d.details).filter(|d| !d.is_empty()) {
        text.push_str(" - ");
        text.push_str(&details);
    }
    let text = truncate(text);
    match error.code {
        Some(code) if THROTTLED.contains(&code) => {
            ProviderError::Throttled { message: text, retry_after }
        }
        Some(code) if CREDENTIAL.contains(&code) || (200..300).contains(&code) => {
            ProviderError::Credential(text)
        }
        Some(code) if RETRYABLE.contains(&code) => ProviderError::Retryable(text),
        Some(code) if PERMANENT.contains(&code) || (132000..133000).contains(&code) => {
            ProviderError::Permanent(text)
        }
        _ => by_status(status, text, retry_after),
    }
}

/// For answers whose code says nothing we know.
fn by_status(status: StatusCode, text: String, retry_after: Option<Duration>) -> ProviderError {
    match status.as_u16() {
        429 => ProviderError::Throttled { message: text, retry_after },
        401 => ProviderError::Credential(text),
        408 | 500..=599 => ProviderError::Retryable(text),
        _ => ProviderError::Permanent(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, code: i64) -> ProviderError {
        let body = json!({"error": {"message": "m", "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "d"}, "fbtrace_id": "x"}});
        classify(StatusCode::from_u16(status).unwrap(), body.to_string().as_bytes(), None)
    }

    #[test]
    fn graph_codes_decide_before_statuses() {
        for code in [130429, 131056, 4, 80007] {
            assert_eq!(graph(400, code).kind(), "throttled", "{code}");
        }
        for code in [131026, 131047, 131051, 100, 132001] {
            assert_eq!(graph(400, code).kind(), "permanent", "{code}");
        }
        for code in [190, 10, 200, 299] {
            assert_eq!(graph(401, code).kind(), "credential", "{code}");
        }
        assert_eq!(graph(500, 131000).kind(), "retryable");
        assert_eq!(graph(503, 999_999).kind(), "retryable", "unknown code: by status");
        assert_eq!(graph(400, 999_999).kind(), "permanent");
        assert_eq!(graph(400, 131026).to_string(), "Graph error 131026: m - d");
        let plain = classify(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert_eq!(
            plain,
            ProviderError::Retryable(
                "Graph answered 502 Bad Gateway: <html>bad gateway</html>".into()
            )
        );
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, b"", Some(Duration::from_secs(3))),
            ProviderError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn bodies_follow_the_cloud_api() {
        let text = WhatsappContent { text: Some("hi".into()), template: None };
        assert_eq!(
            message_body("+14155550123", &text).unwrap(),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "14155550123", "type": "text", "text": {"preview_url": false, "body": "hi"}})
        );
        let template = WhatsappContent {
            text: None,
            template: Some(crate::domain::content::WhatsappTemplate {
                name: "hello_world".into(),
                language: "en_US".into(),
                components: None,
            }),
        };
        assert_eq!(
            message_body("+14155550123", &template).unwrap()["template"],
            json!({"name": "hello_world", "language": {"code": "en_US"}})
        );
    }
}
