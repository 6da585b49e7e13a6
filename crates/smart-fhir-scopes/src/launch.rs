use std::fmt;

use crate::error::{ScopeError, ScopeErrorKind};
use crate::scope::is_scope_char;

/// A launch-context scope (SC-5.10): `launch`, or `launch/<type>` with an optional `?role=<role>`.
///
/// ```
/// use smart_fhir_scopes::LaunchScope;
///
/// assert_eq!(LaunchScope::Ehr.to_string(), "launch");
/// assert_eq!(LaunchScope::patient().to_string(), "launch/patient");
/// let list = LaunchScope::resource_with_role("List", "https://example.org/med-list-at-home")?;
/// assert_eq!(list.to_string(), "launch/list?role=https://example.org/med-list-at-home");
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LaunchScope {
    /// `launch`: the app was launched from the EHR and asks for its launch context.
    Ehr,
    /// `launch/<type>[?role=<role>]`: asks for a context resource, e.g. `launch/patient`,
    /// `launch/encounter` (standalone launch) or `launch/imagingstudy` (`fhirContext`).
    Context(LaunchContext),
}

impl LaunchScope {
    /// `launch`.
    pub const fn ehr() -> Self {
        Self::Ehr
    }

    /// `launch/patient`.
    pub fn patient() -> Self {
        Self::Context(LaunchContext::known("patient"))
    }

    /// `launch/encounter`.
    pub fn encounter() -> Self {
        Self::Context(LaunchContext::known("encounter"))
    }

    /// `launch/<type>` for a FHIR resource type, given in any case (`DiagnosticReport` becomes
    /// `launch/diagnosticreport`: launch scopes are written in lower case).
    pub fn resource(resource_type: &str) -> Result<Self, ScopeError> {
        LaunchContext::new(resource_type).map(Self::Context)
    }

    /// `launch/<type>?role=<role>`: asks for context resources of that type playing `role` (an
    /// absolute URI, or a role SMART defines). The role is written as it is, not encoded.
    pub fn resource_with_role(resource_type: &str, role: &str) -> Result<Self, ScopeError> {
        LaunchContext::new(resource_type)?
            .with_role(role)
            .map(Self::Context)
    }

    /// The context asked for, or `None` for `launch`.
    pub fn context(&self) -> Option<&LaunchContext> {
        match self {
            Self::Ehr => None,
            Self::Context(context) => Some(context),
        }
    }

    /// Parses the text after `launch/`. Strict: the type must be lower case. Lenient: it is
    /// lower-cased.
    pub(crate) fn parse_after_prefix(rest: &str, lenient: bool) -> Result<Self, ScopeErrorKind> {
        let (type_text, query) = match rest.split_once('?') {
            Some((type_text, query)) => (type_text, Some(query)),
            None => (rest, None),
        };
        if type_text.is_empty() {
            return Err(invalid("missing resource type after `launch/`"));
        }
        if !type_text.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid(
                "the text after `launch/` must be a resource type name (letters only)",
            ));
        }
        if !lenient && type_text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "launch scopes are written in lower case (e.g. `launch/diagnosticreport`)",
            ));
        }
        let mut context = LaunchContext {
            resource_type: type_text.to_ascii_lowercase(),
            role: None,
        };
        if let Some(query) = query {
            let Some(role) = query.strip_prefix("role=") else {
                return Err(invalid("the only parameter a launch scope takes is `role`"));
            };
            check_role(role)?;
            context.role = Some(role.to_owned());
        }
        Ok(Self::Context(context))
    }
}

impl fmt::Display for LaunchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ehr => f.write_str("launch"),
            Self::Context(context) => write!(f, "launch/{context}"),
        }
    }
}

/// What a `launch/<type>[?role=<role>]` scope asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaunchContext {
    resource_type: String,
    role: Option<String>,
}

impl LaunchContext {
    /// A context resource type, given in any case and kept in lower case.
    pub fn new(resource_type: &str) -> Result<Self, ScopeError> {
        if resource_type.is_empty() || !resource_type.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ScopeError::new(
                &format!("launch/{resource_type}"),
                invalid("a launch context type is a FHIR resource type name (letters only)"),
            ));
        }
        Ok(Self {
            resource_type: resource_type.to_ascii_lowercase(),
            role: None,
        })
    }

    fn known(resource_type: &'static str) -> Self {
        Self {
            resource_type: resource_type.to_owned(),
            role: None,
        }
    }

    /// The same context with `role`: non-empty scope characters without `&` (one role per
    /// scope). Written as it is.
    pub fn with_role(mut self, role: &str) -> Result<Self, ScopeError> {
        let checked = match role.chars().find(|c| !is_scope_char(*c)) {
            Some(character) => Err(ScopeErrorKind::InvalidCharacter { character }),
            None => check_role(role),
        };
        if let Err(kind) = checked {
            return Err(ScopeError::new(
                &format!("launch/{}?role={role}", self.resource_type),
                kind,
            ));
        }
        self.role = Some(role.to_owned());
        Ok(self)
    }

    /// The resource type, in lower case (`patient`, `encounter`, `diagnosticreport`, …).
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The role, if one was asked for.
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// Whether this is `launch/patient` without a role.
    pub fn is_patient(&self) -> bool {
        self.resource_type == "patient" && self.role.is_none()
    }

    /// Whether this is `launch/encounter` without a role.
    pub fn is_encounter(&self) -> bool {
        self.resource_type == "encounter" && self.role.is_none()
    }
}

impl fmt::Display for LaunchContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if let Some(role) = &self.role {
            write!(f, "?role={role}")?;
        }
        Ok(())
    }
}

fn invalid(problem: &'static str) -> ScopeErrorKind {
    ScopeErrorKind::InvalidLaunch { problem }
}

fn check_role(role: &str) -> Result<(), ScopeErrorKind> {
    if role.is_empty() {
        return Err(invalid("empty role"));
    }
    if role.contains('&') {
        return Err(invalid(
            "a launch scope takes one `role` and no other parameter",
        ));
    }
    Ok(())
}

/// Builds a launch-context scope: `launch/<type>`, with `?role=<role>` when `role` is given
/// (SC-5.10). For plain `launch`, use [`LaunchScope::Ehr`].
///
/// ```
/// use smart_fhir_scopes::launch_scope;
///
/// assert_eq!(launch_scope("Patient", None)?.to_string(), "launch/patient");
/// assert_eq!(
///     launch_scope("relatedperson", Some("https://example.org/friend"))?.to_string(),
///     "launch/relatedperson?role=https://example.org/friend"
/// );
/// assert!(launch_scope("", None).is_err());
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
pub fn launch_scope(resource_type: &str, role: Option<&str>) -> Result<LaunchScope, ScopeError> {
    match role {
        Some(role) => LaunchScope::resource_with_role(resource_type, role),
        None => LaunchScope::resource(resource_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(rest: &str) -> &'static str {
        match LaunchScope::parse_after_prefix(rest, false) {
            Err(ScopeErrorKind::InvalidLaunch { problem }) => problem,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sc_5_10_launch_context_scopes_parse() {
        let p = LaunchScope::parse_after_prefix("patient", false).unwrap();
        assert_eq!(p, LaunchScope::patient());
        assert!(p.context().is_some_and(LaunchContext::is_patient));
        let e = LaunchScope::parse_after_prefix("encounter", false).unwrap();
        assert!(e.context().is_some_and(LaunchContext::is_encounter));
        let list = LaunchScope::parse_after_prefix(
            "list?role=https://example.org/med-list-at-home",
            false,
        )
        .unwrap();
        let ctx = list.context().unwrap();
        assert_eq!(ctx.resource_type(), "list");
        assert_eq!(ctx.role(), Some("https://example.org/med-list-at-home"));
        assert!(!ctx.is_patient());
        assert_eq!(
            list.to_string(),
            "launch/list?role=https://example.org/med-list-at-home"
        );
    }

    #[test]
    fn sc_5_10_malformed_launch_scopes_are_refused() {
        assert_eq!(problem(""), "missing resource type after `launch/`");
        assert!(problem("patient/x").contains("letters only"));
        assert!(problem("Patient").contains("lower case"));
        assert_eq!(
            problem("list?foo=bar"),
            "the only parameter a launch scope takes is `role`"
        );
        assert_eq!(problem("list?role="), "empty role");
        assert!(problem("list?role=a&role=b").contains("one `role`"));
    }

    #[test]
    fn lenient_parse_lowercases_the_type() {
        assert_eq!(
            LaunchScope::parse_after_prefix("Patient", true),
            Ok(LaunchScope::patient())
        );
    }

    #[test]
    fn builders_lowercase_and_check() {
        assert_eq!(
            LaunchScope::resource("DiagnosticReport")
                .unwrap()
                .to_string(),
            "launch/diagnosticreport"
        );
        assert!(LaunchScope::resource("Diagnostic Report").is_err());
        assert!(LaunchScope::resource_with_role("List", "").is_err());
        assert!(LaunchScope::resource_with_role("List", "a b").is_err());
        assert!(LaunchScope::resource_with_role("List", "a&b").is_err());
        assert_eq!(LaunchScope::ehr(), LaunchScope::Ehr);
        assert_eq!(LaunchScope::Ehr.context(), None);
    }
}
