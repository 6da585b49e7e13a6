//! How long a fetched document may be kept: the one `Cache-Control` reader and lifetime policy
//! that both caches of this crate (SMART configurations and issuers' keys) use; the keeping
//! itself is `smart_fhir_core::ExpiringCache`'s.

use std::time::Duration;

/// What a response's `Cache-Control` says about keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheDirective {
    /// No usable directive: the cache's default lifetime applies.
    Default,
    /// `no-store` or `no-cache`: do not keep it (these caches do not revalidate, so `no-cache`
    /// means the same as `no-store` to them).
    NoStore,
    /// `max-age=N`.
    MaxAge(Duration),
}

/// Reads every `Cache-Control` header of a response (SC-1.4).
///
/// * Header names and directive names compare case-insensitively; several headers and
///   comma-separated lists are read alike; a quoted argument (`max-age="600"`) is accepted.
/// * `no-store` and `no-cache` win over `max-age`, wherever they appear.
/// * The first valid `max-age` counts, as RFC 9111 §4.2.1 advises for duplicates; a malformed
///   one (`max-age=soon`, negative, overflowing) is ignored, as is a header value that is not
///   visible ASCII.
pub(crate) fn cache_directive(headers: &http::HeaderMap) -> CacheDirective {
    let mut max_age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return CacheDirective::NoStore;
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    max_age.get_or_insert(secs);
                }
            }
        }
    }
    match max_age {
        Some(secs) => CacheDirective::MaxAge(Duration::from_secs(secs)),
        None => CacheDirective::Default,
    }
}

/// A cache's lifetime rule: `max-age` within `[min, max]`, the default (within the same bounds)
/// when the response says nothing, and `min` for `no-store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TtlPolicy {
    pub(crate) default: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl TtlPolicy {
    /// How long to keep a response with this directive; zero means "do not keep".
    pub(crate) fn ttl(&self, directive: CacheDirective) -> Duration {
        // `max` wins over `min` if a caller set them crossed, rather than panicking in `clamp`.
        let bound = |d: Duration| d.max(self.min).min(self.max);
        match directive {
            CacheDirective::NoStore => self.min.min(self.max),
            CacheDirective::MaxAge(age) => bound(age),
            CacheDirective::Default => bound(self.default),
        }
    }

    /// The lifetime of a response with these headers.
    pub(crate) fn ttl_of(&self, headers: &http::HeaderMap) -> Duration {
        self.ttl(cache_directive(headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in values {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    /// SC-1.4: header and directive names compare case-insensitively; several headers and
    /// comma lists are read; no-store wins wherever it appears.
    #[test]
    fn sc_1_4_cache_control_is_read_case_insensitively() {
        assert_eq!(cache_directive(&headers(&[])), CacheDirective::Default);
        let h = headers(&[("Cache-Control", "public, MAX-AGE=\"600\"")]);
        assert_eq!(
            cache_directive(&h),
            CacheDirective::MaxAge(Duration::from_secs(600))
        );
        let h = headers(&[
            ("Cache-Control", "public, max-age=600"),
            ("cache-control", "No-Store"),
        ]);
        assert_eq!(cache_directive(&h), CacheDirective::NoStore);
        let h = headers(&[("cache-control", "no-cache, max-age=600")]);
        assert_eq!(cache_directive(&h), CacheDirective::NoStore);
        let h = headers(&[("cache-control", "private"), ("CACHE-CONTROL", "max-age=7")]);
        assert_eq!(
            cache_directive(&h),
            CacheDirective::MaxAge(Duration::from_secs(7))
        );
    }

    /// SC-1.4: bad values are ignored, and the first valid max-age counts.
    #[test]
    fn sc_1_4_bad_values_are_ignored() {
        for value in [
            "max-age=soon, private",
            "max-age=-5",
            "max-age=",
            "max-age",
            "max-age=99999999999999999999999",
            ",,, ;",
        ] {
            assert_eq!(
                cache_directive(&headers(&[("cache-control", value)])),
                CacheDirective::Default,
                "{value}"
            );
        }
        let h = headers(&[("cache-control", "max-age=x, max-age=30, max-age=90")]);
        assert_eq!(
            cache_directive(&h),
            CacheDirective::MaxAge(Duration::from_secs(30))
        );
        // A value that is not visible ASCII is skipped; the other header still counts.
        let mut h = headers(&[("cache-control", "max-age=45")]);
        h.append(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_bytes(b"no-store \xff").unwrap(),
        );
        assert_eq!(
            cache_directive(&h),
            CacheDirective::MaxAge(Duration::from_secs(45))
        );
    }

    /// The lifetime rule: max-age within the bounds, the default otherwise, the floor for
    /// no-store; crossed bounds do not panic.
    #[test]
    fn ttl_policy_bounds_every_directive() {
        let secs = Duration::from_secs;
        let keys = TtlPolicy {
            default: secs(3600),
            min: secs(60),
            max: secs(86_400),
        };
        assert_eq!(keys.ttl(CacheDirective::Default), secs(3600));
        assert_eq!(keys.ttl(CacheDirective::MaxAge(secs(600))), secs(600));
        assert_eq!(keys.ttl(CacheDirective::MaxAge(secs(5))), secs(60));
        assert_eq!(
            keys.ttl(CacheDirective::MaxAge(secs(99_999_999))),
            secs(86_400)
        );
        assert_eq!(keys.ttl(CacheDirective::NoStore), secs(60));
        let configs = TtlPolicy {
            default: secs(300),
            min: Duration::ZERO,
            max: secs(86_400),
        };
        assert_eq!(configs.ttl(CacheDirective::NoStore), Duration::ZERO);
        assert_eq!(
            configs.ttl(CacheDirective::MaxAge(Duration::ZERO)),
            Duration::ZERO
        );
        let crossed = TtlPolicy {
            default: secs(10),
            min: secs(100),
            max: secs(50),
        };
        assert_eq!(crossed.ttl(CacheDirective::Default), secs(50));
        assert_eq!(crossed.ttl(CacheDirective::NoStore), secs(50));
    }
}
