//! The store contract of `TokenStore` and `SessionStore` on the real standalone Redis and the
//! real three-master Redis Cluster that `cargo xtask integration` started (the same checks as
//! `crates/smart-fhir-redis/tests/redis_servers.rs`, which starts its own).

#[path = "../../../crates/smart-fhir-redis/tests/support/contract.rs"]
mod contract;

use contract::Target;
use smart_fhir_integration_tests::{redis_cluster_urls, redis_url};

/// get/set/delete, leases exclusive, released only by their holder and expiring, `take`
/// one-time under concurrency, compare-and-swap atomic under concurrency, a zero-ttl
/// compare-and-swap deleting, encrypted and clear (P3, P12, SC-4.13, SC-4.32, SC-8.26).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_store_contract_on_standalone_redis() {
    contract::all(&Target::Single(redis_url())).await;
}

/// The same contract on Redis Cluster: a token and its lease, and the keys of a session, share
/// a hash slot, so the scripts run (P12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_store_contract_on_redis_cluster() {
    contract::all(&Target::Cluster(redis_cluster_urls())).await;
}
