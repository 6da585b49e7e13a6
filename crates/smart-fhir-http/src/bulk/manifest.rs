//! The completion manifest of a Bulk Data export (SC-7.15, SC-7.16, SC-7.24).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use smart_fhir_core::FhirBaseUrl;
use url::Url;

/// The manifest a Bulk Data status request returns with `200` when the export is complete
/// (SC-7.15).
///
/// Unknown members are ignored. The file URLs are server input: they are checked (scheme, host,
/// no credentials, P15) before anything is downloaded from them, not when the manifest is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Manifest {
    /// The server's time when the export started: the `_since` of the next incremental export
    /// (SC-7.17).
    pub transaction_time: String,
    /// The kick-off request URL as the server understood it.
    pub request: String,
    /// Whether file downloads need the access token (SC-7.18). When false the token is never
    /// sent with them.
    pub requires_access_token: bool,
    /// The files of exported resources.
    pub output: Vec<ManifestFile>,
    /// Files of `Bundle`s listing deleted resources (exports with `_since`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<ManifestFile>,
    /// Files of `OperationOutcome`s about what could not be exported: when non-empty the export
    /// is only a partial success (SC-7.16).
    #[serde(default)]
    pub error: Vec<ManifestFile>,
    /// Server-specific extensions, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<serde_json::Value>,
    /// v3: the parameter the output is organised by (`organizeOutputBy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_organized_by: Option<String>,
    /// v3: links to further manifests (`allowPartialManifests`, relation `next`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<ManifestLink>,
    /// The `Expires` header of the status response: download the files before then (SC-7.18).
    #[serde(skip)]
    pub expires: Option<SystemTime>,
}

/// One file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ManifestFile {
    /// The FHIR resource type the file holds.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Where to download it (absolute).
    pub url: String,
    /// How many resources the file holds, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// v3 (`organizeOutputBy`): the URL of the file the last resource group continues in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues_in_file: Option<String>,
    /// Server-specific extensions, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<serde_json::Value>,
}

/// A v3 manifest link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManifestLink {
    /// The relation, e.g. `next`.
    pub relation: String,
    /// The linked manifest.
    pub url: String,
}

impl Manifest {
    /// Whether the server reported errors (`error[]` non-empty): the export is then a partial
    /// success, and the error files say what is missing (SC-7.16).
    pub fn is_partial(&self) -> bool {
        !self.error.is_empty()
    }

    /// The link to the next manifest, when the server splits its output across several
    /// (v3 `allowPartialManifests`, SC-7.24).
    pub fn next_link(&self) -> Option<&str> {
        self.link
            .iter()
            .find(|l| l.relation == "next")
            .map(|l| l.url.as_str())
    }

    /// The sum of the `count`s the server gave for `output[]` (files without a count add
    /// nothing).
    pub fn declared_output_count(&self) -> u64 {
        self.output
            .iter()
            .filter_map(|f| f.count)
            .fold(0u64, u64::saturating_add)
    }
}

impl ManifestFile {
    /// The URL, parsed and checked against `base`, the server whose manifest named it:
    /// absolute, `https` (or loopback `http` with the base's opt-in, and never when the base is
    /// `https`), with a host, without credentials or fragment (P7, P15).
    pub fn checked_url(&self, base: &FhirBaseUrl) -> Result<Url, smart_fhir_core::UrlError> {
        check_url(&self.url, "Bulk Data file URL", base)
    }

    /// Whether `resource_type` is a plausible FHIR type name (letters and digits, starting
    /// with a letter, at most 64 characters): the only names used to build local file names.
    pub fn has_valid_type(&self) -> bool {
        is_type_name(&self.resource_type)
    }
}

/// Parses and checks an absolute URL the server sent.
pub(crate) fn check_url(
    text: &str,
    what: &str,
    base: &FhirBaseUrl,
) -> Result<Url, smart_fhir_core::UrlError> {
    let url = Url::parse(text.trim()).map_err(|e| smart_fhir_core::UrlError::Invalid {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    base.check_server_url(&url, what)?;
    Ok(url)
}

/// `[A-Za-z][A-Za-z0-9]{0,63}`: a FHIR resource type name (also what a file name may carry).
pub(crate) fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use smart_fhir_core::InsecureHttp;

    #[test]
    fn type_names() {
        assert!(is_type_name("Patient"));
        assert!(is_type_name("OperationOutcome"));
        assert!(!is_type_name(""));
        assert!(!is_type_name("../etc"));
        assert!(!is_type_name("Patient/1"));
        assert!(!is_type_name("1Patient"));
        assert!(!is_type_name(&"A".repeat(65)));
    }

    /// P15, P7: file URLs are checked before use, against the server whose manifest named them:
    /// plain `http` only on loopback with the base's opt-in, and never for an `https` base
    /// (a downgrade), whatever the opt-in says.
    #[test]
    fn p15_file_urls_are_checked() {
        let f = |url: &str| ManifestFile {
            resource_type: "Patient".into(),
            url: url.into(),
            count: None,
            continues_in_file: None,
            extension: None,
        };
        let https = FhirBaseUrl::parse("https://ehr.example/fhir").unwrap();
        let https_opt_in =
            FhirBaseUrl::parse_with("https://ehr.example/fhir", InsecureHttp::AllowLoopback)
                .unwrap();
        let local =
            FhirBaseUrl::parse_with("http://127.0.0.1:8080/fhir", InsecureHttp::AllowLoopback)
                .unwrap();
        assert!(f("https://files.example/a.ndjson")
            .checked_url(&https)
            .is_ok());
        assert!(f("http://files.example/a.ndjson")
            .checked_url(&local)
            .is_err());
        assert!(f("http://127.0.0.1:9/a").checked_url(&https).is_err());
        assert!(f("http://127.0.0.1:9/a").checked_url(&local).is_ok());
        let downgrade = f("http://127.0.0.1:9/a")
            .checked_url(&https_opt_in)
            .unwrap_err();
        assert!(downgrade.to_string().contains("downgrade"), "{downgrade}");
        assert!(f("file:///etc/passwd").checked_url(&https).is_err());
        assert!(f("/relative").checked_url(&https).is_err());
        assert!(f("https://u:p@files.example/a")
            .checked_url(&https)
            .is_err());
    }
}
