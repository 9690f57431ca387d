//! Which network targets RelayIt refuses to connect to for a tenant (server-side request
//! forgery): webhook URLs and SMTP hosts.
//!
//! Both are chosen by a tenant, but the connection is made from inside the operator's network:
//! without a check, a tenant could make RelayIt POST to the operator's database admin page, a
//! cloud metadata service (and read its answers in the delivery log), or use an SMTP
//! credential's `/verify` as a port scanner of the internal network. So private, loopback,
//! link-local and other non-public targets are refused unless the operator allows them
//! (`webhooks.allow_private_targets`, `providers.allow_private_targets`, for development).
//!
//! The API checks a webhook URL when it is saved: IP literals directly, host names by resolving
//! them. DNS can change after that (or answer differently to the worker), so every connection is
//! checked again where it is made: [`is_forbidden`] on the addresses a name resolves to
//! (`webhooks::client`), [`resolve_allowed`] for SMTP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// The longest webhook URL accepted, in characters.
pub const MAX_URL_CHARS: usize = 2048;

crate::json_schema! {
    /// A URL as [`parse_url`] takes it.
    HttpUrl => crate::domain::schema::text(1, MAX_URL_CHARS)
        .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".to_owned())))
        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]"))
        .description(Some(format!("An http(s) URL with a host, at most {MAX_URL_CHARS} characters.")))
        .examples(["https://example.com/relayit-events"])
}

/// How long the API waits for DNS when checking a host name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a webhook request must not be sent to `ip`: anything that is not a public unicast
/// address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network" 0.0.0.0/8
        || ip.is_loopback() // 127.0.0.0/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, which holds the cloud metadata services
        || (a == 100 && (b & 0xc0) == 64) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || ip.is_multicast() // 224/4
        || a >= 240 // reserved 240/4, including the broadcast address
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address reach that address: judge it instead.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4); // ::ffff:a.b.c.d
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4(segments[6], segments[7])); // NAT64 64:ff9b::/96
    }
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_forbidden_v4(embedded_v4(segments[6], segments[7])); // SIIT ::ffff:0:0/96
    }
    if segments[0] == 0x2002 {
        return is_forbidden_v4(embedded_v4(segments[1], segments[2])); // 6to4 2002::/16
    }
    if segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_forbidden_v4(embedded_v4(segments[6], segments[7])); // deprecated ::a.b.c.d
    }
    ip.is_unspecified() // ::
        || ip.is_loopback() // ::1
        || segments[..3] == [0x64, 0xff9b, 1] // local-use NAT64 64:ff9b:1::/48
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || ip.is_multicast() // ff00::/8
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Host names that name the machine itself or a cloud metadata service, whatever DNS says.
pub fn is_forbidden_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "metadata.google.internal"
        || host == "metadata"
}

/// Parses a webhook URL and checks what can be checked without the network: http or https, a
/// host, the length limit. Returns the parsed URL, or the reason it is refused.
pub fn parse_url(text: &str) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    if url.host().is_none() {
        return Err("must have a host".to_owned());
    }
    // normalization (percent-encoding) can make the URL longer than what was sent
    if url.as_str().chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    Ok(url)
}

/// Refuses a URL whose host is a forbidden address, a forbidden name, or a name that resolves to
/// any forbidden address. A name that does not resolve (within [`RESOLVE_TIMEOUT`]) passes: it
/// cannot be reached now, and the worker checks again when it connects.
pub async fn check_target(url: &Url) -> Result<(), String> {
    const PRIVATE: &str = "must not target a private, loopback, link-local or metadata address";
    let forbidden = match url.host() {
        None => return Err("must have a host".to_owned()),
        Some(Host::Ipv4(ip)) => is_forbidden(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_forbidden(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => {
            is_forbidden_name(name) || {
                let port = url.port_or_known_default().unwrap_or(443);
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                    .await
                {
                    Ok(Ok(addrs)) => addrs.into_iter().any(|a| is_forbidden(a.ip())),
                    Ok(Err(_)) | Err(_) => false,
                }
            }
        }
    };
    if forbidden { Err(PRIVATE.to_owned()) } else { Ok(()) }
}

/// The addresses of `host`:`port` that may be connected to, resolved now (within
/// [`RESOLVE_TIMEOUT`]): all of them when `allow_private`, else the public ones. An error says
/// why there is none: the name does not resolve, or it names only forbidden targets.
pub async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Unreachable> {
    if !allow_private && is_forbidden_name(host) {
        return Err(Unreachable::Forbidden);
    }
    let answer = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let all: Vec<SocketAddr> = match answer {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(Unreachable::Unresolved(e.to_string())),
        Err(_) => return Err(Unreachable::Unresolved("no DNS answer in time".to_owned())),
    };
    let kept: Vec<SocketAddr> =
        all.into_iter().filter(|a| allow_private || !is_forbidden(a.ip())).collect();
    if kept.is_empty() { Err(Unreachable::Forbidden) } else { Ok(kept) }
}

/// Why [`resolve_allowed`] found nothing to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error("does not resolve: {0}")]
    Unresolved(String),
    #[error("is a private, loopback, link-local or metadata address")]
    Forbidden,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(text: &str) -> bool {
        is_forbidden(text.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.1",
            "192.0.1.1",
            "223.255.255.255",
            "11.0.0.1",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_ranges() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            // IPv4 inside IPv6
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
            // SIIT ::ffff:0:0/96 and local-use NAT64 64:ff9b:1::/48
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:808:808::",
            "fbff::1",
            "fe7f::1",
            "::ffff:0:808:808",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn names_of_the_machine_and_metadata_services() {
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "app.localhost",
            "metadata.google.internal",
            "metadata.google.internal.",
            "metadata",
        ] {
            assert!(is_forbidden_name(name), "{name}");
        }
        for name in ["example.com", "localhost.example.com", "notlocalhost", "metadata.example"] {
            assert!(!is_forbidden_name(name), "{name}");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_short() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("http://example.com:8080/a?b=c").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://",
            "not a url",
            "",
            "mailto:a@example.com",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).unwrap_err().contains("2048"));
        let fits = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS - 20));
        assert!(parse_url(&fits).is_ok());
    }

    #[tokio::test]
    async fn targets_are_checked_as_literals_names_and_resolved_names() {
        let check = |text: &str| {
            let url = parse_url(text).unwrap();
            async move { check_target(&url).await }
        };
        for bad in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0x7f.1/", // an unusual spelling of 127.0.0.1
            "http://2130706433/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://metadata.google.internal/",
        ] {
            assert!(check(bad).await.is_err(), "{bad}");
        }
        assert!(check("https://1.1.1.1/hook").await.is_ok());
        assert!(check("https://[2606:4700:4700::1111]/hook").await.is_ok());
        // a name that does not resolve is left to the worker's check at connect time
        assert!(check("https://relayit-test.invalid/hook").await.is_ok());
    }
}
