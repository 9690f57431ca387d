//! Who a message can go to, per channel: the one rule for each kind of address (email, E.164
//! phone number, Discord id), used by `/v1/send`, the provider configs and `relayit admin`.

use crate::domain::channel::Channel;
use crate::domain::validate::Validator;

/// Emails are compared trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The longest email address, in bytes (RFC 5321's limit on a path).
pub const MAX_EMAIL_BYTES: usize = 254;

/// What [`is_e164`] accepts, as a regular expression (for the OpenAPI document).
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{6,14}$";

/// What [`is_snowflake`], optionally after `user:`, accepts as a regular expression.
pub const DISCORD_TARGET_PATTERN: &str = "^(user:)?[0-9]{17,20}$";

/// An RFC 5322 addr-spec (`alice@example.com`) of at most `MAX_EMAIL_BYTES` bytes.
pub fn is_email_address(addr: &str) -> bool {
    addr.len() <= MAX_EMAIL_BYTES && email_address::EmailAddress::is_valid(addr)
}

/// One RFC 5322 address: an addr-spec, optionally as `Display Name <addr-spec>`.
pub fn is_email(text: &str) -> bool {
    let addr = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    is_email_address(addr)
}

/// A phone number in E.164 form: `+`, then 7 to 15 digits, the first not 0 (a country code and
/// a subscriber number; no shorter number is dialable).
pub fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// A Discord id (a snowflake): 17 to 20 digits.
pub fn is_snowflake(text: &str) -> bool {
    (17..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Checks `to` for `channel` into `check` under `field`.
pub fn check_recipient(check: &mut Validator, field: &str, channel: Channel, to: &str) {
    let ok = match channel {
        Channel::Email => is_email(to),
        Channel::Sms | Channel::Whatsapp => is_e164(to),
        Channel::Discord => is_snowflake(to.strip_prefix("user:").unwrap_or(to)),
    };
    if !ok {
        let expected = match channel {
            Channel::Email => "an email address",
            Channel::Sms | Channel::Whatsapp => "a phone number in E.164 form, e.g. +14155550123",
            Channel::Discord => "a Discord channel id, or user:<id> for a direct message",
        };
        check.error(field, format!("must be {expected}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(is_email("alice@example.com") && is_email("Alice <alice@example.com>"));
        assert!(!is_email("alice") && !is_email("a@b@c") && !is_email(""));
        for ok in ["+14155550123", "+4420794600", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["14155550123", "+0123456789", "+1415555012345678", "+1-415-555", "+44", "+"] {
            assert!(!is_e164(bad), "{bad}");
        }
        assert!(is_snowflake("80351110224678912") && !is_snowflake("1234"));
    }
}
