//! Many processes, one token, on real Redis: Backend Services in several OS processes sharing a
//! `RedisTokenStore`, against the harness's oidc-provider, which counts the token requests.
//!
//! The OS processes are this test binary run again with `SMART_FHIR_IT_REDIS_CHILD` naming what
//! the child does (`storm`, `hold-lease`); a child talks to its parent with lines on stdout
//! (`CHILD-…`) and waits for `GO` on stdin, so that all of them start at once.

#[path = "../../../crates/smart-fhir-redis/tests/support/contract.rs"]
mod contract;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::Target;
use smart_fhir_core::{AccessToken, Clock, SystemClock};
use smart_fhir_integration_tests::*;
use smart_fhir_oauth::{BackendServices, OAuthError};
use smart_fhir_redis::test_server::{RedisCluster, RedisServer};
use smart_fhir_redis::{RedisStore, RedisTokenStore};
use smart_fhir_store::{StoreError, StoredToken, TokenStore};

const CHILD: &str = "SMART_FHIR_IT_REDIS_CHILD";
const PROCESSES: usize = 8;
const CALLERS: usize = 1_000;
const SCOPE: &str = "system/Patient.rs";

fn target_from_env() -> Target {
    match std::env::var("SMART_FHIR_IT_REDIS_MODE").as_deref() {
        Ok("cluster") => Target::Cluster(redis_cluster_urls()),
        _ => Target::Single(redis_url()),
    }
}

fn redis_store(target: &Target, prefix: &str, timeout: Duration) -> RedisStore {
    let b = RedisStore::builder()
        .prefix(prefix)
        .command_timeout(timeout)
        .encryption(contract::test_keyring());
    match target {
        Target::Single(url) => b.url(url.clone()),
        Target::Cluster(urls) => b.cluster(urls.clone()),
    }
    .build()
    .expect("redis store")
}

fn backend(client: &str, store: RedisStore, load_timeout: Duration) -> BackendServices {
    BackendServices::builder()
        .fhir_base(base())
        .client_id(client)
        .scope(SCOPE)
        .private_key(key("rs384"))
        .http_client(http())
        .token_store(RedisTokenStore::new(store))
        .load_timeout(load_timeout)
        .build()
        .expect("backend services")
}

/// A fingerprint of a token that can be printed and compared across processes.
fn fingerprint(token: &str) -> u64 {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

/// The children of a test; killed when dropped, so that a failing parent leaves none behind.
struct Children {
    procs: Vec<Child>,
    stdins: Vec<ChildStdin>,
    lines: mpsc::Receiver<(usize, String)>,
}

impl Children {
    fn spawn(test: &str, n: usize, env: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("own test binary");
        let (tx, lines) = mpsc::channel();
        let mut procs = Vec::new();
        let mut stdins = Vec::new();
        for i in 0..n {
            let mut child = Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a child process");
            stdins.push(child.stdin.take().expect("stdin"));
            let out = child.stdout.take().expect("stdout");
            let tx = tx.clone();
            std::thread::spawn(move || {
                // libtest prints `test NAME ... ` without a newline before the test's own output.
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("CHILD-") {
                        let _ = tx.send((i, line[at..].to_owned()));
                    }
                }
            });
            procs.push(child);
        }
        Self {
            procs,
            stdins,
            lines,
        }
    }

    /// The next `CHILD-` line of any child whose word after `CHILD-` is `what`.
    fn expect(&self, what: &str, timeout: Duration) -> (usize, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (i, line) = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no CHILD-{what} line within {timeout:?}"));
            let mut words = line.split_whitespace();
            if words.next() == Some(&format!("CHILD-{what}")[..]) {
                return (i, words.map(str::to_owned).collect());
            }
        }
    }

    fn go(&mut self) {
        for s in &mut self.stdins {
            s.write_all(b"GO\n").expect("tell a child to go");
            s.flush().expect("flush");
        }
    }

    fn wait_all_succeeded(&mut self) {
        for c in &mut self.procs {
            let status = c.wait().expect("child status");
            assert!(status.success(), "a child process failed: {status}");
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    assert_eq!(line.trim(), "GO");
}

/// Child `storm`: 1,000 concurrent callers of one `BackendServices` on the shared store, all
/// released at once when the parent says `GO`.
async fn storm_child(client: &str) {
    let prefix = std::env::var("SMART_FHIR_IT_REDIS_PREFIX").expect("prefix");
    let store = redis_store(&target_from_env(), &prefix, Duration::from_secs(5));
    store.ping().await.expect("redis reachable");
    let source = backend(client, store, Duration::from_secs(30));
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS + 1));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let source = source.clone();
        let barrier = barrier.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let token = source.access_token().await.expect("a token");
            let waited = started.get().map(Instant::elapsed).unwrap_or_default();
            (fingerprint(token.secret()), waited)
        }));
    }
    println!("CHILD-READY");
    tokio::task::spawn_blocking(wait_for_go)
        .await
        .expect("stdin");
    let _ = started.set(Instant::now());
    barrier.wait().await;
    let mut prints = std::collections::BTreeSet::new();
    let mut longest = Duration::ZERO;
    for t in tasks {
        let (print, waited) = t.await.expect("caller");
        prints.insert(print);
        longest = longest.max(waited);
    }
    let first = prints.first().copied().unwrap_or_default();
    println!(
        "CHILD-RESULT {} {first} {}",
        prints.len(),
        longest.as_micros()
    );
}

/// Child `hold-lease`: takes the lease a `BackendServices` takes before its token request, says
/// so, and waits to be killed.
async fn hold_lease_child() {
    let prefix = std::env::var("SMART_FHIR_IT_REDIS_PREFIX").expect("prefix");
    let key = std::env::var("SMART_FHIR_IT_REDIS_KEY").expect("key");
    let ttl: u64 = std::env::var("SMART_FHIR_IT_REDIS_TTL_MS")
        .expect("ttl")
        .parse()
        .expect("ttl");
    let store = RedisTokenStore::new(redis_store(
        &target_from_env(),
        &prefix,
        Duration::from_secs(5),
    ));
    let lease = store
        .try_acquire_lease(&key, Duration::from_millis(ttl))
        .await
        .expect("redis")
        .expect("the lease is free");
    println!("CHILD-LEASED");
    tokio::task::spawn_blocking(wait_for_go)
        .await
        .expect("stdin");
    drop(lease);
}

/// 8 OS processes × 1,000 concurrent callers, sharing one `RedisTokenStore` (encrypted) that
/// holds an expired token, start at once → exactly one token request at the server, and every
/// caller in every process gets that one token (P12, SC-3.9). Then: no token is readable in
/// Redis with `SCAN` + `GET`.
async fn storm(test: &str, client: &str, target: Target, mode: &str) {
    if std::env::var(CHILD).as_deref() == Ok("storm") {
        return storm_child(client).await;
    }
    let prefix = contract::fresh_prefix("storm");
    let store = redis_store(&target, &prefix, Duration::from_secs(5));
    let parent = backend(client, store.clone(), Duration::from_secs(30));
    let tokens = RedisTokenStore::new(store);
    // At token expiry: the shared store holds a token that has just expired.
    let past = SystemClock.now() - Duration::from_secs(600);
    tokens
        .set(
            parent.store_key(),
            StoredToken::new(
                AccessToken::new("expired-token"),
                past,
                past + Duration::from_secs(300),
            ),
        )
        .await
        .expect("seed the store");

    let before = token_requests(client).await;
    let mut children = Children::spawn(
        test,
        PROCESSES,
        &[
            (CHILD, "storm".to_owned()),
            ("SMART_FHIR_IT_REDIS_PREFIX", prefix.clone()),
            ("SMART_FHIR_IT_REDIS_MODE", mode.to_owned()),
        ],
    );
    for _ in 0..PROCESSES {
        children.expect("READY", Duration::from_secs(120));
    }
    children.go();
    let mut prints = std::collections::BTreeSet::new();
    let mut longest = 0u128;
    // The process served first is the lease holder's: its longest wait is the token request's
    // own time under the storm (discovery, lease, request, store).
    let mut first_served = u128::MAX;
    for _ in 0..PROCESSES {
        let (_, words) = children.expect("RESULT", Duration::from_secs(120));
        assert_eq!(words[0], "1", "callers of one process got different tokens");
        prints.insert(words[1].clone());
        let waited = words[2].parse::<u128>().expect("micros");
        longest = longest.max(waited);
        first_served = first_served.min(waited);
    }
    children.wait_all_succeeded();
    let requests = token_requests(client).await - before;

    // One token request's own time, for comparison with the longest wait.
    let reference = BackendServices::builder()
        .fhir_base(base())
        .client_id("it-redis-reference")
        .scope(SCOPE)
        .private_key(key("rs384"))
        .http_client(http())
        .build()
        .expect("backend services");
    let t = Instant::now();
    reference.access_token().await.expect("reference token");
    let alone = t.elapsed();
    eprintln!(
        "redis storm ({mode}): {PROCESSES} processes x {CALLERS} callers -> {requests} token \
         request(s); longest caller wait {} ms (discovery + token request alone: {} ms)",
        longest / 1000,
        alone.as_millis()
    );
    // For `cargo xtask bench storm`, which runs this test and prints these figures.
    println!(
        "STORM-FIGURES mode={mode} processes={PROCESSES} callers={CALLERS} requests={requests} \
         longest_wait_us={longest} alone_us={} holder_us={first_served}",
        alone.as_micros()
    );
    assert_eq!(
        requests, 1,
        "token requests for {PROCESSES} x {CALLERS} callers"
    );
    assert_eq!(prints.len(), 1, "all processes got the same token");

    let stored = tokens
        .get(parent.store_key())
        .await
        .expect("redis")
        .expect("the new token is stored");
    assert_eq!(
        prints.first().map(String::as_str),
        Some(
            fingerprint(stored.access_token.secret())
                .to_string()
                .as_str()
        )
    );
    let (status, _) = read_any_patient(&stored.access_token).await;
    assert_eq!(status, 200);

    // Encryption at rest: someone who can read Redis finds no token in it.
    let found = contract::scan_and_get(&target, &prefix).await;
    assert!(
        found.iter().any(|(k, _)| k.contains("tok:")),
        "the token key is there"
    );
    let secret = stored.access_token.secret().as_bytes();
    for (key, value) in &found {
        assert!(
            !value.windows(secret.len()).any(|w| w == secret),
            "{key} holds the access token in the clear"
        );
        assert!(
            !value.windows(12).any(|w| w == b"access_token"),
            "{key} holds a token document in the clear"
        );
    }
}

async fn read_any_patient(token: &AccessToken) -> (u16, serde_json::Value) {
    let id = patient_ids().into_iter().next().expect("a seeded patient");
    fhir_get(&format!("Patient/{id}"), Some(token)).await
}

/// P12, SC-3.9: 8 processes × 1,000 callers on standalone Redis → one token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_storm_8_processes_x_1000_callers_standalone_one_token_request() {
    storm(
        "p12_storm_8_processes_x_1000_callers_standalone_one_token_request",
        "it-redis-storm",
        Target::Single(redis_url()),
        "standalone",
    )
    .await;
}

/// P12, SC-3.9: 8 processes × 1,000 callers on Redis Cluster → one token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_storm_8_processes_x_1000_callers_cluster_one_token_request() {
    storm(
        "p12_storm_8_processes_x_1000_callers_cluster_one_token_request",
        "it-redis-storm-cluster",
        Target::Cluster(redis_cluster_urls()),
        "cluster",
    )
    .await;
}

/// P12: a process holding the lease is killed with SIGKILL. Its lease blocks others until it
/// expires, then another process takes it over; meanwhile 1,000 callers in this process get a
/// token, with one token request between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_lease_holder_killed_with_sigkill_another_process_takes_over() {
    if std::env::var(CHILD).as_deref() == Ok("hold-lease") {
        return hold_lease_child().await;
    }
    let client = "it-redis-takeover";
    let target = Target::Single(redis_url());
    let prefix = contract::fresh_prefix("takeover");
    let load_timeout = Duration::from_secs(6);
    let store = redis_store(&target, &prefix, Duration::from_secs(5));
    let survivor = backend(client, store.clone(), load_timeout);
    let tokens = RedisTokenStore::new(store);

    let mut children = Children::spawn(
        "p12_lease_holder_killed_with_sigkill_another_process_takes_over",
        1,
        &[
            (CHILD, "hold-lease".to_owned()),
            ("SMART_FHIR_IT_REDIS_PREFIX", prefix.clone()),
            ("SMART_FHIR_IT_REDIS_KEY", survivor.store_key().to_owned()),
            (
                "SMART_FHIR_IT_REDIS_TTL_MS",
                load_timeout.as_millis().to_string(),
            ),
        ],
    );
    children.expect("LEASED", Duration::from_secs(60));
    let leased_at = Instant::now();
    // SIGKILL: the holder gets no chance to release its lease.
    children.procs[0].kill().expect("SIGKILL");
    let _ = children.procs[0].wait();
    assert!(
        tokens
            .try_acquire_lease(survivor.store_key(), load_timeout)
            .await
            .expect("redis")
            .is_none(),
        "the dead holder's lease still blocks"
    );

    let before = token_requests(client).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut tasks = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let s = survivor.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.access_token().await.map(|t| fingerprint(t.secret()))
        }));
    }
    let mut prints = std::collections::BTreeSet::new();
    for t in tasks {
        prints.insert(t.await.expect("task").expect("every caller gets a token"));
    }
    let callers_done = leased_at.elapsed();
    assert_eq!(prints.len(), 1);
    assert_eq!(token_requests(client).await - before, 1);

    // The lease itself: free once its ttl has passed, and then taken by this process.
    let taken = loop {
        if let Some(lease) = tokens
            .try_acquire_lease(survivor.store_key(), load_timeout)
            .await
            .expect("redis")
        {
            break lease;
        }
        assert!(
            leased_at.elapsed() < load_timeout + Duration::from_secs(5),
            "the dead holder's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let takeover = leased_at.elapsed();
    tokens.release_lease(taken).await.expect("release");
    eprintln!(
        "redis takeover: holder killed; 1000 callers served after {} ms with 1 token request; \
         lease taken over after {} ms (ttl {} ms)",
        callers_done.as_millis(),
        takeover.as_millis(),
        load_timeout.as_millis()
    );
    assert!(takeover + Duration::from_millis(100) >= load_timeout);
}

fn is_store_backend_error(e: &OAuthError) -> bool {
    matches!(
        smart_fhir_core::find_cause::<StoreError>(e),
        Some(StoreError::Backend { .. })
    )
}

/// A fresh token source (an empty in-process cache, as in a new process) on `store`, retried
/// until Redis answers again.
async fn recovered_token(client: &str, store: &RedisStore, within: Duration) -> AccessToken {
    let deadline = Instant::now() + within;
    loop {
        match backend(client, store.clone(), Duration::from_secs(10))
            .access_token()
            .await
        {
            Ok(t) => return t,
            Err(e) => {
                assert!(is_store_backend_error(&e), "not a store error: {e}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Redis restarted mid-run (SIGKILL, then started again on its directory): token sources get
/// typed store errors quickly while it is down (a source with a cached token keeps serving it),
/// and after the restart a fresh source reads the token Redis persisted, with no new token
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_typed_errors_then_recovery_nothing_lost() {
    let client = "it-redis-restart";
    let mut server = RedisServer::start().expect("redis-server");
    let store = redis_store(
        &Target::Single(server.url()),
        "restart:",
        Duration::from_millis(500),
    );
    let before = token_requests(client).await;
    let first = backend(client, store.clone(), Duration::from_secs(10));
    let token = first.access_token().await.expect("token");
    assert_eq!(token_requests(client).await - before, 1);

    server.kill();
    let t = Instant::now();
    let e = backend(client, store.clone(), Duration::from_secs(10))
        .access_token()
        .await
        .expect_err("redis is down");
    assert!(is_store_backend_error(&e), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(first
        .access_token()
        .await
        .expect("cached")
        .ct_eq(token.secret()));

    server.restart().expect("restart redis");
    let again = recovered_token(client, &store, Duration::from_secs(15)).await;
    assert!(again.ct_eq(token.secret()), "the persisted token is served");
    assert_eq!(
        token_requests(client).await - before,
        1,
        "no new token request"
    );
}

/// The cluster master that holds the token's slot is restarted: typed errors while it is down,
/// then recovery, and the token it persisted is served without a new token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_master_restart_typed_errors_then_recovery() {
    let client = "it-redis-cluster-restart";
    let mut cluster = RedisCluster::start(3).expect("redis cluster");
    let target = Target::Cluster(cluster.urls());
    let store = redis_store(&target, "cluster-restart:", Duration::from_millis(800));
    let before = token_requests(client).await;
    let first = backend(client, store.clone(), Duration::from_secs(10));
    let token = first.access_token().await.expect("token");
    assert_eq!(token_requests(client).await - before, 1);

    // The master that owns the token's key answers GET; the others answer MOVED.
    let key = RedisTokenStore::new(store.clone()).token_key(first.store_key());
    let mut owner = None;
    for (i, node) in cluster.nodes().iter().enumerate() {
        let client = redis::Client::open(node.url()).expect("url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("node");
        let got: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(&key).query_async(&mut c).await;
        if matches!(got, Ok(Some(_))) {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one master holds the token");

    cluster.nodes_mut()[owner].kill();
    let e = backend(client, store.clone(), Duration::from_secs(10))
        .access_token()
        .await
        .expect_err("the slot's master is down");
    assert!(is_store_backend_error(&e), "{e}");

    cluster.nodes_mut()[owner]
        .restart()
        .expect("restart the master");
    cluster.wait_ok().expect("cluster ok again");
    let again = recovered_token(client, &store, Duration::from_secs(20)).await;
    assert!(again.ct_eq(token.secret()), "the persisted token is served");
    assert_eq!(
        token_requests(client).await - before,
        1,
        "no new token request"
    );
}
