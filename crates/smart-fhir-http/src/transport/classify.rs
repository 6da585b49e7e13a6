//! Transport failures as [`HttpError`]s: what kind, with a message that names no request detail.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use http::Uri;
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
    let mut io_kind = None;
    let mut hyper_error = None;
    for cause in causes(error) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            // rustls messages name certificate problems and server names, never the request.
            return (HttpErrorKind::Tls, format!("TLS handshake failed: {tls}"));
        }
        if io_kind.is_none() {
            io_kind = cause.downcast_ref::<io::Error>().map(io::Error::kind);
        }
        if hyper_error.is_none() {
            hyper_error = cause.downcast_ref::<hyper::Error>();
        }
    }
    if connecting {
        let message = match io_kind {
            Some(io::ErrorKind::TimedOut) => "the connection attempt timed out".to_owned(),
            Some(kind) => format!("could not connect: {kind}"),
            None => "could not connect".to_owned(),
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
        assert!(message.contains("UnknownIssuer"), "{message}");

        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&refused, true).0, HttpErrorKind::Connect);
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "slow");
        let (kind, message) = classify(&timed_out, true);
        assert_eq!(kind, HttpErrorKind::Connect);
        assert!(message.contains("timed out"));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&reset, false).0, HttpErrorKind::Io);
    }
}
