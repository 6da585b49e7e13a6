//! Protocol tests through a fake [`HttpClient`] that asserts each request and answers with
//! crafted, real-world shaped responses.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use smart_fhir_core::{FhirBaseUrl, HttpClient, HttpError, HttpErrorKind, MaxResponseBytes};

mod cache;
mod fit;
mod jwks;
mod metadata;
mod openid;
mod trace;
mod validate;
mod well_known;

/// A canned answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Http {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    TransportError,
}

pub(crate) fn answer(status: u16, body: &str) -> Answer {
    Answer::Http {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

pub(crate) fn answer_with(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
    Answer::Http {
        status,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.to_owned(),
    }
}

/// A fake server: per URL, a queue of answers (the last one repeats). It asserts that every
/// request is a bodiless GET with the right `Accept` and a size bound, and counts requests.
#[derive(Debug, Default)]
pub(crate) struct FakeServer {
    routes: Mutex<HashMap<String, Vec<Answer>>>,
    seen: Mutex<Vec<(String, String)>>,
    /// How often `execute` yields before answering, so that concurrent callers interleave.
    yields: usize,
}

impl FakeServer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn yielding(mut self, times: usize) -> Self {
        self.yields = times;
        self
    }

    pub(crate) fn on(self, url: &str, answer: Answer) -> Self {
        self.routes
            .lock()
            .unwrap()
            .entry(url.to_owned())
            .or_default()
            .push(answer);
        self
    }

    /// Every request so far: (URL, Accept).
    pub(crate) fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[async_trait]
impl HttpClient for FakeServer {
    async fn execute(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        assert_eq!(request.method(), http::Method::GET);
        assert!(request.body().is_empty());
        let url = request.uri().to_string();
        let accept = request
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if url.ends_with("/.well-known/smart-configuration") {
            assert_eq!(accept, "application/json", "SC-1.3");
        } else if url.ends_with("/metadata") {
            assert!(accept.starts_with("application/fhir+json"), "{accept}");
        } else if url.ends_with("/.well-known/openid-configuration") || url.contains("jwks") {
            assert_eq!(accept, "application/json", "SC-4.34");
        } else {
            panic!("unexpected request to {url}");
        }
        assert!(
            request.extensions().get::<MaxResponseBytes>().is_some(),
            "P15: every discovery request carries a size bound"
        );
        self.seen.lock().unwrap().push((url.clone(), accept));
        for _ in 0..self.yields {
            tokio::task::yield_now().await;
        }
        let next = {
            let mut routes = self.routes.lock().unwrap();
            match routes.get_mut(&url) {
                Some(queue) if queue.len() > 1 => Some(queue.remove(0)),
                Some(queue) => queue.first().cloned(),
                None => None,
            }
        };
        match next {
            Some(Answer::Http {
                status,
                headers,
                body,
            }) => {
                let mut response = http::Response::new(Bytes::from(body));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                for (name, value) in headers {
                    response
                        .headers_mut()
                        .append(name, http::HeaderValue::from_str(&value).unwrap());
                }
                Ok(response)
            }
            Some(Answer::TransportError) => Err(HttpError::new(
                HttpErrorKind::Connect,
                request.uri(),
                "connection refused",
            )),
            None => {
                let mut response = http::Response::new(Bytes::from_static(b"Not Found"));
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                Ok(response)
            }
        }
    }
}

pub(crate) fn base(s: &str) -> FhirBaseUrl {
    FhirBaseUrl::parse(s).unwrap()
}

pub(crate) fn well_known(base: &str) -> String {
    format!("{base}/.well-known/smart-configuration")
}

pub(crate) fn metadata(base: &str) -> String {
    format!("{base}/metadata")
}

pub(crate) fn ok_json(body: &str) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(body.to_owned()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Epic-shaped `.well-known` with every SC-1.7 field and a few vendor extras.
pub(crate) const EPIC_BASE: &str = "https://fhir.epic.example/interconnect-fhir-oauth/api/FHIR/R4";
pub(crate) const EPIC_WELL_KNOWN: &str = r#"{
  "issuer": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2",
  "jwks_uri": "https://fhir.epic.example/interconnect-fhir-oauth/api/epic/2019/Security/Open/PublicKeys/530005/OIDC",
  "authorization_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2/authorize",
  "token_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2/token",
  "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
  "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
  "registration_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2/register",
  "smart_app_state_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/api/FHIR/R4/Basic",
  "associated_endpoints": [
    {"url": "https://fhir.epic.example/interconnect-fhir-oauth/api/FHIR/DSTU2", "capabilities": ["launch-ehr", "context-ehr-patient"]},
    {"url": "https://fhir.epic.example/interconnect-fhir-oauth/api/FHIR/STU3"}
  ],
  "user_access_brand_bundle": "https://fhir.epic.example/brands/bundle.json",
  "user_access_brand_identifier": {"system": "urn:ietf:rfc:3986", "value": "https://fhir.epic.example"},
  "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access", "patient/*.rs", "user/*.rs", "system/*.rs"],
  "response_types_supported": ["code"],
  "management_endpoint": "https://mychart.epic.example/MyChart/Manage",
  "introspection_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2/introspect",
  "revocation_endpoint": "https://fhir.epic.example/interconnect-fhir-oauth/oauth2/revoke",
  "grant_types_supported": ["authorization_code", "client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
  "code_challenge_methods_supported": ["S256"],
  "capabilities": [
    "launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "sso-openid-connect", "context-banner", "context-style",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient", "context-standalone-encounter",
    "permission-offline", "permission-online", "permission-patient", "permission-user", "permission-v1",
    "permission-v2", "smart-app-state", "context-passthrough-banner",
    "http://sdo.example.org/example-new-capability"
  ],
  "epic_version": "November 2024",
  "dpop_signing_alg_values_supported": ["RS256", "ES256"]
}"#;

/// Oracle Health (Cerner)-shaped: tenant in the path, an authorization server on another host,
/// SMART v1 scopes only.
pub(crate) const CERNER_BASE: &str =
    "https://fhir-ehr.cerner.example/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d";
pub(crate) const CERNER_WELL_KNOWN: &str = r#"{
  "authorization_endpoint": "https://authorization.cerner.example/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d/protocols/oauth2/profiles/smart-v1/personas/provider/authorize",
  "token_endpoint": "https://authorization.cerner.example/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d/hosts/fhir-ehr.cerner.example/protocols/oauth2/profiles/smart-v1/token",
  "revocation_endpoint": "https://authorization.cerner.example/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d/hosts/fhir-ehr.cerner.example/protocols/oauth2/profiles/smart-v1/token/revoke",
  "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
  "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
  "grant_types_supported": ["authorization_code", "client_credentials"],
  "scopes_supported": "openid fhirUser launch launch/patient patient/Patient.read user/Patient.read system/Patient.read",
  "response_types_supported": ["code"],
  "code_challenge_methods_supported": ["S256"],
  "capabilities": ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
                   "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
                   "context-standalone-patient", "permission-patient", "permission-user", "permission-v1",
                   "permission-offline", "context-banner", "context-style"],
  "tenant": "ec2458f2-1e24-41c8-b71b-0e701af7583d",
  "fhir_version": "4.0.1"
}"#;

/// A SMART reference sandbox-shaped configuration.
pub(crate) const SANDBOX_BASE: &str = "https://launch.smarthealthit.example/v/r4/fhir";
pub(crate) const SANDBOX_WELL_KNOWN: &str = r#"{
  "issuer": "https://launch.smarthealthit.example/v/r4/fhir",
  "jwks_uri": "https://launch.smarthealthit.example/keys",
  "authorization_endpoint": "https://launch.smarthealthit.example/v/r4/auth/authorize",
  "token_endpoint": "https://launch.smarthealthit.example/v/r4/auth/token",
  "introspection_endpoint": "https://launch.smarthealthit.example/v/r4/auth/introspect",
  "code_challenge_methods_supported": ["S256"],
  "grant_types_supported": ["authorization_code", "client_credentials"],
  "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
  "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
  "scopes_supported": ["openid", "profile", "launch", "launch/patient", "patient/*.*", "user/*.*", "offline_access"],
  "response_types_supported": ["code", "refresh_token"],
  "capabilities": ["launch-standalone", "client-public", "client-confidential-symmetric",
                   "client-confidential-asymmetric", "context-standalone-patient", "context-standalone-encounter",
                   "permission-offline", "permission-patient", "permission-user", "permission-v1",
                   "permission-v2", "sso-openid-connect", "authorize-post"]
}"#;

/// The four fields SC-1.7 requires, and nothing else.
pub(crate) const MINIMAL_BACKEND: &str = r#"{
  "token_endpoint": "https://bulk.example/auth/token",
  "grant_types_supported": ["client_credentials"],
  "capabilities": ["client-confidential-asymmetric"],
  "code_challenge_methods_supported": ["S256"]
}"#;

/// HAPI-shaped R4 CapabilityStatement with the deprecated oauth-uris extension, versioned URL
/// (SC-1.17), current service system.
pub(crate) const HAPI_BASE: &str = "https://hapi.example/fhir";
pub(crate) const HAPI_R4_METADATA: &str = r#"{
  "resourceType": "CapabilityStatement",
  "status": "active",
  "date": "2024-05-01T10:00:00+00:00",
  "kind": "instance",
  "software": {"name": "HAPI FHIR Server", "version": "7.2.0"},
  "implementation": {"description": "HAPI FHIR", "url": "https://hapi.example/fhir"},
  "fhirVersion": "4.0.1",
  "format": ["application/fhir+xml", "application/fhir+json"],
  "rest": [{
    "mode": "server",
    "security": {
      "cors": true,
      "service": [{
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
        "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
      }],
      "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket", "valueUrl": "wss://hapi.example/websocket"},
        {"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris|1.0.0",
         "extension": [
           {"url": "token", "valueUri": "https://hapi.example/oauth/token"},
           {"url": "authorize", "valueUri": "https://hapi.example/oauth/authorize"},
           {"url": "register", "valueUri": "https://hapi.example/oauth/register"},
           {"url": "manage", "valueUri": "https://hapi.example/oauth/manage"},
           {"url": "introspect", "valueUri": "https://hapi.example/oauth/introspect"},
           {"url": "revoke", "valueUrl": "https://hapi.example/oauth/revoke"},
           {"url": "launch-registration", "valueUri": "https://hapi.example/ignored"}
         ]}
      ]
    },
    "resource": [{"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}]}]
  }]
}"#;

/// STU3-shaped, older service code system, unversioned extension URL.
pub(crate) const STU3_METADATA: &str = r#"{
  "resourceType": "CapabilityStatement",
  "fhirVersion": "3.0.2",
  "rest": [{
    "mode": "server",
    "security": {
      "service": [{"coding": [{"system": "http://hl7.org/fhir/restful-security-service", "code": "SMART-on-FHIR"}]}],
      "extension": [{
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [
          {"url": "authorize", "valueUri": "https://stu3.example/oauth/authorize"},
          {"url": "token", "valueUri": "https://stu3.example/oauth/token"}
        ]
      }]
    }
  }]
}"#;

/// DSTU2 Conformance (Epic DSTU2 era): no service code, a relative token URL, `valueUrl`.
pub(crate) const DSTU2_BASE: &str = "https://dstu2.example/api/FHIR/DSTU2";
pub(crate) const DSTU2_CONFORMANCE: &str = r#"{
  "resourceType": "Conformance",
  "fhirVersion": "1.0.2",
  "rest": [
    {"mode": "client"},
    {
      "mode": "server",
      "security": {
        "extension": [{
          "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
          "extension": [
            {"url": "authorize", "valueUri": "https://dstu2.example/oauth2/authorize"},
            {"url": "token", "valueUrl": "../../oauth2/token"}
          ]
        }]
      }
    }
  ]
}"#;

/// The futures and types are `Send`/`Sync`, so callers can spawn them and share the cache.
#[test]
fn futures_and_types_are_send_and_sync() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync + 'static>() {}
    let server = FakeServer::new();
    let b = base(SANDBOX_BASE);
    let discovery = crate::discover(&server, &b);
    is_send(&discovery);
    let cache =
        crate::DiscoveryCache::builder(smart_fhir_core::SharedHttpClient::new(FakeServer::new()))
            .build();
    let cached = cache.get(&b);
    is_send(&cached);
    is_send_sync::<crate::DiscoveryCache>();
    is_send_sync::<crate::SmartConfiguration>();
    is_send_sync::<crate::DiscoveryError>();
}
