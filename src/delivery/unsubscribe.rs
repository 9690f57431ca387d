//! The one-click unsubscribe header fields of the emails a worker sends (`crate::unsubscribe`):
//! which projects switched them on, with their mailto address, and each email's signed link.
//!
//! A project's settings are read for the claimed batch in one statement, only for the projects
//! of its emails not already known, and kept for `delivery.credential_cache_ttl` (projects that
//! did not switch it on too, so that they cost nothing more): a change reaches deliveries
//! within that time, as a credential's does (`routing`), and the hot path makes no query per
//! message. Signing a link is an HMAC, made in the message's own delivery task.
//!
//! The link points at `server.public_url`, which must then be set in the worker's process as
//! well: without it no link can be made, and the emails go out without the header fields (the
//! API refuses to switch a project on when its own process has no public URL; this logs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::MasterKeys;
use crate::db::messages::Message;
use crate::db::projects;
use crate::domain::channel::Channel;
use crate::domain::suppression::address_key;
use crate::providers::connector::Extras;
use crate::unsubscribe::{Link, Signer, headers, link_url};

/// A project that switched one-click unsubscribe on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mailto: Option<String>,
}

/// A project's settings as read at a time; `None` when it has not switched it on (or is gone).
type Cached = (Instant, Option<Arc<Settings>>);

/// Beyond this many cached projects, expired ones are dropped when new ones are added.
const PRUNE_ABOVE: usize = 4096;

pub struct Unsubscribe {
    signer: Signer,
    /// `server.public_url`; `None` when it is empty.
    public_url: Option<String>,
    ttl: Duration,
    /// By project id.
    cache: Mutex<HashMap<String, Cached>>,
}

impl Unsubscribe {
    pub fn new(keys: &MasterKeys, public_url: &str, ttl: Duration) -> Self {
        let public_url = (!public_url.trim().is_empty()).then(|| public_url.trim().to_owned());
        Self { signer: Signer::new(keys), public_url, ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The settings of the projects of `messages`' emails that switched one-click unsubscribe
    /// on, by project id; one statement for those not cached, none when all are.
    pub async fn settings<'m>(
        &self,
        db: &crate::db::Pool,
        messages: impl Iterator<Item = &'m Message>,
    ) -> anyhow::Result<HashMap<String, Arc<Settings>>> {
        let mut found = HashMap::new();
        let mut missing = HashSet::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for message in messages {
                if message.channel != Channel::Email.as_str()
                    || found.contains_key(&message.project_id)
                    || missing.contains(&message.project_id)
                {
                    continue;
                }
                match cache.get(&message.project_id) {
                    Some((at, settings)) if at.elapsed() < self.ttl => {
                        if let Some(settings) = settings {
                            found.insert(message.project_id.clone(), settings.clone());
                        }
                    }
                    _ => {
                        missing.insert(message.project_id.clone());
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let ids: Vec<String> = missing.into_iter().collect();
        let rows = {
            let mut conn = db.get().await?;
            projects::unsubscribe_settings(&mut conn, &ids).await?
        };
        let mut loaded: HashMap<String, Option<Arc<Settings>>> =
            ids.into_iter().map(|id| (id, None)).collect();
        for (id, on, mailto) in rows {
            if !on {
                continue;
            }
            if self.public_url.is_none() {
                tracing::warn!(
                    project = %id,
                    "the project has one-click unsubscribe on, but server.public_url is not set \
                     in this process: its emails go out without List-Unsubscribe"
                );
                continue;
            }
            loaded.insert(id, Some(Arc::new(Settings { mailto })));
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= PRUNE_ABOVE {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        for (id, settings) in loaded {
            if let Some(settings) = &settings {
                found.insert(id.clone(), settings.clone());
            }
            if !self.ttl.is_zero() {
                cache.insert(id, (now, settings));
            }
        }
        Ok(found)
    }

    /// The header fields of `message`, an email of a project with `settings`: its own link
    /// (naming the project, the message and the recipient), and the mailto address. None for
    /// an email with `cc` or `bcc`: the fields are the same for every copy, and a copy's
    /// recipient would unsubscribe the `to` address.
    pub fn extras(&self, message: &Message, settings: &Settings) -> Extras {
        let Some(public_url) = &self.public_url else { return Extras::default() };
        let copied = |field: &str| message.content[field].as_array().is_some_and(|a| !a.is_empty());
        if copied("cc") || copied("bcc") {
            return Extras::default();
        }
        let link = Link {
            project_id: message.project_id.clone(),
            message_id: message.id.clone(),
            address: address_key(Channel::Email, &message.recipient),
        };
        let url = link_url(public_url, &self.signer.sign(&link));
        Extras { email_headers: headers(&url, settings.mailto.as_deref()).into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn an_email_gets_its_own_link_and_the_mailto() {
        let keys = MasterKeys { current: MasterKey::from_bytes([5; 32]), previous: vec![] };
        let unsubscribe =
            Unsubscribe::new(&keys, "https://relay.example.com/", Duration::from_secs(30));
        let message =
            Message { recipient: "Alice <Alice@Example.com>".into(), ..Message::sample() };
        let settings = Settings { mailto: Some("stop@example.com".into()) };
        let extras = unsubscribe.extras(&message, &settings);
        let [(list_name, list), (post_name, post)] = extras.email_headers.as_slice() else {
            panic!("two header fields: {extras:?}");
        };
        assert_eq!((*list_name, *post_name), ("List-Unsubscribe", "List-Unsubscribe-Post"));
        assert_eq!(post, "List-Unsubscribe=One-Click");
        let token = list
            .strip_prefix("<https://relay.example.com/u/")
            .and_then(|rest| rest.strip_suffix(">, <mailto:stop@example.com?subject=unsubscribe>"))
            .unwrap_or_else(|| panic!("{list}"));
        let link = Signer::new(&keys).verify(token).unwrap();
        assert_eq!(
            (link.project_id.as_str(), link.message_id.as_str(), link.address.as_str()),
            ("prj_1", "msg_1", "alice@example.com")
        );

        // without a public URL, no link
        let nowhere = Unsubscribe::new(&keys, "", Duration::from_secs(30));
        assert_eq!(nowhere.extras(&message, &settings), Extras::default());
    }
}
