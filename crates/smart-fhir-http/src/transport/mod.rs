//! The hyper + rustls implementation of [`HttpClient`](smart_fhir_core::HttpClient).
//!
//! One concern a module, each depending only on those below it:
//!
//! * [`builder`]: [`HyperHttpClientBuilder`], the settings and their checks;
//! * [`tls`]: the trusted roots, the crypto provider, the protocol versions;
//! * [`exchange`]: [`HyperHttpClient`], one request and its response;
//! * [`body`]: the bounded whole-body read and [`BodyStream`];
//! * [`uri`]: which URIs may be sent, and the origin errors name;
//! * [`classify`]: transport failures as `HttpError`s;
//! * [`error`]: [`TransportError`], why a client could not be built.

mod body;
mod builder;
mod classify;
mod error;
mod exchange;
mod tls;
mod uri;

pub use body::BodyStream;
pub use builder::HyperHttpClientBuilder;
pub use classify::is_unknown_issuer;
pub use error::TransportError;
pub use exchange::HyperHttpClient;
pub use tls::Roots;
pub(crate) use uri::split_plain_authority;
