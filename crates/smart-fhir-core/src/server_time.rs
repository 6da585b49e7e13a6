//! Per-server clock offsets, estimated from the HTTP `Date` header (RFC 9110 §6.6.1).
//!
//! A client whose clock is minutes off signs client assertions the server refuses (`exp`
//! already past, or too far ahead) and misjudges an `id_token`'s `iat` and `exp`. The server's
//! `Date` header says what time the server thinks it is; [`ServerClocks`] keeps, for each
//! server origin, the offset between that time and the local [`Clock`], and answers "what time
//! is it at that server" ([`ServerClocks::now_at`]).
//!
//! * Per origin (`scheme://host:port`), never global: one server's `Date` never changes the
//!   times sent to another.
//! * Bounded: an offset under [`MIN_CLOCK_OFFSET`] is taken as none (`Date` has a resolution of
//!   one second, and the request's own duration blurs it further); an offset over
//!   [`MAX_CLOCK_OFFSET`] is never applied (a `warn` event says so), since a server that far off
//!   is more likely broken than right. An offset in use over [`WARN_CLOCK_OFFSET`] is reported
//!   with a `warn` event (origin and seconds only).
//! * A missing, repeated or malformed `Date` is ignored; nothing here panics on header bytes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Clock, HttpClient, HttpError, MaxResponseBytes, RequestTimeout, SharedClock, SharedHttpClient,
    StreamingBody,
};

/// Offsets smaller than this are taken as none: 5 s (`Date` has a one-second resolution, and
/// the time a request takes adds to the uncertainty).
pub const MIN_CLOCK_OFFSET: Duration = Duration::from_secs(5);

/// Offsets larger than this are never applied: 1 hour. A server whose `Date` is that far from
/// the local clock is more likely misconfigured (or not the origin of the response) than right,
/// and following it would move every assertion for it by as much.
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(3600);

/// An offset in use larger than this is reported with a `warn` event: 60 s.
pub const WARN_CLOCK_OFFSET: Duration = Duration::from_secs(60);

/// How many servers' offsets are remembered; the oldest observation goes first.
const MAX_SERVERS: usize = 1024;

/// The longest `Age` header taken into account (a response kept longer by a cache says little
/// about the server's clock).
const MAX_AGE_SECONDS: u64 = 24 * 3600;

/// The offset of a server's clock from the local one, in whole seconds: positive when the
/// server is ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClockOffset(i64);

impl ClockOffset {
    /// No offset.
    pub const ZERO: Self = Self(0);

    /// An offset of `seconds` (positive: the server is ahead).
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds)
    }

    /// The offset in seconds (positive: the server is ahead).
    pub const fn seconds(self) -> i64 {
        self.0
    }

    /// Whether there is no offset.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The offset's size.
    pub fn magnitude(self) -> Duration {
        Duration::from_secs(self.0.unsigned_abs())
    }

    /// `local` moved by the offset: the server's time when the local clock reads `local`.
    /// Saturates at the Unix epoch and leaves `local` unchanged where the result would not fit.
    pub fn apply(self, local: SystemTime) -> SystemTime {
        let by = self.magnitude();
        if self.0 >= 0 {
            local.checked_add(by).unwrap_or(local)
        } else {
            local
                .checked_sub(by)
                .map(|t| t.max(SystemTime::UNIX_EPOCH))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
}

impl fmt::Display for ClockOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+} s", self.0)
    }
}

/// The origin (`scheme://host:port`, lower case, default port filled in) that offsets are kept
/// under. `None` for a URI without a scheme or host.
pub fn server_origin(uri: &http::Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(format!("{scheme}://{host}:{port}"))
}

fn url_origin(url: &url::Url) -> Option<String> {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{scheme}://{host}:{port}"))
}

/// The server time a response's headers state: its one `Date` (plus `Age`, for a response a
/// cache kept), or `None` when `Date` is missing, repeated or not an HTTP date.
pub fn response_date(headers: &http::HeaderMap) -> Option<SystemTime> {
    let mut dates = headers.get_all(http::header::DATE).iter();
    let date = dates.next()?;
    if dates.next().is_some() {
        return None;
    }
    let date = httpdate::parse_http_date(date.to_str().ok()?.trim()).ok()?;
    let age = headers
        .get(http::header::AGE)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.trim().parse::<u64>().ok())
        .filter(|a| *a <= MAX_AGE_SECONDS)
        .unwrap_or(0);
    date.checked_add(Duration::from_secs(age))
}

/// The signed difference `server - local` in whole seconds, rounded down: `Date` is the
/// server's time truncated to the second and sent before the local clock was read, so the
/// server's time is at least this; rounding down keeps a corrected `iat` from running ahead of
/// the server's clock.
fn difference(server: SystemTime, local: SystemTime) -> i64 {
    match server.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => {
            let behind = behind.duration();
            let secs = behind.as_secs() + u64::from(behind.subsec_nanos() > 0);
            i64::try_from(secs).map_or(i64::MIN, |s| -s)
        }
    }
}

/// What one response's `Date` did to a server's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observation {
    /// No usable `Date` (missing, repeated, malformed), or the URI names no server: nothing
    /// changed.
    NoDate,
    /// The offset is below [`MIN_CLOCK_OFFSET`]: the server is taken to agree with the local
    /// clock (any earlier offset is forgotten).
    InAgreement,
    /// This offset is now in use for the server.
    Offset(ClockOffset),
    /// The offset is beyond [`MAX_CLOCK_OFFSET`]: ignored, the earlier estimate kept.
    BeyondBound(ClockOffset),
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    offset: ClockOffset,
    /// The local time of the observation, to drop the oldest when the map is full.
    observed_at: SystemTime,
}

/// Clock offsets per server, measured against one local [`Clock`]. See the
/// [module documentation](self).
///
/// Feed it every response of a server whose time matters (discovery, token endpoint, JWKS) with
/// [`observe`](Self::observe), or by sending through [`observing`](Self::observing); ask it for
/// the server's time with [`now_at`](Self::now_at).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use smart_fhir_core::{ClockOffset, FixedClock, ServerClocks, SharedClock};
///
/// // The local clock is five minutes slow.
/// let local = FixedClock::at_unix(1_700_000_000 - 300);
/// let clocks = ServerClocks::new(SharedClock::new(local));
/// let mut headers = smart_fhir_core::http::HeaderMap::new();
/// // 1_700_000_000 seconds after the epoch.
/// headers.insert("date", "Tue, 14 Nov 2023 22:13:20 GMT".parse()?);
/// let token: smart_fhir_core::http::Uri = "https://auth.example/token".parse()?;
/// clocks.observe(&token, &headers);
/// assert_eq!(clocks.offset(&token), ClockOffset::from_seconds(300));
/// assert_eq!(clocks.now_at(&token), SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// // Another server is not affected.
/// let other: smart_fhir_core::http::Uri = "https://other.example/token".parse()?;
/// assert_eq!(clocks.offset(&other), ClockOffset::ZERO);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ServerClocks {
    clock: SharedClock,
    estimates: Mutex<HashMap<String, Estimate>>,
    /// Held so that the identity [`ServerClocks::for_transport`] finds this by stays taken.
    transport: Option<SharedHttpClient>,
}

impl fmt::Debug for ServerClocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerClocks")
            .field("servers", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// Something that names a server: an `http::Uri` or a `url::Url`.
pub trait ServerUrl {
    /// The origin offsets are kept under (see [`server_origin`]).
    fn origin_key(&self) -> Option<String>;
}

impl ServerUrl for http::Uri {
    fn origin_key(&self) -> Option<String> {
        server_origin(self)
    }
}

impl ServerUrl for url::Url {
    fn origin_key(&self) -> Option<String> {
        url_origin(self)
    }
}

impl ServerClocks {
    /// Offsets measured against `clock`, with no server known yet.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            estimates: Mutex::default(),
            transport: None,
        }
    }

    /// The offsets of the servers reached through `transport`, measured against `clock`: every
    /// caller with the same shared transport and the same clock (clones of one
    /// [`SharedHttpClient`] and of one [`SharedClock`]; every default system clock is one)
    /// gets the same instance, so that a discovery response seen by one component corrects the
    /// assertions another signs. Lives while someone holds it.
    pub fn for_transport(transport: &SharedHttpClient, clock: &SharedClock) -> Arc<Self> {
        static REGISTRY: OnceLock<Mutex<Vec<Weak<ServerClocks>>>> = OnceLock::new();
        let mut all = REGISTRY
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|c| c.strong_count() > 0);
        if let Some(found) = all.iter().filter_map(Weak::upgrade).find(|c| {
            c.clock.same_clock(clock)
                && c.transport
                    .as_ref()
                    .is_some_and(|t| t.same_client(transport))
        }) {
            return found;
        }
        let made = Arc::new(Self {
            clock: clock.clone(),
            estimates: Mutex::default(),
            transport: Some(transport.clone()),
        });
        all.push(Arc::downgrade(&made));
        made
    }

    /// The local clock the offsets are measured against.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Estimate>> {
        // Every operation is one insert, lookup or removal: consistent whatever panicked.
        self.estimates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the `Date` of a response from `server`, received just now (by this instance's
    /// clock), and updates the server's offset (see [`Observation`]).
    pub fn observe(&self, server: &impl ServerUrl, headers: &http::HeaderMap) -> Observation {
        let (Some(origin), Some(date)) = (server.origin_key(), response_date(headers)) else {
            return Observation::NoDate;
        };
        let local = self.clock.now();
        let offset = ClockOffset(difference(date, local));
        if offset.magnitude() < MIN_CLOCK_OFFSET {
            if self.lock().remove(&origin).is_some() {
                tracing::info!(
                    origin = %origin,
                    "the server's clock agrees with the local clock again; no correction"
                );
            }
            return Observation::InAgreement;
        }
        if offset.magnitude() > MAX_CLOCK_OFFSET {
            tracing::warn!(
                origin = %origin,
                offset_seconds = offset.seconds(),
                max_seconds = MAX_CLOCK_OFFSET.as_secs(),
                "the server's Date is further from the local clock than the bound; not corrected"
            );
            return Observation::BeyondBound(offset);
        }
        let previous = {
            let mut estimates = self.lock();
            if estimates.len() >= MAX_SERVERS && !estimates.contains_key(&origin) {
                let oldest = estimates
                    .iter()
                    .min_by_key(|(_, e)| e.observed_at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    estimates.remove(&oldest);
                }
            }
            estimates
                .insert(
                    origin.clone(),
                    Estimate {
                        offset,
                        observed_at: local,
                    },
                )
                .map(|e| e.offset)
        };
        // Reported when the offset in use changes, not on every response.
        if previous != Some(offset) {
            if offset.magnitude() > WARN_CLOCK_OFFSET {
                tracing::warn!(
                    origin = %origin,
                    offset_seconds = offset.seconds(),
                    "the local clock is far from the server's; times sent to it are corrected"
                );
            } else {
                tracing::debug!(
                    origin = %origin,
                    offset_seconds = offset.seconds(),
                    "clock offset of the server; times sent to it are corrected"
                );
            }
        }
        Observation::Offset(offset)
    }

    /// The offset in use for `server` ([`ClockOffset::ZERO`] when none is known).
    pub fn offset(&self, server: &impl ServerUrl) -> ClockOffset {
        server
            .origin_key()
            .and_then(|origin| self.lock().get(&origin).map(|e| e.offset))
            .unwrap_or_default()
    }

    /// The time at `server` now: the local clock moved by the server's offset.
    pub fn now_at(&self, server: &impl ServerUrl) -> SystemTime {
        self.offset(server).apply(self.clock.now())
    }

    /// Forgets every offset.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A transport that sends through `inner` and [observes](Self::observe) the `Date` of
    /// every response (success or error) it returns.
    pub fn observing<'a>(&'a self, inner: &'a dyn HttpClient) -> ObservingHttpClient<'a> {
        ObservingHttpClient {
            inner,
            clocks: self,
        }
    }
}

/// A transport that feeds every response's `Date` to a [`ServerClocks`]; see
/// [`ServerClocks::observing`].
#[derive(Debug, Clone, Copy)]
pub struct ObservingHttpClient<'a> {
    inner: &'a dyn HttpClient,
    clocks: &'a ServerClocks,
}

#[async_trait]
impl HttpClient for ObservingHttpClient<'_> {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        let response = self.inner.execute(request).await?;
        self.clocks.observe(&uri, response.headers());
        Ok(response)
    }

    async fn execute_bounded(
        &self,
        request: http::Request<Bytes>,
        max_response_bytes: MaxResponseBytes,
        timeout: Option<RequestTimeout>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        let response = self
            .inner
            .execute_bounded(request, max_response_bytes, timeout)
            .await?;
        self.clocks.observe(&uri, response.headers());
        Ok(response)
    }

    async fn execute_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<StreamingBody>, HttpError> {
        let uri = request.uri().clone();
        let response = self.inner.execute_streaming(request).await?;
        self.clocks.observe(&uri, response.headers());
        Ok(response)
    }
}

#[cfg(test)]
mod tests;
