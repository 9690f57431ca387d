//! The channels a message goes out on.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Whatsapp,
    Discord,
}

impl Channel {
    pub const ALL: [Channel; 4] =
        [Channel::Email, Channel::Sms, Channel::Whatsapp, Channel::Discord];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Discord => "discord",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}
