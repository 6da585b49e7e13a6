//! P12: a caller that gives up while its refresh is under way neither abandons the rotated
//! refresh token nor leaves the session stuck behind a held lease.

mod launch_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use launch_support::*;
use smart_fhir_core::{HttpClient, HttpError, SharedHttpClient};
use smart_fhir_oauth::AppLaunch;

/// Holds refresh requests until the test lets them through.
#[derive(Debug)]
struct Gated {
    inner: SharedHttpClient,
    gate: Arc<tokio::sync::Semaphore>,
    refreshes_started: Arc<AtomicUsize>,
}

#[async_trait]
impl HttpClient for Gated {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let is_refresh = url::form_urlencoded::parse(req.body())
            .any(|(k, v)| k == "grant_type" && v == "refresh_token");
        if is_refresh {
            self.refreshes_started.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.expect("gate");
        }
        self.inner.execute(req).await
    }
}

#[tokio::test(start_paused = true)]
async fn p12_cancelled_refresh_completes_and_frees_the_session() {
    let s = Setup::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let http = SharedHttpClient::new(Gated {
        inner: SharedHttpClient::new(Fake(s.server.clone())),
        gate: gate.clone(),
        refreshes_started: started.clone(),
    });
    let app = AppLaunch::new(s.builder().http_client(http).build().unwrap());
    let req = app.launch("sess-1", BASE, "launch-1").await.unwrap();
    app.callback("sess-1", &callback_query(&req, "code-1"))
        .await
        .unwrap();
    let session = app.ready("sess-1").await.unwrap();

    s.clock.advance(Duration::from_secs(3600));
    let caller = {
        let session = session.clone();
        tokio::spawn(async move { session.access_token().await })
    };
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    caller.abort();
    let _ = caller.await;
    gate.add_permits(100);

    let begun = tokio::time::Instant::now();
    let token = session
        .access_token()
        .await
        .expect("a token after the cancelled caller");
    assert!(
        token.ct_eq("at-2"),
        "the refresh the cancelled caller started is used"
    );
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "waited {:?} behind a lease",
        begun.elapsed()
    );
    let refreshes = s
        .server
        .token_requests()
        .into_iter()
        .filter(|r| r.field("grant_type") == Some("refresh_token"))
        .count();
    assert_eq!(
        refreshes, 1,
        "one refresh: the rotated token was not lost and re-requested"
    );
}
