//! App Launch sessions on Redis: two `AppLaunch` instances that share only a
//! `RedisSessionStore` (as two replicas of a web app behind a load balancer do) refresh one
//! session at the same time.

#[path = "../../../crates/smart-fhir-redis/tests/support/contract.rs"]
mod contract;

use std::time::Duration;

use contract::Target;
use smart_fhir_core::{AccessToken, InsecureHttp, Url};
use smart_fhir_integration_tests::*;
use smart_fhir_oauth::{AppLaunch, AuthorizeRequest, ClientAuth, IssuerPolicy, LaunchClientConfig};
use smart_fhir_redis::RedisSessionStore;

const CLIENT: &str = "it-redis-rotation";
const SCOPE: &str = "launch/patient openid fhirUser patient/*.rs offline_access";

fn replica(store: RedisSessionStore) -> AppLaunch {
    let config = LaunchClientConfig::builder()
        .client_id(CLIENT)
        .redirect_uri(redirect_uri(CLIENT))
        .landing_url("https://app.example/")
        .scope(SCOPE)
        .client_auth(ClientAuth::Public)
        .issuer_policy(IssuerPolicy::allow_list([base()]))
        .insecure_http(InsecureHttp::AllowLoopback)
        .http_client(http())
        .session_store(store)
        .build()
        .expect("launch config");
    AppLaunch::new(config)
}

async fn refresh_requests() -> u64 {
    stats().await["refresh_requests_by_client"][CLIENT]
        .as_u64()
        .unwrap_or(0)
}

/// Four callers on each replica at once; every one gets the same token.
async fn both_replicas_ask(a: &AppLaunch, b: &AppLaunch, sid: &str) -> AccessToken {
    let sa = a.ready(sid).await.expect("replica A sees the session");
    let sb = b.ready(sid).await.expect("replica B sees the session");
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 { sa.clone() } else { sb.clone() };
            tokio::spawn(async move { s.access_token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in callers {
        tokens.push(c.await.expect("task").expect("a refreshed token"));
    }
    assert!(
        tokens.iter().all(|t| t.ct_eq(tokens[0].secret())),
        "one refresh for both replicas"
    );
    tokens.swap_remove(0)
}

/// SC-4.32, P12: two replicas refreshing the same session at once make one refresh between
/// them, and the rotated refresh token is kept: the next refresh (which the server would refuse,
/// revoking the grant, with the old one) succeeds, again once. Session values are encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sc_4_32_two_replicas_refresh_one_session_once_rotated_token_kept() {
    for target in [
        Target::Single(redis_url()),
        Target::Cluster(redis_cluster_urls()),
    ] {
        let redis = contract::store(&target, "sessions", true);
        let a = replica(RedisSessionStore::new(redis.clone()));
        let b = replica(RedisSessionStore::new(redis));
        let sid = format!("session-{}", unique());

        let request = a
            .standalone(&sid, base().as_str())
            .await
            .expect("standalone launch");
        let AuthorizeRequest::Redirect(url) = request else {
            panic!("a redirect to the authorization endpoint");
        };
        let stop = format!("{}?", redirect_uri(CLIENT));
        let location = Browser::new().navigate_until(url.as_str(), &stop).await;
        let query = Url::parse(&location).expect("callback URL");
        a.callback(&sid, query.query().unwrap_or(""))
            .await
            .expect("callback on replica A");

        let before = refresh_requests().await;
        let mut previous = a
            .ready(&sid)
            .await
            .expect("session")
            .access_token()
            .await
            .expect("token");
        for round in 1..=2u64 {
            // The FHIR server refused the token: marked expired in the shared store.
            let rejecting = if round == 1 { &a } else { &b };
            rejecting
                .ready(&sid)
                .await
                .expect("session")
                .token_rejected(&previous)
                .await;
            let token =
                tokio::time::timeout(Duration::from_secs(30), both_replicas_ask(&a, &b, &sid))
                    .await
                    .expect("refreshed in time");
            assert!(
                !token.ct_eq(previous.secret()),
                "round {round}: a new token"
            );
            assert_eq!(
                refresh_requests().await - before,
                round,
                "round {round}: one refresh between the two replicas ({target:?})"
            );
            let patient = patient_ids().into_iter().next().expect("a seeded patient");
            let (status, _) = fhir_get(&format!("Patient/{patient}"), Some(&token)).await;
            assert_eq!(status, 200);
            previous = token;
        }
        eprintln!("redis sessions ({target:?}): 2 replicas x 2 rounds -> 2 refreshes");
    }
}
