//! SC-4.31, SC-4.23: a refresh response that carries some launch-context members but not
//! others keeps the launch's values of the members it leaves out.

mod launch_support;

use std::time::Duration;

use launch_support::*;
use serde_json::json;

/// SC-4.31, SC-4.23: a refresh response with only `need_patient_banner` and an extension
/// member does not withdraw the `patient` in context; the members it sends are updated.
#[tokio::test]
async fn sc_4_31_partial_refresh_context_keeps_the_launch_patient() {
    let s = Setup::new();
    let app = s.app();
    let req = app.launch("sess-1", BASE, "launch-1").await.unwrap();
    app.callback("sess-1", &callback_query(&req, "code-1"))
        .await
        .unwrap();
    let session = app.ready("sess-1").await.unwrap();
    assert_eq!(session.patient().as_deref(), Some("pat-123"));
    assert_eq!(session.need_patient_banner(), None);

    s.server.on_token(|n, _| {
        (
            200,
            json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 600,
                   "refresh_token": format!("rt-{n}"), "need_patient_banner": true,
                   "org.example.flag": 1}),
        )
    });
    s.clock.advance(Duration::from_secs(3600));
    assert!(session.access_token().await.unwrap().ct_eq("at-2"));
    assert_eq!(session.patient().as_deref(), Some("pat-123"));
    assert_eq!(session.need_patient_banner(), Some(true));
    assert_eq!(session.context().extra["org.example.flag"], json!(1));
    // The stored session agrees with the client's copy.
    let reloaded = app.ready("sess-1").await.unwrap();
    assert_eq!(reloaded.patient().as_deref(), Some("pat-123"));
}
