//! Tests of [`Config`]: every variable read, checked and named in errors; none ever printed.
//! They read from `from_vars`, never from (or into) the process environment.

use std::io::Write;

use smart_fhir_jwt::KeySpec;

use super::*;

const BASE: &str = "https://ehr.example/fhir";

/// A P-256 private scalar made for these tests (the public point is derived from it).
const JWK_D: &str = "jpsQnnGQmL-YBIffH1136cLSG9tODqbR4ng9Es4sQz0";

fn jwks_with_two_keys() -> String {
    let key = |kid: &str| format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","d":"{JWK_D}"}}"#);
    format!(r#"{{"keys":[{},{}]}}"#, key("first"), key("second"))
}

fn pem() -> String {
    PrivateKey::generate(KeySpec::P256)
        .expect("key")
        .to_pkcs8_pem()
        .to_string()
}

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().map(|(k, v)| (*k, *v)))
}

fn err(vars: &[(&str, &str)]) -> ConfigError {
    load(vars).expect_err("the configuration must be refused")
}

/// The variable an error names.
fn var_of(e: &ConfigError) -> &str {
    match e {
        ConfigError::Missing { var, .. }
        | ConfigError::NotUnicode { var }
        | ConfigError::Invalid { var, .. }
        | ConfigError::Conflict { var, .. }
        | ConfigError::KeyFile { var, .. } => var,
        ConfigError::InvalidPrefix { .. } => "",
    }
}

#[test]
fn the_base_alone_is_a_configuration_and_every_other_variable_is_optional() {
    let c = load(&[(FHIR_BASE, "https://ehr.example/fhir/")]).unwrap();
    assert_eq!(c.fhir_base().as_str(), BASE);
    assert_eq!(c.client_id(), None);
    assert_eq!(c.scope(), None);
    assert!(c.private_key().is_none());
    assert_eq!(c.insecure_http(), InsecureHttp::Deny);
    assert_eq!(c.prefix(), "");
}

#[test]
fn every_variable_is_read() {
    let pem = pem();
    let c = load(&[
        (FHIR_BASE, BASE),
        (CLIENT_ID, " my-backend "),
        (SCOPE, "system/Patient.rs system/Observation.rs"),
        (PRIVATE_KEY, &pem),
        (KID, "key-1"),
        (JKU, "https://app.example/jwks.json"),
        (TOKEN_URL, "https://ehr.example/oauth/token"),
        (REDIRECT_URI, "https://app.example/callback"),
        (INSECURE_HTTP, "deny"),
    ])
    .unwrap();
    assert_eq!(c.client_id(), Some("my-backend"));
    assert_eq!(c.scope(), Some("system/Patient.rs system/Observation.rs"));
    assert_eq!(c.private_key().map(PrivateKey::kid), Some("key-1"));
    assert_eq!(c.jku(), Some("https://app.example/jwks.json"));
    assert_eq!(c.token_url(), Some("https://ehr.example/oauth/token"));
    assert_eq!(c.redirect_uri(), Some("https://app.example/callback"));
    assert_eq!(c.insecure_http(), InsecureHttp::Deny);
}

#[test]
fn a_missing_base_names_both_variables() {
    let e = err(&[(CLIENT_ID, "x")]);
    assert_eq!(
        e,
        ConfigError::Missing {
            var: FHIR_BASE.to_owned(),
            alternative: Some(ISS.to_owned()),
        }
    );
    assert_eq!(e.to_string(), "SMART_FHIR_BASE is not set (nor SMART_ISS)");
}

#[test]
fn iss_names_the_base_too_and_must_agree_with_it() {
    assert_eq!(load(&[(ISS, BASE)]).unwrap().fhir_base().as_str(), BASE);
    // The same server written two ways is no conflict.
    let same = load(&[(FHIR_BASE, BASE), (ISS, "https://EHR.example/fhir/")]).unwrap();
    assert_eq!(same.fhir_base().as_str(), BASE);
    let e = err(&[(FHIR_BASE, BASE), (ISS, "https://other.example/fhir")]);
    assert!(
        matches!(&e, ConfigError::Conflict { var, other, .. }
        if var == FHIR_BASE && other == ISS),
        "{e:?}"
    );
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let c = load(&[(FHIR_BASE, BASE), (CLIENT_ID, "  "), (PRIVATE_KEY, "")]).unwrap();
    assert_eq!(c.client_id(), None);
    assert!(c.private_key().is_none());
}

#[test]
fn a_prefix_reads_one_tenants_variables_and_names_them_in_errors() {
    let vars = [
        ("EPIC_SMART_FHIR_BASE", "https://epic.example/fhir"),
        ("EPIC_SMART_CLIENT_ID", "epic-client"),
        (FHIR_BASE, BASE),
        (CLIENT_ID, "plain-client"),
    ];
    for prefix in ["EPIC", "EPIC_"] {
        let c = Config::from_vars_prefixed(prefix, vars).unwrap();
        assert_eq!(c.fhir_base().as_str(), "https://epic.example/fhir");
        assert_eq!(c.client_id(), Some("epic-client"));
        assert_eq!(c.prefix(), "EPIC_");
    }
    let e = Config::from_vars_prefixed("EPIC", [("EPIC_SMART_FHIR_BASE", "ftp://x")]).unwrap_err();
    assert_eq!(var_of(&e), "EPIC_SMART_FHIR_BASE");
    let c = Config::from_vars_prefixed("EPIC", [("EPIC_SMART_FHIR_BASE", BASE)]).unwrap();
    let e = c.backend_services().unwrap_err();
    assert!(
        matches!(&e, crate::Error::Config(c) if var_of(c) == "EPIC_SMART_CLIENT_ID"),
        "{e}"
    );
}

#[test]
fn a_prefix_that_cannot_start_a_variable_name_is_refused() {
    for bad in ["", "_", "EP-IC", "EPIC SMART", "É"] {
        let e = Config::from_vars_prefixed(bad, [(FHIR_BASE, BASE)]);
        let expect_ok = bad.is_empty(); // no prefix at all reads the plain names
        assert_eq!(e.is_ok(), expect_ok, "{bad:?}");
        if !expect_ok {
            assert!(
                matches!(e, Err(ConfigError::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
    }
    assert!(matches!(
        Config::from_env_prefixed("EP-IC"),
        Err(ConfigError::InvalidPrefix { .. })
    ));
}

/// P7: plain HTTP only to loopback, and only when `SMART_INSECURE_HTTP=loopback` says so once.
#[test]
fn plain_http_needs_the_loopback_opt_in_p7() {
    let e = err(&[(FHIR_BASE, "http://127.0.0.1:8080/fhir")]);
    assert_eq!(var_of(&e), FHIR_BASE);
    assert!(
        e.to_string().contains("SMART_INSECURE_HTTP=loopback"),
        "{e}"
    );

    let c = load(&[
        (FHIR_BASE, "http://127.0.0.1:8080/fhir"),
        (TOKEN_URL, "http://localhost:8080/token"),
        (INSECURE_HTTP, "loopback"),
    ])
    .unwrap();
    assert_eq!(c.insecure_http(), InsecureHttp::AllowLoopback);
    assert_eq!(c.fhir_base().insecure_http(), InsecureHttp::AllowLoopback);

    let remote = err(&[
        (FHIR_BASE, "http://ehr.example/fhir"),
        (INSECURE_HTTP, "loopback"),
    ]);
    assert_eq!(var_of(&remote), FHIR_BASE);
    let remote_token = err(&[
        (FHIR_BASE, BASE),
        (TOKEN_URL, "http://ehr.example/token"),
        (INSECURE_HTTP, "loopback"),
    ]);
    assert_eq!(var_of(&remote_token), TOKEN_URL);
}

#[test]
fn a_malformed_variable_is_named() {
    let cases: [(&str, &str); 7] = [
        (FHIR_BASE, "not a url"),
        (FHIR_BASE, "https://ehr.example/fhir?x=1"),
        (INSECURE_HTTP, "yes"),
        (SCOPE, "system/Patient.rx"),
        (CLIENT_ID, "a\u{7}b"),
        (JKU, "javascript:alert(1)"),
        (REDIRECT_URI, "https://user:pw@app.example/cb"),
    ];
    for (var, value) in cases {
        let mut vars = vec![(FHIR_BASE, BASE), (var, value)];
        if var == FHIR_BASE {
            vars.remove(0);
        }
        let e = err(&vars);
        assert_eq!(var_of(&e), var, "{var}={value:?}: {e}");
        assert!(e.to_string().starts_with(var), "{e}");
    }
    let e = err(&[(FHIR_BASE, BASE), (TOKEN_URL, "nope")]);
    assert_eq!(var_of(&e), TOKEN_URL);
}

/// P5: a key that cannot be read is named, and the error quotes none of it.
#[test]
fn a_bad_key_is_named_and_never_printed_p5() {
    let secret = "-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n";
    let e = err(&[(FHIR_BASE, BASE), (PRIVATE_KEY, secret)]);
    assert_eq!(var_of(&e), PRIVATE_KEY);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("SECRET"), "{shown}");

    let json = r#"{"kty":"EC","crv":"P-256","d":"SECRET!SECRET"}"#;
    let e = err(&[(FHIR_BASE, BASE), (PRIVATE_KEY, json)]);
    assert_eq!(var_of(&e), PRIVATE_KEY);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

/// P5: the configuration's `Debug` shows which key, never the key.
#[test]
fn debug_shows_no_key_material_p5() {
    let jwks = jwks_with_two_keys();
    let c = load(&[(FHIR_BASE, BASE), (PRIVATE_KEY, &jwks), (KID, "second")]).unwrap();
    let shown = format!("{c:?}");
    assert!(shown.contains("second"), "{shown}");
    assert!(!shown.contains(JWK_D), "{shown}");
}

#[test]
fn kid_picks_a_key_of_a_jwks() {
    let jwks = jwks_with_two_keys();
    let c = load(&[(FHIR_BASE, BASE), (PRIVATE_KEY, &jwks), (KID, "second")]).unwrap();
    assert_eq!(c.private_key().unwrap().kid(), "second");

    let ambiguous = err(&[(FHIR_BASE, BASE), (PRIVATE_KEY, &jwks)]);
    assert_eq!(var_of(&ambiguous), PRIVATE_KEY);
    assert!(ambiguous.to_string().contains("first"), "{ambiguous}");

    let unknown = err(&[(FHIR_BASE, BASE), (PRIVATE_KEY, &jwks), (KID, "third")]);
    assert_eq!(var_of(&unknown), PRIVATE_KEY);
}

#[test]
fn kid_without_a_key_is_an_error() {
    let e = err(&[(FHIR_BASE, BASE), (KID, "key-1")]);
    assert!(
        matches!(&e, ConfigError::Missing { var, alternative: Some(alt) }
        if var == PRIVATE_KEY && alt == PRIVATE_KEY_FILE),
        "{e:?}"
    );
}

#[test]
fn the_key_is_given_one_way() {
    let pem = pem();
    let e = err(&[
        (FHIR_BASE, BASE),
        (PRIVATE_KEY, &pem),
        (PRIVATE_KEY_FILE, "/run/secrets/client.pem"),
    ]);
    assert!(
        matches!(&e, ConfigError::Conflict { var, other, .. }
        if var == PRIVATE_KEY && other == PRIVATE_KEY_FILE),
        "{e:?}"
    );
}

#[test]
fn a_key_file_is_read() {
    let pem = pem();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pem.as_bytes()).unwrap();
    let path = file.path().to_str().unwrap();
    let c = load(&[(FHIR_BASE, BASE), (PRIVATE_KEY_FILE, path), (KID, "k")]).unwrap();
    assert_eq!(c.private_key().unwrap().kid(), "k");
}

/// P15: the key file is bounded and must be a regular file (a FIFO or a device could block or
/// never end); failures name the variable and the path.
#[test]
fn a_key_file_is_bounded_and_regular_p15() {
    let dir = tempfile::tempdir().unwrap();
    let not_regular = err(&[
        (FHIR_BASE, BASE),
        (PRIVATE_KEY_FILE, dir.path().to_str().unwrap()),
    ]);
    assert!(
        matches!(&not_regular, ConfigError::KeyFile { var, reason, .. }
        if var == PRIVATE_KEY_FILE && reason == "not a regular file"),
        "{not_regular:?}"
    );

    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'x'; MAX_PRIVATE_KEY_FILE_BYTES as usize + 1]).unwrap();
    let too_large = err(&[(FHIR_BASE, BASE), (PRIVATE_KEY_FILE, big.to_str().unwrap())]);
    assert!(
        matches!(&too_large, ConfigError::KeyFile { reason, .. }
        if reason.contains("64 KiB")),
        "{too_large:?}"
    );

    let absent = dir.path().join("absent.pem");
    let e = err(&[
        (FHIR_BASE, BASE),
        (PRIVATE_KEY_FILE, absent.to_str().unwrap()),
    ]);
    assert_eq!(var_of(&e), PRIVATE_KEY_FILE);
    assert!(e.to_string().contains("absent.pem"), "{e}");

    let binary = dir.path().join("key.der");
    std::fs::write(&binary, [0x30, 0x82, 0xff, 0xfe]).unwrap();
    let e = err(&[
        (FHIR_BASE, BASE),
        (PRIVATE_KEY_FILE, binary.to_str().unwrap()),
    ]);
    assert!(matches!(&e, ConfigError::KeyFile { reason, .. } if reason == "not UTF-8 text"));
}

#[test]
fn each_use_names_the_variables_it_lacks() {
    let pem = pem();
    let base_only = load(&[(FHIR_BASE, BASE)]).unwrap();
    let named = |r: Result<(), crate::Error>| match r {
        Err(crate::Error::Config(c)) => var_of(&c).to_owned(),
        other => panic!("expected a configuration error, got {other:?}"),
    };
    assert_eq!(named(base_only.backend_services().map(drop)), CLIENT_ID);
    assert_eq!(named(base_only.fhir_client().map(drop)), CLIENT_ID);
    assert_eq!(named(base_only.app_launch_config().map(drop)), CLIENT_ID);

    let with_key = load(&[(FHIR_BASE, BASE), (PRIVATE_KEY, &pem), (CLIENT_ID, "c")]).unwrap();
    assert_eq!(named(with_key.backend_services().map(drop)), SCOPE);
    let no_key = load(&[(FHIR_BASE, BASE), (CLIENT_ID, "c"), (SCOPE, "system/*.rs")]).unwrap();
    assert_eq!(named(no_key.backend_services().map(drop)), PRIVATE_KEY);
    let launch = load(&[(FHIR_BASE, BASE), (CLIENT_ID, "c"), (SCOPE, "openid")]).unwrap();
    assert_eq!(named(launch.app_launch_config().map(drop)), REDIRECT_URI);
}

// Builds a transport, which needs a crypto provider.
#[cfg(feature = "rustls-ring")]
#[test]
fn backend_services_is_built_for_the_configured_server() {
    let pem = pem();
    let c = load(&[
        (FHIR_BASE, BASE),
        (CLIENT_ID, "my-backend"),
        (SCOPE, "system/Patient.rs"),
        (PRIVATE_KEY, &pem),
        (TOKEN_URL, "https://ehr.example/oauth/token"),
    ])
    .unwrap();
    let backend = c.backend_services().unwrap();
    assert_eq!(backend.fhir_base().as_str(), BASE);
    assert_eq!(backend.requested_scopes().to_string(), "system/Patient.rs");
    let fhir = c.fhir_client().unwrap();
    assert_eq!(fhir.base().as_str(), BASE);
}

// Builds a transport, which needs a crypto provider.
#[cfg(feature = "rustls-ring")]
/// SC-4.3, P1: the App Launch configuration allows the configured server as the only issuer.
#[tokio::test]
async fn app_launch_config_is_prefilled_and_allows_only_the_configured_issuer_sc_4_3() {
    let c = load(&[
        (FHIR_BASE, BASE),
        (CLIENT_ID, "my-app"),
        (SCOPE, "launch openid fhirUser patient/*.rs"),
        (REDIRECT_URI, "https://app.example/callback"),
    ])
    .unwrap();
    let config = c
        .app_launch_config()
        .unwrap()
        .landing_url("https://app.example/")
        .build()
        .unwrap();
    assert_eq!(config.client_id(), "my-app");
    assert_eq!(config.redirect_uri(), "https://app.example/callback");
    assert_eq!(
        config.scopes().to_string(),
        "launch openid fhirUser patient/*.rs"
    );
    let app = smart_fhir_oauth::AppLaunch::new(config);
    // An issuer not configured is refused before any request is made.
    let refused = app
        .launch("session-1", "https://evil.example/fhir", "xyz")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            smart_fhir_oauth::LaunchError::IssuerNotAllowed { .. }
        ),
        "{refused:?}"
    );
}

// Builds a transport, which needs a crypto provider.
#[cfg(feature = "rustls-ring")]
#[test]
fn app_launch_uses_the_key_when_there_is_one() {
    let pem = pem();
    let c = load(&[
        (FHIR_BASE, BASE),
        (CLIENT_ID, "my-app"),
        (SCOPE, "openid"),
        (REDIRECT_URI, "https://app.example/callback"),
        (PRIVATE_KEY, &pem),
    ])
    .unwrap();
    let shown = format!(
        "{:?}",
        c.app_launch_config()
            .unwrap()
            .landing_url("https://app.example/")
            .build()
            .unwrap()
    );
    assert!(shown.contains("PrivateKeyJwt"), "{shown}");
    let public = load(&[
        (FHIR_BASE, BASE),
        (CLIENT_ID, "my-app"),
        (SCOPE, "openid"),
        (REDIRECT_URI, "https://app.example/callback"),
    ])
    .unwrap();
    let shown = format!(
        "{:?}",
        public
            .app_launch_config()
            .unwrap()
            .landing_url("https://app.example/")
            .build()
            .unwrap()
    );
    assert!(shown.contains("auth: Public"), "{shown}");
}

#[test]
fn an_unset_environment_variable_reads_as_none() {
    // A name no environment defines; the process environment is only read.
    assert_eq!(
        env_lookup("SMART_FHIR_TEST_SURELY_UNSET_7f3a").map(|v| v.is_some()),
        Ok(false)
    );
}

/// P5: a store URL is never shown (it may hold a password); `rediss://` is taken only with the
/// `redis-tls` feature, other schemes never, refused with the variable named.
#[test]
fn p5_store_variables_are_checked_and_never_shown() {
    let rediss = load(&[
        ("SMART_FHIR_BASE", BASE),
        (
            "SMART_TOKEN_STORE",
            "rediss://user:SECRET@cache.example:6380",
        ),
    ]);
    let tls_feature = cfg!(feature = "redis-tls");
    assert_eq!(rediss.is_ok(), tls_feature, "{rediss:?}");
    match rediss {
        Ok(config) => assert!(!format!("{config:?}").contains("SECRET")),
        Err(e) => {
            assert_eq!(var_of(&e), "SMART_TOKEN_STORE");
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
    }
    let e = err(&[
        ("SMART_FHIR_BASE", BASE),
        (
            "SMART_SESSION_STORE",
            "memcached://user:SECRET@cache.example",
        ),
    ]);
    assert_eq!(var_of(&e), "SMART_SESSION_STORE");
    assert!(!e.to_string().contains("SECRET"), "{e}");
}

/// Without the `redis` feature a store variable is refused rather than ignored.
#[cfg(not(feature = "redis"))]
#[test]
fn a_store_variable_without_the_redis_feature_is_refused() {
    let e = err(&[
        ("SMART_FHIR_BASE", BASE),
        ("SMART_TOKEN_STORE", "redis://127.0.0.1:6379"),
    ]);
    assert_eq!(var_of(&e), "SMART_TOKEN_STORE");
    assert!(e.to_string().contains("`redis` feature"), "{e}");
}

/// P12: with the `redis` feature, `SMART_TOKEN_STORE` and `SMART_SESSION_STORE` pick the
/// stores (a Redis URL is kept out of `Debug`; a file path opens a shared file store).
#[cfg(feature = "redis")]
#[tokio::test]
async fn p12_store_variables_pick_redis_or_a_file() {
    use smart_fhir_store::{SessionStore, TokenStore};
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let sessions = dir.path().join("sessions.json");
    let config = load(&[
        ("SMART_FHIR_BASE", BASE),
        ("SMART_TOKEN_STORE", tokens.to_str().unwrap()),
        ("SMART_SESSION_STORE", sessions.to_str().unwrap()),
    ])
    .unwrap();
    let store = config.token_store().unwrap().expect("a token store");
    let lease = store
        .try_acquire_lease("k", std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lease.is_some());
    // A second configuration (another process) sees the same lease in the same file.
    let again = config.token_store().unwrap().unwrap();
    assert!(again
        .try_acquire_lease("k", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .is_none());
    let sessions = config.session_store().unwrap().expect("a session store");
    sessions
        .put(
            "s",
            "k",
            serde_json::json!(1),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(config
        .session_store()
        .unwrap()
        .unwrap()
        .get("s", "k")
        .await
        .unwrap()
        .is_some());

    let config = load(&[
        ("SMART_FHIR_BASE", BASE),
        ("SMART_TOKEN_STORE", "redis://user:SECRET@127.0.0.1:1/0"),
    ])
    .unwrap();
    assert!(config.token_store().unwrap().is_some());
    assert!(config.session_store().unwrap().is_none());
    let printed = format!("{config:?}");
    assert!(!printed.contains("SECRET"), "{printed}");
}
