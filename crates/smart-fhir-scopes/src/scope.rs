use std::fmt;
use std::str::FromStr;

use crate::error::{loggable_name, ScopeError, ScopeErrorKind};
use crate::launch::LaunchScope;
use crate::resource::{Context, ParsedResource, ResourceScope, ResourceScopeV1};

/// One scope token (SC-5.1, SC-5.6, SC-5.10, SC-5.11).
///
/// `Display` writes the canonical text: v2 resource scopes with permissions in `cruds` order,
/// v1 resource scopes as v1, restrictions as written. Parsing that text gives the same value.
///
/// The variants are declared in the canonical order used by [`ScopeSet::normalize`]
/// (the derived `Ord`): identity, launch, refresh, resource, extension scopes.
///
/// [`ScopeSet::normalize`]: crate::ScopeSet::normalize
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// `openid`.
    OpenId,
    /// `fhirUser`.
    FhirUser,
    /// `profile`: the SMART v1 spelling of `fhirUser` (and an OpenID Connect scope). Coverage
    /// treats `profile` and `fhirUser` as the same grant; they are kept apart otherwise.
    Profile,
    /// `launch`, `launch/patient`, `launch/<type>?role=…`.
    Launch(LaunchScope),
    /// `offline_access`.
    OfflineAccess,
    /// `online_access`.
    OnlineAccess,
    /// A v2 resource scope such as `patient/Observation.rs`.
    Resource(ResourceScope),
    /// A v1 resource scope such as `patient/Observation.read`.
    ResourceV1(ResourceScopeV1),
    /// A full-URI or `__`-prefixed extension scope.
    Extension(ExtensionScope),
}

impl Scope {
    /// Parses one scope, strictly: v2 permissions must be in `cruds` order without repeats
    /// (SC-5.2) and launch types in lower case.
    ///
    /// Strictness is the default because SMART requires servers to write permissions in that
    /// order and lets them ignore or reject scope requests that are not, so an out-of-order
    /// scope in an app's own configuration is a mistake worth reporting.
    /// [`parse_lenient`](Self::parse_lenient) reads what servers send.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        parse_scope(text, false)
    }

    /// Parses one scope as a server might write it: v2 permission letters in any order and
    /// repeated (`patient/Observation.sr` reads as `.rs`), launch types in any case. Everything
    /// else is as strict as [`parse`](Self::parse). The result displays in canonical form.
    pub fn parse_lenient(text: &str) -> Result<Self, ScopeError> {
        parse_scope(text, true)
    }

    /// The same scope with v1 resource syntax mapped to v2 (SC-5.7); other scopes unchanged.
    pub fn to_v2(&self) -> Scope {
        match self {
            Self::ResourceV1(v1) => Self::Resource(v1.to_v2()),
            other => other.clone(),
        }
    }

    /// Whether this scope alone grants everything `other` asks for (SC-5.16).
    ///
    /// Resource scopes: see [`ResourceScope::covers`]; v1 scopes count with their v2 meaning.
    /// Other scopes cover only themselves, except that `fhirUser` and `profile` cover each other.
    /// `launch` does not cover `launch/patient`. To let several granted scopes add up
    /// (`X.r` + `X.s` covers `X.rs`), use [`ScopeSet::covers`](crate::ScopeSet::covers).
    pub fn covers(&self, other: &Scope) -> bool {
        match (self.resource_view(), other.resource_view()) {
            (Some(mine), Some(theirs)) => mine.covers(&theirs),
            (None, None) => self.covers_plain(other),
            _ => false,
        }
    }

    /// The v2 meaning of a resource scope (v1 mapped), `None` for other scopes.
    pub(crate) fn resource_view(&self) -> Option<std::borrow::Cow<'_, ResourceScope>> {
        match self {
            Self::Resource(scope) => Some(std::borrow::Cow::Borrowed(scope)),
            Self::ResourceV1(v1) => Some(std::borrow::Cow::Owned(v1.to_v2())),
            _ => None,
        }
    }

    /// Coverage between non-resource scopes.
    pub(crate) fn covers_plain(&self, other: &Scope) -> bool {
        self == other
            || matches!(
                (self, other),
                (Self::FhirUser, Self::Profile) | (Self::Profile, Self::FhirUser)
            )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenId => f.write_str("openid"),
            Self::FhirUser => f.write_str("fhirUser"),
            Self::Profile => f.write_str("profile"),
            Self::Launch(launch) => launch.fmt(f),
            Self::OfflineAccess => f.write_str("offline_access"),
            Self::OnlineAccess => f.write_str("online_access"),
            Self::Resource(scope) => scope.fmt(f),
            Self::ResourceV1(scope) => scope.fmt(f),
            Self::Extension(scope) => scope.fmt(f),
        }
    }
}

/// Strict parsing, as [`Scope::parse`].
impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ResourceScope> for Scope {
    fn from(scope: ResourceScope) -> Self {
        Self::Resource(scope)
    }
}

impl From<ResourceScopeV1> for Scope {
    fn from(scope: ResourceScopeV1) -> Self {
        Self::ResourceV1(scope)
    }
}

impl From<LaunchScope> for Scope {
    fn from(scope: LaunchScope) -> Self {
        Self::Launch(scope)
    }
}

impl From<ExtensionScope> for Scope {
    fn from(scope: ExtensionScope) -> Self {
        Self::Extension(scope)
    }
}

/// An extension scope (SC-5.11): a full absolute URI (`https://ehr.example.org/scopes/photo`,
/// `urn:…`) or any scope starting with `__` (`__profilePhoto.manage`). Compared as exact text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtensionScope(String);

impl ExtensionScope {
    /// Checks that `text` is a scope token that is an absolute URI or starts with `__`
    /// followed by at least one character.
    pub fn new(text: impl Into<String>) -> Result<Self, ScopeError> {
        let text = text.into();
        let checked = match text.chars().find(|c| !is_scope_char(*c)) {
            Some(character) => Err(ScopeErrorKind::InvalidCharacter { character }),
            None if is_extension(&text) => Ok(()),
            None if text.is_empty() => Err(ScopeErrorKind::Empty),
            None => Err(ScopeErrorKind::Unrecognized),
        };
        checked.map_err(|kind| ScopeError::new(&text, kind))?;
        Ok(Self(text))
    }

    /// The scope text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the absolute-URI form (otherwise it starts with `__`).
    pub fn is_uri(&self) -> bool {
        !self.0.starts_with("__")
    }
}

impl fmt::Display for ExtensionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 6749 §3.3 `NQCHAR`: `%x21 / %x23-5B / %x5D-7E`, i.e. printable ASCII except space, `"`
/// and `\`.
pub(crate) fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

fn is_extension(text: &str) -> bool {
    match text.strip_prefix("__") {
        Some(rest) => !rest.is_empty(),
        None => is_absolute_uri(text),
    }
}

/// RFC 3986 `scheme ":" rest` with a non-empty rest.
fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

fn parse_scope(text: &str, lenient: bool) -> Result<Scope, ScopeError> {
    parse_kind(text, lenient).map_err(|kind| ScopeError::new(text, kind))
}

fn parse_kind(text: &str, lenient: bool) -> Result<Scope, ScopeErrorKind> {
    if text.is_empty() {
        return Err(ScopeErrorKind::Empty);
    }
    if let Some(character) = text.chars().find(|c| !is_scope_char(*c)) {
        return Err(ScopeErrorKind::InvalidCharacter { character });
    }
    match text {
        "openid" => return Ok(Scope::OpenId),
        "fhirUser" => return Ok(Scope::FhirUser),
        "profile" => return Ok(Scope::Profile),
        "offline_access" => return Ok(Scope::OfflineAccess),
        "online_access" => return Ok(Scope::OnlineAccess),
        "launch" => return Ok(Scope::Launch(LaunchScope::Ehr)),
        _ => {}
    }
    if let Some(rest) = text.strip_prefix("launch/") {
        return LaunchScope::parse_after_prefix(rest, lenient).map(Scope::Launch);
    }
    if is_extension(text) {
        return Ok(Scope::Extension(ExtensionScope(text.to_owned())));
    }
    let Some((context_text, rest)) = text.split_once('/') else {
        return Err(ScopeErrorKind::Unrecognized);
    };
    let Some(context) = Context::from_prefix(context_text) else {
        return Err(ScopeErrorKind::UnknownContext {
            found: loggable_name(context_text),
        });
    };
    Ok(
        match ResourceScope::parse_after_context(context, rest, lenient)? {
            ParsedResource::V2(scope) => Scope::Resource(scope),
            ParsedResource::V1(scope) => Scope::ResourceV1(scope),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::{Permissions, V1Access};
    use crate::resource::ResourceType;

    fn kind(text: &str) -> ScopeErrorKind {
        Scope::parse(text).unwrap_err().kind().clone()
    }

    fn s(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn sc_5_1_v2_resource_scopes_parse_into_parts() {
        let Scope::Resource(r) = s("patient/Observation.rs") else {
            panic!("not a resource scope")
        };
        assert_eq!(r.context(), Context::Patient);
        assert_eq!(r.resource().name(), Some("Observation"));
        assert_eq!(r.permissions(), Permissions::READ_SEARCH);
        assert_eq!(r.restrictions(), None);
        let Scope::Resource(all) = s("system/*.cruds") else {
            panic!("not a resource scope")
        };
        assert_eq!(all.resource(), &ResourceType::Any);
        assert_eq!(all.permissions(), Permissions::ALL);
        for text in [
            "user/Patient.c",
            "user/Patient.u",
            "user/Patient.d",
            "user/Patient.cd",
        ] {
            assert_eq!(s(text).to_string(), text);
        }
    }

    #[test]
    fn sc_5_2_out_of_order_permissions_are_refused_strictly_and_read_leniently() {
        assert_eq!(
            kind("patient/Observation.sr"),
            ScopeErrorKind::PermissionOrder { found: "sr".into() }
        );
        assert_eq!(
            kind("patient/Observation.rrs"),
            ScopeErrorKind::RepeatedPermission { letter: 'r' }
        );
        let lenient = Scope::parse_lenient("patient/Observation.srr").unwrap();
        assert_eq!(lenient.to_string(), "patient/Observation.rs");
    }

    #[test]
    fn sc_5_3_empty_permissions_are_refused() {
        assert_eq!(
            kind("patient/Observation."),
            ScopeErrorKind::EmptyPermissions
        );
        assert_eq!(
            kind("patient/Observation.?category=x"),
            ScopeErrorKind::EmptyPermissions
        );
    }

    #[test]
    fn sc_5_5_restrictions_are_kept_verbatim() {
        let text = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let scope = s(text);
        assert_eq!(scope.to_string(), text);
        let Scope::Resource(r) = &scope else {
            panic!("not a resource scope")
        };
        assert_eq!(
            r.restrictions().map(|x| x.as_str()),
            Some("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
        );
        let odd = "user/Observation.rs?code:in=http://valueset.example.org/ValueSet/diabetes-codes&patient.birthdate=1990&x=%2F";
        assert_eq!(s(odd).to_string(), odd);
    }

    #[test]
    fn sc_5_6_v1_scopes_parse_and_stay_v1() {
        for (text, access) in [
            ("patient/Observation.read", V1Access::Read),
            ("user/*.write", V1Access::Write),
            ("system/*.*", V1Access::All),
            ("patient/Patient.*", V1Access::All),
        ] {
            let Scope::ResourceV1(v1) = s(text) else {
                panic!("{text} not v1")
            };
            assert_eq!(v1.access(), access);
            assert_eq!(v1.to_string(), text);
        }
        assert_eq!(
            kind("patient/Observation.read?category=x"),
            ScopeErrorKind::V1WithRestrictions
        );
    }

    #[test]
    fn sc_5_7_v1_maps_to_v2() {
        assert_eq!(
            s("patient/Observation.read").to_v2(),
            s("patient/Observation.rs")
        );
        assert_eq!(s("user/*.write").to_v2(), s("user/*.cud"));
        assert_eq!(s("system/*.*").to_v2(), s("system/*.cruds"));
        assert_eq!(s("openid").to_v2(), s("openid"));
    }

    #[test]
    fn sc_5_10_launch_scopes() {
        assert_eq!(s("launch"), Scope::Launch(LaunchScope::Ehr));
        assert_eq!(s("launch/patient"), Scope::Launch(LaunchScope::patient()));
        assert_eq!(
            s("launch/encounter"),
            Scope::Launch(LaunchScope::encounter())
        );
        let text = "launch/list?role=https://example.org/med-list-at-home";
        assert_eq!(s(text).to_string(), text);
        assert_eq!(s("launch/imagingstudy").to_string(), "launch/imagingstudy");
        assert!(matches!(
            kind("launch/"),
            ScopeErrorKind::InvalidLaunch { .. }
        ));
        assert!(matches!(
            kind("launch/Patient"),
            ScopeErrorKind::InvalidLaunch { .. }
        ));
    }

    #[test]
    fn sc_5_11_identity_refresh_and_extension_scopes() {
        assert_eq!(s("openid"), Scope::OpenId);
        assert_eq!(s("fhirUser"), Scope::FhirUser);
        assert_eq!(s("profile"), Scope::Profile);
        assert_eq!(s("offline_access"), Scope::OfflineAccess);
        assert_eq!(s("online_access"), Scope::OnlineAccess);
        for text in [
            "__profilePhoto.manage",
            "https://ehr.example.org/scopes/profilePhoto.manage",
            "urn:example:scope",
            "http://smarthealthit.org/fhir/scopes/patient/*.read",
        ] {
            let Scope::Extension(e) = s(text) else {
                panic!("{text} not an extension")
            };
            assert_eq!(e.as_str(), text);
            assert_eq!(e.is_uri(), !text.starts_with("__"));
        }
        assert_eq!(kind("__"), ScopeErrorKind::Unrecognized);
        assert_eq!(kind("email"), ScopeErrorKind::Unrecognized);
        assert_eq!(kind("FHIRUSER"), ScopeErrorKind::Unrecognized);
        assert!(ExtensionScope::new("__x").is_ok());
        assert!(ExtensionScope::new("openid").is_err());
        assert!(ExtensionScope::new("").is_err());
        assert!(ExtensionScope::new("__a b").is_err());
    }

    #[test]
    fn every_error_class_is_reported_with_the_scope() {
        assert_eq!(kind(""), ScopeErrorKind::Empty);
        assert_eq!(
            kind(" "),
            ScopeErrorKind::InvalidCharacter { character: ' ' }
        );
        assert_eq!(
            kind("practitioner/Observation.rs"),
            ScopeErrorKind::UnknownContext {
                found: "practitioner".into()
            }
        );
        assert_eq!(
            kind("patient/Observation.rs openid"),
            ScopeErrorKind::InvalidCharacter { character: ' ' }
        );
        assert_eq!(
            kind("patient/Observation.r\t"),
            ScopeErrorKind::InvalidCharacter { character: '\t' }
        );
        assert_eq!(
            kind("patient/Obsérvation.rs"),
            ScopeErrorKind::InvalidCharacter { character: 'é' }
        );
        assert_eq!(
            kind("Patient/Observation.read"),
            ScopeErrorKind::UnknownContext {
                found: "Patient".into()
            }
        );
        assert_eq!(
            kind("Patient/123"),
            ScopeErrorKind::UnknownContext {
                found: "Patient".into()
            }
        );
        assert_eq!(
            kind("/Observation.rs"),
            ScopeErrorKind::UnknownContext { found: "".into() }
        );
        assert_eq!(kind("patient/.rs"), ScopeErrorKind::MissingResourceType);
        assert_eq!(kind("patient/"), ScopeErrorKind::MissingResourceType);
        assert_eq!(
            kind("patient/observation.rs"),
            ScopeErrorKind::InvalidResourceType {
                found: "observation".into()
            }
        );
        assert_eq!(
            kind("patient/Observation"),
            ScopeErrorKind::MissingPermissions
        );
        assert_eq!(
            kind("patient/Observation.rx"),
            ScopeErrorKind::UnknownPermission { letter: 'x' }
        );
        assert_eq!(
            kind("patient/Observation.Read"),
            ScopeErrorKind::UnknownPermission { letter: 'R' }
        );
        assert!(matches!(
            kind("patient/Observation.rs?category"),
            ScopeErrorKind::InvalidRestriction { .. }
        ));
        assert_eq!(
            Scope::parse("patient/Observation.rx")
                .unwrap_err()
                .to_string(),
            "`patient/Observation.rx`: unknown permission letter `x`"
        );
    }

    #[test]
    fn sc_5_16_single_scope_coverage_and_aliases() {
        assert!(s("patient/*.rs").covers(&s("patient/Observation.r")));
        assert!(s("patient/*.read").covers(&s("patient/Observation.rs")));
        assert!(s("patient/Observation.rs").covers(&s("patient/Observation.read")));
        assert!(!s("patient/Observation.r").covers(&s("patient/Observation.read")));
        assert!(s("fhirUser").covers(&s("profile")));
        assert!(s("profile").covers(&s("fhirUser")));
        assert!(!s("launch").covers(&s("launch/patient")));
        assert!(!s("launch/patient").covers(&s("launch")));
        assert!(!s("openid").covers(&s("patient/*.rs")));
        assert!(!s("patient/*.rs").covers(&s("openid")));
        assert!(s("__x").covers(&s("__x")));
        assert!(!s("__x").covers(&s("__y")));
    }
}
