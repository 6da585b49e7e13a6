//! Starting an App Launch: the issuer allow-list (P1), discovery and fit, the authorize request
//! (SC-4.5 – SC-4.12), the form-post variant, v1 scopes.

mod launch_support;

use launch_support::*;
use serde_json::json;
use smart_fhir_core::FhirBaseUrl;
use smart_fhir_oauth::{AppLaunch, AuthorizeRequest, IssuerPolicy, LaunchError};

/// SC-4.5 – SC-4.9, SC-4.12: every parameter of an EHR launch, `launch` echoed exactly, `launch`
/// added to the scopes, a nonce with `openid`, no `max_age`; and the S256 challenge matches the
/// verifier sent later in the code exchange (P4).
#[tokio::test]
async fn sc_4_5_ehr_launch_authorize_url_has_every_parameter() {
    let s = Setup::new();
    let app = s.app();
    let launch = "a+b/c=d&e é";
    let req = app.launch("sess-1", BASE, launch).await.unwrap();
    let AuthorizeRequest::Redirect(url) = &req else {
        panic!("expected a redirect, got {req:?}");
    };
    assert!(url.as_str().starts_with(&format!("{AUTHORIZE_URL}?")));
    let p = params(&req);
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["client_id"], CLIENT_ID);
    assert_eq!(p["redirect_uri"], REDIRECT_URI);
    assert_eq!(p["aud"], BASE);
    assert_eq!(p["launch"], launch);
    assert_eq!(p["code_challenge_method"], "S256");
    assert_eq!(p["code_challenge"].len(), 43);
    assert!(p["state"].len() >= 43, "state carries ≥ 256 bits (SC-4.6)");
    assert!(p["nonce"].len() >= 43);
    let scopes: Vec<&str> = p["scope"].split(' ').collect();
    for wanted in [
        "launch",
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    ] {
        assert!(scopes.contains(&wanted), "{wanted} in {scopes:?}");
    }
    assert!(!p.contains_key("max_age") && !p.contains_key("auth_time"));
    assert_eq!(p.len(), 10, "{p:?}");

    // The verifier sent in the exchange is the one the challenge was made from.
    app.callback("sess-1", &callback_query(&req, "code-1"))
        .await
        .unwrap();
    let exchange = &s.server.token_requests()[0];
    assert_eq!(
        s256(exchange.field("code_verifier").unwrap()),
        p["code_challenge"]
    );
}

/// SC-4.4, SC-4.9: a standalone launch has no `launch` parameter and no plain `launch` scope;
/// `aud` is the chosen FHIR base (SC-4.7); fresh state and verifier per flow (P3, P4).
#[tokio::test]
async fn sc_4_4_standalone_launch() {
    let s = Setup::new();
    let app = AppLaunch::new(
        s.builder()
            .scope("launch launch/patient patient/*.rs")
            .build()
            .unwrap(),
    );
    let a = params(
        &app.standalone("sess-1", "https://EHR.example/fhir/")
            .await
            .unwrap(),
    );
    let b = params(&app.standalone("sess-1", BASE).await.unwrap());
    assert!(!a.contains_key("launch"));
    assert!(!a.contains_key("nonce"), "no openid, no nonce");
    assert_eq!(a["scope"], "launch/patient patient/*.rs");
    assert_eq!(a["aud"], BASE);
    assert_ne!(a["state"], b["state"]);
    assert_ne!(a["code_challenge"], b["code_challenge"]);
}

/// P1, SC-4.3: an `iss` that is not allow-listed is refused before any request: zero requests
/// reach the network, and nothing is stored.
#[tokio::test]
async fn p1_unknown_issuer_makes_no_request() {
    let s = Setup::new();
    let app = s.app();
    for iss in [
        "https://attacker.example/fhir",
        "https://ehr.example/fhir/../other",
        "https://ehr.example.attacker.example/fhir",
        "http://ehr.example/fhir",
        "javascript:alert(1)",
        "",
    ] {
        let e = app.launch("sess-1", iss, "l").await.unwrap_err();
        assert!(
            matches!(e, LaunchError::IssuerNotAllowed { .. }),
            "{iss}: {e:?}"
        );
        let e = app.standalone("sess-1", iss).await.unwrap_err();
        assert!(
            matches!(e, LaunchError::IssuerNotAllowed { .. }),
            "{iss}: {e:?}"
        );
    }
    assert_eq!(s.server.total(), 0);
}

/// The explicitly named allow-any policy lets any https issuer through (and then discovers it).
#[tokio::test]
async fn dangerously_allow_any_issuer_is_explicit() {
    let s = Setup::new();
    let app = AppLaunch::new(
        s.builder()
            .issuer_policy(IssuerPolicy::DangerouslyAllowAnyIssuer)
            .build()
            .unwrap(),
    );
    assert!(app.launch("s", BASE, "l").await.is_ok());
    assert!(matches!(
        app.launch("s", "http://ehr.example/fhir", "l").await,
        Err(LaunchError::IssuerNotAllowed { .. })
    ));
}

/// SC-4.10, SC-1.12: a long authorize request is sent as a form POST when the server
/// advertises `authorize-post`, and as a redirect otherwise.
#[tokio::test]
async fn sc_4_10_long_request_uses_form_post_when_advertised() {
    let s = Setup::new();
    let long_scope = (0..120)
        .map(|i| format!("patient/Observation.rs?category=c{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let app = AppLaunch::new(s.builder().scope(long_scope.clone()).build().unwrap());
    let req = app.launch("sess-1", BASE, "l").await.unwrap();
    assert!(
        matches!(req, AuthorizeRequest::Redirect(_)),
        "not advertised"
    );

    s.server.edit_config(|c| {
        c["capabilities"]
            .as_array_mut()
            .unwrap()
            .push(json!("authorize-post"));
    });
    // A new client with a discovery cache of its own: the transport's cache, shared with the
    // first client, holds the old discovery document.
    let own =
        std::sync::Arc::new(smart_fhir_discovery::DiscoveryCache::builder(s.http.clone()).build());
    let app = AppLaunch::new(
        s.builder()
            .scope(long_scope)
            .discovery_cache(own)
            .build()
            .unwrap(),
    );
    let req = app.launch("sess-1", BASE, "l").await.unwrap();
    let AuthorizeRequest::FormPost { action, fields } = &req else {
        panic!("expected a form post, got {req:?}");
    };
    assert_eq!(action.as_str(), AUTHORIZE_URL);
    assert_eq!(fields[0], ("response_type".to_owned(), "code".to_owned()));
    let p = params(&req);
    assert_eq!(p["launch"], "l");
    assert_eq!(p["code_challenge_method"], "S256");
    let html = req.auto_submit_html().unwrap();
    assert!(html.contains(&format!("action=\"{AUTHORIZE_URL}\"")));
    assert!(html.contains("name=\"code_challenge\""));
    // A short request is still a redirect.
    let app = AppLaunch::new(s.builder().build().unwrap());
    assert!(matches!(
        app.launch("sess-1", BASE, "l").await.unwrap(),
        AuthorizeRequest::Redirect(_)
    ));
}

/// SC-1.14: v1 scope syntax when the server advertises only `permission-v1`.
#[tokio::test]
async fn sc_1_14_v1_scopes_when_only_v1_is_advertised() {
    let s = Setup::new();
    s.server.edit_config(|c| {
        let caps = c["capabilities"].as_array_mut().unwrap();
        caps.retain(|x| x != "permission-v2");
        caps.push(json!("permission-v1"));
    });
    let app = AppLaunch::new(
        s.builder()
            .scope("launch/patient patient/Observation.rs patient/Condition.cruds")
            .build()
            .unwrap(),
    );
    let p = params(&app.standalone("s", BASE).await.unwrap());
    assert_eq!(
        p["scope"],
        "launch/patient patient/Observation.read patient/Condition.*"
    );

    // A scope v1 cannot express is refused rather than widened or narrowed.
    let app = AppLaunch::new(s.builder().scope("patient/Observation.r").build().unwrap());
    let e = app.standalone("s", BASE).await.unwrap_err();
    assert!(matches!(e, LaunchError::Scopes { .. }), "{e:?}");
}

/// SC-1.13, SC-1.11: a server that does not offer the launch, the client type or an
/// authorization endpoint is refused before anything is stored.
#[tokio::test]
async fn sc_1_13_unfit_server_is_refused() {
    let s = Setup::new();
    s.server.edit_config(|c| {
        c["capabilities"]
            .as_array_mut()
            .unwrap()
            .retain(|x| x != "launch-ehr");
    });
    let app = s.app();
    assert!(matches!(
        app.launch("s", BASE, "l").await,
        Err(LaunchError::Unfit(_))
    ));
    assert!(app.standalone("s", BASE).await.is_ok());

    let s = Setup::new();
    s.server.edit_config(|c| {
        c["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
    });
    let app = s.app_with(smart_fhir_oauth::ClientAuth::ClientSecretPost(
        smart_fhir_core::ClientSecret::new("s3cret"),
    ));
    assert!(matches!(
        app.standalone("s", BASE).await,
        Err(LaunchError::Unfit(_))
    ));

    let s = Setup::new();
    s.server.edit_config(|c| {
        c.as_object_mut().unwrap().remove("authorization_endpoint");
    });
    let e = s.app().standalone("s", BASE).await.unwrap_err();
    assert!(matches!(e, LaunchError::Discovery(_)), "{e:?}");
}

/// Bad input from the application or the browser is refused with a typed error.
#[tokio::test]
async fn invalid_session_ids_and_launch_parameters() {
    let s = Setup::new();
    let app = s.app();
    for (session, launch) in [
        ("", "l"),
        ("s\n", "l"),
        ("smart-fhir:launch:states", "l"),
        ("s", ""),
        ("s", "l\u{0}"),
    ] {
        let e = app.launch(session, BASE, launch).await.unwrap_err();
        assert!(matches!(e, LaunchError::InvalidInput { .. }), "{e:?}");
    }
    let long = "x".repeat(5000);
    assert!(app.launch("s", BASE, &long).await.is_err());
    assert_eq!(s.server.total(), 0);
}

/// Configuration errors surface from `build()`, never as panics.
#[test]
fn config_is_checked() {
    let s = Setup::new();
    let cases = [
        s.builder().redirect_uri("http://app.example/cb"),
        s.builder().redirect_uri("/relative"),
        s.builder().landing_url("https://app.example/#frag"),
        s.builder().scope(""),
        s.builder().scope("patient/Observation.sr"),
        s.builder().client_id(" "),
        s.builder()
            .issuer_policy(IssuerPolicy::allow_list(Vec::<FhirBaseUrl>::new())),
        s.builder()
            .client_auth(smart_fhir_oauth::ClientAuth::ClientSecretBasic(
                smart_fhir_core::ClientSecret::new(""),
            )),
    ];
    for builder in cases {
        let e = builder.build().unwrap_err();
        assert!(matches!(e, LaunchError::Config { .. }), "{e:?}");
    }
    // Loopback http only with the explicit opt-in (P7).
    assert!(s
        .builder()
        .redirect_uri("http://127.0.0.1:8080/cb")
        .build()
        .is_err());
    assert!(s
        .builder()
        .redirect_uri("http://127.0.0.1:8080/cb")
        .insecure_http(smart_fhir_core::InsecureHttp::AllowLoopback)
        .build()
        .is_ok());
}
