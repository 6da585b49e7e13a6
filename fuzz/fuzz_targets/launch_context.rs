//! Launch context and `fhirContext` from a token response (SC-4.20–SC-4.25): the body is a
//! JSON object of token-response members, read by `LaunchContext::from_token_fields` with both
//! insecure-HTTP policies. What is read is well-formed (ids of the FHIR id alphabet, items with
//! a reference, canonical or identifier, an https style URL); every member is either read, or
//! kept in `extra`; `Debug` shows no patient id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use smart_fhir_core::InsecureHttp;
use smart_fhir_oauth::{LaunchContext, MAX_CONTEXT_ID_LEN};

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CONTEXT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for insecure in [InsecureHttp::Deny, InsecureHttp::AllowLoopback] {
        let ctx = LaunchContext::from_token_fields(&fields, insecure);
        if let Some(p) = &ctx.patient {
            assert!(id_ok(p), "{p:?}");
            assert_eq!(ctx.patient_reference(), Some(format!("Patient/{p}")));
        }
        if let Some(e) = &ctx.encounter {
            assert!(id_ok(e), "{e:?}");
        }
        for item in &ctx.fhir_context {
            assert!(
                item.reference.is_some() || item.canonical.is_some() || item.identifier.is_some()
            );
            assert!(!item.role_or_default().is_empty());
            if let Some(t) = item.resource_type_name() {
                assert!(ctx.fhir_context_of_type(t).count() >= 1);
            }
        }
        if let Some(url) = &ctx.smart_style_url {
            let loopback_http = insecure == InsecureHttp::AllowLoopback && url.scheme() == "http";
            assert!(url.scheme() == "https" || loopback_http, "{url}");
            assert!(url.username().is_empty() && url.password().is_none());
            assert!(url.fragment().is_none());
        }
        // Every member is accounted for: read into a field, or kept in `extra`, or null.
        let read: Map<String, Value> = fields
            .iter()
            .filter(|(k, v)| !v.is_null() && !ctx.extra.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for name in read.keys() {
            assert!(
                matches!(
                    name.as_str(),
                    "patient"
                        | "encounter"
                        | "fhirContext"
                        | "need_patient_banner"
                        | "smart_style_url"
                        | "intent"
                        | "tenant"
                        | "authorization_details"
                ),
                "{name} neither read nor kept"
            );
        }
        for issue in &ctx.issues {
            assert!(!issue.to_string().is_empty());
        }
        if ctx.issues.iter().any(|i| i.field == "patient") {
            assert!(ctx.has_identity_issues());
        }
        // `Debug` does not depend on which patient or encounter is in context.
        let mut blank = ctx.clone();
        blank.patient = ctx.patient.as_ref().map(|_| "x".to_owned());
        blank.encounter = ctx.encounter.as_ref().map(|_| "x".to_owned());
        assert_eq!(
            format!("{ctx:?}"),
            format!("{blank:?}"),
            "an id shows in Debug"
        );
        assert_eq!(ctx.is_empty(), ctx == LaunchContext::default());
    }
});
