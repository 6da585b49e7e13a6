//! `--store`: eight `smart-fhir token` processes started at once against one token server share
//! one token through a file or a Redis store, and make one token request between them (P12).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use smart_fhir_testkit::TestServer;

const PROCESSES: usize = 8;

/// Starts `smart-fhir token` with `--store store` against `server`, the key in `dir`.
fn spawn_token(server: &TestServer, dir: &Path, store: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
        .args([
            "token",
            "--fhir-base",
            server.fhir_base(),
            "--token-url",
            server.token_endpoint(),
            "--client-id",
            "storm-client",
            "--scope",
            "system/Patient.rs",
            "--key",
            "k.pem",
            "--insecure-http",
            "--store",
            store,
        ])
        .current_dir(dir)
        .env_remove("SMART_TOKEN_STORE")
        .env_remove("SMART_PRIVATE_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smart-fhir")
}

fn keygen(dir: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
        .args(["keygen", "--alg", "ES256", "--out", "k.pem"])
        .current_dir(dir)
        .output()
        .expect("run smart-fhir keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Starts the processes at once, waits for all of them, and returns the token requests the
/// server counted.
async fn storm(server: &TestServer, dir: &Path, store: &str) -> u64 {
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_token(server, dir, store))
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for smart-fhir"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for o in &outputs {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("expires in:"), "{out}");
    }
    server.token_requests()
}

/// P12 (issue 9 §2): eight processes sharing a token file make one token request; a ninth
/// invocation later reuses the stored token (none more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_eight_processes_one_token_request_through_a_file_store() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let store = dir.path().join("state").join("tokens.json");
    let store = store.to_str().unwrap();
    assert_eq!(storm(&server, dir.path(), store).await, 1);
    assert_eq!(
        storm(&server, dir.path(), store).await,
        1,
        "the stored token is reused"
    );
    server.shutdown().await;
}

/// P12 (issue 9 §2): the same through a Redis store (a throw-away `redis-server`; the test
/// says so and passes when the machine has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_eight_processes_one_token_request_through_redis() {
    if !smart_fhir_redis::test_server::available() {
        eprintln!("redis-server is not installed: the Redis case did not run");
        return;
    }
    let redis = smart_fhir_redis::test_server::RedisServer::start().expect("start redis-server");
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    assert_eq!(storm(&server, dir.path(), &redis.url()).await, 1);
    assert_eq!(
        storm(&server, dir.path(), &redis.url()).await,
        1,
        "the stored token is reused"
    );
    server.shutdown().await;
}

/// P5: the store can come from `SMART_TOKEN_STORE`; a scheme that is no store is refused by
/// name, the URL (and its password) not shown.
#[test]
fn p5_the_store_comes_from_the_environment_and_its_url_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_smart-fhir"))
        .args([
            "token",
            "--token-url",
            "http://127.0.0.1:9/token",
            "--client-id",
            "app",
            "--scope",
            "system/Patient.rs",
            "--key",
            "k.pem",
            "--insecure-http",
        ])
        .current_dir(dir.path())
        .env(
            "SMART_TOKEN_STORE",
            "memcached://user:SECRET@cache.example:6380",
        )
        .output()
        .expect("run smart-fhir");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("memcached://") && err.contains("not supported"),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
}
