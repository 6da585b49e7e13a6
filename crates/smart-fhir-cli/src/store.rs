//! `--store`: where the Backend Services token is kept, so that invocations and processes share
//! it and renew it once between them.

use std::path::Path;

use clap::Args;
use serde_json::json;
use smart_fhir_redis::{RedisStore, RedisTokenStore};
use smart_fhir_store::{FileSessionStore, SessionTokenStore, SharedTokenStore};

use crate::{Failure, Result};

/// The token store option of `token` and the FHIR commands.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Keep the access token in a store shared by invocations and processes, which then renew it
    /// once between them: redis://[user:password@]host[:port][/db] or rediss://… (TLS, the
    /// system's roots) for Redis or Valkey (tokens are stored there in the clear), or a file path
    /// (created with mode 0600; for the processes of this machine). Without it, each invocation
    /// gets a token of its own.
    #[arg(long, value_name = "URL|FILE", env = "SMART_TOKEN_STORE")]
    store: Option<String>,
}

impl StoreArgs {
    /// The store named by `--store` (or `SMART_TOKEN_STORE`), if any. A file store is opened
    /// (created if absent) now; a Redis store connects at its first use.
    pub(crate) fn token_store(&self) -> Result<Option<SharedTokenStore>> {
        let Some(text) = self.store.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if text.is_empty() {
            return Ok(None);
        }
        open(text).map(Some)
    }
}

/// A store from its URL or path. The URL may carry a password: no message quotes it.
fn open(text: &str) -> Result<SharedTokenStore> {
    match text
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
    {
        Some(scheme) if scheme == "redis" || scheme == "rediss" => {
            let redis = RedisStore::builder()
                .url(text)
                .build()
                .map_err(|e| Failure::from_error("invalid --store", &e))?;
            Ok(SharedTokenStore::new(RedisTokenStore::new(redis)))
        }
        Some(scheme) => Err(Failure::new(format!(
            "invalid --store: the scheme {scheme}:// is not supported (expected redis:// or a \
             file path)",
            scheme = smart_fhir_core::text::printable(&scheme, 20)
        ))),
        None => open_file(Path::new(text)),
    }
}

fn open_file(path: &Path) -> Result<SharedTokenStore> {
    let file =
        FileSessionStore::open_or_create(path, json!({ "contents": "smart-fhir token store" }))
            .map_err(|e| {
                Failure::from_error(
                    &format!("cannot open the token store {}", path.display()),
                    &e,
                )
            })?;
    Ok(SharedTokenStore::new(SessionTokenStore::new(file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(text: &str) -> String {
        match open(text) {
            Ok(store) => panic!("{text} opened: {store:?}"),
            Err(Failure(message)) => message,
        }
    }

    /// P5: a refused store URL is named by its scheme, never quoted (it may hold a password);
    /// `rediss://` is taken (it connects at first use) and its `Debug` shows no URL.
    #[test]
    fn refused_store_urls_are_named_without_their_password_p5() {
        let tls = open("rediss://user:SECRET@cache.example:6380").expect("rediss:// is taken");
        assert!(!format!("{tls:?}").contains("SECRET"));
        let m = failure("memcached://user:SECRET@cache.example");
        assert!(m.contains("memcached://"), "{m}");
        assert!(!m.contains("SECRET"), "{m}");
        let m = failure("redis://user:SECRET@[bad");
        assert!(m.contains("invalid --store"), "{m}");
        assert!(!m.contains("SECRET"), "{m}");
    }

    /// P12: a file store is created (mode 0600) and opened again by the next invocation.
    #[test]
    fn a_file_store_is_created_private_and_reopened_p12() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tokens.json");
        let text = path.to_str().unwrap();
        open(text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        open(text).unwrap();
        let args = StoreArgs { store: None };
        assert!(args.token_store().unwrap().is_none());
    }
}
