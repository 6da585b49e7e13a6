//! Keys, client assertions (private_key_jwt) and JWS verification for SMART on FHIR
#![forbid(unsafe_code)]
#![deny(missing_docs)]
