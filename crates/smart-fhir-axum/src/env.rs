//! Configuration from the environment, as the rest of the library reads it (`SMART_*`).

use smart_fhir::AppLaunch;

use crate::{SetupError, SmartLaunch};

/// The variable that chooses the session store: unset or `memory` (one process), `file:PATH`
/// (a JSON file of mode 0600 shared by the processes of one machine), or a `redis://` /
/// `rediss://` URL (any number of processes).
pub const SESSION_STORE_VAR: &str = "SMART_SESSION_STORE";

/// The variable with the landing URL (where the browser goes after a launch); by default the
/// root of the redirect URI's origin.
pub const LANDING_URL_VAR: &str = "SMART_LANDING_URL";

impl SmartLaunch {
    /// The routes and sessions from the environment: `SMART_FHIR_BASE` (the server allowed to
    /// launch the app and the one `login` signs in to), `SMART_CLIENT_ID`, `SMART_SCOPE`,
    /// `SMART_REDIRECT_URI` (its path ends in `/callback`; the routes are mounted beside it),
    /// `SMART_PRIVATE_KEY_FILE` for a `private_key_jwt` client, `SMART_INSECURE_HTTP=loopback`
    /// for development on plain HTTP, and [`SMART_SESSION_STORE`](SESSION_STORE_VAR) and
    /// [`SMART_LANDING_URL`](LANDING_URL_VAR).
    pub async fn from_env() -> Result<Self, SetupError> {
        let config = smart_fhir::Config::from_env().map_err(|e| SetupError::new(e.to_string()))?;
        let builder = config
            .app_launch_config()
            .map_err(|e| SetupError::new(e.to_string()))?;
        let landing = match std::env::var(LANDING_URL_VAR) {
            Ok(v) if !v.is_empty() => v,
            _ => {
                let redirect = config.redirect_uri().unwrap_or_default();
                let url = url::Url::parse(redirect).map_err(|e| {
                    SetupError::new(format!("SMART_REDIRECT_URI is not a URL: {e}"))
                })?;
                format!("{}/", url.origin().ascii_serialization())
            }
        };
        // The session store (`SMART_SESSION_STORE`) is the configuration's: the builder has it.
        let launch = builder
            .landing_url(landing)
            .build()
            .map_err(|e| SetupError::new(e.to_string()))?;
        Self::new(AppLaunch::new(launch), [config.fhir_base().clone()])
    }
}
