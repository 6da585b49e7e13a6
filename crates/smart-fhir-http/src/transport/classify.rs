//! Transport failures as [`HttpError`]s: what kind, with a message that names no request detail.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use http::Uri;
use smart_fhir_core::text::printable;
use smart_fhir_core::{HttpError, HttpErrorKind};

pub(super) fn timeout_error(origin: &Uri, timeout: Duration) -> HttpError {
    HttpError::new(
        HttpErrorKind::Timeout,
        origin,
        format!("no response within {timeout:?}"),
    )
}

pub(super) fn too_large_error(origin: &Uri, limit: usize) -> HttpError {
    HttpError::new(
        HttpErrorKind::BodyTooLarge,
        origin,
        format!("the body exceeds the limit of {limit} bytes"),
    )
}

/// Maps an error of the pooled client. Its `Display` and its sources' never carry the URI, but
/// they stay out of the message anyway: the message is built from the error's classification.
pub(super) fn client_error(error: hyper_util::client::legacy::Error, origin: &Uri) -> HttpError {
    let (kind, message) = classify(&error, error.is_connect());
    HttpError::new(kind, origin, message).with_source(error)
}

pub(super) fn body_error<E: StdError + Send + Sync + 'static>(error: E, origin: &Uri) -> HttpError {
    let (kind, message) = classify(&error, false);
    HttpError::new(kind, origin, message).with_source(error)
}

/// The error and its causes. `io::Error` hides the error it wraps from `source()` (it returns
/// that error's own source), so the walk steps into it explicitly: that is where rustls's
/// certificate errors sit.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| {
        let e: &'a (dyn StdError + 'static) = *e;
        match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
    .take(32)
}

fn classify(error: &(dyn StdError + 'static), connecting: bool) -> (HttpErrorKind, String) {
    let mut io_error = None;
    let mut hyper_error = None;
    let mut dns = false;
    for cause in causes(error) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return (
                HttpErrorKind::Tls,
                format!("the TLS handshake failed: {}", describe_tls(tls)),
            );
        }
        // hyper-util's connector names a failed name lookup so; the error type is private.
        dns |= connecting && cause.to_string() == "dns error";
        if io_error.is_none() {
            io_error = cause.downcast_ref::<io::Error>();
        }
        if hyper_error.is_none() {
            hyper_error = cause.downcast_ref::<hyper::Error>();
        }
    }
    let io_kind = io_error.map(io::Error::kind);
    if connecting {
        let message = if dns {
            match io_error {
                Some(e) => format!("the DNS lookup of the host failed: {}", io_text(e)),
                None => "the DNS lookup of the host failed".to_owned(),
            }
        } else {
            match io_kind {
                Some(io::ErrorKind::ConnectionRefused) => {
                    "the connection was refused (nothing listens on that port?)".to_owned()
                }
                Some(io::ErrorKind::TimedOut) => "the connection attempt timed out".to_owned(),
                Some(_) => format!(
                    "could not connect: {}",
                    io_error.map(io_text).unwrap_or_default()
                ),
                None => "could not connect".to_owned(),
            }
        };
        return (HttpErrorKind::Connect, message);
    }
    match hyper_error {
        Some(e) if e.is_timeout() => (HttpErrorKind::Timeout, "hyper timed out".to_owned()),
        Some(e) if e.is_parse() || e.is_parse_status() => (
            HttpErrorKind::Other,
            "the server sent a malformed HTTP response".to_owned(),
        ),
        Some(e) if e.is_user() => (
            HttpErrorKind::InvalidRequest,
            "the request could not be encoded".to_owned(),
        ),
        Some(e) if e.is_incomplete_message() => (
            HttpErrorKind::Io,
            "the connection closed before the response was complete".to_owned(),
        ),
        Some(_) | None => match io_kind {
            Some(kind) => (HttpErrorKind::Io, format!("the connection broke: {kind}")),
            None if hyper_error.is_some() => (HttpErrorKind::Io, "the connection broke".to_owned()),
            None => (
                HttpErrorKind::Other,
                "the request could not be sent".to_owned(),
            ),
        },
    }
}

/// An I/O error's own words, bounded and printable (the operating system's text, e.g.
/// "Connection refused (os error 111)").
fn io_text(e: &io::Error) -> String {
    printable(&e.to_string(), 200)
}

/// What went wrong in a TLS handshake, in words a user can act on: dates as RFC 3339 UTC
/// (rustls gives UNIX seconds), names bounded and printable, and for an unknown issuer what to
/// do about it.
pub(super) fn describe_tls(error: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let date = |t: &rustls::pki_types::UnixTime| rfc3339_utc(t.as_secs());
    match error {
        E::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => format!(
                "the server's certificate is not signed by a trusted root (unknown issuer); \
                 {UNKNOWN_ISSUER_HINT}"
            ),
            C::ExpiredContext { time, not_after } => format!(
                "the server's certificate expired at {} (it is now {})",
                date(not_after),
                date(time)
            ),
            C::Expired => "the server's certificate has expired".to_owned(),
            C::NotValidYetContext { time, not_before } => format!(
                "the server's certificate is not valid before {} (it is now {}; is this \
                 machine's clock right?)",
                date(not_before),
                date(time)
            ),
            C::NotValidYet => "the server's certificate is not valid yet".to_owned(),
            C::NotValidForNameContext {
                expected,
                presented,
            } => {
                let names = presented
                    .iter()
                    .take(5)
                    .map(|n| printable(n, 100))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "the server's certificate is not valid for {} (it names {})",
                    printable(&expected.to_str(), 255),
                    if names.is_empty() { "no host" } else { &names }
                )
            }
            C::NotValidForName => {
                "the server's certificate is not valid for this host name".to_owned()
            }
            C::Revoked => "the server's certificate has been revoked".to_owned(),
            C::BadSignature => "the server's certificate has a bad signature".to_owned(),
            C::BadEncoding => "the server's certificate is malformed".to_owned(),
            other => format!("the server's certificate was refused ({other:?})"),
        },
        E::AlertReceived(alert) => format!("the server ended the handshake (alert {alert:?})"),
        E::PeerIncompatible(why) => format!(
            "the server and this client share no TLS version or cipher suite (this client \
             speaks TLS 1.2 and 1.3 only): {why:?}"
        ),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => {
            "the server sent a malformed TLS message (is it an https server?)".to_owned()
        }
        E::NoCertificatesPresented => "the server presented no certificate".to_owned(),
        other => printable(&other.to_string(), 200),
    }
}

/// The advice for a certificate of an unknown issuer. Tools built on this crate can match a
/// failure with [`is_unknown_issuer`] and name their own option for it.
const UNKNOWN_ISSUER_HINT: &str = "if the server uses a private CA, add that CA's certificate as \
                                   a trusted root";

/// Whether `error` (or an error in its `source()` chain) is a TLS failure because the server's
/// certificate is signed by no trusted root: the case where adding the server's CA as a trusted
/// root ([`HyperHttpClientBuilder::add_root_certificate_pem`](super::HyperHttpClientBuilder::add_root_certificate_pem)) helps.
pub fn is_unknown_issuer(error: &(dyn StdError + 'static)) -> bool {
    causes(error).any(|cause| {
        matches!(
            cause.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        )
    })
}

/// `secs` after the UNIX epoch as an RFC 3339 UTC date and time, e.g. `2024-01-31T23:59:59Z`
/// (the proleptic Gregorian calendar; H. Hinnant's `civil_from_days`).
pub(super) fn rfc3339_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Shifted so that the era starts on 0000-03-01; `days` counts from 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_inside_io_errors_are_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        let (kind, message) = classify(&wrapped, true);
        assert_eq!(kind, HttpErrorKind::Tls);
        assert!(message.contains("unknown issuer"), "{message}");
        assert!(message.contains("trusted root"), "{message}");
        assert!(is_unknown_issuer(&wrapped));

        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let (kind, message) = classify(&refused, true);
        assert_eq!(kind, HttpErrorKind::Connect);
        assert!(message.contains("connection was refused"), "{message}");
        assert!(!is_unknown_issuer(&refused));
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "slow");
        let (kind, message) = classify(&timed_out, true);
        assert_eq!(kind, HttpErrorKind::Connect);
        assert!(message.contains("timed out"));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&reset, false).0, HttpErrorKind::Io);
    }

    /// A failed name lookup (hyper-util's connector calls it "dns error", over the resolver's
    /// I/O error) is named as such, with the resolver's reason.
    #[test]
    fn dns_failure_is_named() {
        #[derive(Debug)]
        struct Dns(io::Error);
        impl std::fmt::Display for Dns {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dns error")
            }
        }
        impl StdError for Dns {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Dns(io::Error::other("failed to lookup address information"));
        let (kind, message) = classify(&e, true);
        assert_eq!(kind, HttpErrorKind::Connect);
        assert_eq!(
            message,
            "the DNS lookup of the host failed: failed to lookup address information"
        );
    }

    /// Dates in RFC 3339 UTC, checked against known instants (leap years, century rules).
    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    /// Issue 11 §1 (TLS seen from outside): the project's words for rustls's errors: dates
    /// instead of UNIX seconds, the advice for an unknown issuer, server names cleaned.
    #[test]
    fn tls_errors_in_the_projects_words() {
        use rustls::pki_types::{ServerName, UnixTime};
        use rustls::CertificateError as C;
        use std::time::Duration;
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        let expired = rustls::Error::InvalidCertificate(C::ExpiredContext {
            time: at(1_700_000_000),
            not_after: at(1_600_000_000),
        });
        let text = describe_tls(&expired);
        assert_eq!(
            text,
            "the server's certificate expired at 2020-09-13T12:26:40Z (it is now 2023-11-14T22:13:20Z)"
        );
        assert!(!text.contains("UNIX"));
        let early = rustls::Error::InvalidCertificate(C::NotValidYetContext {
            time: at(1_600_000_000),
            not_before: at(1_700_000_000),
        });
        assert!(describe_tls(&early).contains("not valid before 2023-11-14T22:13:20Z"));
        let name = rustls::Error::InvalidCertificate(C::NotValidForNameContext {
            expected: ServerName::try_from("ehr.example").unwrap(),
            presented: vec!["evil.example\u{1b}[2J".to_owned()],
        });
        let text = describe_tls(&name);
        assert!(text.contains("not valid for ehr.example"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let unknown = rustls::Error::InvalidCertificate(C::UnknownIssuer);
        assert!(describe_tls(&unknown).contains("add that CA's certificate as a trusted root"));
        let (kind, message) = classify(&io::Error::other(expired), false);
        assert_eq!(kind, HttpErrorKind::Tls);
        assert!(
            message.starts_with(
                "the TLS handshake failed: the server's certificate expired at 2020-09-13"
            ),
            "{message}"
        );
    }
}
