//! The start of the flow: EHR and standalone launch (SC-4.2 – SC-4.12).

use std::fmt;

use serde_json::json;
use smart_fhir_core::text::display_url;
use smart_fhir_core::{FhirBaseUrl, InsecureHttp, Url};
use smart_fhir_discovery::{
    check_document_endpoint, ClientProfile, LaunchKind, SmartConfiguration,
};
use smart_fhir_jwt::Algorithm;
use smart_fhir_pkce::{Nonce, Pkce, State};
use smart_fhir_scopes::{LaunchScope, Scope, ScopeSet};
use smart_fhir_store::SessionStore;
use zeroize::Zeroizing;

use crate::credential::chosen_algorithm;
use crate::launch::app::AppLaunch;
use crate::launch::error::LaunchError;
use crate::launch::protocol::{authorize_url, AuthorizeParams};
use crate::launch::record::{digest, marker_key, pending_key, PendingRecord, STATE_INDEX_SESSION};
use crate::launch::shared::{check_session_id, session_tag};

/// The longest EHR `launch` parameter accepted (P15).
const MAX_LAUNCH_PARAM: usize = 4096;

/// How the app sends the browser to the authorization server.
#[derive(Clone)]
#[non_exhaustive]
pub enum AuthorizeRequest {
    /// Redirect the browser (`303 See Other`, `Location`) to this URL.
    Redirect(Url),
    /// Serve a page that POSTs these form fields to `action` (SC-4.10): chosen when the server
    /// advertises `authorize-post` and the URL would be long. See
    /// [`AuthorizeRequest::auto_submit_html`].
    FormPost {
        /// The authorization endpoint.
        action: Url,
        /// The form fields, in order.
        fields: Vec<(String, String)>,
    },
}

impl fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL and the fields carry the state and nonce.
        match self {
            Self::Redirect(url) => f
                .debug_tuple("Redirect")
                .field(&format_args!("{}?[…]", display_url(url)))
                .finish(),
            Self::FormPost { action, fields } => f
                .debug_struct("FormPost")
                .field("action", &display_url(action))
                .field("fields", &fields.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl AppLaunch {
    /// Starts an EHR launch (SC-4.2): `iss` and `launch` are the query parameters the EHR
    /// opened the app's launch URL with.
    ///
    /// `iss` is checked against the issuer policy before any network request (SC-4.3, P1).
    /// Then the server's SMART configuration is discovered and checked to fit this client
    /// (SC-1.13); a fresh `state`, PKCE verifier and (with `openid`) nonce are stored with the
    /// session and the issuer (SC-4.6, SC-4.8, P3, P4); and the authorize request is returned
    /// with `launch` echoed exactly (SC-4.5). `launch` is added to the scopes if missing
    /// (SC-4.9).
    pub async fn launch(
        &self,
        session_id: &str,
        iss: &str,
        launch: &str,
    ) -> Result<AuthorizeRequest, LaunchError> {
        check_session_id(session_id)?;
        check_launch_param(launch)?;
        let base = self
            .inner
            .config
            .issuers
            .check(iss, self.inner.config.insecure)?;
        self.start(session_id, base, Some(launch)).await
    }

    /// Starts a standalone launch (SC-4.4) against `fhir_base`, the server the user chose.
    /// The base is checked against the issuer policy like an EHR launch's `iss`; plain `launch`
    /// is left out of the scopes (there is no launch to name).
    pub async fn standalone(
        &self,
        session_id: &str,
        fhir_base: &str,
    ) -> Result<AuthorizeRequest, LaunchError> {
        check_session_id(session_id)?;
        let base = self
            .inner
            .config
            .issuers
            .check(fhir_base, self.inner.config.insecure)?;
        self.start(session_id, base, None).await
    }

    async fn start(
        &self,
        session_id: &str,
        base: FhirBaseUrl,
        launch: Option<&str>,
    ) -> Result<AuthorizeRequest, LaunchError> {
        let cfg = &self.inner.config;
        tracing::debug!(
            session = %session_tag(session_id),
            fhir_base = base.as_str(),
            ehr = launch.is_some(),
            "App Launch start"
        );
        let server = cfg
            .discovery
            .get(&base)
            .await
            .map_err(LaunchError::Discovery)?;
        let authorization_endpoint = server
            .require_authorization_endpoint()
            .map_err(LaunchError::from)?
            .clone();
        let algorithm = self.check_fit(&server, launch.is_some())?;
        let scope = self.scope_for(&server, launch.is_some())?;
        // The issuer's OpenID configuration and keys are fetched to verify an `id_token`: from
        // an https base, never over plain http (the endpoints were checked so by discovery).
        if let Some(Ok(issuer)) = server.issuer().map(smart_fhir_core::Url::parse) {
            check_document_endpoint(&issuer, "issuer", base.url(), base.insecure_http()).map_err(
                |reason| {
                    LaunchError::from(smart_fhir_discovery::DiscoveryError::InvalidEndpoint {
                        field: "issuer".to_owned(),
                        reason,
                    })
                },
            )?;
        }

        let state = State::generate().map_err(LaunchError::from)?;
        let pkce = Pkce::new().map_err(LaunchError::from)?;
        let nonce = if scope.has_openid() {
            Some(Nonce::generate().map_err(LaunchError::from)?)
        } else {
            None
        };
        let scope_text = scope.to_string();
        let session_hash = digest(session_id);
        let record = PendingRecord {
            v: 1,
            state: Zeroizing::new(state.as_str().to_owned()),
            session: session_hash.clone(),
            fhir_base: base.as_str().to_owned(),
            insecure_loopback: base.insecure_http() == InsecureHttp::AllowLoopback,
            issuer: server.issuer().map(str::to_owned),
            iss_required: server
                .extra()
                .get("authorization_response_iss_parameter_supported")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            token_endpoint: server.token_endpoint_as_advertised().to_owned(),
            revocation_endpoint: server.revocation_endpoint().map(|u| u.to_string()),
            algorithm: algorithm.map(|a| a.to_string()),
            verifier: Zeroizing::new(pkce.verifier().secret().to_owned()),
            nonce: nonce
                .as_ref()
                .map(|n| Zeroizing::new(n.as_str().to_owned())),
            scope: scope_text.clone(),
            redirect_uri: cfg.redirect_uri.clone(),
        };
        let store = &cfg.store;
        store
            .put(
                session_id,
                &pending_key(state.as_str()),
                record.to_value()?,
                cfg.pending_ttl,
            )
            .await
            .map_err(LaunchError::from)?;
        store
            .put(
                STATE_INDEX_SESSION,
                &marker_key(state.as_str()),
                json!({ "session": session_hash }),
                cfg.pending_ttl,
            )
            .await
            .map_err(LaunchError::from)?;

        let mut params = AuthorizeParams::new(
            authorization_endpoint,
            cfg.client_id.clone(),
            cfg.redirect_uri.clone(),
            scope_text,
            &state,
            &base,
            pkce.challenge().clone(),
        );
        if let Some(launch) = launch {
            params = params.launch(launch);
        }
        if let Some(nonce) = &nonce {
            params = params.nonce(nonce);
        }
        let url = authorize_url(&params);
        if server.supports_authorize_post() && url.as_str().len() > cfg.authorize_post_threshold {
            return Ok(AuthorizeRequest::FormPost {
                action: params.authorization_endpoint().clone(),
                fields: params
                    .fields()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            });
        }
        Ok(AuthorizeRequest::Redirect(url))
    }

    /// The fit check (SC-1.13) and, for `private_key_jwt`, the signing algorithm.
    fn check_fit(
        &self,
        server: &SmartConfiguration,
        ehr: bool,
    ) -> Result<Option<Algorithm>, LaunchError> {
        let cfg = &self.inner.config;
        if cfg.skip_fit_check {
            return Ok(chosen_algorithm(&cfg.algorithms, None));
        }
        let kind = if ehr {
            LaunchKind::Ehr
        } else {
            LaunchKind::Standalone
        };
        let profile = ClientProfile::authorization_code(cfg.auth_method()).launch(kind);
        let fit = server.check_fit(&profile).map_err(LaunchError::Unfit)?;
        Ok(chosen_algorithm(&cfg.algorithms, Some(&fit)))
    }

    /// The scopes to send: `launch` added for an EHR launch, removed for a standalone one
    /// (SC-4.9); v1 syntax when the server only knows v1 (SC-1.14).
    fn scope_for(&self, server: &SmartConfiguration, ehr: bool) -> Result<ScopeSet, LaunchError> {
        let mut scopes = self.inner.config.scopes.clone();
        let launch = Scope::Launch(LaunchScope::Ehr);
        if ehr {
            scopes.insert(launch);
        } else {
            scopes.remove(&launch);
        }
        if server.prefers_v1_scopes() {
            scopes = scopes.to_v1().map_err(|e| LaunchError::Scopes {
                reason: e.to_string(),
            })?;
        }
        if scopes.is_empty() {
            return Err(LaunchError::Scopes {
                reason: "no scope left to request".to_owned(),
            });
        }
        Ok(scopes)
    }
}

fn check_launch_param(launch: &str) -> Result<(), LaunchError> {
    if launch.is_empty() || launch.len() > MAX_LAUNCH_PARAM {
        return Err(LaunchError::input(
            "launch parameter",
            format!("must be 1 to {MAX_LAUNCH_PARAM} bytes"),
        ));
    }
    if launch.chars().any(char::is_control) {
        return Err(LaunchError::input(
            "launch parameter",
            "contains control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_state() {
        let req = AuthorizeRequest::Redirect(
            Url::parse("https://as.example/authorize?state=SECRET-STATE").unwrap(),
        );
        assert!(!format!("{req:?}").contains("SECRET-STATE"));
    }
}
