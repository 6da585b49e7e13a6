//! PKCE (S256), state and nonce for SMART App Launch
#![forbid(unsafe_code)]
#![deny(missing_docs)]
