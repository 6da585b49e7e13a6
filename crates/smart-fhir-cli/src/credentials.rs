//! The saved credentials of `login`: what is saved with the session, where, and how the FHIR
//! commands (`--session`) and `logout` use it.
//!
//! The session lives in a [`FileSessionStore`] (a JSON file of mode 0600 in a directory of mode
//! 0700, with a lock file between processes) under the session id [`SESSION_ID`]. Beside the
//! tokens, the file holds the client's settings as the store's metadata ([`LoginRecord`]): the
//! client id, the scopes, the redirect URI and how the client authenticates — the *name* of the
//! environment variable that holds a client secret and the *path* of a private key, never the
//! secret or the key itself.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use smart_fhir_core::{
    AccessToken, AccessTokenProvider, ClientSecret, FhirBaseUrl, InsecureHttp, ProviderError,
    ProviderErrorKind, SharedClock, SharedHttpClient, SystemClock,
};
use smart_fhir_jwt::Algorithm;
use smart_fhir_oauth::{
    AppLaunch, ClientAuth, IssuerPolicy, LaunchClientConfig, LaunchError, PrivateKeyJwt,
    SessionClient,
};
use smart_fhir_store::{FileSessionStore, SharedSessionStore, StoreError};
use tokio::sync::OnceCell;

use crate::keys::load_key;
use crate::transport::Transport;
use crate::{Failure, Result};

/// The session id under which the CLI keeps its one session in the session file.
pub(crate) const SESSION_ID: &str = "cli";

/// How the client authenticates, as saved: names and paths, never secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub(crate) enum SavedAuth {
    None,
    ClientSecretBasic {
        secret_env: String,
    },
    ClientSecretPost {
        secret_env: String,
    },
    PrivateKeyJwt {
        key: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alg: Option<String>,
    },
}

impl fmt::Debug for SavedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::ClientSecretBasic { secret_env } => write!(f, "ClientSecretBasic(${secret_env})"),
            Self::ClientSecretPost { secret_env } => write!(f, "ClientSecretPost(${secret_env})"),
            Self::PrivateKeyJwt { key, .. } => write!(f, "PrivateKeyJwt({})", key.display()),
        }
    }
}

impl SavedAuth {
    /// The client authentication: reads the secret from its environment variable, or the key
    /// from its file.
    pub(crate) fn client_auth(&self) -> Result<ClientAuth> {
        let secret = |var: &str| -> Result<ClientSecret> {
            match std::env::var(var) {
                Ok(s) if !s.is_empty() => Ok(ClientSecret::new(s)),
                _ => Err(Failure::new(format!(
                    "the environment variable {var} (the client secret) is not set or empty"
                ))),
            }
        };
        Ok(match self {
            Self::None => ClientAuth::Public,
            Self::ClientSecretBasic { secret_env } => {
                ClientAuth::ClientSecretBasic(secret(secret_env)?)
            }
            Self::ClientSecretPost { secret_env } => {
                ClientAuth::ClientSecretPost(secret(secret_env)?)
            }
            Self::PrivateKeyJwt { key, kid, alg } => {
                let private = load_key(key, kid.as_deref())?;
                let alg = match alg {
                    Some(name) => Some(name.parse::<Algorithm>().map_err(|_| {
                        Failure::new(format!("unknown signing algorithm {name:?}"))
                    })?),
                    None => None,
                };
                let mut credential = PrivateKeyJwt::new(private);
                if let Some(alg) = alg {
                    credential = credential.algorithm(alg);
                }
                if let Some(kid) = kid {
                    credential = credential.kid(kid.clone());
                }
                ClientAuth::PrivateKeyJwt(credential)
            }
        })
    }
}

/// The client and server of a saved session: the session file's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoginRecord {
    pub fhir_base: String,
    pub client_id: String,
    pub scope: String,
    pub redirect_uri: String,
    pub auth: SavedAuth,
    pub insecure_http: bool,
}

impl LoginRecord {
    /// A new session store, in memory until it is saved, that will write this record with the
    /// tokens.
    pub(crate) fn new_store(&self, clock: SharedClock) -> Result<FileSessionStore> {
        let metadata = serde_json::to_value(self)
            .map_err(|e| Failure::from_error("cannot record the sign-in settings", &e))?;
        Ok(FileSessionStore::in_memory(metadata).with_clock(clock))
    }
}

/// The saved session at `path`: its store and its client settings.
pub(crate) fn open_session_file(path: &Path) -> Result<(Arc<FileSessionStore>, LoginRecord)> {
    let cannot_use = |e: &StoreError| {
        let mut failure = Failure::from_error(&format!("cannot use {}", path.display()), e);
        if matches!(e, StoreError::Corrupt { .. }) {
            failure.0.push_str("; run `smart-fhir login` again");
        }
        failure
    };
    // A FIFO or a device at the path would block or flood the store's read: only a regular
    // file of a bounded size is handed to it (a missing file is the store's to report).
    if path.exists() {
        let meta = crate::files::check_regular(path, "a session file")?;
        if meta.len() > crate::files::SESSION_FILE_LIMIT {
            return Err(Failure::new(format!(
                "{} is larger than {} (the limit for a session file)",
                path.display(),
                crate::files::human(crate::files::SESSION_FILE_LIMIT)
            )));
        }
    }
    let store = FileSessionStore::open(path)
        .map_err(|e| cannot_use(&e))?
        .with_clock(SharedClock::new(SystemClock));
    // The record's parse error could quote the file: it is not passed on.
    let login = serde_json::from_value::<LoginRecord>(store.metadata().clone()).map_err(|_| {
        cannot_use(&StoreError::corrupt(
            "not a smart-fhir session file (no client settings)",
        ))
    })?;
    Ok((Arc::new(store), login))
}

/// The App Launch flow of the CLI: one issuer (the server signed in to), the loopback redirect
/// URI, and the session store.
pub(crate) fn build_app(
    login: &LoginRecord,
    base: &FhirBaseUrl,
    store: SharedSessionStore,
    http: SharedHttpClient,
    clock: SharedClock,
) -> Result<AppLaunch> {
    let config = LaunchClientConfig::builder()
        .client_id(login.client_id.clone())
        .scope(login.scope.clone())
        .redirect_uri(login.redirect_uri.clone())
        // Nothing is sent there: the listener answers the callback itself.
        .landing_url(login.redirect_uri.clone())
        .client_auth(login.auth.client_auth()?)
        .issuer_policy(IssuerPolicy::allow_list([base.clone()]))
        // The redirect URI is plain http on a loopback host (RFC 8252 §7.3, §8.3). The FHIR
        // server keeps its own policy: it is the allow-listed base, parsed with --insecure-http
        // or without.
        .insecure_http(InsecureHttp::AllowLoopback)
        .session_store(store)
        .http_client(http)
        .clock(clock)
        .build()
        .map_err(|e| Failure::from_error("invalid sign-in settings", &e))?;
    Ok(AppLaunch::new(config))
}

/// A FHIR client's token provider from a saved session (`--session` on the FHIR commands),
/// bound to the session's FHIR base and to `http`.
pub(crate) fn saved_session(
    file: Option<&Path>,
    transport: &Transport,
    http: SharedHttpClient,
) -> Result<SavedSession> {
    let path = session_path(file)?;
    if !path.exists() {
        return Err(Failure::new(format!(
            "no saved session at {}; run `smart-fhir login` first",
            path.display()
        )));
    }
    let (store, login) = open_session_file(&path)?;
    let base = transport.base(&login.fhir_base)?;
    let app = build_app(
        &login,
        &base,
        SharedSessionStore::from_arc(store),
        http.clone(),
        SharedClock::new(SystemClock),
    )?;
    tracing::debug!(fhir_base = %base, file = %path.display(), "using the saved session");
    Ok(SavedSession {
        app,
        client: OnceCell::new(),
        base,
        http,
    })
}

/// The access tokens of a saved session: loaded on first use, refreshed (and the rotated refresh
/// token saved) when they expire.
#[derive(Debug)]
pub(crate) struct SavedSession {
    app: AppLaunch,
    client: OnceCell<SessionClient>,
    base: FhirBaseUrl,
    http: SharedHttpClient,
}

impl SavedSession {
    /// The FHIR base the session was signed in to.
    pub(crate) fn base(&self) -> &FhirBaseUrl {
        &self.base
    }

    async fn client(&self) -> std::result::Result<&SessionClient, ProviderError> {
        self.client
            .get_or_try_init(|| self.app.ready(SESSION_ID))
            .await
            .map_err(|e| {
                let kind = if e.is_relaunch_needed() {
                    ProviderErrorKind::RelaunchNeeded
                } else {
                    ProviderErrorKind::Unavailable
                };
                ProviderError::new(
                    kind,
                    "the saved session cannot be used; run `smart-fhir login`",
                )
                .with_source(e)
            })
    }
}

#[async_trait]
impl AccessTokenProvider for SavedSession {
    async fn access_token(&self) -> std::result::Result<AccessToken, ProviderError> {
        let client = self.client().await?;
        AccessTokenProvider::access_token(client)
            .await
            .map_err(relaunch_hint)
    }

    async fn token_rejected(&self, token: &AccessToken) {
        if let Ok(client) = self.client().await {
            AccessTokenProvider::token_rejected(client, token).await;
        }
    }

    fn fhir_base(&self) -> Option<&FhirBaseUrl> {
        Some(&self.base)
    }

    fn http_client(&self) -> Option<&SharedHttpClient> {
        Some(&self.http)
    }
}

/// `--session-file`, else `$XDG_STATE_HOME/smart-fhir/session.json`, else
/// `$HOME/.local/state/smart-fhir/session.json`.
pub(crate) fn session_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    default_session_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .ok_or_else(|| Failure::new("neither XDG_STATE_HOME nor HOME is set: pass --session-file"))
}

fn default_session_path(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The XDG spec says to ignore a relative path.
    let state = xdg_state_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local").join("state"))
        })?;
    Some(state.join("smart-fhir").join("session.json"))
}

/// A session that needs a new sign-in (refresh token refused, none left, session gone) as one
/// plain message: the reason, then what to do; not the chain of wrappers that says "new
/// authorization needed" three ways. Other errors pass unchanged.
fn relaunch_hint(e: ProviderError) -> ProviderError {
    if e.kind() != ProviderErrorKind::RelaunchNeeded {
        return e;
    }
    let reason = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<LaunchError>())
        .and_then(LaunchError::relaunch_reason);
    let what = match reason {
        Some(reason) => reason.to_string(),
        None => "the saved session can no longer be used".to_owned(),
    };
    ProviderError::new(
        ProviderErrorKind::RelaunchNeeded,
        format!("{what}; run `smart-fhir login` to sign in again"),
    )
}

/// Removes the session file; one already gone is fine.
pub(crate) fn remove_session_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::new(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Issue 11 §1 (a refused refresh token): the message names the reason once and tells the
    /// user to run `login`; other provider errors pass unchanged.
    #[test]
    fn a_refused_refresh_token_tells_to_run_login() {
        use smart_fhir_oauth::{OAuthErrorCode, RelaunchReason};
        let e = ProviderError::new(
            ProviderErrorKind::RelaunchNeeded,
            "cannot get an App Launch access token",
        )
        .with_source(LaunchError::RelaunchNeeded(
            RelaunchReason::RefreshRefused {
                code: OAuthErrorCode::InvalidGrant,
                description: Some("grant expired".into()),
            },
        ));
        let text = smart_fhir_core::text::error_chain(&relaunch_hint(e));
        // The server's own reason is shown once, then what to do.
        assert!(
            text.contains(
                "the server refused the refresh token (invalid_grant: grant expired); run \
                 `smart-fhir login`"
            ),
            "{text}"
        );
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert_eq!(text.matches("authorization needed").count(), 1, "{text}");
        let other = ProviderError::new(ProviderErrorKind::Unavailable, "down");
        assert_eq!(relaunch_hint(other).message(), "down");
    }

    fn record() -> LoginRecord {
        LoginRecord {
            fhir_base: "https://ehr.example/fhir".into(),
            client_id: "cli-app".into(),
            scope: "launch/patient patient/*.rs".into(),
            redirect_uri: "http://127.0.0.1:1234/callback".into(),
            auth: SavedAuth::ClientSecretBasic {
                secret_env: "MY_SECRET".into(),
            },
            insecure_http: false,
        }
    }

    /// SC-2.16: the saved settings round-trip through the file and name the secret's variable,
    /// never a secret.
    #[tokio::test]
    async fn sc_2_16_the_record_round_trips_without_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let store = record().new_store(SharedClock::new(SystemClock)).unwrap();
        store.save_to(&path).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"secret_env\":\"MY_SECRET\""), "{text}");
        let (_, login) = open_session_file(&path).unwrap();
        assert_eq!(login.client_id, "cli-app");
        assert_eq!(login.redirect_uri, "http://127.0.0.1:1234/callback");
    }

    #[test]
    fn garbage_and_other_versions_are_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        std::fs::write(&path, "secret-looking garbage").unwrap();
        let e = open_session_file(&path).unwrap_err();
        assert!(e.0.contains("not a smart-fhir session file"), "{}", e.0);
        assert!(e.0.contains("run `smart-fhir login` again"), "{}", e.0);
        assert!(!e.0.contains("garbage"));
        let v = json!({"version": 99, "metadata": record(), "entries": []});
        std::fs::write(&path, v.to_string()).unwrap();
        let e = open_session_file(&path).unwrap_err();
        assert!(e.0.contains("another smart-fhir version"), "{}", e.0);
        let v = json!({"version": 1, "metadata": {"client_id": "secret-looking"}, "entries": []});
        std::fs::write(&path, v.to_string()).unwrap();
        let e = open_session_file(&path).unwrap_err();
        assert!(e.0.contains("not a smart-fhir session file"), "{}", e.0);
        assert!(!e.0.contains("secret-looking"), "{}", e.0);
    }

    #[test]
    fn default_path_follows_xdg_then_home() {
        let p = default_session_path(Some("/x/state".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/state/smart-fhir/session.json"));
        let p = default_session_path(Some("relative".into()), Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/home/u/.local/state/smart-fhir/session.json")
        );
        let p = default_session_path(None, Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/home/u/.local/state/smart-fhir/session.json")
        );
        assert!(default_session_path(None, None).is_none());
        assert!(default_session_path(None, Some("rel".into())).is_none());
    }

    #[test]
    fn saved_auth_debug_names_no_secret() {
        let a = SavedAuth::ClientSecretPost {
            secret_env: "VAR".into(),
        };
        assert_eq!(format!("{a:?}"), "ClientSecretPost($VAR)");
    }
}
