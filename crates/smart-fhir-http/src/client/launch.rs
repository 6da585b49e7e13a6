//! Shortcuts for apps launched with SMART App Launch: read the resources the launch context and
//! the signed-in user point at.

use serde::de::DeserializeOwned;
use smart_fhir_store::LaunchContext;
use url::Url;

use super::{FhirClient, FhirError, FhirResponse};

impl FhirClient {
    /// Reads the launch context's Patient (`patient`, SC-4.20); `None` when the context has none
    /// (SC-4.23: requested context may be absent).
    pub async fn read_context_patient<T: DeserializeOwned>(
        &self,
        context: &LaunchContext,
    ) -> Result<Option<FhirResponse<T>>, FhirError> {
        match context.patient.as_deref() {
            Some(id) => self.read("Patient", id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Reads the launch context's Encounter (`encounter`, SC-4.20); `None` when there is none.
    pub async fn read_context_encounter<T: DeserializeOwned>(
        &self,
        context: &LaunchContext,
    ) -> Result<Option<FhirResponse<T>>, FhirError> {
        match context.encounter.as_deref() {
            Some(id) => self.read("Encounter", id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Reads the signed-in user's resource from its `fhirUser` URL (SC-4.35), which must lie
    /// under this client's FHIR base: the token is never sent to another server (SC-4.27, P6).
    pub async fn read_user<T: DeserializeOwned>(
        &self,
        fhir_user: &Url,
    ) -> Result<FhirResponse<T>, FhirError> {
        let base = self.base();
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
                self.read(resource_type, id).await
            }
            _ => Err(FhirError::InvalidRequest(
                "fhirUser is not a resource URL under this client's FHIR base".to_owned(),
            )),
        }
    }
}
