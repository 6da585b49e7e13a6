//! The SMART launch context of an App Launch token response, typed (SC-4.19 – SC-4.23).

use std::fmt;

use serde_json::{Map, Value};
use smart_fhir_core::{check_endpoint_url, InsecureHttp, Url};

/// The longest `patient` or `encounter` id accepted. FHIR allows 64 characters; some servers
/// send longer ids, so this is more generous while still bounding server input (P15).
pub const MAX_CONTEXT_ID_LEN: usize = 256;

/// The longest `reference`, `canonical`, `intent`, `tenant` or `role` accepted (P15).
const MAX_TEXT_LEN: usize = 4096;

/// The standard launch-context members this type models; everything else goes to
/// [`LaunchContext::extra`].
const KNOWN: [&str; 8] = [
    "patient",
    "encounter",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
    "tenant",
    "authorization_details",
];

/// The launch context that came with an App Launch token response: `patient`, `encounter`,
/// `fhirContext`, `need_patient_banner`, `smart_style_url`, `intent`, `tenant`,
/// `authorization_details`, and every other member kept whole in [`extra`](Self::extra)
/// (SC-4.19 – SC-4.23).
///
/// Read it from the members of a token response that are not standard OAuth fields (what
/// [`StoredToken::launch_context`](smart_fhir_store::StoredToken::launch_context) keeps) with
/// [`LaunchContext::from_token_fields`]. Parsing never fails: a member with the wrong shape is
/// left out of its typed field, kept in [`extra`](Self::extra) as the server sent it, and
/// reported in [`issues`](Self::issues), so the caller decides whether a malformed context is
/// fatal. Context the app asked for may be absent (SC-4.23); unsolicited members are kept
/// (SC-4.22).
///
/// `Debug` shows which members are present, never their values: a patient id identifies a
/// patient.
///
/// ```
/// use serde_json::json;
/// use smart_fhir_core::InsecureHttp;
/// use smart_fhir_oauth::LaunchContext;
///
/// let fields = json!({
///     "patient": "123",
///     "fhirContext": [{"reference": "ImagingStudy/7", "role": "https://example.org/role"}],
///     "need_patient_banner": false,
///     "smart_style_url": "https://ehr.example/style.json",
///     "org.example.flag": true
/// });
/// let ctx = LaunchContext::from_token_fields(fields.as_object().unwrap(), InsecureHttp::Deny);
/// assert_eq!(ctx.patient.as_deref(), Some("123"));
/// assert_eq!(ctx.patient_reference().as_deref(), Some("Patient/123"));
/// assert_eq!(ctx.fhir_context[0].reference.as_deref(), Some("ImagingStudy/7"));
/// assert_eq!(ctx.need_patient_banner, Some(false));
/// assert_eq!(ctx.extra["org.example.flag"], json!(true));
/// assert!(ctx.issues.is_empty());
/// assert!(!format!("{ctx:?}").contains("123"));
/// ```
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LaunchContext {
    /// `patient`: the id of the patient in context (a FHIR id, not a reference).
    pub patient: Option<String>,
    /// `encounter`: the id of the encounter in context.
    pub encounter: Option<String>,
    /// `fhirContext`: further context resources (SC-4.21). Items that are not usable are left
    /// out and reported in [`issues`](Self::issues).
    pub fhir_context: Vec<FhirContextItem>,
    /// `need_patient_banner`: whether the app must show a patient banner.
    pub need_patient_banner: Option<bool>,
    /// `smart_style_url`: where the EHR's style sheet is; an absolute `https` URL (P15).
    pub smart_style_url: Option<Url>,
    /// `intent`: what the EHR user wants to do; unknown values call for the default UI
    /// (SC-4.24).
    pub intent: Option<String>,
    /// `tenant`: the EHR tenant.
    pub tenant: Option<String>,
    /// `authorization_details` (RFC 9396), as sent: each item an object with `type` and, in
    /// SMART, `locations` (SC-4.25).
    pub authorization_details: Option<Vec<Value>>,
    /// Every other member (extension and unsolicited context, SC-4.22), and any standard member
    /// that could not be read, as the server sent it.
    pub extra: Map<String, Value>,
    /// What could not be read.
    pub issues: Vec<LaunchContextIssue>,
}

/// One item of `fhirContext` (SMART App Launch 2.2, SC-4.21): at least one of `reference`,
/// `canonical` and `identifier`, with an optional `type` and `role`.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FhirContextItem {
    /// `reference`: a relative reference such as `ImagingStudy/7`, or an absolute URL.
    pub reference: Option<String>,
    /// `canonical`: a canonical URL, optionally with `|version`.
    pub canonical: Option<String>,
    /// `identifier`: a FHIR `Identifier` object.
    pub identifier: Option<Map<String, Value>>,
    /// `type`: the FHIR resource type.
    pub resource_type: Option<String>,
    /// `role`: an absolute URI or a role SMART defines; absent means `launch`.
    pub role: Option<String>,
    /// Any other member of the item.
    pub extra: Map<String, Value>,
}

/// A launch-context member that could not be read, and why. Names the member, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaunchContextIssue {
    /// The member, e.g. `patient` or `fhirContext[2]`.
    pub field: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for LaunchContextIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

impl LaunchContext {
    /// Reads the launch context from the members of a token response that are not standard
    /// OAuth fields (SC-4.20 – SC-4.22).
    ///
    /// * `patient`, `encounter`: strings of 1 to [`MAX_CONTEXT_ID_LEN`] characters of the FHIR
    ///   id alphabet (`A-Z a-z 0-9 - .`).
    /// * `fhirContext`: an array of objects; a plain string is read as a `reference` (some
    ///   servers wrote items that way before SMART 2.0). Each item needs a `reference`,
    ///   `canonical` or `identifier`; a relative `reference` must be `Type/id`, an absolute one
    ///   must pass the endpoint URL check with `insecure`.
    /// * `need_patient_banner`: a boolean. `intent`, `tenant`: strings.
    /// * `smart_style_url`: an absolute `https` URL (`http` on loopback only when `insecure`
    ///   allows it), without credentials or fragment (P15).
    /// * `authorization_details`: an array.
    ///
    /// A member whose value is JSON `null` counts as absent. A member of the wrong shape goes to
    /// [`extra`](Self::extra) and [`issues`](Self::issues).
    pub fn from_token_fields(fields: &Map<String, Value>, insecure: InsecureHttp) -> Self {
        let mut ctx = Self::default();
        for (name, value) in fields {
            if !KNOWN.contains(&name.as_str()) {
                ctx.extra.insert(name.clone(), value.clone());
                continue;
            }
            if value.is_null() {
                continue;
            }
            let problem = match name.as_str() {
                "patient" => read_id(value).map(|id| ctx.patient = Some(id)),
                "encounter" => read_id(value).map(|id| ctx.encounter = Some(id)),
                "fhirContext" => ctx.read_fhir_context(value, insecure),
                "need_patient_banner" => value
                    .as_bool()
                    .map(|b| ctx.need_patient_banner = Some(b))
                    .ok_or("must be a boolean"),
                "smart_style_url" => read_style_url(value, insecure).map(|u| {
                    ctx.smart_style_url = Some(u);
                }),
                "intent" => read_text(value).map(|s| ctx.intent = Some(s)),
                "tenant" => read_text(value).map(|s| ctx.tenant = Some(s)),
                "authorization_details" => value
                    .as_array()
                    .map(|a| ctx.authorization_details = Some(a.clone()))
                    .ok_or("must be an array"),
                _ => Ok(()),
            };
            if let Err(reason) = problem {
                ctx.extra.insert(name.clone(), value.clone());
                ctx.issues.push(LaunchContextIssue {
                    field: name.clone(),
                    reason,
                });
            }
        }
        ctx
    }

    fn read_fhir_context(
        &mut self,
        value: &Value,
        insecure: InsecureHttp,
    ) -> Result<(), &'static str> {
        let items = value.as_array().ok_or("must be an array")?;
        for (i, item) in items.iter().enumerate() {
            match FhirContextItem::read(item, insecure) {
                Ok(item) => self.fhir_context.push(item),
                Err(reason) => self.issues.push(LaunchContextIssue {
                    field: format!("fhirContext[{i}]"),
                    reason,
                }),
            }
        }
        Ok(())
    }

    /// `Patient/<patient>`, when a patient is in context.
    pub fn patient_reference(&self) -> Option<String> {
        self.patient.as_ref().map(|id| format!("Patient/{id}"))
    }

    /// `Encounter/<encounter>`, when an encounter is in context.
    pub fn encounter_reference(&self) -> Option<String> {
        self.encounter.as_ref().map(|id| format!("Encounter/{id}"))
    }

    /// The `fhirContext` items of a resource type: by their `type`, or by the type named in a
    /// relative `reference`.
    pub fn fhir_context_of_type<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = &'a FhirContextItem> + 'a {
        self.fhir_context
            .iter()
            .filter(move |item| item.resource_type_name() == Some(resource_type))
    }

    /// Whether the context carries nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a member that names a resource in context — `patient`, `encounter` or an item of
    /// `fhirContext` — could not be read. An app that cannot tell which patient is in context
    /// must not go on as if none were.
    pub fn has_identity_issues(&self) -> bool {
        self.issues.iter().any(|i| {
            i.field == "patient" || i.field == "encounter" || i.field.starts_with("fhirContext")
        })
    }
}

impl FhirContextItem {
    fn read(value: &Value, insecure: InsecureHttp) -> Result<Self, &'static str> {
        let mut item = Self::default();
        let object = match value {
            // Before SMART 2.0 some servers sent bare reference strings.
            Value::String(_) => {
                item.reference = Some(read_reference(value, insecure)?);
                return Ok(item);
            }
            Value::Object(o) => o,
            _ => return Err("must be an object"),
        };
        for (name, v) in object {
            if v.is_null() {
                continue;
            }
            match name.as_str() {
                "reference" => item.reference = Some(read_reference(v, insecure)?),
                "canonical" => item.canonical = Some(read_canonical(v)?),
                "identifier" => {
                    item.identifier = Some(
                        v.as_object()
                            .cloned()
                            .ok_or("has an identifier that is not an object")?,
                    );
                }
                "type" => {
                    let t = v.as_str().ok_or("has a type that is not a string")?;
                    if !is_resource_type(t) {
                        return Err("has a type that is not a FHIR resource type");
                    }
                    item.resource_type = Some(t.to_owned());
                }
                "role" => {
                    let role = read_text(v).map_err(|_| "has a role that is not a string")?;
                    if role.is_empty() {
                        return Err("has an empty role");
                    }
                    item.role = Some(role);
                }
                _ => {
                    item.extra.insert(name.clone(), v.clone());
                }
            }
        }
        if item.reference.is_none() && item.canonical.is_none() && item.identifier.is_none() {
            return Err("has none of reference, canonical and identifier");
        }
        Ok(item)
    }

    /// The role, with SMART's default: `launch` when the server sent none.
    pub fn role_or_default(&self) -> &str {
        self.role.as_deref().unwrap_or("launch")
    }

    /// The resource type: `type`, else the type named in a relative `reference`.
    pub fn resource_type_name(&self) -> Option<&str> {
        if let Some(t) = &self.resource_type {
            return Some(t);
        }
        let reference = self.reference.as_deref()?;
        if reference.contains("://") {
            return None;
        }
        reference.split('/').next().filter(|t| is_resource_type(t))
    }
}

impl fmt::Debug for LaunchContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchContext")
            .field("patient", &self.patient.as_ref().map(|_| "[present]"))
            .field("encounter", &self.encounter.as_ref().map(|_| "[present]"))
            .field("fhir_context", &self.fhir_context)
            .field("need_patient_banner", &self.need_patient_banner)
            .field(
                "smart_style_url",
                &self.smart_style_url.as_ref().map(|_| "[present]"),
            )
            .field("intent", &self.intent.as_ref().map(|_| "[present]"))
            .field("tenant", &self.tenant.as_ref().map(|_| "[present]"))
            .field(
                "authorization_details",
                &self.authorization_details.as_ref().map(Vec::len),
            )
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .field("issues", &self.issues)
            .finish()
    }
}

impl fmt::Debug for FhirContextItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirContextItem")
            .field("type", &self.resource_type_name())
            .field("role", &self.role)
            .field("reference", &self.reference.as_ref().map(|_| "[present]"))
            .field("canonical", &self.canonical.as_ref().map(|_| "[present]"))
            .field("identifier", &self.identifier.as_ref().map(|_| "[present]"))
            .finish_non_exhaustive()
    }
}

fn read_id(value: &Value) -> Result<String, &'static str> {
    let id = value.as_str().ok_or("must be a string")?;
    check_id(id)?;
    Ok(id.to_owned())
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_CONTEXT_ID_LEN {
        return Err("must be a FHIR id of 1 to 256 characters");
    }
    if !id.bytes().all(is_id_byte) || id == "." || id == ".." {
        return Err("must be a FHIR id (letters, digits, '-' and '.')");
    }
    Ok(())
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

fn is_resource_type(t: &str) -> bool {
    let mut bytes = t.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && t.len() <= 64
        && bytes.all(|b| b.is_ascii_alphabetic())
}

fn read_text(value: &Value) -> Result<String, &'static str> {
    let s = value.as_str().ok_or("must be a string")?;
    if s.len() > MAX_TEXT_LEN {
        return Err("is too long");
    }
    if s.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(s.to_owned())
}

/// A relative `Type/id` (optionally `/_history/vid`) or an absolute endpoint URL.
fn read_reference(value: &Value, insecure: InsecureHttp) -> Result<String, &'static str> {
    let s = value
        .as_str()
        .ok_or("has a reference that is not a string")?;
    if s.len() > MAX_TEXT_LEN {
        return Err("has a reference that is too long");
    }
    if s.contains("://") {
        let url = Url::parse(s).map_err(|_| "has a reference that is not a valid URL")?;
        check_endpoint_url(&url, "fhirContext reference", insecure)
            .map_err(|_| "has an absolute reference that is not an acceptable https URL")?;
        return Ok(s.to_owned());
    }
    let parts: Vec<&str> = s.split('/').collect();
    let ok = match parts.as_slice() {
        [t, id] => is_resource_type(t) && read_id_str(id),
        [t, id, "_history", v] => is_resource_type(t) && read_id_str(id) && read_id_str(v),
        _ => false,
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err("has a reference that is neither Type/id nor an absolute URL")
    }
}

fn read_id_str(id: &str) -> bool {
    check_id(id).is_ok()
}

fn read_canonical(value: &Value) -> Result<String, &'static str> {
    let s = value
        .as_str()
        .ok_or("has a canonical that is not a string")?;
    if s.is_empty() || s.len() > MAX_TEXT_LEN {
        return Err("has an empty or too long canonical");
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("has a canonical with white space or control characters");
    }
    Ok(s.to_owned())
}

fn read_style_url(value: &Value, insecure: InsecureHttp) -> Result<Url, &'static str> {
    let s = value.as_str().ok_or("must be a string")?;
    let url = Url::parse(s).map_err(|_| "must be an absolute URL")?;
    check_endpoint_url(&url, "smart_style_url", insecure)
        .map_err(|_| "must be an https URL without credentials or fragment")?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> LaunchContext {
        LaunchContext::from_token_fields(v.as_object().unwrap(), InsecureHttp::Deny)
    }

    /// SC-4.20, SC-4.21, SC-4.22: every standard member typed, unknown members kept.
    #[test]
    fn sc_4_20_parses_every_member() {
        let ctx = parse(json!({
            "patient": "pat-1",
            "encounter": "enc.2",
            "fhirContext": [
                {"reference": "DiagnosticReport/9", "role": "https://example.org/role/x"},
                {"canonical": "http://hl7.org/fhir/Questionnaire/q|1.0", "type": "Questionnaire"},
                {"identifier": {"system": "urn:x", "value": "1"}, "type": "ImagingStudy", "x": 1},
                "Observation/5/_history/2"
            ],
            "need_patient_banner": true,
            "smart_style_url": "https://ehr.example/style.json",
            "intent": "reconcile-medications",
            "tenant": "t1",
            "authorization_details": [{"type": "smart_on_fhir", "locations": ["https://fhir.example"]}],
            "custom": {"a": 1}
        }));
        assert_eq!(ctx.patient.as_deref(), Some("pat-1"));
        assert_eq!(ctx.encounter.as_deref(), Some("enc.2"));
        assert_eq!(
            ctx.encounter_reference().as_deref(),
            Some("Encounter/enc.2")
        );
        assert_eq!(ctx.fhir_context.len(), 4);
        assert_eq!(
            ctx.fhir_context[0].role_or_default(),
            "https://example.org/role/x"
        );
        assert_eq!(ctx.fhir_context[1].role_or_default(), "launch");
        assert_eq!(
            ctx.fhir_context[1].canonical.as_deref(),
            Some("http://hl7.org/fhir/Questionnaire/q|1.0")
        );
        assert_eq!(
            ctx.fhir_context[2].identifier.as_ref().unwrap()["value"],
            json!("1")
        );
        assert_eq!(ctx.fhir_context[2].extra["x"], json!(1));
        assert_eq!(
            ctx.fhir_context[3].resource_type_name(),
            Some("Observation")
        );
        assert_eq!(ctx.fhir_context_of_type("DiagnosticReport").count(), 1);
        assert_eq!(ctx.fhir_context_of_type("ImagingStudy").count(), 1);
        assert_eq!(ctx.need_patient_banner, Some(true));
        assert_eq!(
            ctx.smart_style_url.as_ref().map(Url::as_str),
            Some("https://ehr.example/style.json")
        );
        assert_eq!(ctx.intent.as_deref(), Some("reconcile-medications"));
        assert_eq!(ctx.tenant.as_deref(), Some("t1"));
        assert_eq!(ctx.authorization_details.as_ref().unwrap().len(), 1);
        assert_eq!(ctx.extra["custom"], json!({"a": 1}));
        assert!(ctx.issues.is_empty(), "{:?}", ctx.issues);
        assert!(!ctx.has_identity_issues());
    }

    /// SC-4.23: requested context may be absent; null counts as absent.
    #[test]
    fn sc_4_23_absent_and_null_context() {
        let ctx = parse(json!({"patient": null}));
        assert!(ctx.is_empty());
        assert!(parse(json!({})).is_empty());
    }

    /// P15: malformed server input is reported, kept aside, never trusted.
    #[test]
    fn p15_malformed_members_are_reported_not_used() {
        let ctx = parse(json!({
            "patient": "../Practitioner/1",
            "encounter": 7,
            "fhirContext": [{"role": "launch"}, {"reference": "https://evil.example:80/x#f"},
                            {"reference": "not a reference"}, {"reference": "Patient/1"}],
            "need_patient_banner": "yes",
            "smart_style_url": "http://ehr.example/style.json",
            "intent": "x\u{1b}[31m",
            "authorization_details": {"type": "x"}
        }));
        assert_eq!(ctx.patient, None);
        assert_eq!(ctx.encounter, None);
        assert_eq!(ctx.fhir_context.len(), 1);
        assert_eq!(ctx.need_patient_banner, None);
        assert_eq!(ctx.smart_style_url, None);
        assert_eq!(ctx.intent, None);
        assert_eq!(ctx.authorization_details, None);
        let fields: Vec<&str> = ctx.issues.iter().map(|i| i.field.as_str()).collect();
        for f in [
            "patient",
            "encounter",
            "fhirContext[0]",
            "fhirContext[1]",
            "fhirContext[2]",
            "need_patient_banner",
            "smart_style_url",
            "intent",
            "authorization_details",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        assert_eq!(ctx.extra["patient"], json!("../Practitioner/1"));
        assert!(ctx.has_identity_issues());
        let shown: Vec<String> = ctx.issues.iter().map(ToString::to_string).collect();
        assert!(!shown.concat().contains("Practitioner"), "{shown:?}");
    }

    #[test]
    fn style_url_on_loopback_http_only_with_opt_in() {
        let fields = json!({"smart_style_url": "http://127.0.0.1:9/s.json"});
        let fields = fields.as_object().unwrap();
        assert!(LaunchContext::from_token_fields(fields, InsecureHttp::Deny)
            .smart_style_url
            .is_none());
        assert!(
            LaunchContext::from_token_fields(fields, InsecureHttp::AllowLoopback)
                .smart_style_url
                .is_some()
        );
    }

    #[test]
    fn debug_shows_no_values() {
        let ctx = parse(json!({
            "patient": "PATIENT-ID", "encounter": "ENC-ID", "tenant": "TENANT",
            "fhirContext": [{"reference": "Observation/OBS-ID"}], "extra": "EXTRA-VALUE"
        }));
        let printed = format!("{ctx:?}");
        for secret in ["PATIENT-ID", "ENC-ID", "TENANT", "OBS-ID", "EXTRA-VALUE"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("Observation"), "{printed}");
    }
}
