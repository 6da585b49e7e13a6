//! Which URIs may be sent, and the part of a URI that errors and events show.

use http::Uri;
use smart_fhir_core::{is_loopback_host, InsecureHttp};

/// The scheme and authority of `uri`, without user information, for error messages.
pub(super) fn origin_of(uri: &Uri) -> Uri {
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Uri::default();
    };
    // The common case, an authority that is `host` or `host:port` already, shares the request
    // URI's bytes instead of formatting and parsing a new one.
    if split_plain_authority(authority.as_str()).is_some() {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        if let Ok(origin) = Uri::from_parts(parts) {
            return origin;
        }
    }
    let host_port = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    Uri::builder()
        .scheme(scheme.clone())
        .authority(host_port)
        .path_and_query("/")
        .build()
        .unwrap_or_default()
}

/// `host` and the port of an authority written `host` or `host:port` (a port of 1 to 5 digits
/// below 65536); `None` for any other (user information, an empty or invalid port). The host is
/// the one [`http::uri::Authority::host`] reads.
pub(crate) fn split_plain_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    // One pass over the (short) authority: no `@`, and where the host ends.
    let bracketed = authority.starts_with('[');
    let mut host_end = None;
    for (i, b) in authority.bytes().enumerate() {
        match b {
            b'@' => return None,
            b']' if bracketed && host_end.is_none() => host_end = Some(i + 1),
            b':' if !bracketed && host_end.is_none() => host_end = Some(i),
            _ => {}
        }
    }
    let host_end = match host_end {
        Some(end) => end,
        None if bracketed => return None,
        None => authority.len(),
    };
    let (host, rest) = authority.split_at_checked(host_end)?;
    if host.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((host, None));
    }
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, Some(digits.parse().ok()?)))
}

/// Which URIs may be sent: `https://`, and `http://` to a loopback host with the opt-in (P7).
pub(super) fn check_uri(uri: &Uri, insecure: InsecureHttp) -> Result<(), &'static str> {
    let Some(authority) = uri.authority() else {
        return Err("the request URI must be absolute (scheme and host)");
    };
    if authority.as_str().contains('@') {
        return Err("the request URI must not carry user credentials");
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("the request URI has no host");
    }
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(()),
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if !host_is_loopback(host) {
                Err("plain http:// is refused for a host that is not loopback")
            } else if insecure == InsecureHttp::AllowLoopback {
                Ok(())
            } else {
                Err("plain http:// to a loopback host needs InsecureHttp::AllowLoopback")
            }
        }
        Some(_) => Err("only https:// (and http:// to loopback, by explicit opt-in) can be sent"),
        None => Err("the request URI must be absolute (scheme and host)"),
    }
}

fn host_is_loopback(host: &str) -> bool {
    // The usual spellings first, without the URL host parser (IDNA processing): a dotted-quad
    // IPv4 address, a bracketed IPv6 address, `localhost`. They read the same in both.
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return ip.is_loopback();
    }
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
    {
        return is_loopback_host(&url::Host::Ipv6(ip));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) => is_loopback_host(&url::Host::Domain(d.as_str())),
        Ok(url::Host::Ipv4(ip)) => is_loopback_host(&url::Host::Ipv4(ip)),
        Ok(url::Host::Ipv6(ip)) => is_loopback_host(&url::Host::Ipv6(ip)),
        Err(_) => false,
    }
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use super::*;

    #[test]
    fn uri_policy_p7() {
        use InsecureHttp::{AllowLoopback, Deny};
        let cases: &[(&str, InsecureHttp, bool)] = &[
            ("https://ehr.example/fhir", Deny, true),
            ("HTTPS://ehr.example/fhir", Deny, true),
            ("https://127.0.0.1:8443/", Deny, true),
            ("http://127.0.0.1:8080/", Deny, false),
            ("http://127.0.0.1:8080/", AllowLoopback, true),
            ("http://127.8.9.10/", AllowLoopback, true),
            ("http://localhost/", AllowLoopback, true),
            ("http://LOCALHOST:1/", AllowLoopback, true),
            ("http://[::1]:8080/", AllowLoopback, true),
            ("http://[::1]:8080/", Deny, false),
            ("http://10.255.255.1/", AllowLoopback, false),
            ("http://ehr.example/", AllowLoopback, false),
            ("http://localhost.ehr.example/", AllowLoopback, false),
            ("http://[::2]/", AllowLoopback, false),
            ("ftp://127.0.0.1/", AllowLoopback, false),
            ("ws://127.0.0.1/", AllowLoopback, false),
            ("/fhir/Patient", AllowLoopback, false),
            ("https://user:pass@ehr.example/", Deny, false),
        ];
        for (uri, insecure, ok) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(
                check_uri(&uri, *insecure).is_ok(),
                *ok,
                "{uri} with {insecure:?}"
            );
        }
    }

    #[test]
    fn plain_authority_split() {
        assert_eq!(
            split_plain_authority("h.example"),
            Some(("h.example", None))
        );
        assert_eq!(
            split_plain_authority("h.example:8443"),
            Some(("h.example", Some(8443)))
        );
        assert_eq!(split_plain_authority("[::1]:9"), Some(("[::1]", Some(9))));
        assert_eq!(split_plain_authority("[::1]"), Some(("[::1]", None)));
        for refused in [
            "u@h", "u:p@h:1", "h:", "h:99999", "h:123456", "h:+1", "[::1", "",
        ] {
            assert_eq!(split_plain_authority(refused), None, "{refused}");
        }
    }

    /// P7: the fast spellings agree with the URL host parser.
    #[test]
    fn p7_loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "localhost",
            "LocalHost",
            "0x7f.1",
        ] {
            assert!(host_is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "[::2]", "localhost.evil", "ehr.example"] {
            assert!(!host_is_loopback(host), "{host}");
        }
    }

    #[test]
    fn origin_drops_user_information_and_path() {
        let uri: Uri = "https://u:p@[::1]:9/x?y".parse().unwrap();
        assert_eq!(origin_of(&uri), "https://[::1]:9/");
        assert_eq!(origin_of(&"/relative".parse().unwrap()), "/");
    }
}
