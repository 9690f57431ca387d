//! Amazon SNS messages posted to an HTTP subscription: their envelope, the check of their
//! signature, and the confirmation of a subscription.
//!
//! Anyone can post to a public URL, so nothing in a message is believed before its signature
//! verifies (AWS's procedure): the string to sign is rebuilt from the message's fields in their
//! fixed order, and checked with RSA PKCS#1 v1.5 over SHA-1 (`SignatureVersion` 1) or SHA-256
//! (2) against the public key of the certificate at `SigningCertURL`. That URL must be
//! `https://sns.<region>.amazonaws.com/....pem` (`.amazonaws.com.cn` for a China region), the
//! region a real region code: not any `sns.*.amazonaws.com`, since some hosts under
//! `amazonaws.com` serve what AWS's customers upload (S3's `<bucket>.s3-<region>.amazonaws.com`
//! serves a bucket named `sns`); or a host the operator trusts for a local emulator
//! (`providers.sns_trusted_hosts`). Otherwise anyone could sign with their own key. Fetched
//! certificates are cached (their URLs name them for good). `SubscribeURL` is fetched only
//! from the same hosts.
//!
//! A signature does not age, so a message is also refused when its (signed) `Timestamp` is
//! more than [`MAX_AGE`] old, or more than [`MAX_AHEAD`] ahead of our clock: a captured
//! message cannot be replayed for ever. SNS retries a delivery for at most an hour, keeping
//! the message's `Timestamp`, so every genuine retry is still taken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;
use url::Url;

use crate::domain::aws::Partition;

/// Certificates kept at most; beyond, the cache starts over (SNS uses a handful).
const MAX_CACHED_CERTIFICATES: usize = 64;
/// A certificate is a few KiB.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The oldest message taken: SNS's longest retry policy for HTTP(S) subscriptions spans an hour.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// How far ahead of our clock a message may be dated (clocks drift; SNS's do not run ahead by
/// more).
pub const MAX_AHEAD: Duration = Duration::from_secs(15 * 60);

/// An SNS message as SNS posts it to HTTP subscribers.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    #[serde(rename = "Subject")]
    pub subject: Option<String>,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    #[serde(rename = "Token")]
    pub token: Option<String>,
}

pub const NOTIFICATION: &str = "Notification";
pub const SUBSCRIPTION_CONFIRMATION: &str = "SubscriptionConfirmation";
pub const UNSUBSCRIBE_CONFIRMATION: &str = "UnsubscribeConfirmation";

impl Envelope {
    /// The string SNS signed: `Name\nvalue\n` for each signed field, in AWS's order. None for
    /// an unknown type, or a confirmation without its URL or token.
    pub fn string_to_sign(&self) -> Option<String> {
        let fields: Vec<(&str, Option<&str>)> = match self.kind.as_str() {
            NOTIFICATION => vec![
                ("Message", Some(&self.message)),
                ("MessageId", Some(&self.message_id)),
                // only when the message has one
                ("Subject", self.subject.as_deref()),
                ("Timestamp", Some(&self.timestamp)),
                ("TopicArn", Some(&self.topic_arn)),
                ("Type", Some(&self.kind)),
            ],
            SUBSCRIPTION_CONFIRMATION | UNSUBSCRIBE_CONFIRMATION => {
                self.subscribe_url.as_ref()?;
                self.token.as_ref()?;
                vec![
                    ("Message", Some(&self.message)),
                    ("MessageId", Some(&self.message_id)),
                    ("SubscribeURL", self.subscribe_url.as_deref()),
                    ("Timestamp", Some(&self.timestamp)),
                    ("Token", self.token.as_deref()),
                    ("TopicArn", Some(&self.topic_arn)),
                    ("Type", Some(&self.kind)),
                ]
            }
            _ => return None,
        };
        let mut text = String::new();
        for (name, value) in fields {
            if let Some(value) = value {
                text.push_str(name);
                text.push('\n');
                text.push_str(value);
                text.push('\n');
            }
        }
        Some(text)
    }
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    /// The message is not what SNS sends, or its signature does not hold: refused.
    #[error("{0}")]
    Refused(String),
    /// The certificate could not be fetched (SNS retries the message later).
    #[error("{0}")]
    Unavailable(String),
}

/// A host the operator trusts besides AWS's: `host` (any port) or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedHost {
    host: String,
    port: Option<u16>,
}

impl TrustedHost {
    pub fn parse(text: &str) -> Option<TrustedHost> {
        if text.is_empty()
            || text.contains(['/', '@', '?', '#'])
            || text.contains(char::is_whitespace)
        {
            return None;
        }
        let url = Url::parse(&format!("http://{text}/")).ok()?;
        let host = url.host_str()?.to_owned();
        // an explicit port, even the scheme's default, which `Url` would drop
        let port = match text.rsplit_once(':') {
            Some((_, port)) if !text.ends_with(']') => Some(port.parse().ok()?),
            _ => None,
        };
        Some(TrustedHost { host, port })
    }

    fn matches(&self, url: &Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

/// Exactly `sns.<region>.<the region's partition's suffix>`: `sns.us-east-1.amazonaws.com`,
/// `sns.cn-north-1.amazonaws.com.cn`.
fn is_aws_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else { return false };
    let Some((region, suffix)) = rest.split_once('.') else { return false };
    Partition::of_region(region).is_some_and(|p| p.dns_suffix() == suffix)
}

/// Whether a message dated `timestamp` (SNS's ISO 8601 `Timestamp`) may be taken at `now`.
fn check_fresh(timestamp: &str, now: DateTime<Utc>) -> Result<(), SnsError> {
    let at = DateTime::parse_from_rfc3339(timestamp)
        .map_err(|_| SnsError::Refused(format!("Timestamp {timestamp:?} is not a date")))?;
    let age = now.signed_duration_since(at);
    let max_age = chrono::Duration::from_std(MAX_AGE).unwrap_or(chrono::Duration::MAX);
    let max_ahead = chrono::Duration::from_std(MAX_AHEAD).unwrap_or(chrono::Duration::MAX);
    if age > max_age {
        return Err(SnsError::Refused(format!(
            "the message is dated {timestamp}, more than {} minutes ago: a replay",
            MAX_AGE.as_secs() / 60
        )));
    }
    if -age > max_ahead {
        return Err(SnsError::Refused(format!(
            "the message is dated {timestamp}, more than {} minutes ahead of this server's clock",
            MAX_AHEAD.as_secs() / 60
        )));
    }
    Ok(())
}

/// Checks SNS messages' signatures, caching certificates; confirms subscriptions.
pub struct SnsVerifier {
    trusted: Vec<TrustedHost>,
    http: reqwest::Client,
    /// The RSA public key (DER) of each certificate fetched, by URL.
    keys: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl SnsVerifier {
    /// `trusted_hosts` as validated by the configuration (unparsable ones are left out).
    pub fn new(trusted_hosts: &[String]) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            trusted: trusted_hosts.iter().filter_map(|h| TrustedHost::parse(h)).collect(),
            http,
            keys: Mutex::default(),
        }
    }

    /// `raw` as a URL SNS may have us fetch: https on an SNS host of AWS, or a trusted host.
    fn allowed_url(&self, raw: &str, what: &str) -> Result<Url, SnsError> {
        let refused = || SnsError::Refused(format!("{what} {raw} is not an Amazon SNS URL"));
        let url = Url::parse(raw).map_err(|_| refused())?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused());
        }
        if self.trusted.iter().any(|t| t.matches(&url)) && matches!(url.scheme(), "http" | "https")
        {
            return Ok(url);
        }
        let aws = url.scheme() == "https"
            && url.port().is_none()
            && url.host_str().is_some_and(is_aws_sns_host);
        if aws { Ok(url) } else { Err(refused()) }
    }

    /// Checks `envelope`'s date (not a replay) and signature.
    pub async fn verify(&self, envelope: &Envelope) -> Result<(), SnsError> {
        // before anything is fetched; the date is one of the signed fields
        check_fresh(&envelope.timestamp, Utc::now())?;
        let algorithm: &'static dyn VerificationAlgorithm =
            match envelope.signature_version.as_str() {
                "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
                other => {
                    return Err(SnsError::Refused(format!("unknown SignatureVersion {other:?}")));
                }
            };
        let signed = envelope.string_to_sign().ok_or_else(|| {
            SnsError::Refused(format!("unknown or incomplete message of Type {:?}", envelope.kind))
        })?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.trim())
            .map_err(|_| SnsError::Refused("Signature is not base64".to_owned()))?;
        let url = self.allowed_url(&envelope.signing_cert_url, "SigningCertURL")?;
        if self.trusted.iter().all(|t| !t.matches(&url)) && !url.path().ends_with(".pem") {
            return Err(SnsError::Refused("SigningCertURL is not a .pem certificate".to_owned()));
        }
        let key = self.public_key(&url).await?;
        UnparsedPublicKey::new(algorithm, key.as_slice())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| SnsError::Refused("the signature does not verify".to_owned()))
    }

    /// The public key of the certificate at `url`, fetched once.
    async fn public_key(&self, url: &Url) -> Result<Arc<Vec<u8>>, SnsError> {
        if let Some(key) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(url.as_str()) {
            return Ok(key.clone());
        }
        let unavailable =
            |e: &dyn std::fmt::Display| SnsError::Unavailable(format!("cannot fetch {url}: {e}"));
        let response = self.http.get(url.clone()).send().await.map_err(|e| unavailable(&e))?;
        if !response.status().is_success() {
            return Err(unavailable(&response.status()));
        }
        let pem = response.bytes().await.map_err(|e| unavailable(&e))?;
        if pem.len() > MAX_CERTIFICATE_BYTES {
            return Err(SnsError::Refused(format!("{url} is too large for a certificate")));
        }
        let key =
            Arc::new(rsa_public_key(&pem).map_err(|reason| {
                SnsError::Refused(format!("the certificate at {url} {reason}"))
            })?);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_CACHED_CERTIFICATES {
            keys.clear();
        }
        keys.insert(url.to_string(), key.clone());
        Ok(key)
    }

    /// Confirms the subscription `envelope` asks for (its signature already checked) by
    /// fetching its `SubscribeURL`.
    pub async fn confirm(&self, envelope: &Envelope) -> Result<(), SnsError> {
        let raw = envelope
            .subscribe_url
            .as_deref()
            .ok_or_else(|| SnsError::Refused("SubscribeURL is missing".to_owned()))?;
        let url = self.allowed_url(raw, "SubscribeURL")?;
        let response =
            self.http.get(url).send().await.map_err(|e| {
                SnsError::Unavailable(format!("cannot confirm the subscription: {e}"))
            })?;
        if !response.status().is_success() {
            return Err(SnsError::Unavailable(format!(
                "SNS answered {} to the subscription confirmation",
                response.status()
            )));
        }
        Ok(())
    }
}

/// The RSA public key (PKCS#1 DER, as ring takes it) of the PEM certificate `pem`, if it is
/// one and is currently valid; else what is wrong with it.
fn rsa_public_key(pem: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| "is not a PEM certificate")?;
    let certificate = pem.parse_x509().map_err(|_| "is not an X.509 certificate")?;
    if !certificate.validity().is_valid() {
        return Err("has expired or is not yet valid");
    }
    let info = certificate.public_key();
    if info.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err("does not hold an RSA key");
    }
    Ok(info.subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str) -> Envelope {
        Envelope {
            kind: kind.into(),
            message_id: "m-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:123456789012:ses".into(),
            subject: None,
            message: "hello".into(),
            timestamp: "2026-11-27T10:00:00.000Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: Some("https://sns.us-east-1.amazonaws.com/?Action=Confirm".into()),
            token: Some("tok".into()),
        }
    }

    #[test]
    fn strings_to_sign_follow_aws_order() {
        let mut notification = envelope(NOTIFICATION);
        assert_eq!(
            notification.string_to_sign().unwrap(),
            "Message\nhello\nMessageId\nm-1\nTimestamp\n2026-11-27T10:00:00.000Z\nTopicArn\n\
             arn:aws:sns:us-east-1:123456789012:ses\nType\nNotification\n"
        );
        notification.subject = Some("Hi".into());
        assert!(notification.string_to_sign().unwrap().contains("MessageId\nm-1\nSubject\nHi\n"));
        let confirmation = envelope(SUBSCRIPTION_CONFIRMATION).string_to_sign().unwrap();
        assert!(confirmation.contains(
            "SubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=Confirm\nTimestamp\n"
        ));
        assert!(confirmation.contains("Token\ntok\nTopicArn\n"));
        let mut incomplete = envelope(SUBSCRIPTION_CONFIRMATION);
        incomplete.token = None;
        assert!(incomplete.string_to_sign().is_none());
        assert!(envelope("Other").string_to_sign().is_none());
    }

    #[test]
    fn only_sns_hosts_and_trusted_ones_are_fetched() {
        let verifier = SnsVerifier::new(&["127.0.0.1:9911".into(), "sns.local".into()]);
        let ok = |url: &str| verifier.allowed_url(url, "url").is_ok();
        assert!(ok("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"));
        assert!(ok("https://sns.cn-north-1.amazonaws.com.cn/x.pem"));
        assert!(ok("https://sns.us-gov-west-1.amazonaws.com/x.pem"));
        assert!(ok("https://SNS.EU-WEST-1.amazonaws.com:443/x.pem"));
        assert!(ok("http://127.0.0.1:9911/cert.pem"));
        assert!(ok("https://sns.local:8443/cert.pem"));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://sns.evil.amazonaws.com.attacker.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://s3.amazonaws.com/x.pem",
            // under amazonaws.com, but not SNS in a real region
            "https://sns.evil.amazonaws.com/x.pem",
            "https://sns.s3-us-west-2.amazonaws.com/x.pem",
            "https://sns.s3-website-us-east-1.amazonaws.com/x.pem",
            "https://sns.my-bucket.amazonaws.com/x.pem",
            "https://sns.us-east-1a.amazonaws.com/x.pem",
            "https://sns-foo.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://x.sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.x.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.s3.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com./x.pem",
            // a region under another partition's domain
            "https://sns.us-east-1.amazonaws.com.cn/x.pem",
            "https://sns.cn-north-1.amazonaws.com/x.pem",
            "http://127.0.0.1:9912/cert.pem",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert_eq!(TrustedHost::parse("[::1]:80").map(|t| t.port), Some(Some(80)));
        for bad in ["", "http://x", "a b", "x/y", "host:port"] {
            assert!(TrustedHost::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn old_and_far_future_messages_are_refused() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap().to_utc();
        for ok in [
            "2026-12-05T12:00:00.000Z",
            "2026-12-05T11:00:00.000Z",
            "2026-12-05T11:30:00+00:00",
            "2026-12-05T12:15:00.000Z",
        ] {
            assert!(check_fresh(ok, now).is_ok(), "{ok}");
        }
        for bad in [
            "2026-12-05T10:59:59.999Z",
            "2026-11-27T10:00:00.000Z",
            "2026-12-05T12:15:00.001Z",
            "2027-01-01T00:00:00.000Z",
            "2026-12-05 12:00:00",
            "",
        ] {
            assert!(matches!(check_fresh(bad, now), Err(SnsError::Refused(_))), "{bad}");
        }
    }
}
