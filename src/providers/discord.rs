//! The Discord connector: a bot posts to a channel (`to` = channel id), or opens the direct
//! message channel of a user first (`to` = `user:<id>`, `POST /users/@me/channels`), through
//! serenity's HTTP client with the tenant's bot token.
//!
//! Each credential gets its own serenity `Http` (cached, never one per message): its rate
//! limiter keeps Discord's per-route buckets for that token and waits them out before calling.
//! We send serenity's routed requests ourselves and read the raw answer, because serenity's
//! error type drops what the worker needs from a refusal: the 429's `retry_after`, and the
//! status codes that decide between credential, permanent and retryable.
//!
//! A `baseUrl` (serenity's proxy setting, for local stubs) needs serenity's rate limiter off —
//! the limiter ignores the proxy — so a 429 then comes back to us and is answered as throttled
//! with Discord's `retry_after`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route};
use serenity::model::id::{ChannelId, UserId};

use crate::db::messages::Message;
use crate::domain::content::DiscordContent;
use crate::domain::provider_types::{DiscordConfig, DiscordCredentials};
use crate::providers::client_cache::ClientCache;
use crate::providers::connector::{
    Connector, OpenedCredential, ProviderError, ProviderReceipt, SendFuture, VerifyFuture,
    describe, endpoint_override, excerpt, json_answer, truncate,
};

pub struct Discord {
    http: reqwest::Client,
    overrides: bool,
    bots: ClientCache<Bot>,
}

/// Direct-message channels remembered per bot at most; past that the memory starts over.
const MAX_DM_CHANNELS: usize = 10_000;

/// One bot token's client, and the direct-message channels it has opened (Discord answers the
/// same channel for the same user every time, so one call per user is enough).
struct Bot {
    http: Http,
    dm_channels: Mutex<HashMap<UserId, ChannelId>>,
}

/// Where a message goes, from its `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Channel(ChannelId),
    User(UserId),
}

impl Target {
    pub fn parse(to: &str) -> Result<Target, ProviderError> {
        let (user, id) = match to.strip_prefix("user:") {
            Some(id) => (true, id),
            None => (false, to),
        };
        // a snowflake is a non-zero u64 (serenity's ids panic on 0)
        let id = id.parse::<u64>().ok().filter(|id| *id != 0).ok_or_else(|| {
            ProviderError::Permanent(format!("`{to}` is not a Discord channel or user id"))
        })?;
        Ok(if user { Target::User(UserId::new(id)) } else { Target::Channel(ChannelId::new(id)) })
    }
}

impl Discord {
    pub fn new(overrides: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, overrides, bots: ClientCache::default() })
    }

    fn bot(&self, credential: &OpenedCredential) -> Result<std::sync::Arc<Bot>, ProviderError> {
        let config: DiscordConfig = credential.config_as()?;
        let secrets: DiscordCredentials = credential.secrets_as()?;
        let base = endpoint_override(config.base_url.as_deref(), self.overrides)?;
        self.bots.get_or_build(credential, || {
            // serenity adds the `Bot ` prefix
            let mut builder = HttpBuilder::new(&secrets.bot_token).client(self.http.clone());
            if let Some(base) = base {
                builder = builder.proxy(base.trim_end_matches('/')).ratelimiter_disabled(true);
            }
            Ok(Bot { http: builder.build(), dm_channels: Mutex::new(HashMap::new()) })
        })
    }

    /// One request through the bot's rate limiter (or straight to the proxy), answered with
    /// its JSON body or the error Discord's answer means.
    async fn call(&self, bot: &Bot, request: Request<'_>) -> Result<Value, ProviderError> {
        let unreachable = |e: &dyn std::error::Error| {
            ProviderError::Retryable(format!("cannot reach Discord: {}", describe(e)))
        };
        let response = match &bot.http.ratelimiter {
            Some(limiter) => limiter.perform(request).await.map_err(|e| unreachable(&e))?,
            None => {
                let built = request
                    .build(&self.http, bot.http.token(), bot.http.proxy.as_deref())
                    .map_err(|e| unreachable(&e))?
                    .build()
                    .map_err(|e| unreachable(&e))?;
                self.http.execute(built).await.map_err(|e| unreachable(&e))?
            }
        };
        json_answer("Discord", response, classify).await
    }

    /// The channel of `target`: a direct message channel is opened (once per user).
    async fn channel(&self, bot: &Bot, target: Target) -> Result<ChannelId, ProviderError> {
        let user = match target {
            Target::Channel(channel) => return Ok(channel),
            Target::User(user) => user,
        };
        let known = bot.dm_channels.lock().unwrap_or_else(|p| p.into_inner()).get(&user).copied();
        if let Some(channel) = known {
            return Ok(channel);
        }
        let body = json!({"recipient_id": user.to_string()});
        let request =
            Request::new(Route::UserMeDmChannels, LightMethod::Post).body(Some(bytes(&body)));
        let answer = self.call(bot, request).await?;
        let channel = answer["id"]
            .as_str()
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|id| *id != 0)
            .map(ChannelId::new)
            .ok_or_else(|| {
                ProviderError::Retryable("Discord opened a DM channel without an id".to_owned())
            })?;
        let mut known = bot.dm_channels.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_DM_CHANNELS {
            known.clear();
        }
        known.insert(user, channel);
        Ok(channel)
    }
}

impl Connector for Discord {
    fn send<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let content: DiscordContent = serde_json::from_value(message.content.clone())
                .map_err(|e| ProviderError::Permanent(format!("not Discord content: {e}")))?;
            let target = Target::parse(&message.recipient)?;
            let bot = self.bot(credential)?;
            let channel_id = self.channel(&bot, target).await?;
            let request = Request::new(Route::ChannelMessages { channel_id }, LightMethod::Post)
                .body(Some(bytes(&message_body(&content))));
            let answer = self.call(&bot, request).await?;
            match answer["id"].as_str().filter(|id| !id.is_empty()) {
                Some(id) => Ok(ProviderReceipt { provider_message_id: id.to_owned() }),
                None => Err(ProviderError::Permanent(
                    "Discord accepted the message without giving its id".to_owned(),
                )),
            }
        })
    }

    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async move {
            let bot = self.bot(credential)?;
            let answer = self.call(&bot, Request::new(Route::UserMe, LightMethod::Get)).await?;
            let name = answer["username"].as_str().unwrap_or("?");
            let id = answer["id"].as_str().unwrap_or("?");
            Ok(format!("the token belongs to bot {name} ({id})"))
        })
    }
}

/// The create-message body: `content` and `embeds`, as given.
pub fn message_body(content: &DiscordContent) -> Value {
    let mut body = json!({});
    if let Some(text) = &content.text {
        body["content"] = json!(text);
    }
    if !content.embeds.is_empty() {
        body["embeds"] = json!(content.embeds);
    }
    body
}

fn bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Discord's error body: `{code, message}`, or for a 429 `{message, retry_after, global}`.
#[derive(Deserialize)]
struct DiscordError {
    code: Option<i64>,
    message: Option<String>,
    retry_after: Option<f64>,
    global: Option<bool>,
}

/// What a Discord error answer means for the message.
pub fn classify(status: StatusCode, body: &[u8], header_retry: Option<Duration>) -> ProviderError {
    let parsed = serde_json::from_slice::<DiscordError>(body).ok();
    let text = match &parsed {
        Some(error) => {
            let mut text = format!("Discord {}", status.as_u16());
            if let Some(code) = error.code.filter(|c| *c != 0) {
                text.push_str(&format!(" (code {code})"));
            }
            if let Some(message) = &error.message {
                text.push_str(": ");
                text.push_str(message);
            }
            if error.global == Some(true) {
                text.push_str(" (global rate limit)");
            }
            truncate(text)
        }
        None => format!("Discord answered {status}: {}", excerpt(body)),
    };
    match status.as_u16() {
        429 => {
            let retry_after = parsed
                .and_then(|e| e.retry_after)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
                .or(header_retry);
            ProviderError::Throttled { message: text, retry_after }
        }
        401 => ProviderError::Credential(text),
        408 | 500..=599 => ProviderError::Retryable(text),
        // 403 missing access or permissions, 404 unknown channel or user, 400 invalid body
        _ => ProviderError::Permanent(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("123456789012345678").unwrap(),
            Target::Channel(ChannelId::new(123456789012345678))
        );
        assert_eq!(
            Target::parse("user:123456789012345678").unwrap(),
            Target::User(UserId::new(123456789012345678))
        );
        for bad in ["00000000000000000", "user:0", "99999999999999999999", "x"] {
            assert_eq!(Target::parse(bad).unwrap_err().kind(), "permanent", "{bad}");
        }
    }

    #[test]
    fn errors_by_status() {
        let limited =
            br#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#;
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, limited, Some(Duration::from_secs(2))),
            ProviderError::Throttled {
                message: "Discord 429: You are being rate limited.".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
        let unauthorized = br#"{"message": "401: Unauthorized", "code": 0}"#;
        assert_eq!(classify(StatusCode::UNAUTHORIZED, unauthorized, None).kind(), "credential");
        let missing = br#"{"message": "Missing Access", "code": 50001}"#;
        assert_eq!(
            classify(StatusCode::FORBIDDEN, missing, None),
            ProviderError::Permanent("Discord 403 (code 50001): Missing Access".into())
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, b"oops", None).kind(), "retryable");
    }
}
