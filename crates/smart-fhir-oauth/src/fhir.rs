//! A ready FHIR client from a token source, and the App Launch shortcuts (feature
//! `fhir-client`).

use serde::de::DeserializeOwned;
use smart_fhir_http::{FhirClient, FhirError, FhirResponse};
use url::Url;

use crate::{BackendServices, SessionClient};

impl BackendServices {
    /// A FHIR client for this token source's server, on its transport (one connection pool),
    /// with its tokens. Requires the feature `fhir-client`.
    ///
    /// ```no_run
    /// # async fn run(backend: smart_fhir_oauth::BackendServices) -> Result<(), Box<dyn std::error::Error>> {
    /// let fhir = backend.fhir_client()?;
    /// let patient = fhir.read::<serde_json::Value>("Patient", "123").await?;
    /// # Ok(()) }
    /// ```
    pub fn fhir_client(&self) -> Result<FhirClient, FhirError> {
        FhirClient::for_token_source(self.clone())?.build()
    }
}

impl SessionClient {
    /// A FHIR client for this session's server, on the flow's transport, with the session's
    /// self-refreshing tokens. Requires the feature `fhir-client`.
    pub fn fhir_client(&self) -> Result<FhirClient, FhirError> {
        FhirClient::for_token_source(self.clone())?.build()
    }

    /// Reads the launch context's Patient (`patient`, SC-4.20) with `fhir` (usually
    /// [`fhir_client`](Self::fhir_client)); `None` when the context has none (SC-4.23:
    /// requested context may be absent). `fhir` must be for this session's server: the id
    /// means nothing elsewhere.
    pub async fn read_patient<T: DeserializeOwned>(
        &self,
        fhir: &FhirClient,
    ) -> Result<Option<FhirResponse<T>>, FhirError> {
        self.check_server(fhir)?;
        match self.patient() {
            Some(id) => fhir.read("Patient", &id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Reads the launch context's Encounter (`encounter`, SC-4.20); `None` when there is none.
    /// `fhir` must be for this session's server.
    pub async fn read_encounter<T: DeserializeOwned>(
        &self,
        fhir: &FhirClient,
    ) -> Result<Option<FhirResponse<T>>, FhirError> {
        self.check_server(fhir)?;
        match self.encounter() {
            Some(id) => fhir.read("Encounter", &id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Reads the signed-in user's resource (`fhirUser` of the verified `id_token`, SC-4.35);
    /// `None` when there is no user. The URL must lie under `fhir`'s base: the token is never
    /// sent to another server (SC-4.27, P6).
    pub async fn read_user<T: DeserializeOwned>(
        &self,
        fhir: &FhirClient,
    ) -> Result<Option<FhirResponse<T>>, FhirError> {
        self.check_server(fhir)?;
        match self.user() {
            Some(user) => read_user(fhir, &user).await.map(Some),
            None => Ok(None),
        }
    }

    fn check_server(&self, fhir: &FhirClient) -> Result<(), FhirError> {
        if fhir.base() == &self.fhir_base() {
            Ok(())
        } else {
            Err(FhirError::InvalidRequest(
                "the FHIR client is for another server than the session's".to_owned(),
            ))
        }
    }
}

/// Reads the resource a `fhirUser` URL names, which must lie under the client's FHIR base.
async fn read_user<T: DeserializeOwned>(
    fhir: &FhirClient,
    fhir_user: &Url,
) -> Result<FhirResponse<T>, FhirError> {
    let base = fhir.base();
    let relative = if base.contains(fhir_user) {
        fhir_user
            .path()
            .strip_prefix(base.url().path().trim_end_matches('/'))
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned()
    } else {
        String::new()
    };
    let mut parts = relative.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(resource_type), Some(id), None) if !resource_type.is_empty() => {
            fhir.read(resource_type, id).await
        }
        _ => Err(FhirError::InvalidRequest(
            "fhirUser is not a resource URL under this client's FHIR base".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use smart_fhir_core::{AccessToken, FhirBaseUrl, HttpClient, HttpError, StaticTokenProvider};

    /// A transport that answers every request with a Practitioner and counts them.
    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>);

    #[async_trait]
    impl HttpClient for Counting {
        async fn execute(
            &self,
            _request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, HttpError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "application/fhir+json")
                .body(Bytes::from_static(
                    br#"{"resourceType":"Practitioner","id":"dr1"}"#,
                ))
                .unwrap())
        }
    }

    /// SC-4.35, SC-4.27, P6: the user is read from its `fhirUser` URL under the base; a
    /// `fhirUser` on another server, outside the base or naming no resource is refused without
    /// any request.
    #[tokio::test]
    async fn sc_4_35_reads_the_user_and_never_follows_another_server() {
        let count = Arc::new(AtomicUsize::new(0));
        let fhir = FhirClient::builder(FhirBaseUrl::parse("https://ehr.example/fhir").unwrap())
            .http_client(Counting(Arc::clone(&count)))
            .auth(StaticTokenProvider::new(AccessToken::new("tok-x")))
            .build()
            .unwrap();
        let user = Url::parse("https://ehr.example/fhir/Practitioner/dr1").unwrap();
        let r = read_user::<serde_json::Value>(&fhir, &user).await.unwrap();
        assert_eq!(r.body()["id"], "dr1");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        for foreign in [
            "https://elsewhere.example/fhir/Practitioner/dr1",
            "https://ehr.example/other/Practitioner/dr1",
            "https://ehr.example/fhir/Practitioner",
        ] {
            let err = read_user::<serde_json::Value>(&fhir, &Url::parse(foreign).unwrap())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("fhirUser"), "{foreign}: {err}");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
