//! One-click unsubscribe (RFC 8058, RFC 2369) for the emails of projects that switch it on:
//! the signed token of an unsubscribe link, the header fields that carry the link, and what
//! following it does (an `unsubscribe` entry on the project's suppression list).
//!
//! A token names the project, the message and the recipient's address, and is signed with
//! HMAC-SHA256 under a key derived from the server's master key. So the link needs no login and
//! no lookup to be trusted, and cannot be forged or altered: it is the permission to unsubscribe
//! that one address from that one project, and nothing else. It carries the id of the master
//! key its signing key was derived from, so the links in mail sent before a key rotation keep
//! working while the old key is among `security.previous_keys`. Tokens do not expire: an
//! unsubscribe request must be honoured whenever it comes.
//!
//! Layout, before URL-safe base64 without padding: a version byte (1), the master key's id (8
//! ASCII hex digits), the 32-byte tag, then `project id LF message id LF address` in UTF-8 (the
//! address last: ids hold no LF). The tag covers everything but itself.
//!
//! The delivery worker puts the headers on each email (`crate::delivery::unsubscribe`); the
//! link's page and its one-click POST are `crate::web::unsubscribe`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use ring::hmac;

use crate::crypto::{MasterKey, MasterKeys};
use crate::db::projects;
use crate::db::suppressions::{self, NewSuppression};
use crate::domain::channel::Channel;
use crate::domain::ids;
use crate::domain::recipient::is_email_address;
use crate::domain::suppression::{Reason, address_key};

/// The header field that lists the ways to unsubscribe (RFC 2369).
pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
/// The header field that says the link takes a one-click POST (RFC 8058).
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// The value of `List-Unsubscribe-Post`, and the body mail clients POST to the link.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// The path of the links, below `server.public_url`.
pub const PATH_PREFIX: &str = "/u/";

const VERSION: u8 = 1;
/// A master key's id: 8 hex digits (`crypto::MasterKey::id`).
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + TAG_LEN;
/// Longer tokens are refused unread. The address is at most 254 bytes and ids are short, so a
/// real token stays well below this.
pub const MAX_TOKEN_CHARS: usize = 1024;

/// What an unsubscribe link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub project_id: String,
    pub message_id: String,
    /// As `domain::suppression::address_key` makes it.
    pub address: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("it is not an unsubscribe link of this server (cut short or altered)")]
    Malformed,
    #[error("it was signed with a key this server no longer holds")]
    UnknownKey,
    #[error("its signature does not match (altered or forged)")]
    Forged,
}

/// The signing keys of links: one derived from each master key, the current one signing.
#[derive(Debug)]
pub struct Signer {
    keys: Vec<(String, hmac::Key)>,
}

/// A key of its own for links: HMAC-SHA256 of a fixed label under the master key, so the master
/// key itself never signs anything, and links and sealed secrets never share a key.
fn derive(master: &MasterKey) -> hmac::Key {
    let root = hmac::Key::new(hmac::HMAC_SHA256, master.bytes());
    let derived = hmac::sign(&root, b"relayit one-click unsubscribe v1");
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

impl Signer {
    pub fn new(keys: &MasterKeys) -> Signer {
        let all = std::iter::once(&keys.current).chain(&keys.previous);
        Signer { keys: all.map(|key| (key.id().to_owned(), derive(key))).collect() }
    }

    /// The token of `link`, signed with the current key.
    pub fn sign(&self, link: &Link) -> String {
        // `new` puts the current key first
        let Some((id, key)) = self.keys.first() else { return String::new() };
        let mut signed = Vec::with_capacity(
            1 + KEY_ID_LEN + link.project_id.len() + link.message_id.len() + link.address.len() + 2,
        );
        signed.push(VERSION);
        signed.extend_from_slice(id.as_bytes());
        for (i, part) in [&link.project_id, &link.message_id, &link.address].iter().enumerate() {
            if i > 0 {
                signed.push(b'\n');
            }
            signed.extend_from_slice(part.as_bytes());
        }
        let tag = hmac::sign(key, &signed);
        let mut token = Vec::with_capacity(signed.len() + TAG_LEN);
        token.extend_from_slice(&signed[..1 + KEY_ID_LEN]);
        token.extend_from_slice(tag.as_ref());
        token.extend_from_slice(&signed[1 + KEY_ID_LEN..]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// What `token` names, if this server signed it (with any of its keys).
    pub fn verify(&self, token: &str) -> Result<Link, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Malformed)?;
        if bytes.len() <= HEADER_LEN || bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let key_id =
            std::str::from_utf8(&bytes[1..1 + KEY_ID_LEN]).map_err(|_| TokenError::Malformed)?;
        let (_, key) =
            self.keys.iter().find(|(id, _)| id == key_id).ok_or(TokenError::UnknownKey)?;
        let tag = &bytes[1 + KEY_ID_LEN..HEADER_LEN];
        let payload = &bytes[HEADER_LEN..];
        let mut signed = Vec::with_capacity(1 + KEY_ID_LEN + payload.len());
        signed.extend_from_slice(&bytes[..1 + KEY_ID_LEN]);
        signed.extend_from_slice(payload);
        hmac::verify(key, &signed, tag).map_err(|_| TokenError::Forged)?;
        let text = std::str::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.splitn(3, '\n');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(project), Some(message), Some(address))
                if !project.is_empty() && !message.is_empty() && !address.is_empty() =>
            {
                Ok(Link {
                    project_id: project.to_owned(),
                    message_id: message.to_owned(),
                    address: address.to_owned(),
                })
            }
            _ => Err(TokenError::Malformed),
        }
    }
}

/// The link of `token` on the server at `public_url` (`server.public_url`).
pub fn link_url(public_url: &str, token: &str) -> String {
    format!("{}{PATH_PREFIX}{token}", public_url.trim_end_matches('/'))
}

/// Why `address` cannot be a project's `unsubscribeMailto`, if it cannot: it must be a bare
/// address (no display name) in ASCII, since it goes into a header field as a `mailto:` URI.
pub fn mailto_refusal(address: &str) -> Option<&'static str> {
    // `is_email_address` takes `Name <addr>` too
    let bare = address.bytes().all(|b| b.is_ascii_graphic() && !b"<>\"".contains(&b));
    if !bare || !is_email_address(address) {
        Some("must be an email address such as unsubscribe@example.com (ASCII, no display name)")
    } else {
        None
    }
}

/// `mailto:{address}?subject=unsubscribe`, the address percent-encoded where a URI needs it
/// (RFC 6068).
pub fn mailto_uri(address: &str) -> String {
    let mut uri = String::from("mailto:");
    for byte in address.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_~+@".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?subject=unsubscribe");
    uri
}

/// The header fields of an email whose one-click link is `url`, with `mailto` listed after it
/// (RFC 2369 lists the preferred way first; RFC 8058 needs the HTTPS link among them).
pub fn headers(url: &str, mailto: Option<&str>) -> [(&'static str, String); 2] {
    let mut list = format!("<{url}>");
    if let Some(mailto) = mailto {
        list.push_str(&format!(", <{}>", mailto_uri(mailto)));
    }
    [(LIST_UNSUBSCRIBE, list), (LIST_UNSUBSCRIBE_POST, ONE_CLICK.to_owned())]
}

/// What following a link did.
#[derive(Debug)]
pub enum Unsubscribed {
    /// The address is suppressed from now on: by the entry of this id.
    Added(String),
    /// It was suppressed already (by an earlier unsubscribe, a bounce, a complaint or by hand).
    Listed,
    /// The link's project no longer exists.
    ProjectGone,
}

/// Adds the address of `link` to its project's suppression list (reason `unsubscribe`, naming
/// the message), unless it is listed already. Whether the project still has one-click
/// unsubscribe switched on does not matter: a link sent while it was must keep working.
pub async fn unsubscribe(conn: &mut AsyncPgConnection, link: &Link) -> QueryResult<Unsubscribed> {
    let Some(organization_id) = projects::organization_of(conn, &link.project_id).await? else {
        return Ok(Unsubscribed::ProjectGone);
    };
    let new = NewSuppression {
        id: ids::new_id(ids::SUPPRESSION),
        organization_id,
        project_id: link.project_id.clone(),
        channel: Channel::Email.as_str().to_owned(),
        address: address_key(Channel::Email, &link.address),
        reason: Reason::Unsubscribe.as_str().to_owned(),
        message_id: Some(link.message_id.clone()),
        note: None,
        created_at: Utc::now(),
    };
    // A project deleted since it was found takes the entry with it (the foreign key cascades),
    // or refuses it while its deletion is under way: gone either way.
    match suppressions::insert(conn, &new).await {
        Ok(Some(added)) => Ok(Unsubscribed::Added(added.id)),
        Ok(None) => Ok(Unsubscribed::Listed),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        )) => Ok(Unsubscribed::ProjectGone),
        Err(error) => Err(error),
    }
}

/// Whether `link`'s address is on its project's suppression list already.
pub async fn listed(conn: &mut AsyncPgConnection, link: &Link) -> QueryResult<bool> {
    let address = address_key(Channel::Email, &link.address);
    let entry =
        suppressions::find_address(conn, &link.project_id, Channel::Email.as_str(), &address)
            .await?;
    Ok(entry.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> MasterKeys {
        MasterKeys { current: MasterKey::from_bytes([byte; 32]), previous: vec![] }
    }

    fn link() -> Link {
        Link {
            project_id: "prj_01jf3q6zvqe3f7m1s9gkxw5h2c".into(),
            message_id: "msg_01jf3q6zvqe3f7m1s9gkxw5h2d".into(),
            address: "alice@example.com".into(),
        }
    }

    #[test]
    fn tokens_round_trip_and_are_url_safe() {
        let signer = Signer::new(&keys(1));
        let token = signer.sign(&link());
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(token.len() < 200, "{}", token.len());
        assert_eq!(signer.verify(&token), Ok(link()));
        // one token per link: the same link signs the same
        assert_eq!(signer.sign(&link()), token);
    }

    #[test]
    fn altered_forged_and_foreign_tokens_are_refused() {
        let signer = Signer::new(&keys(1));
        let token = signer.sign(&link());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // another address, same tag
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(signer.verify(&URL_SAFE_NO_PAD.encode(&bytes)), Err(TokenError::Forged));
        // signed by another server
        let other = Signer::new(&keys(2)).sign(&link());
        assert_eq!(signer.verify(&other), Err(TokenError::UnknownKey));
        for bad in ["", "x", "!!!", &token[..token.len() - 3], &"A".repeat(2000)] {
            assert!(signer.verify(bad).is_err(), "{bad}");
        }
        assert_eq!(signer.verify(&token[..40]), Err(TokenError::Malformed));
    }

    #[test]
    fn links_of_a_previous_key_keep_working_after_a_rotation() {
        let old = keys(1);
        let token = Signer::new(&old).sign(&link());
        let rotated =
            MasterKeys { current: MasterKey::from_bytes([3; 32]), previous: vec![old.current] };
        let signer = Signer::new(&rotated);
        assert_eq!(signer.verify(&token), Ok(link()));
        assert_ne!(signer.sign(&link()), token, "new links use the new key");
    }

    #[test]
    fn headers_list_the_link_then_the_mailto() {
        let url = link_url("https://relay.example.com/", "abc");
        assert_eq!(url, "https://relay.example.com/u/abc");
        let [list, post] = headers(&url, None);
        assert_eq!(list, (LIST_UNSUBSCRIBE, "<https://relay.example.com/u/abc>".to_owned()));
        assert_eq!(post, (LIST_UNSUBSCRIBE_POST, "List-Unsubscribe=One-Click".to_owned()));
        let [list, _] = headers(&url, Some("stop+news@example.com"));
        assert_eq!(
            list.1,
            "<https://relay.example.com/u/abc>, <mailto:stop+news@example.com?subject=unsubscribe>"
        );
        assert_eq!(mailto_uri("a&b@example.com"), "mailto:a%26b@example.com?subject=unsubscribe");
        assert!(mailto_refusal("unsubscribe@example.com").is_none());
        for bad in ["Alice <a@example.com>", "zoë@example.com", "nope", ""] {
            assert!(mailto_refusal(bad).is_some(), "{bad}");
        }
    }
}
