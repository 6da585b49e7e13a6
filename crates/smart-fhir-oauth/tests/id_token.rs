//! `id_token` verification against a fake OpenID provider that serves its configuration and
//! JWKS and counts requests: signatures (P9), claims (SC-4.33), fhirUser (SC-4.35, SC-4.36), key
//! discovery, caching and rotation (SC-4.34).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use smart_fhir_core::{
    FhirBaseUrl, FixedClock, HttpClient, HttpError, HttpErrorKind, IdToken, InsecureHttp,
    MaxResponseBytes, SharedClock, SharedHttpClient,
};
use smart_fhir_jwt::{merge_jwks, JwtError, KeySpec, KeyType, PrivateKey};
use smart_fhir_oauth::{
    IdTokenError, IdTokenExpectations, IdTokenVerifier, KeyDocument, KeyFetchError,
    DEFAULT_JWKS_TTL,
};

const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://auth.example/oauth2";
const CONFIG_URL: &str = "https://auth.example/oauth2/.well-known/openid-configuration";
const JWKS_URL: &str = "https://auth.example/oauth2/jwks";
const CLIENT: &str = "smart-app";
const NONCE: &str = "nonce-5a7c1e";
const BASE: &str = "https://ehr.example/fhir/r4";

fn rsa1() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::generate(KeySpec::Rsa2048)
            .unwrap()
            .with_kid("rsa-1")
            .unwrap()
    })
}

fn rsa2() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::generate(KeySpec::Rsa2048)
            .unwrap()
            .with_kid("rsa-2")
            .unwrap()
    })
}

fn p384() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::generate(KeySpec::P384)
            .unwrap()
            .with_kid("ec-1")
            .unwrap()
    })
}

fn jwks_of(keys: &[&PrivateKey]) -> Value {
    merge_jwks(keys.iter().map(|k| k.public_jwks())).unwrap()
}

/// A fake OpenID provider.
#[derive(Debug)]
struct Provider {
    issuer: String,
    config_url: String,
    jwks_url: String,
    /// The configuration's body (`None`: the default), or a status and body to answer with.
    config: Mutex<Option<(u16, String)>>,
    jwks: Mutex<Value>,
    jwks_status: Mutex<u16>,
    cache_control: Mutex<Option<String>>,
    /// The `Date` header of every answer, if any.
    date: Mutex<Option<String>>,
    config_requests: AtomicUsize,
    jwks_requests: AtomicUsize,
    other_requests: AtomicUsize,
}

impl Provider {
    fn new(keys: &[&PrivateKey]) -> Arc<Self> {
        Self::at(ISS, CONFIG_URL, JWKS_URL, keys)
    }

    fn at(issuer: &str, config_url: &str, jwks_url: &str, keys: &[&PrivateKey]) -> Arc<Self> {
        Arc::new(Self {
            issuer: issuer.to_owned(),
            config_url: config_url.to_owned(),
            jwks_url: jwks_url.to_owned(),
            config: Mutex::new(None),
            jwks: Mutex::new(jwks_of(keys)),
            jwks_status: Mutex::new(200),
            cache_control: Mutex::new(None),
            date: Mutex::new(None),
            config_requests: AtomicUsize::new(0),
            jwks_requests: AtomicUsize::new(0),
            other_requests: AtomicUsize::new(0),
        })
    }

    fn rotate(&self, keys: &[&PrivateKey]) {
        *self.jwks.lock().unwrap() = jwks_of(keys);
    }

    /// (configuration requests, JWKS requests)
    fn counts(&self) -> (usize, usize) {
        assert_eq!(self.other_requests.load(Ordering::SeqCst), 0);
        (
            self.config_requests.load(Ordering::SeqCst),
            self.jwks_requests.load(Ordering::SeqCst),
        )
    }
}

#[derive(Debug, Clone)]
struct Fake(Arc<Provider>);

#[async_trait]
impl HttpClient for Fake {
    async fn execute(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        // SC-4.34: plain GETs for JSON, with a bounded body.
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.headers()["accept"], "application/json");
        assert!(req.extensions().get::<MaxResponseBytes>().is_some());
        assert!(req.headers().get("authorization").is_none());
        // Let concurrent callers interleave.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let p = &self.0;
        let uri = req.uri().to_string();
        let mut builder = http::Response::builder();
        if let Some(date) = p.date.lock().unwrap().as_deref() {
            builder = builder.header("Date", date);
        }
        let (status, body) = if uri == p.config_url {
            p.config_requests.fetch_add(1, Ordering::SeqCst);
            p.config.lock().unwrap().clone().unwrap_or_else(|| {
                (
                    200,
                    json!({"issuer": p.issuer, "jwks_uri": p.jwks_url,
                           "id_token_signing_alg_values_supported": ["RS256"]})
                    .to_string(),
                )
            })
        } else if uri == p.jwks_url {
            p.jwks_requests.fetch_add(1, Ordering::SeqCst);
            if let Some(cc) = p.cache_control.lock().unwrap().as_deref() {
                builder = builder.header("Cache-Control", cc);
            }
            (
                *p.jwks_status.lock().unwrap(),
                p.jwks.lock().unwrap().to_string(),
            )
        } else {
            p.other_requests.fetch_add(1, Ordering::SeqCst);
            (404, String::new())
        };
        Ok(builder.status(status).body(Bytes::from(body)).unwrap())
    }
}

struct Setup {
    provider: Arc<Provider>,
    clock: FixedClock,
    verifier: IdTokenVerifier,
    base: FhirBaseUrl,
}

fn setup(keys: &[&PrivateKey]) -> Setup {
    let provider = Provider::new(keys);
    let clock = FixedClock::at_unix(NOW);
    let verifier = IdTokenVerifier::new(
        SharedHttpClient::new(Fake(Arc::clone(&provider))),
        SharedClock::new(clock.clone()),
    );
    Setup {
        provider,
        clock,
        verifier,
        base: FhirBaseUrl::parse(BASE).unwrap(),
    }
}

impl Setup {
    fn expected(&self) -> IdTokenExpectations<'_> {
        IdTokenExpectations::new(ISS, CLIENT, Some(NONCE), &self.base)
    }

    async fn verify(
        &self,
        token: &IdToken,
    ) -> Result<smart_fhir_oauth::IdTokenClaims, IdTokenError> {
        self.verifier.verify(token, &self.expected()).await
    }
}

fn good_claims() -> Value {
    json!({
        "iss": ISS, "sub": "u-42", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 5,
        "nonce": NONCE, "fhirUser": "Practitioner/pr-1", "name": "Dr Who"
    })
}

fn with(changes: Value) -> Value {
    let mut c = good_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn jwt_alg(key: &PrivateKey) -> jsonwebtoken::Algorithm {
    match key.key_type() {
        KeyType::EcP384 => jsonwebtoken::Algorithm::ES384,
        KeyType::EcP256 => jsonwebtoken::Algorithm::ES256,
        _ => jsonwebtoken::Algorithm::RS256,
    }
}

/// Signs arbitrary claims with `key` under its usual algorithm, with `header` adjustments.
fn sign_with(key: &PrivateKey, header: Header, claims: &Value) -> IdToken {
    let pem = key.to_pkcs8_pem();
    let encoding = match key.key_type() {
        KeyType::EcP256 | KeyType::EcP384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    IdToken::new(jsonwebtoken::encode(&header, claims, &encoding).unwrap())
}

fn sign(key: &PrivateKey, claims: &Value) -> IdToken {
    let mut header = Header::new(jwt_alg(key));
    header.kid = Some(key.kid().to_owned());
    sign_with(key, header, claims)
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Every error message in the chain, for checks that no token text leaks (P5).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(" | ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn assert_no_token_text(e: &IdTokenError, token: &IdToken) {
    let shown = format!("{} {e:?}", chain(e));
    for part in token.secret().split('.').filter(|p| p.len() > 8) {
        assert!(!shown.contains(part), "token text in {shown}");
    }
}

/// SC-4.34, SC-4.33, SC-4.35: an RS256 token verifies with the key found through the issuer's
/// OpenID configuration; its claims come back typed, fhirUser resolved against the FHIR base.
#[tokio::test]
async fn sc_4_34_valid_rs256_token() {
    let s = setup(&[rsa1(), p384()]);
    let claims = s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    assert_eq!(claims.issuer, ISS);
    assert_eq!(claims.subject, "u-42");
    assert_eq!(claims.audiences, vec![CLIENT.to_owned()]);
    assert_eq!(
        claims.fhir_user.as_ref().map(|u| u.as_str()),
        Some("https://ehr.example/fhir/r4/Practitioner/pr-1")
    );
    assert_eq!(claims.fhir_user_resource_type(), Some("Practitioner"));
    assert_eq!(claims.claims["name"], json!("Dr Who"));
    assert_eq!(s.provider.counts(), (1, 1));
}

/// SC-4.34: ES384 tokens verify too.
#[tokio::test]
async fn sc_4_34_valid_es384_token() {
    let s = setup(&[rsa1(), p384()]);
    let claims = s.verify(&sign(p384(), &good_claims())).await.unwrap();
    assert_eq!(claims.subject, "u-42");
}

/// SC-4.34: keys are cached per issuer: a second token costs no request until the TTL ends.
#[tokio::test]
async fn sc_4_34_keys_are_cached_for_their_lifetime() {
    let s = setup(&[rsa1()]);
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    s.verify(&sign(rsa1(), &with(json!({"sub": "other"}))))
        .await
        .unwrap();
    assert_eq!(s.provider.counts(), (1, 1));
    // A clone shares the cache.
    s.verifier
        .clone()
        .verify(&sign(rsa1(), &good_claims()), &s.expected())
        .await
        .unwrap();
    assert_eq!(s.provider.counts(), (1, 1));

    // Past the default lifetime, configuration and keys are fetched again.
    s.clock.advance(DEFAULT_JWKS_TTL + Duration::from_secs(1));
    let later = with(json!({"exp": NOW + 7200, "iat": NOW + 3601}));
    s.verify(&sign(rsa1(), &later)).await.unwrap();
    assert_eq!(s.provider.counts(), (2, 2));
}

/// SC-4.34: the JWKS response's max-age sets the lifetime.
#[tokio::test]
async fn sc_4_34_max_age_is_honoured() {
    let s = setup(&[rsa1()]);
    *s.provider.cache_control.lock().unwrap() = Some("public, max-age=120".to_owned());
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    s.clock.advance(Duration::from_secs(119));
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    assert_eq!(s.provider.counts(), (1, 1));
    s.clock.advance(Duration::from_secs(1));
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    assert_eq!(s.provider.counts(), (2, 2));
}

/// SC-4.34: concurrent verifications with a cold cache fetch the keys once.
#[tokio::test]
async fn sc_4_34_concurrent_cold_fetch_is_single() {
    let s = setup(&[rsa1()]);
    let token = sign(rsa1(), &good_claims());
    let (a, b, c, d) = tokio::join!(
        s.verify(&token),
        s.verify(&token),
        s.verify(&token),
        s.verify(&token)
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok());
    assert_eq!(s.provider.counts(), (1, 1));
}

/// SC-4.34: a token signed with a key rotated in after the keys were cached makes the verifier
/// refetch the JWKS exactly once, then succeed.
#[tokio::test]
async fn sc_4_34_unknown_kid_refetches_once_after_rotation() {
    let s = setup(&[rsa1()]);
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    assert_eq!(s.provider.counts(), (1, 1));
    s.provider.rotate(&[rsa1(), rsa2()]);
    let claims = s.verify(&sign(rsa2(), &good_claims())).await.unwrap();
    assert_eq!(claims.subject, "u-42");
    // One more JWKS request, and the configuration was not fetched again.
    assert_eq!(s.provider.counts(), (1, 2));
    // Both keys are now cached.
    s.verify(&sign(rsa1(), &good_claims())).await.unwrap();
    s.verify(&sign(rsa2(), &good_claims())).await.unwrap();
    assert_eq!(s.provider.counts(), (1, 2));
}

/// SC-4.34: a kid that stays unknown costs exactly one refetch, then an error; a flood of
/// unknown kids is rate-limited to one refetch per interval.
#[tokio::test]
async fn sc_4_34_unknown_kid_refetches_once_then_fails_and_is_rate_limited() {
    let s = setup(&[rsa1()]);
    let token = sign(rsa2(), &good_claims());
    let e = s.verify(&token).await.unwrap_err();
    assert!(
        matches!(&e, IdTokenError::UnknownKey { kid } if kid == "rsa-2"),
        "{e:?}"
    );
    // The initial fetch, and exactly one refetch.
    assert_eq!(s.provider.counts(), (1, 2));

    for i in 0..20 {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(format!("made-up-{i}"));
        let e = s
            .verify(&sign_with(rsa2(), header, &good_claims()))
            .await
            .unwrap_err();
        assert!(matches!(e, IdTokenError::UnknownKey { .. }), "{e:?}");
    }
    assert_eq!(s.provider.counts(), (1, 2));

    // Once the interval has passed, one more refetch is allowed, which finds the rotated key.
    s.clock.advance(Duration::from_secs(60));
    s.provider.rotate(&[rsa1(), rsa2()]);
    s.verify(&sign(rsa2(), &with(json!({"exp": NOW + 600}))))
        .await
        .unwrap();
    assert_eq!(s.provider.counts(), (1, 3));
}

/// P9: a signature that does not match the content is refused.
#[tokio::test]
async fn p9_tampered_signature_is_refused() {
    let s = setup(&[rsa1()]);
    let good = sign(rsa1(), &good_claims());
    let mut parts: Vec<String> = good.secret().split('.').map(str::to_owned).collect();
    parts[1] = b64(&with(json!({"sub": "admin"})).to_string());
    let tampered = IdToken::new(parts.join("."));
    let e = s.verify(&tampered).await.unwrap_err();
    assert!(
        matches!(e, IdTokenError::Signature(JwtError::BadSignature)),
        "{e:?}"
    );
    assert_no_token_text(&e, &tampered);

    // A signature from another key under the right kid is refused as well.
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let forged = sign_with(rsa2(), header, &good_claims());
    assert!(matches!(
        s.verify(&forged).await,
        Err(IdTokenError::Signature(JwtError::BadSignature))
    ));
}

/// P9: `alg: none` is refused before any request.
#[tokio::test]
async fn p9_alg_none_is_refused() {
    let s = setup(&[rsa1()]);
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).to_string();
        let token = IdToken::new(format!(
            "{}.{}.",
            b64(&header),
            b64(&good_claims().to_string())
        ));
        let e = s.verify(&token).await.unwrap_err();
        assert!(
            matches!(
                &e,
                IdTokenError::Signature(JwtError::AlgorithmNotAllowed { .. })
            ),
            "{alg}: {e:?}"
        );
        assert_no_token_text(&e, &token);
    }
    assert_eq!(s.provider.counts(), (0, 0));
}

/// P9: HS256 "signed" with the issuer's public key (the classic key-confusion attack) is
/// refused.
#[tokio::test]
async fn p9_hs256_with_the_public_key_is_refused() {
    let s = setup(&[rsa1()]);
    let public = serde_json::to_vec(&rsa1().public_jwk()).unwrap();
    let n = rsa1().public_jwk()["n"].as_str().unwrap().to_owned();
    for secret in [public, n.into_bytes()] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let token = IdToken::new(
            jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(&secret))
                .unwrap(),
        );
        let e = s.verify(&token).await.unwrap_err();
        assert!(
            matches!(&e, IdTokenError::Signature(JwtError::AlgorithmNotAllowed { alg }) if alg == "HS256"),
            "{e:?}"
        );
    }
    assert_eq!(s.provider.counts(), (0, 0));
}

/// P9: keys or key URLs in the token's header (`jwk`, `jku`, `x5u`) are ignored: a token signed
/// by an attacker who embeds their own key is refused, and no request goes to their URLs.
#[tokio::test]
async fn p9_header_supplied_keys_are_ignored() {
    let s = setup(&[rsa1()]);
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-2".to_owned());
    header.jwk = Some(serde_json::from_value(rsa2().public_jwk()).unwrap());
    header.jku = Some("https://evil.example/jwks".to_owned());
    header.x5u = Some("https://evil.example/cert".to_owned());
    let e = s
        .verify(&sign_with(rsa2(), header, &good_claims()))
        .await
        .unwrap_err();
    assert!(matches!(e, IdTokenError::UnknownKey { .. }), "{e:?}");
    // Only the issuer's own documents were fetched (Provider::counts checks no other request).
    assert_eq!(s.provider.counts(), (1, 2));
}

/// SC-4.33: the claim checks, each through a correctly signed token.
#[tokio::test]
async fn sc_4_33_claims_are_checked() {
    let s = setup(&[rsa1()]);
    type Check = fn(&IdTokenError) -> bool;
    let cases: Vec<(Value, Check)> = vec![
        (
            json!({"iss": "https://evil.example"}),
            |e| matches!(e, IdTokenError::Issuer { got: Some(g), .. } if g == "https://evil.example"),
        ),
        (json!({"iss": format!("{ISS}/")}), |e| {
            matches!(e, IdTokenError::Issuer { .. })
        }),
        (json!({"aud": "another-app"}), |e| {
            matches!(e, IdTokenError::Audience { .. })
        }),
        (json!({"aud": ["another-app", "third"]}), |e| {
            matches!(e, IdTokenError::Audience { .. })
        }),
        (json!({"aud": [CLIENT, "another-app"]}), |e| {
            matches!(e, IdTokenError::Azp { got: None })
        }),
        (
            json!({"aud": [CLIENT, "another-app"], "azp": "another-app"}),
            |e| matches!(e, IdTokenError::Azp { got: Some(_) }),
        ),
        (json!({"exp": NOW - 61}), |e| {
            matches!(e, IdTokenError::Expired { .. })
        }),
        (json!({"iat": NOW + 3600}), |e| {
            matches!(e, IdTokenError::IssuedInFuture)
        }),
        (json!({"iat": null}), |e| {
            matches!(e, IdTokenError::Malformed { .. })
        }),
        (json!({"nonce": null}), |e| {
            matches!(e, IdTokenError::Nonce { missing: true })
        }),
        (json!({"nonce": "nonce-5a7c1f"}), |e| {
            matches!(e, IdTokenError::Nonce { missing: false })
        }),
        (json!({"fhirUser": "Observation/1"}), |e| {
            matches!(e, IdTokenError::FhirUser { .. })
        }),
        (json!({"fhirUser": "urn:uuid:1"}), |e| {
            matches!(e, IdTokenError::FhirUser { .. })
        }),
    ];
    for (change, check) in cases {
        let token = sign(rsa1(), &with(change.clone()));
        let e = s.verify(&token).await.unwrap_err();
        assert!(check(&e), "{change}: {e:?}");
        assert_no_token_text(&e, &token);
        assert!(!chain(&e).contains(NONCE), "nonce shown: {e}");
    }
    // Several audiences with azp = client id pass; so does a token within the leeway.
    s.verify(&sign(
        rsa1(),
        &with(json!({"aud": [CLIENT, "another-app"], "azp": CLIENT, "exp": NOW - 30})),
    ))
    .await
    .unwrap();
    // One fetch served every case.
    assert_eq!(s.provider.counts(), (1, 1));
}

/// SC-4.33: no nonce expected (none was sent): the token's nonce is not required.
#[tokio::test]
async fn sc_4_33_no_expected_nonce() {
    let s = setup(&[rsa1()]);
    let expected = IdTokenExpectations::new(ISS, CLIENT, None, &s.base);
    s.verifier
        .verify(&sign(rsa1(), &with(json!({"nonce": null}))), &expected)
        .await
        .unwrap();
}

/// SC-4.35, SC-4.36: fhirUser absolute or relative; the v1 `profile` alias.
#[tokio::test]
async fn sc_4_35_fhir_user_forms() {
    let s = setup(&[rsa1()]);
    for (change, expected) in [
        (
            json!({"fhirUser": "https://ehr.example/fhir/r4/Patient/p-7"}),
            Some("https://ehr.example/fhir/r4/Patient/p-7"),
        ),
        (
            json!({"fhirUser": "RelatedPerson/rp-1"}),
            Some("https://ehr.example/fhir/r4/RelatedPerson/rp-1"),
        ),
        (
            json!({"fhirUser": null, "profile": "Person/pe-2"}),
            Some("https://ehr.example/fhir/r4/Person/pe-2"),
        ),
        (
            json!({"fhirUser": null, "profile": "https://ehr.example/fhir/r4/PractitionerRole/r"}),
            Some("https://ehr.example/fhir/r4/PractitionerRole/r"),
        ),
        // `profile` in its OpenID Connect meaning (a web page) is ignored, not refused.
        (
            json!({"fhirUser": null, "profile": "https://people.example/~jo"}),
            None,
        ),
        (json!({"fhirUser": null}), None),
    ] {
        let claims = s
            .verify(&sign(rsa1(), &with(change.clone())))
            .await
            .unwrap();
        assert_eq!(
            claims.fhir_user.as_ref().map(|u| u.as_str()),
            expected,
            "{change}"
        );
    }
}

/// SC-4.34: failures to get the keys are typed, not cached, and say which document failed.
#[tokio::test]
async fn sc_4_34_key_fetch_failures_are_typed_and_not_cached() {
    let s = setup(&[rsa1()]);
    let token = sign(rsa1(), &good_claims());

    *s.provider.config.lock().unwrap() = Some((404, "<html>Not Found</html>".to_owned()));
    let e = s.verify(&token).await.unwrap_err();
    assert!(
        matches!(
            &e,
            IdTokenError::KeyFetch {
                document: KeyDocument::OpenidConfiguration,
                source: KeyFetchError::Status { status: 404, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        format!("cannot get the issuer's OpenID configuration from {CONFIG_URL}")
    );

    *s.provider.config.lock().unwrap() = Some((
        200,
        json!({"issuer": "https://impostor.example", "jwks_uri": JWKS_URL}).to_string(),
    ));
    assert!(matches!(
        s.verify(&token).await,
        Err(IdTokenError::KeyFetch {
            source: KeyFetchError::Invalid { .. },
            ..
        })
    ));

    *s.provider.config.lock().unwrap() = Some((
        200,
        json!({"issuer": ISS, "jwks_uri": "http://keys.example/jwks"}).to_string(),
    ));
    assert!(matches!(
        s.verify(&token).await,
        Err(IdTokenError::KeyFetch {
            source: KeyFetchError::JwksUri(_),
            ..
        })
    ));

    *s.provider.config.lock().unwrap() = None;
    *s.provider.jwks_status.lock().unwrap() = 503;
    let e = s.verify(&token).await.unwrap_err();
    assert!(
        matches!(
            &e,
            IdTokenError::KeyFetch {
                document: KeyDocument::Jwks,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());

    *s.provider.jwks_status.lock().unwrap() = 200;
    *s.provider.jwks.lock().unwrap() = json!({"not": "a jwks"});
    assert!(matches!(
        s.verify(&token).await,
        Err(IdTokenError::KeyFetch {
            document: KeyDocument::Jwks,
            source: KeyFetchError::Invalid { .. },
            ..
        })
    ));

    // Nothing failed was cached: once the provider is healthy, verification works.
    s.provider.rotate(&[rsa1()]);
    s.verify(&token).await.unwrap();
    assert_eq!(s.provider.counts(), (6, 3));
}

/// A transport failure is reported with its source and marked retryable when transient.
#[tokio::test]
async fn transport_failure_is_retryable() {
    #[derive(Debug)]
    struct Down;
    #[async_trait]
    impl HttpClient for Down {
        async fn execute(
            &self,
            req: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            Err(HttpError::new(HttpErrorKind::Connect, req.uri(), "refused"))
        }
    }
    let verifier = IdTokenVerifier::new(
        SharedHttpClient::new(Down),
        SharedClock::new(FixedClock::at_unix(NOW)),
    );
    let base = FhirBaseUrl::parse(BASE).unwrap();
    let e = verifier
        .verify(
            &sign(rsa1(), &good_claims()),
            &IdTokenExpectations::new(ISS, CLIENT, None, &base),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            IdTokenError::KeyFetch {
                source: KeyFetchError::Http(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

/// P7: the issuer follows the FHIR base's insecure-HTTP policy: a loopback http issuer works
/// only when the base opted in, and is refused before any request otherwise.
#[tokio::test]
async fn p7_loopback_issuer_needs_the_opt_in() {
    let iss = "http://127.0.0.1:9000/oidc";
    let provider = Provider::at(
        iss,
        "http://127.0.0.1:9000/oidc/.well-known/openid-configuration",
        "http://127.0.0.1:9000/oidc/jwks",
        &[rsa1()],
    );
    let verifier = IdTokenVerifier::new(
        SharedHttpClient::new(Fake(Arc::clone(&provider))),
        SharedClock::new(FixedClock::at_unix(NOW)),
    );
    let token = sign(rsa1(), &with(json!({"iss": iss})));

    let https_base = FhirBaseUrl::parse(BASE).unwrap();
    let e = verifier
        .verify(
            &token,
            &IdTokenExpectations::new(iss, CLIENT, Some(NONCE), &https_base),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, IdTokenError::IssuerUrl(_)), "{e:?}");
    assert_eq!(provider.counts(), (0, 0));

    let dev_base =
        FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback).unwrap();
    let claims = verifier
        .verify(
            &token,
            &IdTokenExpectations::new(iss, CLIENT, Some(NONCE), &dev_base),
        )
        .await
        .unwrap();
    assert_eq!(
        claims.fhir_user.as_ref().map(|u| u.as_str()),
        Some("http://127.0.0.1:8080/fhir/Practitioner/pr-1")
    );
    assert_eq!(provider.counts(), (1, 1));
}

/// Malformed tokens are refused before any request, without quoting the token.
#[tokio::test]
async fn malformed_tokens_are_refused_without_requests() {
    let s = setup(&[rsa1()]);
    for text in [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "!!!.???.###",
        &format!("{}.{}.sig", b64("[1]"), b64("{}")),
        &"x".repeat(70 * 1024),
    ] {
        let token = IdToken::new(text);
        let e = s.verify(&token).await.unwrap_err();
        assert!(matches!(e, IdTokenError::Malformed { .. }), "{e:?}");
        assert_no_token_text(&e, &token);
    }
    assert_eq!(s.provider.counts(), (0, 0));
}

/// P5: neither the verifier's nor the expectations' Debug output carries secrets.
#[test]
fn p5_debug_output() {
    let s = setup(&[]);
    let shown = format!("{:?} {:?}", s.verifier, s.expected());
    assert!(!shown.contains(NONCE), "{shown}");
    assert!(shown.contains("IdTokenVerifier") && shown.contains(CLIENT));
}

/// Clock skew, SC-4.33: with the local clock five minutes fast or slow, a good `id_token` is
/// accepted once the issuer's offset is known (from the `Date` of its OpenID configuration and
/// JWKS responses), and one that really is expired is still refused. Without correction the
/// same good token is refused (and, with the clock slow, an expired one would pass).
#[tokio::test]
async fn skew_id_token_times_follow_the_issuers_clock() {
    // The issuer's true time is NOW: Sun, 15 Jun 2025 15:06:40 GMT.
    for local_error in [300i64, -300] {
        let local = NOW.checked_add_signed(local_error).unwrap();
        let good = with(json!({"iat": NOW - 5, "exp": NOW + 60}));
        let expired = with(json!({"iat": NOW - 600, "exp": NOW - 120}));
        for correction in [true, false] {
            let s = setup(&[rsa1()]);
            *s.provider.date.lock().unwrap() = Some("Sun, 15 Jun 2025 15:06:40 GMT".to_owned());
            s.clock
                .set(std::time::UNIX_EPOCH + Duration::from_secs(local));
            let verifier = s.verifier.clone().clock_skew_correction(correction);
            let expected = s.expected();
            let result = verifier.verify(&sign(rsa1(), &good), &expected).await;
            assert_eq!(
                result.is_ok(),
                correction,
                "{local_error} {correction}: {result:?}"
            );
            if correction {
                let e = verifier
                    .verify(&sign(rsa1(), &expired), &expected)
                    .await
                    .expect_err("really expired");
                assert!(
                    matches!(e, IdTokenError::Expired { .. }),
                    "{local_error}: {e:?}"
                );
            }
        }
    }
}
