//! The leak test (P5): every flow against the harness and Redis with `tracing` captured at
//! TRACE for every target (the smart-fhir crates and hyper, hyper-util, h2, rustls, redis, …),
//! every public type that holds a secret `Debug`-formatted, every error of the failing paths
//! formatted (`Display`, `{:#}`, `Debug`, its whole `source()` chain), and the CLI run with
//! `-vvv` and `RUST_LOG=trace`. Every secret the flows used or received is collected on the way
//! (tokens, codes, verifiers, state, client secrets, client assertions, private-key material, the
//! Redis encryption key and password) and none may appear in any of those texts, whole or as
//! any 16-character piece.

use std::error::Error as StdError;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use smart_fhir_core::{
    AccessToken, AuthorizationCode, ClientSecret, Clock, IdToken, InsecureHttp, PkceCodeVerifier,
    RefreshToken, SharedHttpClient, StaticTokenProvider, SystemClock, Url,
};
use smart_fhir_http::client::SearchParams;
use smart_fhir_http::{FhirClient, FhirResponse};
use smart_fhir_integration_tests::leak::{
    add_form_secrets, add_json_secrets, add_key_secrets, cli_login_verbose, cli_verbose, Capture,
    CliRun, Found, Recorder, Secrets,
};
use smart_fhir_integration_tests::*;
use smart_fhir_jwt::{Algorithm, AssertionSigner};
use smart_fhir_oauth::{
    AppLaunch, AuthorizeRequest, BackendServices, ClientAuth, IssuerPolicy, LaunchClientConfig,
    PrivateKeyJwt,
};
use smart_fhir_redis::{EncryptionKey, Keyring, RedisSessionStore, RedisStore, RedisTokenStore};
use smart_fhir_store::TokenStore;

const LAUNCH_SCOPE: &str = "launch/patient openid fhirUser patient/*.rs offline_access";

/// What was printed: `Debug` and error texts of the library, and the CLI's output.
struct Leak {
    secrets: Arc<Secrets>,
    rec: Arc<Recorder>,
    printed: Mutex<Vec<(String, String)>>,
    cli: Mutex<Vec<(String, String)>>,
}

impl Leak {
    fn new() -> Self {
        let secrets = Secrets::new();
        let rec = Recorder::new(secrets.clone());
        Self {
            secrets,
            rec,
            printed: Mutex::new(Vec::new()),
            cli: Mutex::new(Vec::new()),
        }
    }

    fn http(&self) -> SharedHttpClient {
        self.rec.shared()
    }

    /// `{:?}` and `{:#?}` of `value`.
    fn debug(&self, place: &str, value: &dyn Debug) {
        let mut p = self.printed.lock().expect("printed");
        p.push((format!("Debug of {place}"), format!("{value:?}")));
        p.push((format!("Debug of {place}"), format!("{value:#?}")));
    }

    /// `Display`, `{:#}`, `Debug` of `error` and of every error in its `source()` chain.
    fn error(&self, place: &str, error: &(dyn StdError + 'static)) {
        let mut p = self.printed.lock().expect("printed");
        let mut e: Option<&(dyn StdError + 'static)> = Some(error);
        let mut depth = 0;
        while let Some(err) = e {
            let at = format!("error of {place} (source {depth})");
            p.push((at.clone(), format!("{err}")));
            p.push((at.clone(), format!("{err:#}")));
            p.push((at.clone(), format!("{err:?}")));
            p.push((at, format!("{err:#?}")));
            e = err.source();
            depth += 1;
        }
        p.push((
            format!("error chain of {place}"),
            smart_fhir_core::text::error_chain(error),
        ));
    }

    fn cli_run(&self, place: &str, run: &CliRun) {
        let mut c = self.cli.lock().expect("cli");
        c.push((format!("CLI {place} stdout"), run.stdout.clone()));
        c.push((format!("CLI {place} stderr"), run.stderr.clone()));
    }
}

fn backend(
    leak: &Leak,
    client: &str,
    key_name: &str,
    alg: Algorithm,
    scope: &str,
) -> BackendServices {
    let builder = BackendServices::builder()
        .fhir_base(base())
        .client_id(client)
        .scope(scope)
        .private_key(PrivateKeyJwt::new(key(key_name)).algorithm(alg))
        .http_client(leak.http());
    leak.debug("BackendServicesBuilder", &builder);
    builder.build().expect("backend services")
}

fn fhir(leak: &Leak, source: BackendServices) -> FhirClient {
    let client = FhirClient::builder(base())
        .http_client(leak.http())
        .auth(source)
        .build()
        .expect("FHIR client");
    leak.debug("FhirClient", &client);
    client
}

fn first_patient() -> String {
    patient_ids().into_iter().next().expect("a seeded patient")
}

fn token_endpoint() -> String {
    format!("{}/oidc/token", origin())
}

// ---------------------------------------------------------------------------------------------
// Backend Services.

async fn backend_services(leak: &Leak) {
    for (client, key_name, alg) in [
        ("it-rs384", "rs384", Algorithm::RS384),
        ("it-es384", "es384", Algorithm::ES384),
    ] {
        let source = backend(leak, client, key_name, alg, "system/Patient.rs");
        let first = source.token().await.expect("token");
        let again = source.token().await.expect("cached token");
        assert!(
            first.access_token.is_same_value(&again.access_token),
            "the cache answers the second call"
        );
        leak.debug("StoredToken (Backend Services)", &first);
        leak.debug("AccessToken", &first.access_token);
        leak.debug("BackendServices", &source);
        // Renewal after a 401: the server forgets every token; the next read renews once.
        let fhir = fhir(leak, source);
        let id = first_patient();
        let _: FhirResponse = fhir.read("Patient", &id).await.expect("read");
        revoke_all().await;
        let _: FhirResponse = fhir.read("Patient", &id).await.expect("read after renewal");

        let private = key(key_name);
        leak.debug("PrivateKey", &private);
        leak.debug("PrivateKeyJwt", &PrivateKeyJwt::new(key(key_name)));
        let signer = AssertionSigner::new(&private, alg).expect("signer");
        leak.debug("AssertionSigner", &signer);
        leak.debug(
            "AssertionSignerBuilder",
            &AssertionSigner::builder(&private, alg).kid("leak-kid"),
        );
        let assertion = signer
            .sign(
                client,
                &token_endpoint(),
                Duration::from_secs(60),
                SystemClock.now(),
            )
            .expect("assertion");
        leak.secrets.add("client assertion", assertion.secret());
        leak.debug("ClientAssertion", &assertion);
    }

    // Failing paths: an unregistered key, a key of another client.
    for (client, key_name) in [("it-unregistered", "unregistered"), ("it-es384", "rs384")] {
        let source = backend(
            leak,
            client,
            key_name,
            Algorithm::RS384,
            "system/Patient.rs",
        );
        let e = source.token().await.expect_err("refused");
        leak.error(
            &format!("Backend Services token ({client} with {key_name})"),
            &e,
        );
        let facade = smart_fhir::Error::from(e);
        leak.error("smart_fhir::Error of a refused token", &facade);
    }
}

// ---------------------------------------------------------------------------------------------
// The FHIR client.

fn new_patient(family: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:smart-fhir:test:leak", "value": mrn}],
        "name": [{"family": family, "given": ["Leak"]}],
        "active": true
    })
}

async fn fhir_operations(leak: &Leak) {
    let source = backend(leak, "it-fhir", "rs384", Algorithm::RS384, "system/*.cruds");
    let c = fhir(leak, source);
    let _: FhirResponse = c.capabilities(None).await.expect("capabilities");
    let family = format!("Leak{}", unique());
    let mrn = unique();
    let created = c
        .create::<Value>("Patient", &new_patient(&family, &mrn), None)
        .await
        .expect("create");
    let p = created.into_body().expect("a body");
    let id = p["id"].as_str().expect("id").to_owned();
    let v1 = p["meta"]["versionId"].as_str().expect("version").to_owned();
    let _: FhirResponse = c.read("Patient", &id).await.expect("read");
    let mut changed = p.clone();
    changed["active"] = json!(false);
    let updated = c
        .update::<Value>("Patient", &id, &changed, Some(&v1))
        .await
        .expect("update");
    let v2 = updated.version_id().expect("version").to_owned();
    let _: FhirResponse = c.vread("Patient", &id, &v1).await.expect("vread");
    let stale = c
        .update::<Value>("Patient", &id, &changed, Some(&v1))
        .await
        .expect_err("stale version");
    leak.error("FHIR update with a stale version (412)", &stale);
    let _ = c
        .patch_json::<Value>(
            "Patient",
            &id,
            &json!([{"op": "replace", "path": "/active", "value": true}]),
            Some(&v2),
        )
        .await
        .expect("JSON patch");
    let _: FhirResponse = c
        .history_instance("Patient", &id, &SearchParams::new().count(2))
        .await
        .expect("history");

    // Conditional interactions.
    let mrn2 = unique();
    let query = format!("identifier=urn:smart-fhir:test:leak|{mrn2}");
    let _ = c
        .create::<Value>("Patient", &new_patient(&family, &mrn2), Some(&query))
        .await
        .expect("conditional create");
    let by = format!("urn:smart-fhir:test:leak|{mrn2}");
    let by_mrn = [("identifier", by.as_str())];
    let _ = c
        .conditional_update::<Value>("Patient", &by_mrn, &new_patient(&family, &mrn2))
        .await
        .expect("conditional update");
    c.conditional_delete("Patient", &by_mrn)
        .await
        .expect("conditional delete");

    // Search GET and POST, and paging.
    for _ in 0..2 {
        let _ = c
            .create::<Value>("Patient", &new_patient(&family, &unique()), None)
            .await
            .expect("create");
    }
    let params = SearchParams::new().add("family", family.clone()).count(1);
    let _: FhirResponse = c.search("Patient", &params).await.expect("search");
    let _: FhirResponse = c
        .search_post("Patient", &params)
        .await
        .expect("POST search");
    let all = c
        .search_pages("Patient", &params)
        .expect("pages")
        .resources::<Value>()
        .collect_all()
        .await
        .expect("every page");
    assert!(all.len() >= 3, "paging went through several pages");

    // Batch and transaction.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{id}")}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist-0"}}
    ]});
    let _: FhirResponse = c.batch(&batch).await.expect("batch");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": new_patient(&family, &unique()), "request": {"method": "POST", "url": "Patient"}}
    ]});
    let _: FhirResponse = c.transaction(&tx).await.expect("transaction");

    c.delete("Patient", &id).await.expect("delete");
    let gone = c.read::<Value>("Patient", &id).await.expect_err("410");
    leak.error("FHIR read of a deleted resource (410)", &gone);
    let missing = c
        .read::<Value>("Patient", "does-not-exist-0")
        .await
        .expect_err("404");
    leak.error("FHIR read of a missing resource (404)", &missing);
    leak.error(
        "smart_fhir::Error of a FHIR error",
        &smart_fhir::Error::from(missing),
    );

    // A revoked token that cannot be renewed: 401.
    let source = backend(leak, "it-fhir", "rs384", Algorithm::RS384, "system/*.cruds");
    let token = source.access_token().await.expect("token");
    revoke_all().await;
    let fixed = StaticTokenProvider::new(token).for_fhir_base(base());
    leak.debug("StaticTokenProvider", &fixed);
    let c = FhirClient::builder(base())
        .http_client(leak.http())
        .auth(fixed)
        .build()
        .expect("client");
    let refused = c
        .read::<Value>("Patient", &first_patient())
        .await
        .expect_err("401");
    leak.error("FHIR read with a revoked token (401)", &refused);
}

// ---------------------------------------------------------------------------------------------
// Bulk export.

async fn bulk(leak: &Leak, dir: &Path) {
    bulk_settings(json!({
        "requiresAccessToken": true, "pollCount": 1, "fileMax": 1000,
        "failNextPolls": 0, "rateLimitNextPolls": 0
    }))
    .await;
    let source = backend(leak, "it-bulk", "rs384", Algorithm::RS384, "system/*.rs");
    let c = fhir(leak, source);
    let job = c
        .bulk_export()
        .types(["Patient"])
        .start()
        .await
        .expect("kick-off");
    leak.debug("BulkJob", &job);
    let manifest = job.wait().await.expect("manifest");
    leak.debug("Manifest", manifest);
    let summary = job.download_to_dir(dir).await.expect("download");
    leak.debug("DownloadSummary", &summary);
    job.cancel().await.expect("delete the job");
}

// ---------------------------------------------------------------------------------------------
// App Launch.

fn client_auth(client_id: &str) -> ClientAuth {
    match client_id {
        "it-basic" => ClientAuth::ClientSecretBasic(client_secret("it-basic")),
        "it-post" => ClientAuth::ClientSecretPost(client_secret("it-post")),
        "it-jwt" => ClientAuth::private_key_jwt(key("rs384")),
        _ => ClientAuth::Public,
    }
}

fn launch_app(leak: &Leak, client_id: &str, store: Option<RedisSessionStore>) -> AppLaunch {
    let auth = client_auth(client_id);
    leak.debug("ClientAuth", &auth);
    let mut builder = LaunchClientConfig::builder()
        .client_id(client_id)
        .redirect_uri(redirect_uri(client_id))
        .landing_url("https://app.example/")
        .scope(LAUNCH_SCOPE)
        .client_auth(auth)
        .issuer_policy(IssuerPolicy::allow_list([base()]))
        .insecure_http(InsecureHttp::AllowLoopback)
        .http_client(leak.http());
    if let Some(store) = store {
        builder = builder.session_store(store);
    }
    leak.debug("LaunchClientConfigBuilder", &builder);
    let config = builder.build().expect("launch config");
    leak.debug("LaunchClientConfig", &config);
    let app = AppLaunch::new(config);
    leak.debug("AppLaunch", &app);
    app
}

/// The browser's part up to the redirect URI; the callback's query (its secrets remembered).
async fn authorize(leak: &Leak, request: AuthorizeRequest, redirect: &str) -> String {
    leak.debug("AuthorizeRequest", &request);
    let browser = Browser::new();
    let stop = format!("{redirect}?");
    let location = match request {
        AuthorizeRequest::Redirect(url) => {
            add_form_secrets(&leak.secrets, url.query().unwrap_or(""));
            browser.navigate_until(url.as_str(), &stop).await
        }
        AuthorizeRequest::FormPost { action, fields } => {
            for (k, v) in &fields {
                if k == "state" {
                    leak.secrets.add("state", v);
                }
            }
            let response = browser.post_form(action.as_str(), &fields).await;
            browser.follow_until(action.as_str(), response, &stop).await
        }
        other => panic!("unexpected authorize request {other:?}"),
    };
    let query = Url::parse(&location)
        .expect("callback URL")
        .query()
        .unwrap_or("")
        .to_owned();
    add_form_secrets(&leak.secrets, &query);
    query
}

async fn sign_in(leak: &Leak, app: &AppLaunch, sid: &str, ehr: bool) -> String {
    leak.secrets.add("session id", sid);
    let request = if ehr {
        let launch =
            ehr_launch_context(&json!({"patient": first_patient(), "encounter": "enc-1"})).await;
        app.launch(sid, base().as_str(), &launch)
            .await
            .expect("EHR launch")
    } else {
        app.standalone(sid, base().as_str())
            .await
            .expect("standalone launch")
    };
    authorize(leak, request, app.config().redirect_uri()).await
}

/// Sign-in, callback (code exchange, id_token check), a read, a refresh (rotation), logout
/// (revocation), and the failing paths around them.
async fn launch_flow(leak: &Leak, app: &AppLaunch, ehr: bool) {
    let sid = format!("session-{}", unique());
    let query = sign_in(leak, app, &sid, ehr).await;
    let launched = app.callback(&sid, &query).await.expect("callback");
    leak.debug("Launched", &launched);
    leak.debug("LaunchContext", &launched.context);

    // The same callback again: the state was used up, and the code too.
    let replay = app
        .callback(&sid, &query)
        .await
        .expect_err("replayed callback");
    leak.error("replayed callback", &replay);

    let session = app.ready(&sid).await.expect("session");
    leak.debug("SessionClient", &session);
    let fhir = FhirClient::builder(session.fhir_base())
        .http_client(leak.http())
        .auth(session.clone())
        .build()
        .expect("FHIR client");
    let _: FhirResponse = fhir.read("Patient", &first_patient()).await.expect("read");
    let old = session.access_token().await.expect("token");
    session.token_rejected(&old).await;
    let new = session.access_token().await.expect("refreshed");
    assert!(!new.ct_eq(old.secret()), "a new token after the refresh");
    let _: FhirResponse = fhir
        .read("Patient", &first_patient())
        .await
        .expect("read with the refreshed token");
    app.logout(&sid).await.expect("logout");
    let gone = app.ready(&sid).await.expect_err("signed out");
    leak.error("session after logout", &gone);
}

async fn app_launch(leak: &Leak) {
    for (client, ehr) in [
        ("it-public", false),
        ("it-basic", true),
        ("it-post", false),
        ("it-jwt", true),
        ("it-rotation", false),
    ] {
        let app = launch_app(leak, client, None);
        launch_flow(leak, &app, ehr).await;
    }

    // Failing callbacks: a real code with a forged state, an error callback, garbage.
    let app = launch_app(leak, "it-public", None);
    let sid = format!("session-{}", unique());
    let query = sign_in(leak, &app, &sid, false).await;
    let code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let forged = format!("code={code}&state=forged-state-{}", unique());
    let e = app.callback(&sid, &forged).await.expect_err("forged state");
    leak.error("callback with a forged state", &e);
    let e = app
        .callback(
            &sid,
            "error=access_denied&error_description=the+user+said+no&state=x",
        )
        .await
        .expect_err("error callback");
    leak.error("error callback", &e);
    let other = format!("session-{}", unique());
    let e = app
        .callback(&other, &query)
        .await
        .expect_err("another session");
    leak.error("callback in another session", &e);
    // The right state, then the code again at the token endpoint: refused by the server.
    // Whether the refused callbacks left the pending state in place is not this test's
    // concern: either way something is printed.
    match app.callback(&sid, &query).await {
        Ok(launched) => leak.debug("Launched", &launched),
        Err(e) => leak.error("callback after refused ones", &e),
    }
    let sid2 = format!("session-{}", unique());
    let query2 = sign_in(leak, &app, &sid2, false).await;
    let state2 = url::form_urlencoded::parse(query2.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let reused = format!("code={code}&state={state2}");
    let e = app.callback(&sid2, &reused).await.expect_err("reused code");
    leak.error("callback with a used code (server error body)", &e);
    let e = smart_fhir::Error::from(e);
    leak.error("smart_fhir::Error of a launch error", &e);

    // A refresh the server refuses: the refresh token revoked by logout in another session
    // copy is not reachable here, so revoke the grant at the server through rotation reuse.
    let app = launch_app(leak, "it-rotation", None);
    let sid = format!("session-{}", unique());
    let query = sign_in(leak, &app, &sid, false).await;
    app.callback(&sid, &query).await.expect("callback");
    let session = app.ready(&sid).await.expect("session");
    let first_refresh = leak
        .rec
        .token_responses()
        .last()
        .and_then(|(_, body)| serde_json::from_slice::<Value>(body).ok())
        .and_then(|v| v["refresh_token"].as_str().map(str::to_owned))
        .expect("a refresh token");
    let t = session.access_token().await.expect("token");
    session.token_rejected(&t).await;
    let t = session.access_token().await.expect("rotated");
    // The old refresh token, replayed: the server revokes the grant; the session's next refresh
    // is refused.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "refresh_token"),
            ("refresh_token", first_refresh.as_str()),
            ("client_id", "it-rotation"),
        ])
        .finish();
    let req = http::Request::post(token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(bytes::Bytes::from(body))
        .expect("request");
    let resp = smart_fhir_core::HttpClient::execute(&*leak.rec, req)
        .await
        .expect("token request");
    assert_eq!(resp.status(), 400);
    session.token_rejected(&t).await;
    let e = session.access_token().await.expect_err("refresh refused");
    leak.error("refused refresh", &e);
}

// ---------------------------------------------------------------------------------------------
// Redis stores.

fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("random bytes");
    b
}

fn add_bytes_secret(leak: &Leak, kind: &'static str, b: &[u8]) {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    leak.secrets.add(kind, &hex);
    leak.secrets.add(kind, &hex.to_uppercase());
    leak.secrets.add(kind, &STANDARD.encode(b));
    leak.secrets.add(kind, &URL_SAFE_NO_PAD.encode(b));
    // As a derived `Debug` of the array would print it.
    leak.secrets.add(kind, &format!("{b:?}"));
    leak.secrets.add(kind, &format!("{:?}", &b[..8]));
}

async fn redis_stores(leak: &Leak) {
    let bytes = random_bytes();
    add_bytes_secret(leak, "Redis encryption key", &bytes);
    let encryption_key = EncryptionKey::new("leak-1", bytes).expect("key");
    leak.debug("EncryptionKey", &encryption_key);
    let keyring = Keyring::new(encryption_key);
    leak.debug("Keyring", &keyring);
    let builder = RedisStore::builder()
        .url(redis_url())
        .encryption(keyring.clone());
    leak.debug("RedisStoreBuilder", &builder);
    let redis = builder.build().expect("redis store");
    leak.debug("RedisStore", &redis);

    // Backend Services with its token in Redis.
    let tokens = RedisTokenStore::new(redis.clone());
    leak.debug("RedisTokenStore", &tokens);
    let source = BackendServices::builder()
        .fhir_base(base())
        .client_id("it-rs384")
        .scope("system/Patient.rs")
        .private_key(key("rs384"))
        .http_client(leak.http())
        .token_store(tokens.clone())
        .build()
        .expect("backend services");
    let t = source.token().await.expect("token");
    let again = BackendServices::builder()
        .fhir_base(base())
        .client_id("it-rs384")
        .scope("system/Patient.rs")
        .private_key(key("rs384"))
        .http_client(leak.http())
        .token_store(tokens)
        .build()
        .expect("backend services")
        .token()
        .await
        .expect("token from Redis");
    assert!(
        again.access_token.ct_eq(t.access_token.secret()),
        "shared through Redis"
    );

    // App Launch with its sessions in Redis.
    let sessions = RedisSessionStore::new(redis.clone());
    leak.debug("RedisSessionStore", &sessions);
    let app = launch_app(leak, "it-redis-rotation", Some(sessions));
    launch_flow(leak, &app, false).await;

    // A password in the URL (this Redis has none, so it refuses the AUTH): neither the
    // builder's `Debug` nor the error shows it.
    let password = format!("redis-password-{}", unique());
    leak.secrets.add("Redis password", &password);
    let with_password = redis_url().replacen("redis://", &format!("redis://:{password}@"), 1);
    let builder = RedisStore::builder()
        .url(with_password.clone())
        .encryption(keyring)
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_secs(2));
    leak.debug("RedisStoreBuilder with a password", &builder);
    let store = RedisTokenStore::new(builder.build().expect("store"));
    if let Err(e) = store.get("leak").await {
        leak.error("Redis with a wrong password", &e);
    }

    // The facade's configuration with a private key and that Redis URL.
    let pem = std::fs::read_to_string(key_path("rs384")).expect("key file");
    let config = smart_fhir::Config::from_vars([
        ("SMART_FHIR_BASE", base().to_string()),
        ("SMART_CLIENT_ID", "it-rs384".to_owned()),
        ("SMART_SCOPE", "system/Patient.rs".to_owned()),
        ("SMART_PRIVATE_KEY", pem),
        ("SMART_TOKEN_STORE", with_password.clone()),
        ("SMART_SESSION_STORE", with_password),
        ("SMART_INSECURE_HTTP", "loopback".to_owned()),
    ])
    .expect("config");
    leak.debug("smart_fhir::Config", &config);
    leak.debug(
        "smart_fhir::Config backend builder",
        &config.backend_services_builder().expect("builder"),
    );
    leak.debug(
        "smart_fhir::Config token store",
        &config.token_store().expect("store"),
    );
    leak.debug(
        "smart_fhir::Config session store",
        &config.session_store().expect("store"),
    );
    match config.backend_services().expect("backend").token().await {
        Ok(t) => leak.debug("StoredToken (through the configured store)", &t),
        Err(e) => leak.error("Backend Services on a Redis that refuses the password", &e),
    }
}

// ---------------------------------------------------------------------------------------------
// The secret newtypes with the flows' values.

fn secret_types(leak: &Leak) {
    for v in leak.secrets.of_kind("access token").iter().take(3) {
        leak.debug("AccessToken", &AccessToken::new(v.clone()));
    }
    for v in leak.secrets.of_kind("refresh token").iter().take(3) {
        leak.debug("RefreshToken", &RefreshToken::new(v.clone()));
    }
    for v in leak.secrets.of_kind("id token").iter().take(3) {
        leak.debug("IdToken", &IdToken::new(v.clone()));
    }
    for v in leak.secrets.of_kind("authorization code").iter().take(3) {
        leak.debug("AuthorizationCode", &AuthorizationCode::new(v.clone()));
    }
    for v in leak.secrets.of_kind("PKCE verifier").iter().take(3) {
        leak.debug("PkceCodeVerifier", &PkceCodeVerifier::new(v.clone()));
    }
    for v in leak.secrets.of_kind("client secret").iter().take(3) {
        leak.debug("ClientSecret", &ClientSecret::new(v.clone()));
    }
    // The token responses as the library parses them.
    for (status, body) in leak.rec.token_responses().into_iter().take(10) {
        let response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body)
            .expect("response");
        match smart_fhir_oauth::token::parse_token_response(response, SystemClock.now(), "x") {
            Ok(parsed) => leak.debug("TokenResponse", &parsed),
            Err(e) => leak.error("token response", &e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI at full verbosity.

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                json_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Remembers the tokens in the JSON files under `dir` (the CLI's session and token store).
fn secrets_of_files(leak: &Leak, dir: &Path) -> usize {
    let mut files = Vec::new();
    json_files(dir, &mut files);
    let mut n = 0;
    for f in files {
        if let Ok(v) = std::fs::read_to_string(&f)
            .map_err(|_| ())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|_| ()))
        {
            add_json_secrets(&leak.secrets, &v);
            n += 1;
        }
    }
    n
}

async fn cli(leak: &Leak, work: &Path) {
    let b = base().to_string();
    let key = key_path("rs384");
    let key = key.to_str().expect("utf-8 path");
    let store = work.join("tokens.json");
    let store = store.to_str().expect("utf-8 path").to_owned();
    let backend = |client: &'static str, scope: &'static str| -> Vec<String> {
        [
            "--fhir-base",
            &b,
            "--client-id",
            client,
            "--key",
            key,
            "--scope",
            scope,
            "--insecure-http",
            "--store",
            &store,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_verbose(&args, &[])
    };

    let mut args = vec!["token".to_owned()];
    args.extend(backend("it-cli", "system/Patient.rs"));
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("task");
    assert!(out.status.success(), "token failed");
    assert!(out.stderr.contains("TRACE"), "-vvv shows TRACE events");
    leak.cli_run("token -vvv", &out);

    let mut args = vec!["get".to_owned(), format!("Patient/{}", first_patient())];
    args.extend(backend("it-fhir-cli", "system/*.rs"));
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("task");
    assert!(out.status.success(), "get failed");
    leak.cli_run("get -vvv", &out);

    let mut args = vec!["get".to_owned(), "Patient/does-not-exist-0".to_owned()];
    args.extend(backend("it-fhir-cli", "system/*.rs"));
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("task");
    assert_eq!(out.status.code(), Some(1), "404");
    leak.cli_run("get (404) -vvv", &out);

    let export_dir = work.join("export");
    let mut args = vec![
        "export".to_owned(),
        "--type".to_owned(),
        "Patient".to_owned(),
        "--out".to_owned(),
        export_dir.to_str().expect("utf-8").to_owned(),
    ];
    args.extend(backend("it-bulk-cli", "system/*.rs"));
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("task");
    assert!(out.status.success(), "export failed");
    leak.cli_run("export -vvv", &out);

    let bad = key_path("unregistered");
    let bad = bad.to_str().expect("utf-8").to_owned();
    let args: Vec<String> = [
        "token",
        "--fhir-base",
        &b,
        "--client-id",
        "it-cli",
        "--key",
        &bad,
        "--scope",
        "system/Patient.rs",
        "--insecure-http",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = tokio::task::spawn_blocking(move || run(args))
        .await
        .expect("task");
    assert_eq!(out.status.code(), Some(1), "invalid_client");
    leak.cli_run("token with an unregistered key -vvv", &out);

    // login, get --session, logout, for a public and a confidential client.
    for (client, secret_env) in [
        ("it-login", None),
        ("it-login-basic", Some("it-login-basic")),
    ] {
        let state = work.join(format!("state-{client}"));
        std::fs::create_dir_all(&state).expect("state dir");
        let state_home = state.to_str().expect("utf-8").to_owned();
        let secret = secret_env.map(|c| client_secret(c).secret().to_owned());
        let mut env: Vec<(&str, &str)> = vec![("XDG_STATE_HOME", state_home.as_str())];
        if let Some(s) = secret.as_deref() {
            leak.secrets.add("client secret", s);
            env.push(("LEAK_CLIENT_SECRET", s));
        }
        let mut args = vec![
            "--fhir-base",
            &b,
            "--client-id",
            client,
            "--insecure-http",
            "--timeout",
            "120",
        ];
        if secret.is_some() {
            args.extend(["--client-secret-env", "LEAK_CLIENT_SECRET"]);
        }
        let (out, callback) = cli_login_verbose(&args, &env).await;
        assert!(out.status.success(), "login failed");
        add_form_secrets(
            &leak.secrets,
            callback.split_once('?').map(|(_, q)| q).unwrap_or(""),
        );
        assert!(secrets_of_files(leak, &state) >= 1, "the session file");
        // The authorize URL is printed on purpose (the user opens it); its `state` is its
        // business. Everything else is checked.
        let mut shown = out;
        shown.stdout = shown
            .stdout
            .lines()
            .filter(|l| !l.starts_with("http"))
            .collect::<Vec<_>>()
            .join("\n");
        leak.cli_run(&format!("login {client} -vvv"), &shown);

        let envs: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let session_run = move |args: Vec<&'static str>| {
            let env: Vec<(&str, &str)> =
                envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            cli_verbose(&args, &env)
        };
        let r = session_run.clone();
        let patient = format!("Patient/{}", first_patient());
        let patient: &'static str = Box::leak(patient.into_boxed_str());
        let out = tokio::task::spawn_blocking(move || {
            r(vec!["get", patient, "--session", "--insecure-http"])
        })
        .await
        .expect("task");
        assert!(out.status.success(), "get --session failed");
        leak.cli_run("get --session -vvv", &out);
        let r = session_run.clone();
        let out = tokio::task::spawn_blocking(move || r(vec!["logout", "--insecure-http"]))
            .await
            .expect("task");
        assert!(out.status.success(), "logout failed");
        leak.cli_run("logout -vvv", &out);
        let r = session_run;
        let out = tokio::task::spawn_blocking(move || {
            r(vec!["get", "metadata", "--session", "--insecure-http"])
        })
        .await
        .expect("task");
        assert_eq!(out.status.code(), Some(1), "no session after logout");
        leak.cli_run("get --session after logout -vvv", &out);
    }
    assert!(secrets_of_files(leak, work) >= 1, "the token store file");
}

/// JWT-shaped words (three base64url parts, the first a JSON header): an access, id or
/// refresh token or a client assertion, whichever it is.
fn jwts_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3 && parts[0].starts_with("eyJ") && parts.iter().all(|p| p.len() >= 8)
        })
        .map(|w| w.chars().take(12).collect())
        .collect()
}

fn report(found: &[Found]) -> String {
    // One line per (kind, place), then the first occurrences.
    let mut places: Vec<String> = found
        .iter()
        .map(|f| format!("* {} in {}", f.kind, f.place))
        .collect();
    places.sort();
    places.dedup();
    let mut seen = std::collections::BTreeSet::new();
    let firsts = found
        .iter()
        .filter(|f| seen.insert((f.kind, f.place.clone())))
        .take(30)
        .map(|f| {
            format!(
                "- {} {} in {}: …{}…",
                if f.whole { "whole" } else { "a piece of a" },
                f.kind,
                f.place,
                f.context.replace('\n', "⏎")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n{firsts}", places.join("\n"))
}

/// P5, SC-2.10, SC-4.13, SC-4.32: no access, refresh or id token, authorization code, state,
/// PKCE verifier, client secret, client assertion, private-key material, session id, Redis
/// encryption key or password, whole or any 16-character piece, in the TRACE output of every
/// target, the `Debug` of the types that hold them, the errors of the failing paths, or the
/// CLI's output at `-vvv` / `RUST_LOG=trace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_no_secret_in_trace_debug_errors_or_cli_output() {
    let capture = Capture::install();
    let leak = Leak::new();
    for name in ["rs384", "es384", "unregistered", "jku-rs384"] {
        let pem = std::fs::read_to_string(key_path(name)).expect("key file");
        add_key_secrets(&leak.secrets, &pem);
    }
    let work = tempfile::tempdir().expect("temp dir");

    backend_services(&leak).await;
    fhir_operations(&leak).await;
    bulk(&leak, &work.path().join("bulk")).await;
    app_launch(&leak).await;
    redis_stores(&leak).await;
    cli(&leak, work.path()).await;
    secret_types(&leak);

    // The flows were seen: the capture is not empty and holds the token requests and the FHIR
    // requests, and every kind of secret was collected.
    let trace = capture.text();
    assert!(
        trace.len() > 10_000,
        "the capture holds the flows ({} bytes)",
        trace.len()
    );
    for expected in ["/oidc/token", "fhir_request", "Patient", "TRACE", "hyper"] {
        assert!(trace.contains(expected), "the capture shows {expected}");
    }
    assert!(
        leak.rec.requests() > 50,
        "the flows went through the recorder"
    );
    let counts = leak.secrets.counts();
    for (kind, least) in [
        ("access token", 10),
        ("refresh token", 5),
        ("id token", 5),
        ("authorization code", 5),
        ("state", 5),
        ("PKCE verifier", 5),
        ("client assertion", 5),
        ("client secret", 3),
        ("private key (PEM)", 40),
        ("private key (JWK)", 10),
        ("Redis encryption key", 4),
        ("Redis password", 1),
        ("session id", 5),
    ] {
        let n = counts.get(kind).copied().unwrap_or(0);
        assert!(
            n >= least,
            "{n} {kind}(s) collected, expected at least {least}: {counts:?}"
        );
    }

    let pieces = |kind: &str| kind != "private key (PEM)";
    let mut texts = vec![("the TRACE capture".to_owned(), trace.clone())];
    texts.extend(leak.printed.lock().expect("printed").iter().cloned());
    let cli_texts = leak.cli.lock().expect("cli").clone();
    texts.extend(cli_texts.iter().cloned());
    assert!(
        cli_texts.iter().any(|(_, t)| t.contains("/oidc/token")),
        "the CLI's TRACE output shows its token requests"
    );
    let found = leak.secrets.find_in(&texts, pieces);
    assert!(
        found.is_empty(),
        "{} leak(s):\n{}",
        found.len(),
        report(&found)
    );

    // Secrets this test could not collect (the CLI's own assertions and verifiers): no JWT at
    // all in what the CLI printed.
    for (place, text) in &cli_texts {
        let jwts = jwts_in(text);
        assert!(jwts.is_empty(), "JWTs in {place}: {jwts:?}");
    }
    let jwts = jwts_in(&trace);
    assert!(jwts.is_empty(), "JWTs in the TRACE capture: {jwts:?}");
}
