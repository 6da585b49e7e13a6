//! The builder of [`HyperHttpClient`].

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use smart_fhir_core::InsecureHttp;

use super::error::TransportError;
use super::exchange::{HyperHttpClient, Settings};
use super::tls::{tls_config, Roots};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_USER_AGENT: &str = concat!("smart-fhir/", env!("CARGO_PKG_VERSION"));

/// Builds a [`HyperHttpClient`]; start with [`HyperHttpClient::builder`].
#[derive(Clone)]
#[must_use]
pub struct HyperHttpClientBuilder {
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    user_agent: Option<String>,
    roots: Roots,
    extra_roots_pem: Vec<(Option<String>, Vec<u8>)>,
    insecure_http: InsecureHttp,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl Default for HyperHttpClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: None,
            roots: Roots::default(),
            extra_roots_pem: Vec::new(),
            insecure_http: InsecureHttp::Deny,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

impl fmt::Debug for HyperHttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperHttpClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .field("roots", &self.roots)
            .field("extra_roots", &self.extra_roots_pem.len())
            .field("insecure_http", &self.insecure_http)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .finish()
    }
}

impl HyperHttpClientBuilder {
    /// The longest a TCP connection attempt may take (default 10 s). The TLS handshake that
    /// follows counts against the request timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest a whole exchange may take, from the first connection attempt to the last
    /// byte of the body (default 60 s). A request overrides it with the
    /// [`RequestTimeout`](smart_fhir_core::RequestTimeout) extension.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The largest response body [`HttpClient::execute`](smart_fhir_core::HttpClient::execute)
    /// reads, in bytes (default 8 MiB). A request overrides it with the
    /// [`MaxResponseBytes`](smart_fhir_core::MaxResponseBytes) extension.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The `User-Agent` sent when a request has none (default `smart-fhir/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Which built-in root certificates to trust (see [`Roots`] for the default).
    pub fn tls_roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Also trusts the certificates in `pem` (one or more `CERTIFICATE` blocks), e.g. the root of
    /// a hospital's private PKI. Checked by [`build`](Self::build).
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push((None, pem.as_ref().to_vec()));
        self
    }

    /// As [`add_root_certificate_pem`](Self::add_root_certificate_pem), with the name of
    /// where the PEM came from (`"file /etc/ssl/hospital-ca.pem"`, say), which an error about
    /// it shows instead of its position.
    pub fn add_root_certificate_pem_from(
        mut self,
        name: impl Into<String>,
        pem: impl AsRef<[u8]>,
    ) -> Self {
        self.extra_roots_pem
            .push((Some(name.into()), pem.as_ref().to_vec()));
        self
    }

    /// Whether plain `http://` may be used (default [`InsecureHttp::Deny`]). With
    /// [`InsecureHttp::AllowLoopback`], `http://` is sent to loopback hosts only (`localhost`,
    /// `127.0.0.0/8`, `::1`), for local development and tests (P7).
    pub fn insecure_http(mut self, insecure: InsecureHttp) -> Self {
        self.insecure_http = insecure;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per host (default unbounded; 0 disables pooling).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Builds the client. It needs a Tokio runtime with the time driver enabled when it is used,
    /// not when it is built.
    pub fn build(self) -> Result<HyperHttpClient, TransportError> {
        if self.connect_timeout.is_zero() {
            return Err(TransportError::ZeroTimeout {
                setting: "connect_timeout",
            });
        }
        if self.request_timeout.is_zero() {
            return Err(TransportError::ZeroTimeout {
                setting: "request_timeout",
            });
        }
        let user_agent = match &self.user_agent {
            Some(ua) => HeaderValue::from_str(ua).map_err(|_| TransportError::InvalidUserAgent)?,
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
        };
        let tls = tls_config(self.roots, &self.extra_roots_pem)?;

        let mut http = HttpConnector::new();
        // The HTTPS connector hands `https://` URIs to the TCP connector.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        let schemes = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        // Without the opt-in, the connector itself refuses `http://` as a second line of defence.
        let schemes = if self.insecure_http == InsecureHttp::AllowLoopback {
            schemes.https_or_http()
        } else {
            schemes.https_only()
        };
        let connector = schemes.enable_http1().enable_http2().wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);

        Ok(HyperHttpClient::new(
            client,
            Settings {
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                max_response_bytes: self.max_response_bytes,
                user_agent,
                roots: self.roots,
                insecure_http: self.insecure_http,
            },
        ))
    }
}

impl HyperHttpClient {
    /// A builder with the defaults.
    pub fn builder() -> HyperHttpClientBuilder {
        HyperHttpClientBuilder::default()
    }
}

// The tests build clients with the default features' provider and roots.
#[cfg(all(test, feature = "ring", feature = "webpki-roots"))]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let b = HyperHttpClient::builder();
        assert_eq!(b.connect_timeout, Duration::from_secs(10));
        assert_eq!(b.request_timeout, Duration::from_secs(60));
        assert_eq!(b.max_response_bytes, 8 * 1024 * 1024);
        assert_eq!(b.insecure_http, InsecureHttp::Deny);
        assert_eq!(b.roots, Roots::Webpki);
        let c = b.build().unwrap();
        assert_eq!(
            c.settings().user_agent,
            format!("smart-fhir/{}", env!("CARGO_PKG_VERSION")).as_str()
        );
    }

    #[test]
    fn builds_outside_a_runtime() {
        let c = HyperHttpClient::builder().build();
        assert!(c.is_ok());
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let e = HyperHttpClient::builder()
            .connect_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            TransportError::ZeroTimeout {
                setting: "connect_timeout"
            }
        ));
        let e = HyperHttpClient::builder()
            .request_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            TransportError::ZeroTimeout {
                setting: "request_timeout"
            }
        ));
    }

    #[test]
    fn invalid_user_agent_is_refused() {
        let e = HyperHttpClient::builder()
            .user_agent("bad\nagent")
            .build()
            .unwrap_err();
        assert!(matches!(e, TransportError::InvalidUserAgent));
    }
}
