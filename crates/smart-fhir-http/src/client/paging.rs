//! Paging through search, history and operation Bundles by their `next` links (SC-8.18).
//!
//! A [`Pages`] stream yields each Bundle in turn: the answer to the first request, then the
//! answer to each `Bundle.link` with `relation = "next"`, fetched with GET exactly as the server
//! wrote it (servers encode their paging state in these opaque URLs). It ends when a page has no
//! `next` link (or an empty one), after [`Pages::max_pages`] pages or [`Pages::time_limit`], or
//! at the first error; a `next` link already followed (among the last 4,096 pages)
//! ends it with [`FhirError::PagingLoop`]. Loop detection keeps a 64-bit keyed hash per page,
//! not the URL, in a window of fixed size: a server that sends ever new, ever longer links
//! costs the client no memory beyond that window.
//!
//! Every page goes through [`FhirClient::send`], so a `next` link to another origin is followed
//! without the access token (P6), and pages are retried like any GET.
//!
//! [`Pages::resources`] flattens the pages into their `entry[].resource`s, leaving out the
//! `search.mode = outcome` entries (warnings about the search, not results) and history entries
//! of deletions (no resource); [`Pages::entries`] yields every entry with its search mode,
//! request and response.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

use super::ops::{check_type, Level, QueryParams, SearchMethod};
use super::{FhirClient, FhirError, FhirResponse, OperationOutcome, RequestLine, RequestOptions};
use smart_fhir_core::text::printable;

/// One page as it arrived: the request it answers and the response.
struct RawPage {
    line: RequestLine,
    response: http::Response<Bytes>,
}

/// State shared between a [`Pages`] stream and its cursor.
#[derive(Debug)]
struct Shared {
    /// The `next` link of the last page, not yet fetched.
    next: Mutex<Option<Url>>,
    /// Pages fetched so far.
    fetched: AtomicUsize,
    /// The most pages to fetch (`usize::MAX`: no bound).
    max_pages: AtomicUsize,
    /// The longest time from the first request to the start of the last one.
    time_limit: Mutex<Option<Duration>>,
}

/// The pages remembered for loop detection: a link that leads back further than this is not
/// noticed as a loop (bound the walk with [`Pages::max_pages`] or [`Pages::time_limit`]).
const LOOP_WINDOW: usize = 4096;

/// The URLs of the last `LOOP_WINDOW` pages, as 64-bit hashes keyed at random per walk (a
/// server cannot aim for a collision): memory stays flat however long the links are.
struct RecentLinks {
    hasher: RandomState,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentLinks {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn hash(&self, url: &Url) -> u64 {
        self.hasher.hash_one(url.as_str())
    }

    fn insert(&mut self, url: &Url) {
        let h = self.hash(url);
        if self.set.insert(h) {
            self.order.push_back(h);
            if self.order.len() > LOOP_WINDOW {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, url: &Url) -> bool {
        self.set.contains(&self.hash(url))
    }
}

impl Shared {
    fn set_next(&self, url: Option<Url>) {
        // A poisoned lock only means another thread panicked while holding it; the value is a
        // plain `Option<Url>` and still meaningful.
        let mut guard = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *guard = url;
    }

    fn next(&self) -> Option<Url> {
        self.next.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the cursor does next.
enum Step {
    /// Send the first request.
    Request(http::Request<Bytes>),
    /// Follow a `next` link.
    Follow(Url),
    /// Report an error found in the previous page (after yielding that page).
    Fail(FhirError),
    /// Nothing more.
    Done,
}

struct Cursor {
    client: FhirClient,
    step: Step,
    /// The GET URLs fetched lately, to detect a `next` link that leads back (SC-8.18).
    seen: RecentLinks,
    /// When the first request went out.
    started: Option<Instant>,
    shared: Arc<Shared>,
}

/// The members of a Bundle that paging reads.
#[derive(Deserialize)]
struct BundleLinks {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    link: Option<Vec<BundleLink>>,
}

#[derive(Deserialize)]
struct BundleLink {
    relation: Option<String>,
    url: Option<String>,
}

impl BundleLinks {
    /// The first non-empty `next` link.
    fn next(&self) -> Option<&str> {
        self.link
            .iter()
            .flatten()
            .filter(|l| l.relation.as_deref() == Some("next"))
            .filter_map(|l| l.url.as_deref())
            .map(str::trim)
            .find(|u| !u.is_empty())
    }
}

fn decode_error(line: &RequestLine, reason: impl Into<String>) -> FhirError {
    FhirError::Decode {
        request: line.clone(),
        reason: reason.into(),
    }
}

impl Cursor {
    /// Whether the time limit has passed since the first request.
    fn out_of_time(&self) -> bool {
        let limit = *self
            .shared
            .time_limit
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (limit, self.started) {
            (Some(limit), Some(started)) => started.elapsed() >= limit,
            _ => false,
        }
    }

    async fn advance(mut self) -> Result<Option<(RawPage, Cursor)>, FhirError> {
        let request = match std::mem::replace(&mut self.step, Step::Done) {
            Step::Done => return Ok(None),
            Step::Fail(e) => return Err(e),
            step @ (Step::Request(_) | Step::Follow(_))
                if self.shared.fetched.load(Ordering::SeqCst)
                    >= self.shared.max_pages.load(Ordering::SeqCst) =>
            {
                // Bounded: stop quietly; `Pages::next_url` still tells where to resume.
                self.step = step;
                return Ok(None);
            }
            step @ Step::Follow(_) if self.out_of_time() => {
                self.step = step;
                return Ok(None);
            }
            Step::Request(r) => r,
            Step::Follow(url) => self.client.request(Method::GET, &url, None)?,
        };
        let line = RequestLine::new(request.method(), request.uri());
        let url = Url::parse(&request.uri().to_string())
            .map_err(|e| FhirError::InvalidRequest(format!("{line}: not an absolute URL: {e}")))?;
        if request.method() == Method::GET {
            self.seen.insert(&url);
        }
        self.started.get_or_insert_with(Instant::now);
        // Searches and history reads change nothing: safe to repeat, also as a POST `_search`.
        let options = RequestOptions::default().idempotent(true);
        let response = self.client.send_checked(request, &options).await?;
        self.shared.fetched.fetch_add(1, Ordering::SeqCst);

        let links: BundleLinks = FhirClient::decode(&line, response.body())?;
        match links.resource_type.as_deref() {
            Some("Bundle") => {}
            Some(other) => {
                return Err(decode_error(
                    &line,
                    format!("expected a Bundle, got {}", printable(other, 64)),
                ))
            }
            None => {
                return Err(decode_error(
                    &line,
                    "expected a Bundle, got no resourceType",
                ))
            }
        }
        self.step = match links.next() {
            None => {
                self.shared.set_next(None);
                Step::Done
            }
            // Relative links (which some servers send) resolve against the page's own URL; an
            // absolute one is kept exactly as sent.
            Some(href) => match url.join(href) {
                Err(e) => {
                    self.shared.set_next(None);
                    Step::Fail(decode_error(
                        &line,
                        format!("the next link is not a URL: {e}"),
                    ))
                }
                Ok(next) => {
                    if let Err(e) = self.client.base().check_server_url(&next, "the next link") {
                        self.shared.set_next(None);
                        Step::Fail(FhirError::Url(e))
                    } else if self.seen.contains(&next) {
                        self.shared.set_next(None);
                        Step::Fail(FhirError::PagingLoop {
                            path: next.path().to_owned(),
                        })
                    } else {
                        self.shared.set_next(Some(next.clone()));
                        Step::Follow(next)
                    }
                }
            },
        };
        Ok(Some((RawPage { line, response }, self)))
    }
}

/// A stream of the Bundles of a search, history or operation, following `next` links
/// (SC-8.18). Each item is a page as `T` (`serde_json::Value` by default, or the caller's Bundle
/// type).
///
/// The stream yields the answer to the first request, then the answer to each `Bundle.link`
/// with `relation = "next"`, fetched with GET exactly as the server wrote it (servers encode
/// their paging state in these opaque URLs; a relative link resolves against the page's URL).
/// It ends when a page has no `next` link or an empty one, after [`Pages::max_pages`] pages, or
/// after its first error; a `next` link already followed ends it with
/// [`FhirError::PagingLoop`]. Every page goes through [`FhirClient::send`]: a `next` link to
/// another origin is followed without the access token (P6), and pages are retried like any
/// GET. A `next` link that is not `https` (or loopback `http` where the base allows it) is
/// refused (P7).
///
/// [`Pages::resources`] flattens the pages into their resources; [`Pages::entries`] yields
/// every entry. Poll it with `futures_util::StreamExt::next`, or with [`Pages::next_page`].
///
/// ```no_run
/// use smart_fhir_http::client::SearchParams;
/// use smart_fhir_http::FhirClient;
///
/// # async fn run(client: FhirClient) -> Result<(), smart_fhir_http::FhirError> {
/// let params = SearchParams::new().add("code", "http://loinc.org|29463-7").count(100);
/// let mut weights = client
///     .search_pages("Observation", &params)?
///     .max_pages(50)
///     .resources::<serde_json::Value>();
/// while let Some(observation) = weights.next_resource().await? {
///     println!("{}", observation["id"]);
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a Pages stream fetches nothing until polled"]
pub struct Pages<T = serde_json::Value> {
    raw: BoxStream<'static, Result<RawPage, FhirError>>,
    shared: Arc<Shared>,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages")
            .field("fetched", &self.pages_fetched())
            .finish_non_exhaustive()
    }
}

impl<T> Pages<T> {
    fn start(client: &FhirClient, step: Step) -> Self {
        let shared = Arc::new(Shared {
            next: Mutex::new(None),
            fetched: AtomicUsize::new(0),
            max_pages: AtomicUsize::new(usize::MAX),
            time_limit: Mutex::new(None),
        });
        let cursor = Cursor {
            client: client.clone(),
            step,
            seen: RecentLinks::new(),
            started: None,
            shared: shared.clone(),
        };
        let raw = futures_util::stream::try_unfold(cursor, Cursor::advance).boxed();
        Self {
            raw,
            shared,
            _t: PhantomData,
        }
    }

    /// The same stream with each page decoded as `U` (e.g. the caller's Bundle type) instead.
    pub fn typed<U>(self) -> Pages<U> {
        Pages {
            raw: self.raw,
            shared: self.shared,
            _t: PhantomData,
        }
    }

    /// Fetches at most `n` pages (the first included), then ends; [`Pages::next_url`] then
    /// tells where to resume, with [`FhirClient::pages_from`].
    pub fn max_pages(self, n: usize) -> Self {
        self.shared.max_pages.store(n, Ordering::SeqCst);
        self
    }

    /// Follows no `next` link once `limit` has passed since the first request, then ends
    /// quietly as after [`max_pages`](Self::max_pages) ([`Pages::next_url`] tells where to
    /// resume). A page already requested is not cut short: each request has the client's own
    /// timeout.
    pub fn time_limit(self, limit: Duration) -> Self {
        *self
            .shared
            .time_limit
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(limit);
        self
    }

    /// The `next` link of the last page yielded, not yet fetched: `None` before the first page
    /// and after the last one.
    pub fn next_url(&self) -> Option<Url> {
        self.shared.next()
    }

    /// How many pages were fetched so far.
    pub fn pages_fetched(&self) -> usize {
        self.shared.fetched.load(Ordering::SeqCst)
    }

    /// The entries of every page, in order (SC-8.16, SC-8.19): resources, search outcomes and
    /// history deletions, each as a [`BundleEntry`] with its resource as `R`.
    pub fn entries<R: DeserializeOwned>(self) -> Entries<R> {
        Entries {
            raw: self.raw,
            shared: self.shared,
            buffer: VecDeque::new(),
        }
    }

    /// The resources of every page, in order, as `R`: `entry[].resource` without the
    /// `search.mode = outcome` entries and the history entries of deletions.
    pub fn resources<R: DeserializeOwned>(self) -> Resources<R> {
        Resources {
            entries: self.entries(),
        }
    }
}

impl<T: DeserializeOwned> Pages<T> {
    /// The next page, or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<FhirResponse<T>>, FhirError> {
        self.next().await.transpose()
    }
}

impl<T: DeserializeOwned> Stream for Pages<T> {
    type Item = Result<FhirResponse<T>, FhirError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.raw.poll_next_unpin(cx).map(|item| {
            item.map(|page| -> Result<FhirResponse<T>, FhirError> {
                let page = page?;
                let (parts, body) = page.response.into_parts();
                let body = FhirClient::decode::<T>(&page.line, &body)?;
                Ok(FhirResponse::new(parts.status, parts.headers, body))
            })
        })
    }
}

/// One `Bundle.entry` (SC-8.16, SC-8.19, SC-8.21).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BundleEntry<R = serde_json::Value> {
    /// `fullUrl`.
    pub full_url: Option<String>,
    /// `resource`, decoded as `R`; `None` for a deletion in a history Bundle, for an outcome
    /// entry (see [`BundleEntry::outcome`]) and for an entry with no resource.
    pub resource: Option<R>,
    /// The `OperationOutcome` of a `search.mode = outcome` entry.
    pub outcome: Option<OperationOutcome>,
    /// `search.mode`: `match`, `include` or `outcome`.
    pub search_mode: Option<String>,
    /// `search.score`.
    pub search_score: Option<f64>,
    /// `request.method` (history: `POST`, `PUT`, `DELETE`…).
    pub request_method: Option<String>,
    /// `request.url`.
    pub request_url: Option<String>,
    /// `response.status` (batch and transaction responses, history), e.g. `201 Created`.
    pub response_status: Option<String>,
    /// `response.location`.
    pub response_location: Option<String>,
    /// `response.etag`.
    pub response_etag: Option<String>,
}

impl<R> BundleEntry<R> {
    /// Whether this entry is a search outcome (`search.mode = outcome`), not a result.
    pub fn is_outcome(&self) -> bool {
        self.search_mode.as_deref() == Some("outcome")
    }

    /// Whether this entry records a deletion (`request.method = DELETE`, in a history Bundle).
    pub fn is_deletion(&self) -> bool {
        self.request_method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("DELETE"))
    }
}

#[derive(Deserialize)]
struct RawBundle {
    entry: Option<Vec<RawEntry>>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Box<RawValue>>,
    search: Option<RawSearch>,
    request: Option<RawRequest>,
    response: Option<RawResponse>,
}

#[derive(Deserialize)]
struct RawSearch {
    mode: Option<String>,
    score: Option<f64>,
}

#[derive(Deserialize)]
struct RawRequest {
    method: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawResponse {
    status: Option<String>,
    location: Option<String>,
    etag: Option<String>,
}

/// The entries of a Bundle body; each resource decoded as `R` except outcome entries, whose
/// resource is read as an `OperationOutcome` (so that a caller's `R = Patient` does not fail
/// on them).
pub fn bundle_entries<R: DeserializeOwned>(
    line: &RequestLine,
    body: &[u8],
) -> Result<Vec<BundleEntry<R>>, FhirError> {
    let bundle: RawBundle = FhirClient::decode(line, body)?;
    bundle
        .entry
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let search_mode = e.search.as_ref().and_then(|s| s.mode.clone());
            let is_outcome = search_mode.as_deref() == Some("outcome");
            let (resource, outcome) = match e.resource {
                None => (None, None),
                Some(raw) if is_outcome => {
                    (None, OperationOutcome::from_body(raw.get().as_bytes()))
                }
                Some(raw) => (
                    Some(FhirClient::decode::<R>(line, raw.get().as_bytes())?),
                    None,
                ),
            };
            Ok(BundleEntry {
                full_url: e.full_url,
                resource,
                outcome,
                search_mode,
                search_score: e.search.and_then(|s| s.score),
                request_method: e.request.as_ref().and_then(|r| r.method.clone()),
                request_url: e.request.and_then(|r| r.url),
                response_status: e.response.as_ref().and_then(|r| r.status.clone()),
                response_location: e.response.as_ref().and_then(|r| r.location.clone()),
                response_etag: e.response.and_then(|r| r.etag),
            })
        })
        .collect()
}

/// A stream of the entries of every page (see [`Pages::entries`]).
#[must_use = "an Entries stream fetches nothing until polled"]
pub struct Entries<R = serde_json::Value> {
    raw: BoxStream<'static, Result<RawPage, FhirError>>,
    shared: Arc<Shared>,
    buffer: VecDeque<BundleEntry<R>>,
}

// The buffer is never pinned in place: entries are moved out of it.
impl<R> Unpin for Entries<R> {}

impl<R> fmt::Debug for Entries<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entries")
            .field("fetched", &self.shared.fetched.load(Ordering::SeqCst))
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<R> Entries<R> {
    /// As [`Pages::next_url`].
    pub fn next_url(&self) -> Option<Url> {
        self.shared.next()
    }

    /// As [`Pages::pages_fetched`].
    pub fn pages_fetched(&self) -> usize {
        self.shared.fetched.load(Ordering::SeqCst)
    }
}

impl<R: DeserializeOwned> Entries<R> {
    /// The next entry, or `None` at the end.
    pub async fn next_entry(&mut self) -> Result<Option<BundleEntry<R>>, FhirError> {
        self.next().await.transpose()
    }
}

impl<R: DeserializeOwned> Stream for Entries<R> {
    type Item = Result<BundleEntry<R>, FhirError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(entry) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(entry)));
            }
            match this.raw.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(page))) => {
                    match bundle_entries::<R>(&page.line, page.response.body()) {
                        Ok(entries) => this.buffer.extend(entries),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
        }
    }
}

/// A stream of the resources of every page (see [`Pages::resources`]).
#[must_use = "a Resources stream fetches nothing until polled"]
pub struct Resources<R = serde_json::Value> {
    entries: Entries<R>,
}

impl<R> fmt::Debug for Resources<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("entries", &self.entries)
            .finish()
    }
}

impl<R> Resources<R> {
    /// As [`Pages::next_url`].
    pub fn next_url(&self) -> Option<Url> {
        self.entries.next_url()
    }

    /// As [`Pages::pages_fetched`].
    pub fn pages_fetched(&self) -> usize {
        self.entries.pages_fetched()
    }
}

impl<R: DeserializeOwned> Resources<R> {
    /// The next resource, or `None` at the end.
    pub async fn next_resource(&mut self) -> Result<Option<R>, FhirError> {
        self.next().await.transpose()
    }

    /// Every resource of every page, in order. Bound the pages with [`Pages::max_pages`]: a
    /// search can match millions.
    pub async fn collect_all(mut self) -> Result<Vec<R>, FhirError> {
        let mut all = Vec::new();
        while let Some(r) = self.next_resource().await? {
            all.push(r);
        }
        Ok(all)
    }
}

impl<R: DeserializeOwned> Stream for Resources<R> {
    type Item = Result<R, FhirError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.entries.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(entry))) => {
                    if entry.is_outcome() {
                        continue;
                    }
                    if let Some(r) = entry.resource {
                        return Poll::Ready(Some(Ok(r)));
                    }
                }
            }
        }
    }
}

impl FhirClient {
    /// The pages of the Bundle that `first` returns (a search, history or operation request
    /// built with [`FhirClient::request`]), then of each `next` link (SC-8.18). The first
    /// request is treated as safe to repeat.
    pub fn pages(&self, first: http::Request<Bytes>) -> Pages {
        Pages::start(self, Step::Request(first))
    }

    /// The pages from `url` on: resumes paging at a `next` link kept from
    /// [`Pages::next_url`]. The URL is checked as any `next` link is (https, or loopback http
    /// when the base allows it).
    pub fn pages_from(&self, url: Url) -> Result<Pages, FhirError> {
        self.base().check_server_url(&url, "the paging URL")?;
        Ok(Pages::start(self, Step::Follow(url)))
    }

    /// The pages of `GET [base]/[type]?params` (SC-8.16, SC-8.18).
    pub fn search_pages(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<Pages, FhirError> {
        let prefix = format!("{}/", check_type(resource_type)?);
        let request = self.search_request(&prefix, params, SearchMethod::Get)?;
        Ok(self.pages(request))
    }

    /// The pages of `POST [base]/[type]/_search` (SC-8.17, SC-8.18); the later pages are the
    /// server's `next` links, fetched with GET.
    pub fn search_post_pages(
        &self,
        resource_type: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<Pages, FhirError> {
        let prefix = format!("{}/", check_type(resource_type)?);
        let request = self.search_request(&prefix, params, SearchMethod::Post)?;
        Ok(self.pages(request))
    }

    /// The pages of a history (SC-8.19): `[base][/type[/id]]/_history?params`.
    pub fn history_pages(
        &self,
        level: Level<'_>,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<Pages, FhirError> {
        let request = self.history_request(level, params)?;
        Ok(self.pages(request))
    }

    /// The pages of an operation answered with a Bundle, e.g. `Patient/123/$everything`.
    pub fn operation_pages(
        &self,
        level: Level<'_>,
        name: &str,
        params: &(impl QueryParams + ?Sized),
    ) -> Result<Pages, FhirError> {
        let request = self.operation_request(level, name, params)?;
        Ok(self.pages(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 §1 (paging memory without a bound), SC-8.18: however many ever longer links a
    /// server sends, loop detection keeps at most `LOOP_WINDOW` hashes; a link among the recent
    /// ones is still found, one pushed out of the window is forgotten.
    #[test]
    fn sc_8_18_loop_detection_memory_is_bounded() {
        let mut recent = RecentLinks::new();
        let url = |i: usize| {
            Url::parse(&format!(
                "https://ehr.example/fhir?page={i}&pad={}",
                "x".repeat(i % 2000)
            ))
            .unwrap()
        };
        let total = LOOP_WINDOW * 5;
        for i in 0..total {
            recent.insert(&url(i));
            assert!(recent.set.len() <= LOOP_WINDOW);
            assert!(recent.order.len() <= LOOP_WINDOW);
        }
        assert!(recent.contains(&url(total - 1)));
        assert!(recent.contains(&url(total - LOOP_WINDOW)));
        assert!(!recent.contains(&url(0)));
    }
}
