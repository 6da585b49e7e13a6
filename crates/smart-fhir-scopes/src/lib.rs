//! SMART on FHIR scopes: parse, build, normalise and compare v1 and v2 scopes
#![forbid(unsafe_code)]
#![deny(missing_docs)]
