//! Suppressions: the addresses of a project no message may go to (they hard-bounced,
//! complained or unsubscribed, or a person listed them), and the one form an address takes
//! for comparing, so that `Alice <Alice@Example.com>` in a send matches the `alice@example.com`
//! an SES bounce names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::channel::Channel;
use crate::domain::recipient::normalize_email;

pub const MAX_NOTE_CHARS: usize = 500;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The provider reported a permanent bounce (SES `Permanent`).
    HardBounce,
    /// The recipient marked a message as spam (SES `Complaint`), or opted out with the
    /// provider (WhatsApp's marketing opt-out).
    Complaint,
    /// The recipient used the one-click unsubscribe link.
    Unsubscribe,
    /// Added through the API or the dashboard.
    Manual,
}

impl Reason {
    pub const ALL: [Reason; 4] =
        [Reason::HardBounce, Reason::Complaint, Reason::Unsubscribe, Reason::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HardBounce => "hard_bounce",
            Reason::Complaint => "complaint",
            Reason::Unsubscribe => "unsubscribe",
            Reason::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// How a message's `statusReason` tells it.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::HardBounce => "it hard-bounced",
            Reason::Complaint => "its recipient complained",
            Reason::Unsubscribe => "its recipient unsubscribed",
            Reason::Manual => "it was added to the suppression list",
        }
    }
}

/// The form of `to` that suppressions are kept and compared in: an email's addr-spec, trimmed
/// and lower-cased (its display name dropped); any other address as it is.
pub fn address_key(channel: Channel, to: &str) -> String {
    match channel {
        Channel::Email => {
            let to = to.trim();
            let addr = match (to.rfind('<'), to.strip_suffix('>')) {
                (Some(open), Some(inner)) => &inner[open + 1..],
                _ => to,
            };
            normalize_email(addr)
        }
        _ => to.trim().to_owned(),
    }
}

/// A message's `statusReason` when its recipient is suppressed.
pub fn status_reason(reason: Reason, suppression_id: &str) -> String {
    format!(
        "not sent: the recipient is on the project's suppression list because {} ({suppression_id})",
        reason.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_in_one_form() {
        let key = |to| address_key(Channel::Email, to);
        assert_eq!(key("Alice <Alice@Example.COM>"), "alice@example.com");
        assert_eq!(key(" bob@example.com "), "bob@example.com");
        assert_eq!(address_key(Channel::Sms, "+14155550123"), "+14155550123");
        assert_eq!(
            address_key(Channel::Discord, "user:123456789012345678"),
            "user:123456789012345678"
        );
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert!(status_reason(Reason::HardBounce, "sup_1").contains("hard-bounced (sup_1)"));
    }
}
