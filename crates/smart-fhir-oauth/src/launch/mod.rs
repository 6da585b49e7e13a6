//! SMART App Launch for server-side web apps (SMART App Launch 2.2, SC-4).
//!
//! * [`AppLaunch`]: the orchestrated flow. [`AppLaunch::launch`] (EHR launch) and
//!   [`AppLaunch::standalone`] check the issuer against an allow-list before any request
//!   (P1), discover the server and check that it fits, keep a fresh `state`, PKCE verifier and
//!   nonce server-side bound to the session, and return the authorize request.
//!   [`AppLaunch::callback`] checks the `state` (once, in constant time, in its own session;
//!   P3), the RFC 9207 `iss` (P2), exchanges the code, reads the launch context and verifies
//!   the `id_token`. [`AppLaunch::ready`] gives a [`SessionClient`]: an access-token provider
//!   for the FHIR client that refreshes itself with rotation (P12).
//! * [`LaunchContext`]: the launch context of a token response, typed (SC-4.19 – SC-4.23).
//! * Sans-IO steps for callers who drive the redirects themselves: [`authorize_url`],
//!   [`code_exchange_request`], [`refresh_request`], and
//!   [`parse_token_response`](crate::token::parse_token_response) for the answers (or
//!   [`exchange`](crate::token::exchange) to send them).
//!
//! The client types are those of [`ClientAuth`]: public, `client_secret_basic`,
//! `client_secret_post` and `private_key_jwt`, used in the code exchange and in every refresh.
//!
//! The modules depend on each other one way (a module uses only those before it): `context`,
//! `error`, `config`, `record`, `protocol`, `state`, `shared` (what the others share: the
//! configuration, the refreshes in flight, the client's authentication, the token exchange),
//! `refresh`, `session`, `app`, then `authorize` (the launch), `form` (its HTML page) and
//! `callback`.

mod app;
mod authorize;
mod callback;
mod config;
mod context;
mod error;
mod form;
mod protocol;
mod record;
mod refresh;
mod session;
mod shared;
mod state;

pub use app::{AppLaunch, LogoutOutcome};
pub use authorize::AuthorizeRequest;
pub use callback::Launched;
pub use config::{
    ClientAuth, IssuerPolicy, LaunchClientConfig, LaunchClientConfigBuilder,
    DEFAULT_AUTHORIZE_POST_THRESHOLD, DEFAULT_PENDING_TTL, DEFAULT_REFRESH_BUFFER,
    DEFAULT_REFRESH_TIMEOUT, DEFAULT_SESSION_TTL,
};
pub use context::{FhirContextItem, LaunchContext, LaunchContextIssue, MAX_CONTEXT_ID_LEN};
pub use error::{LaunchError, RelaunchReason};
pub use protocol::{
    authorize_url, code_exchange_request, refresh_request, AuthorizeParams, TokenAuth,
};
pub use session::SessionClient;
