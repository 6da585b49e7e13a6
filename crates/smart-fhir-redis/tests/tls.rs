//! `rediss://` (feature `tls`) against a real `redis-server` serving TLS only, with a
//! certificate made here: the store works over TLS, and a certificate the machine does not trust
//! is refused. Needs `redis-server` built with TLS (Debian's is); without `redis-server` the test
//! says so and checks nothing.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smart_fhir_core::{AccessToken, Clock, SystemClock};
use smart_fhir_redis::{RedisStore, RedisTokenStore};
use smart_fhir_store::{StoreError, StoredToken, TokenStore};

/// A TLS-only `redis-server`, killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Option<TlsServer> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("redis-server is not installed: the TLS test checks nothing");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-port",
            &port.to_string(),
        ])
        .arg("--tls-cert-file")
        .arg(&cert_pem)
        .arg("--tls-key-file")
        .arg(&key_pem)
        .arg("--tls-ca-cert-file")
        .arg(&cert_pem)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let server = TlsServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::yield_now();
    }
    Some(server)
}

/// P5 (tokens never cross a network in the clear): a token store on `rediss://` stores and reads
/// a token over TLS; and a server certificate that no trusted root signed is refused with a typed
/// error that does not quote the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_rediss_works_over_tls_and_checks_the_certificate() {
    let Some(server) = start() else { return };

    // The certificate is self-signed: `#insecure` (the redis crate's switch, enabled for the
    // tests only) accepts it, so this half shows the TLS transport itself.
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port);
    let store = RedisTokenStore::new(RedisStore::builder().url(url).build().unwrap());
    let now = SystemClock.now();
    let token = StoredToken::new(
        AccessToken::new("over-tls"),
        now,
        now + Duration::from_secs(60),
    );
    store.set("k", token).await.expect("set over TLS");
    let got = store.get("k").await.expect("get over TLS").expect("stored");
    assert!(got.access_token.ct_eq("over-tls"));

    // Verified (the default): the self-signed certificate is refused.
    let url = format!("rediss://user:SECRET@127.0.0.1:{}/", server.port);
    let redis = RedisStore::builder()
        .url(url)
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let e = redis.ping().await.expect_err("an untrusted certificate");
    assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("SECRET"), "{text}");
}
