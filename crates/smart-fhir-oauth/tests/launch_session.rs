//! Signed-in sessions: refresh before expiry, single flight, refresh-token rotation (SC-4.28 –
//! SC-4.32, P12), "relaunch needed", rejected tokens, accessors and sign-out.

mod launch_support;

use std::time::Duration;

use launch_support::*;
use serde_json::json;
use smart_fhir_core::{AccessToken, ClientSecret};
use smart_fhir_core::{AccessTokenProvider, ProviderErrorKind};
use smart_fhir_oauth::{
    AppLaunch, ClientAuth, LaunchError, LogoutOutcome, OAuthError, OAuthErrorCode, RelaunchReason,
    SessionClient,
};
use smart_fhir_scopes::ScopeRelation;
use smart_fhir_store::SessionStore;

async fn signed_in(app: &AppLaunch, session: &str) -> SessionClient {
    let req = app.launch(session, BASE, "launch-1").await.unwrap();
    app.callback(session, &callback_query(&req, "code-1"))
        .await
        .unwrap();
    app.ready(session).await.unwrap()
}

fn refreshes(s: &Setup) -> Vec<Recorded> {
    s.server
        .token_requests()
        .into_iter()
        .filter(|r| r.field("grant_type") == Some("refresh_token"))
        .collect()
}

/// SC-4.29, SC-4.30, SC-4.32, P12: many concurrent callers past expiry → one refresh; the
/// rotated refresh token replaces the old one, which is never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn p12_rotation_and_single_flight() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;

    // Before expiry: the cached token, no request.
    assert!(session.access_token().await.unwrap().ct_eq("at-1"));
    assert_eq!(s.server.token_requests().len(), 1);

    s.clock.advance(Duration::from_secs(3600 - 10));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let session = session.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Half share one client, half make their own, as request handlers would.
            let token = if i % 2 == 0 {
                session.access_token().await
            } else {
                app.ready("sess-1").await.unwrap().access_token().await
            };
            token.unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().ct_eq("at-2"));
    }
    let r = refreshes(&s);
    assert_eq!(r.len(), 1, "one refresh for 200 callers");
    assert_eq!(
        r[0].names(),
        ["grant_type", "refresh_token", "client_id"],
        "SC-4.29, SC-4.30"
    );
    assert_eq!(r[0].field("refresh_token"), Some("rt-1"));
    assert_eq!(r[0].field("client_id"), Some(CLIENT_ID));

    // The next refresh uses the rotated token, from a client that never saw it.
    s.clock.advance(Duration::from_secs(3600));
    let other = app.ready("sess-1").await.unwrap();
    assert!(other.access_token().await.unwrap().ct_eq("at-3"));
    let r = refreshes(&s);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].field("refresh_token"), Some("rt-2"));
    let sent_rt1 = s
        .server
        .token_requests()
        .iter()
        .filter(|r| r.field("refresh_token") == Some("rt-1"))
        .count();
    assert_eq!(sent_rt1, 1, "an old refresh token is never sent again");
    // The first client catches up with the store.
    assert!(session.access_token().await.unwrap().ct_eq("at-3"));
    assert_eq!(refreshes(&s).len(), 2);
}

/// SC-4.29: `private_key_jwt` refreshes with a fresh assertion (aud = token endpoint); basic
/// with the Authorization header.
#[tokio::test]
async fn sc_4_29_refresh_uses_the_client_authentication() {
    let s = Setup::new();
    let app = s.app_with(ClientAuth::private_key_jwt(client_key().clone()));
    let session = signed_in(&app, "sess-1").await;
    s.clock.advance(Duration::from_secs(3600));
    session.access_token().await.unwrap();
    let all = s.server.token_requests();
    let (exchange, refresh) = (&all[0], &all[1]);
    assert_eq!(refresh.field("grant_type"), Some("refresh_token"));
    assert!(refresh.field("client_id").is_none());
    let a1 = exchange.field("client_assertion").unwrap();
    let a2 = refresh.field("client_assertion").unwrap();
    assert_ne!(a1, a2, "SC-2.11: a fresh assertion per request");

    let s = Setup::new();
    let app = s.app_with(ClientAuth::ClientSecretBasic(ClientSecret::new("pw")));
    let session = signed_in(&app, "sess-1").await;
    s.clock.advance(Duration::from_secs(3600));
    session.access_token().await.unwrap();
    let refresh = &s.server.token_requests()[1];
    assert!(refresh
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Basic "));
    assert_eq!(refresh.names(), ["grant_type", "refresh_token"]);
}

/// SC-4.32: a refresh response without a refresh token keeps the old one (not rotated).
#[tokio::test]
async fn sc_4_32_unrotated_refresh_token_is_kept() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    s.server.on_token(|n, _| {
        (
            200,
            json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 600}),
        )
    });
    for _ in 0..2 {
        s.clock.advance(Duration::from_secs(3600));
        session.access_token().await.unwrap();
    }
    let r = refreshes(&s);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.field("refresh_token") == Some("rt-1")));
}

/// SC-4.31: launch context in a refresh response replaces the stored one; a response without
/// context keeps it. The granted scope follows the response.
#[tokio::test]
async fn sc_4_31_context_from_refresh() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    assert_eq!(session.patient().as_deref(), Some("pat-123"));
    s.server.on_token(|n, _| {
        (
            200,
            json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 600,
                   "refresh_token": format!("rt-{n}"), "patient": "pat-456",
                   "scope": "launch/patient patient/Observation.rs"}),
        )
    });
    s.clock.advance(Duration::from_secs(3600));
    session.access_token().await.unwrap();
    assert_eq!(session.patient().as_deref(), Some("pat-456"));
    assert_eq!(
        session.granted_scopes().to_string(),
        "launch/patient patient/Observation.rs"
    );
    let diff = session.scope_difference();
    assert_eq!(diff.relation(), ScopeRelation::Narrower);
    assert!(diff.missing().to_string().contains("offline_access"));

    s.server.on_token(|n, _| {
        (
            200,
            json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 600,
                   "refresh_token": format!("rt-{n}")}),
        )
    });
    s.clock.advance(Duration::from_secs(600));
    session.access_token().await.unwrap();
    assert_eq!(session.patient().as_deref(), Some("pat-456"));
}

/// SC-4.32, P12: `invalid_grant` on refresh → relaunch needed (typed for the FHIR client too)
/// with the server's code and cleaned description, and the dead session is deleted.
#[tokio::test]
async fn invalid_grant_means_relaunch() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    s.server.on_token(|_, _| {
        (
            400,
            json!({"error": "invalid_grant",
                   "error_description": "refresh token rt-1 expired\u{1b}[2J\nagain"}),
        )
    });
    s.clock.advance(Duration::from_secs(3600));
    let e = session.access_token().await.unwrap_err();
    // The server's code and description reach the user, cleaned, without the token sent.
    assert_eq!(
        e.relaunch_reason(),
        Some(RelaunchReason::RefreshRefused {
            code: OAuthErrorCode::InvalidGrant,
            description: Some("refresh token [redacted] expired [2J again".to_owned()),
        })
    );
    assert!(!e.to_string().contains("rt-1"), "{e}");
    let e = AccessTokenProvider::access_token(&session)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ProviderErrorKind::RelaunchNeeded);
    let e = app.ready("sess-1").await.unwrap_err();
    assert_eq!(e.relaunch_reason(), Some(RelaunchReason::NoSession));
    // One refused refresh; the later calls found no session and sent nothing.
    assert_eq!(refreshes(&s).len(), 1);
}

/// SC-4.28: no refresh token and an expired access token → relaunch needed, no request.
#[tokio::test]
async fn no_refresh_token_means_relaunch() {
    let s = Setup::new();
    s.server.on_token(|_, _| {
        (
            200,
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300}),
        )
    });
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    s.clock.advance(Duration::from_secs(300));
    let e = session.access_token().await.unwrap_err();
    assert_eq!(e.relaunch_reason(), Some(RelaunchReason::NoRefreshToken));
    assert!(refreshes(&s).is_empty());
}

/// A server error on refresh is "unavailable", not "relaunch": the session is kept and the
/// next call tries again.
#[tokio::test]
async fn server_error_on_refresh_keeps_the_session() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    s.server.on_token(|_, _| (503, json!({})));
    s.clock.advance(Duration::from_secs(3600));
    let e = AccessTokenProvider::access_token(&session)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ProviderErrorKind::Unavailable);
    s.server.on_token(|n, _| (200, token_body(n)));
    assert!(session.access_token().await.unwrap().ct_eq("at-3"));
    assert_eq!(refreshes(&s)[1].field("refresh_token"), Some("rt-1"));
}

/// SC-3.8: a token the FHIR server refused is refreshed on the next call, once; a late report
/// about an older token changes nothing.
#[tokio::test]
async fn rejected_token_is_refreshed() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    let token = session.access_token().await.unwrap();
    AccessTokenProvider::token_rejected(&session, &token).await;
    assert!(session.access_token().await.unwrap().ct_eq("at-2"));
    AccessTokenProvider::token_rejected(&session, &AccessToken::new("at-1")).await;
    assert!(session.access_token().await.unwrap().ct_eq("at-2"));
    assert_eq!(refreshes(&s).len(), 1);
}

/// P12 across processes: while another process holds the session's refresh lease, no refresh
/// is sent with the same refresh token; the waiter gives up after the refresh timeout (tokio's
/// paused clock, no real waiting), and refreshes once the lease is gone.
#[tokio::test(start_paused = true)]
async fn p12_refresh_waits_for_another_process_lease() {
    let s = Setup::new();
    let app = AppLaunch::new(
        s.builder()
            .refresh_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let session = signed_in(&app, "sess-1").await;
    s.clock.advance(Duration::from_secs(3600));
    // Another process took the lease (the key is the flow's own, not an API).
    s.store
        .put(
            "sess-1",
            "smart-fhir:launch:refresh-lease",
            json!({"holder": "other"}),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let e = session.access_token().await.unwrap_err();
    assert!(
        matches!(e.oauth_error(), Some(OAuthError::Timeout(_))),
        "{e:?}"
    );
    assert!(refreshes(&s).is_empty());
    s.store
        .delete("sess-1", "smart-fhir:launch:refresh-lease")
        .await
        .unwrap();
    assert!(session.access_token().await.unwrap().ct_eq("at-2"));
}

/// A client that still holds a token another client already had refreshed catches up when the
/// server refuses it, without a second refresh.
#[tokio::test]
async fn stale_client_catches_up_on_rejection() {
    let s = Setup::new();
    let app = s.app();
    let a = signed_in(&app, "sess-1").await;
    let b = app.ready("sess-1").await.unwrap();
    let old = a.access_token().await.unwrap();
    a.token_rejected(&old).await;
    assert!(a.access_token().await.unwrap().ct_eq("at-2"));
    assert!(
        b.access_token().await.unwrap().ct_eq("at-1"),
        "b's cached copy"
    );
    b.token_rejected(&old).await;
    assert!(b.access_token().await.unwrap().ct_eq("at-2"));
    assert_eq!(refreshes(&s).len(), 1);
}

/// SC-6.5, SC-6.6: sign-out revokes the refresh and access tokens with the client's
/// authentication and deletes the session.
#[tokio::test]
async fn logout_revokes_and_deletes() {
    let s = Setup::new();
    let app = s.app_with(ClientAuth::ClientSecretPost(ClientSecret::new("pw")));
    signed_in(&app, "sess-1").await;
    assert_eq!(app.logout("sess-1").await.unwrap(), LogoutOutcome::Revoked);
    let revocations = s.server.requests_to(REVOKE_URL);
    assert_eq!(revocations.len(), 2);
    assert_eq!(revocations[0].field("token"), Some("rt-1"));
    assert_eq!(
        revocations[0].field("token_type_hint"),
        Some("refresh_token")
    );
    assert_eq!(revocations[1].field("token"), Some("at-1"));
    assert_eq!(revocations[1].field("client_secret"), Some("pw"));
    let e = app.ready("sess-1").await.unwrap_err();
    assert_eq!(e.relaunch_reason(), Some(RelaunchReason::NoSession));
    // Signing out twice is harmless.
    assert_eq!(
        app.logout("sess-1").await.unwrap(),
        LogoutOutcome::NoSession
    );
    assert_eq!(s.server.requests_to(REVOKE_URL).len(), 2);
}

/// SC-6.5: on a server without a revocation endpoint, sign-out deletes the session and says
/// that the tokens stay valid at the server until they expire; a revocation the server refuses
/// is an error (the session is gone all the same).
#[tokio::test]
async fn logout_says_whether_the_tokens_were_revoked() {
    let s = Setup::new();
    s.server.edit_config(|c| {
        c.as_object_mut().unwrap().remove("revocation_endpoint");
    });
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    let expires = session.expires_at();
    let outcome = app.logout("sess-1").await.unwrap();
    assert_eq!(
        outcome,
        LogoutOutcome::NotRevocable {
            access_token_expires_at: expires,
            had_refresh_token: true,
        }
    );
    assert!(outcome.tokens_stay_valid());
    assert!(outcome.to_string().contains("stay valid"), "{outcome}");
    assert!(s.server.requests_to(REVOKE_URL).is_empty());
    assert!(app.ready("sess-1").await.is_err());

    let s = Setup::new();
    let app = s.app();
    signed_in(&app, "sess-2").await;
    s.server
        .on_revoke(|| (400, json!({"error": "unsupported_token_type"})));
    let e = app.logout("sess-2").await.unwrap_err();
    assert!(matches!(e, LaunchError::Revocation(_)), "{e:?}");
    assert!(app.ready("sess-2").await.is_err(), "deleted all the same");
}

/// P5: a session client prints neither tokens nor patient data.
#[tokio::test]
async fn debug_is_redacted() {
    let s = Setup::new();
    let app = s.app();
    let session = signed_in(&app, "sess-1").await;
    let printed = format!("{session:?} {app:?}");
    for secret in ["at-1", "rt-1", "pat-123"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    let e: LaunchError = app.ready("nobody").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "a new launch is needed: no signed-in session"
    );
}

/// SC-4.32, P12 across processes: process B sends the old refresh token after process A (which
/// took over B's expired lease) rotated it; the server refuses it with `invalid_grant`, and B
/// re-reads the store and uses A's newer token instead of failing the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn p12_invalid_grant_after_another_process_rotated_uses_the_stored_token() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};

    let s = Setup::new();
    let process = || {
        AppLaunch::new(
            s.builder()
                .refresh_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
    };
    let (app_a, app_b) = (process(), process());
    let a = signed_in(&app_a, "sess-1").await;
    let b = app_b.ready("sess-1").await.unwrap();

    // The refresh token the server still accepts (it refuses any older one), and a gate that
    // holds B's refresh at the server until A has rotated.
    let valid = Arc::new(AtomicUsize::new(1));
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    let (arrived_tx, gate) = (Mutex::new(arrived_tx), Mutex::new(gate));
    {
        let valid = Arc::clone(&valid);
        s.server.on_token(move |n, req| {
            if n == 2 {
                arrived_tx.lock().unwrap().send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
            }
            let current = format!("rt-{}", valid.load(Ordering::SeqCst));
            if req.field("refresh_token") != Some(current.as_str()) {
                return (400, json!({"error": "invalid_grant"}));
            }
            valid.store(n, Ordering::SeqCst);
            (200, token_body(n))
        });
    }
    s.clock.advance(Duration::from_secs(3600));

    // B refreshes with rt-1; its request waits at the server.
    let b_task = tokio::spawn(async move { b.access_token().await });
    tokio::task::spawn_blocking(move || arrived.recv().unwrap())
        .await
        .unwrap();
    // B's lease expires (by the store's clock): A takes over and rotates rt-1 to rt-3.
    s.clock.advance(Duration::from_secs(10));
    assert!(a.access_token().await.unwrap().ct_eq("at-3"));
    // The server now refuses B's rt-1: B uses the session A stored.
    release.send(()).unwrap();
    let token = b_task.await.unwrap().expect("B uses A's rotation");
    assert!(token.ct_eq("at-3"));
    let sent: Vec<_> = refreshes(&s)
        .iter()
        .map(|r| r.field("refresh_token").unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["rt-1", "rt-1"], "one refused, one rotated");
    // The session lives on with the rotated refresh token.
    let again = app_b.ready("sess-1").await.unwrap();
    assert!(again.access_token().await.unwrap().ct_eq("at-3"));
}
