//! The store contract against a real standalone Redis and a real three-master Redis Cluster,
//! each started by this test in a temporary directory (`redis-server` must be installed; when it
//! is not, the test says so and checks nothing: `cargo xtask integration` and `.ci/run` install
//! it and run the same contract there).

#[path = "../src/test_server.rs"]
// Public in the crate (the `test-server` feature), not in this one.
#[allow(dead_code, unreachable_pub)]
mod test_server;

#[path = "support/contract.rs"]
mod contract;

use std::time::Duration;

use contract::Target;
use smart_fhir_redis::{RedisStore, RedisTokenStore};
use smart_fhir_store::{StoreError, TokenStore};
use test_server::{RedisCluster, RedisServer};

fn skip() -> bool {
    if test_server::available() {
        return false;
    }
    eprintln!("redis-server is not installed: the contract runs under `cargo xtask integration`");
    true
}

/// The store contract (P3, P12, SC-4.13, SC-4.32, SC-8.26) against one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_a_standalone_server_p12() {
    if skip() {
        return;
    }
    let server = RedisServer::start().expect("redis-server");
    contract::all(&Target::Single(server.url())).await;
}

/// The store contract (P3, P12) against a three-master cluster: scripts and leases work because
/// the keys they touch share a hash slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_a_three_master_cluster_p12() {
    if skip() {
        return;
    }
    let cluster = RedisCluster::start(3).expect("redis cluster");
    contract::all(&Target::Cluster(cluster.urls())).await;
}

/// Redis killed (SIGKILL) mid-run: typed errors within the timeout while it is down, then
/// recovery on the same store, and every acknowledged write is still there (append-only file,
/// `appendfsync always`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_gives_typed_errors_then_recovers_without_loss() {
    if skip() {
        return;
    }
    let mut server = RedisServer::start().expect("redis-server");
    let redis = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(500))
        .encryption(contract::test_keyring())
        .build()
        .unwrap();
    let store = RedisTokenStore::new(redis);
    let now = smart_fhir_core::Clock::now(&smart_fhir_core::SystemClock);
    let token = smart_fhir_store::StoredToken::new(
        smart_fhir_core::AccessToken::new("kept"),
        now,
        now + Duration::from_secs(600),
    );
    store.set("k", token).await.unwrap();

    server.kill();
    let started = std::time::Instant::now();
    let e = store.get("k").await.unwrap_err();
    assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    assert!(e.to_string().contains("GET"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(store
        .try_acquire_lease("k", Duration::from_secs(1))
        .await
        .is_err());

    server.restart().expect("restart");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        match store.get("k").await {
            Ok(got) => break got,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(got.expect("persisted").access_token.ct_eq("kept"));
}

/// The cluster master that holds a token's slot is killed (SIGKILL) and restarted: typed errors
/// while it is down, then recovery through the same store, and the token it persisted is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_restart_gives_typed_errors_then_recovers_without_loss() {
    if skip() {
        return;
    }
    let mut cluster = RedisCluster::start(3).expect("redis cluster");
    let redis = RedisStore::builder()
        .cluster(cluster.urls())
        .command_timeout(Duration::from_millis(800))
        .encryption(contract::test_keyring())
        .build()
        .unwrap();
    let store = RedisTokenStore::new(redis);
    let now = smart_fhir_core::Clock::now(&smart_fhir_core::SystemClock);
    let token = smart_fhir_store::StoredToken::new(
        smart_fhir_core::AccessToken::new("kept"),
        now,
        now + Duration::from_secs(600),
    );
    store.set("k", token).await.unwrap();

    // The owner answers GET with the value; the other masters answer MOVED.
    let key = store.token_key("k");
    let mut owner = None;
    for (i, node) in cluster.nodes().iter().enumerate() {
        let client = redis::Client::open(node.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let got: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(&key).query_async(&mut c).await;
        if matches!(got, Ok(Some(_))) {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one master holds the token");

    cluster.nodes_mut()[owner].kill();
    let started = std::time::Instant::now();
    let e = store.get("k").await.unwrap_err();
    assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    cluster.nodes_mut()[owner].restart().expect("restart");
    cluster.wait_ok().expect("cluster ok");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        match store.get("k").await {
            Ok(got) => break got,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(got.expect("persisted").access_token.ct_eq("kept"));
}
