//! A scripted, recording `HttpClient` and token provider for the FHIR client tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use smart_fhir_core::{AccessToken, FhirBaseUrl, HttpClient, HttpError, HttpErrorKind};
use smart_fhir_core::{AccessTokenProvider, ProviderError};
use smart_fhir_http::{FhirClient, FhirClientBuilder, RetryPolicy};

pub(crate) const BASE: &str = "https://ehr.example/fhir";

/// A request as the transport saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was sent, on tokio's (possibly paused) clock.
    pub at: tokio::time::Instant,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON request body")
    }

    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    Fail(HttpErrorKind),
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::Response {
            status,
            headers: vec![(
                "content-type".to_owned(),
                "application/fhir+json".to_owned(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self::Response {
            status,
            headers: vec![],
            body: Bytes::new(),
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Self {
        Self::Response {
            status,
            headers: vec![("content-type".to_owned(), "text/html".to_owned())],
            body: Bytes::from(body.to_owned()),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        if let Self::Response { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// An OperationOutcome with one issue.
    pub(crate) fn outcome(status: u16, code: &str, diagnostics: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
            }),
        )
    }
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Reply>,
    seen: Vec<Seen>,
}

/// Answers requests from a script, in order, and records them. When the script runs out it
/// answers `599` so that the test's assertions fail visibly.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeHttp(Arc<Mutex<State>>);

impl FakeHttp {
    pub(crate) fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        let f = Self::default();
        f.0.lock().unwrap().script.extend(replies);
        f
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.0.lock().unwrap().script.push_back(reply);
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }

    pub(crate) fn only(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:#?}");
        seen.into_iter().next().unwrap()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.0.lock().unwrap().script.len()
    }
}

#[async_trait]
impl HttpClient for FakeHttp {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let reply = {
            let mut s = self.0.lock().unwrap();
            s.seen.push(Seen {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body,
                at: tokio::time::Instant::now(),
            });
            s.script.pop_front()
        };
        match reply {
            None => Ok(http::Response::builder()
                .status(599)
                .body(Bytes::from_static(b"no scripted reply"))
                .unwrap()),
            Some(Reply::Fail(kind)) => Err(HttpError::new(kind, &parts.uri, "scripted failure")),
            Some(Reply::Response {
                status,
                headers,
                body,
            }) => {
                let mut b = http::Response::builder().status(StatusCode::from_u16(status).unwrap());
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                Ok(b.body(body).unwrap())
            }
        }
    }
}

/// Hands out `tok-1`, then `tok-2` after `tok-1` is reported rejected, and so on; counts reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tokens(Arc<Mutex<(u32, Vec<String>)>>);

impl Tokens {
    pub(crate) fn rejected(&self) -> Vec<String> {
        self.0.lock().unwrap().1.clone()
    }
}

#[async_trait]
impl AccessTokenProvider for Tokens {
    async fn access_token(&self) -> Result<AccessToken, ProviderError> {
        let n = self.0.lock().unwrap().0 + 1;
        Ok(AccessToken::new(format!("tok-{n}")))
    }

    async fn token_rejected(&self, token: &AccessToken) {
        let mut s = self.0.lock().unwrap();
        let current = format!("tok-{}", s.0 + 1);
        s.1.push(token.secret().to_owned());
        if token.secret() == current {
            s.0 += 1;
        }
    }
}

pub(crate) fn builder(http: &FakeHttp) -> FhirClientBuilder {
    FhirClient::builder(FhirBaseUrl::parse(BASE).unwrap()).http_client(http.clone())
}

/// A client with no token source.
pub(crate) fn open_client(http: &FakeHttp) -> FhirClient {
    builder(http).build().unwrap()
}

/// A client with a [`Tokens`] source.
pub(crate) fn client(http: &FakeHttp) -> (FhirClient, Tokens) {
    let tokens = Tokens::default();
    let c = builder(http).auth(tokens.clone()).build().unwrap();
    (c, tokens)
}

/// A policy whose waits are short and fixed in shape, for counting retries.
pub(crate) fn quick_retries(n: u32) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.max_retries = n;
    p
}

pub(crate) fn patient(id: &str) -> Value {
    serde_json::json!({"resourceType": "Patient", "id": id, "meta": {"versionId": "1"}})
}

pub(crate) fn bundle(entries: Vec<Value>, next: Option<&str>) -> Value {
    let mut links = vec![serde_json::json!({"relation": "self", "url": format!("{BASE}/Patient")})];
    if let Some(n) = next {
        links.push(serde_json::json!({"relation": "next", "url": n}));
    }
    serde_json::json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries
            .into_iter()
            .map(|r| serde_json::json!({"resource": r, "search": {"mode": "match"}}))
            .collect::<Vec<_>>()
    })
}
