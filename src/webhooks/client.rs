//! The HTTP client webhook requests go out on, and its guard against server-side request
//! forgery at connect time (see `ssrf` for why).
//!
//! The API checks a URL when it is saved, but DNS can answer differently later (DNS rebinding),
//! so the client's resolver drops every forbidden address from each answer and fails when none
//! is left: the connection is only ever made to an address that was checked. URLs whose host is
//! an IP literal never reach a resolver, so [`refusal`] checks those (and forbidden names)
//! before the request. Redirects are not followed (a 3xx is a failed attempt: following one
//! would reach a target nobody checked), and no proxy from the environment is used (the proxy
//! would do the resolving).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::ssrf;

/// `user-agent` of every webhook request.
pub const USER_AGENT: &str = concat!("RelayIt/", env!("CARGO_PKG_VERSION"));

const REFUSED: &str = "refused: the target is a private, loopback, link-local or metadata address \
     (webhooks.allow_private_targets is off)";

/// Resolves with the system resolver and keeps only the addresses webhooks may reach.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if ssrf::is_forbidden_name(&host) {
                return Err(REFUSED.into());
            }
            // the port is replaced by the URL's when connecting
            let all = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(allowed(all)?.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses of a DNS answer that may be connected to; an error when the answer had some
/// and all are forbidden.
fn allowed(all: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, &'static str> {
    let kept: Vec<SocketAddr> =
        all.iter().copied().filter(|a| !ssrf::is_forbidden(a.ip())).collect();
    if kept.is_empty() && !all.is_empty() {
        return Err(REFUSED);
    }
    Ok(kept)
}

/// The client for webhook requests: `timeout` per request, no redirects, no proxy, and unless
/// `allow_private` the guarded resolver.
pub fn build(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    builder.build()
}

/// Why a request to `url` must not be made (its host is a forbidden IP literal or name), or
/// `None`. Host names are checked again by the resolver, on the addresses it finds.
pub fn refusal(url: &Url, allow_private: bool) -> Option<&'static str> {
    if allow_private {
        return None;
    }
    let forbidden = match url.host() {
        None => true,
        Some(Host::Ipv4(ip)) => ssrf::is_forbidden(ip.into()),
        Some(Host::Ipv6(ip)) => ssrf::is_forbidden(ip.into()),
        Some(Host::Domain(name)) => ssrf::is_forbidden_name(name),
    };
    forbidden.then_some(REFUSED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_private_hosts_are_refused_unless_allowed() {
        for text in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/",
            "http://[::ffff:192.168.0.1]/",
            "http://localhost:3000/",
            "http://metadata.google.internal/",
        ] {
            let url = Url::parse(text).unwrap();
            assert!(refusal(&url, false).is_some(), "{text}");
            assert!(refusal(&url, true).is_none(), "{text}");
        }
        assert!(refusal(&Url::parse("https://93.184.215.14/").unwrap(), false).is_none());
        assert!(refusal(&Url::parse("https://example.com/").unwrap(), false).is_none());
    }

    #[test]
    fn dns_answers_keep_only_public_addresses() {
        let addr = |text: &str| -> SocketAddr { text.parse().unwrap() };
        let public = addr("93.184.215.14:0");
        assert_eq!(allowed(vec![addr("127.0.0.1:0"), public]).unwrap(), [public]);
        assert!(allowed(vec![addr("10.0.0.1:0"), addr("[fe80::1]:0")]).is_err());
        assert!(allowed(vec![addr("169.254.169.254:0")]).is_err());
        assert!(allowed(vec![]).unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_resolver_refuses_forbidden_names_before_asking_dns() {
        let name: Name = "metadata.google.internal".parse().unwrap();
        let err = GuardedResolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
