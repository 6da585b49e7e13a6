//! SMART on FHIR scopes: parse, build, normalise and compare v1 and v2 scopes.
//!
//! A pure crate: no HTTP, no async, no other `smart-fhir` crate.
//!
//! * [`Scope`]: one scope token. v2 resource scopes ([`ResourceScope`],
//!   `patient/Observation.rs?category=…`), v1 resource scopes ([`ResourceScopeV1`],
//!   `patient/Observation.read`, kept as v1), launch scopes ([`LaunchScope`]), `openid`,
//!   `fhirUser`, `profile`, `offline_access`, `online_access` and extension scopes
//!   ([`ExtensionScope`]). `Display` writes the canonical text; parsing it gives the same value.
//! * [`ScopeSet`]: an ordered set parsed from a space-separated string, strictly
//!   ([`ScopeSet::parse`], for an app's own scopes) or leniently ([`ScopeSet::parse_lenient`],
//!   for what a server grants: never fails). It can [cover](ScopeSet::covers) scopes,
//!   [normalise](ScopeSet::normalize) to the shortest form, map [v1 → v2](ScopeSet::to_v2) and
//!   [v2 → v1](ScopeSet::to_v1) where exact, and [compare](ScopeSet::difference) a request with a
//!   grant.
//! * Builders: [`ResourceScope::patient`] and friends, [`resource_scope`], [`launch_scope`],
//!   [`ScopeSet::builder`]. They check type and parameter names and report problems as a
//!   [`ScopeError`] from `build()`.
//!
//! Parsing is strict about permission order (`cruds`, SC-5.2) because servers may ignore or
//! reject out-of-order requests; the lenient parser accepts any order from servers. Errors
//! name the scope and the problem, with any `?` restriction elided: restrictions can carry
//! search values about a patient.
//!
//! # `serde` feature
//!
//! [`Scope`], [`ScopeSet`], [`ScopeDiff`] and [`LenientScopeSet`] implement `Serialize`, the
//! first two `Deserialize` too. A scope serialises as a map of its parts, led by its canonical
//! text:
//!
//! ```json
//! {"scope": "patient/Observation.rs?category=laboratory", "kind": "resource", "syntax": "v2",
//!  "context": "patient", "resource": "Observation", "permissions": "rs",
//!  "restrictions": [{"name": "category", "value": "laboratory"}]}
//! ```
//!
//! `kind` is `resource` (v1 scopes add `"syntax": "v1"` and `v1_access`; `permissions` is
//! always the v2 meaning, `restrictions` is `null` or the decoded pairs), `launch` (with
//! `context`, `null` for plain `launch`, and `role`), `openid`, `fhir_user`, `profile`,
//! `offline_access`, `online_access` or `extension` (with `uri`). A scope deserialises from its
//! text or from such a map, of which only `"scope"` is read (parsed strictly). A set serialises
//! as a sequence and deserialises from a sequence or a space-separated string. A diff is
//! `{"relation", "missing", "extra"}`.
//!
//! # Example
//!
//! ```
//! use smart_fhir_scopes::{Context, Permissions, ResourceScope, ScopeRelation, ScopeSet};
//!
//! // What the app asks for.
//! let requested = ScopeSet::builder()
//!     .resource(ResourceScope::patient("Observation").read().search())
//!     .resource(ResourceScope::patient("MedicationRequest").create().read().search())
//!     .launch_patient()
//!     .openid()
//!     .fhir_user()
//!     .offline_access()
//!     .build()?;
//! assert_eq!(
//!     requested.to_string(),
//!     "patient/Observation.rs patient/MedicationRequest.crs launch/patient openid fhirUser offline_access"
//! );
//!
//! // What the server granted (v1 syntax, an unknown scope, no `offline_access`).
//! let granted = ScopeSet::parse_lenient(
//!     "patient/*.read patient/MedicationRequest.r launch/patient openid fhirUser odd!scope",
//! );
//! assert_eq!(granted.unrecognized()[0].text(), "odd!scope");
//! let granted = granted.into_scopes();
//!
//! let diff = requested.difference(&granted);
//! assert_eq!(diff.relation(), ScopeRelation::Different);
//! assert_eq!(diff.missing().to_string(), "patient/MedicationRequest.c offline_access");
//! assert_eq!(diff.extra().to_string(), "patient/*.read");
//!
//! // Enable features from the grant.
//! assert!(granted.covers(&"patient/Observation.rs".parse::<smart_fhir_scopes::Scope>()?));
//! let can = granted.permissions_for(Context::Patient, "MedicationRequest");
//! assert!(can.contains(Permissions::READ_SEARCH) && !can.contains(Permissions::CREATE));
//! assert!(!granted.has_offline_access());
//! # Ok::<(), smart_fhir_scopes::ScopeError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Dependencies the library does not use (the unit-test build also sees the dev-dependencies).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
mod launch;
mod permissions;
mod resource;
mod restrictions;
mod scope;
#[cfg(feature = "serde")]
mod serde_impl;
mod set;

#[cfg(test)]
mod proptests;

pub use error::{ScopeError, ScopeErrorKind};
pub use launch::{launch_scope, LaunchContext, LaunchScope};
pub use permissions::{Permission, Permissions, V1Access};
pub use resource::{
    resource_scope, Context, ResourceScope, ResourceScopeBuilder, ResourceScopeV1, ResourceType,
    TypeName,
};
pub use restrictions::Restrictions;
pub use scope::{ExtensionScope, Scope};
pub use set::{
    Coverable, LenientScopeSet, ScopeDiff, ScopeRelation, ScopeSet, ScopeSetBuilder,
    UnrecognizedScope,
};
